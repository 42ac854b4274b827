//! The room's stage as commands on the room: admission of speakers and listeners against the
//! roster, roster changes (counted for the store, announced in the room event), and the
//! stage's part of that event. Domain errors come back as [`ApiError`]s.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use tribune_core::event::Participant;
use tribune_core::permissions::allowed;
use tribune_core::stage::{Ejection, Muter};
use tribune_core::{
    Action, Claims, ListenerId, ParticipantId, Role, RoomState, Roster, StageError, TokenKind,
};

use super::{Ingress, LiveRoom};
use crate::error::ApiError;

/// A stage error as a refusal of the caller's credential.
pub(crate) fn off_stage(e: StageError) -> ApiError {
    match e {
        StageError::NotOnStage => ApiError::Forbidden(
            "this stage token is no longer valid: not on stage (moved to the audience or removed)"
                .into(),
        ),
        other => ApiError::Forbidden(other.to_string()),
    }
}

impl LiveRoom {
    /// Admission of a publishing connection (speak WebSocket, WHIP), after its stage token was
    /// verified: refused (403) when the participant is no longer on stage (moved to the
    /// audience, removed) or blocked, and (410) when the room has ended. Answers the role the
    /// participant holds now (it may differ from the token's after a promotion).
    pub fn admit_speaker(&self, claims: &Claims) -> Result<Role, ApiError> {
        if claims.kind != TokenKind::Stage || claims.room != self.id {
            return Err(ApiError::Forbidden(
                "not a stage token for this room".into(),
            ));
        }
        if self.info().state == RoomState::Ended {
            return Err(ApiError::RoomEnded);
        }
        self.ensure_origin()?;
        let role = self
            .roster
            .lock()
            .admit(ParticipantId(claims.sub))
            .map_err(off_stage)?;
        if !allowed(role, Action::Speak, None) {
            return Err(ApiError::Forbidden("this role may not speak".into()));
        }
        Ok(role)
    }

    /// Refuses (403) a blocked listener's ticket.
    pub fn admit_listener(&self, listener: ListenerId) -> Result<(), ApiError> {
        if self.roster.lock().is_listener_blocked(listener) {
            return Err(ApiError::Forbidden("blocked from this room".into()));
        }
        Ok(())
    }

    /// A participant mutes or unmutes themself (speak control message, WHIP, HTTP). Refused
    /// when unmuting past a moderator's mute.
    pub fn set_self_muted(&self, participant: ParticipantId, muted: bool) -> Result<(), ApiError> {
        self.change(|r| r.set_muted(participant, Muter::Participant, muted))
            .map(|_| ())
    }

    /// The ejection revision now: a connection accepted at it is closed by any later kick.
    pub fn eject_rev(&self) -> u64 {
        self.roster.lock().eject_rev()
    }

    /// Whether a listener connection that last saw ejection revision `since` must close now:
    /// the close reason, if so.
    pub fn eject_check(&self, listener: ListenerId, since: u64) -> Option<&'static str> {
        match self.roster.lock().eject_check(listener, since)? {
            Ejection::Blocked => Some("blocked by a moderator"),
            Ejection::Removed => Some("removed by a moderator"),
        }
    }

    /// Applies a roster change now visible to everyone: the room event goes out on the mixer's
    /// next tick (≤ 20 ms) and every seat's mute is re-applied.
    pub fn change<T>(
        &self,
        f: impl FnOnce(&mut Roster) -> Result<T, StageError>,
    ) -> Result<T, ApiError> {
        let (out, moved) = self.apply(f)?;
        if moved {
            self.stage_changed();
        }
        Ok(out)
    }

    /// Applies a change that listeners can cause at any rate (requests to speak): it reaches
    /// the room event with the next periodic refresh (once a second), never faster.
    pub fn change_lazily<T>(
        &self,
        f: impl FnOnce(&mut Roster) -> Result<T, StageError>,
    ) -> Result<T, ApiError> {
        self.apply(f).map(|(out, _)| out)
    }

    /// Tells the room's task the stage changed, through its one command channel. One command
    /// at a time is queued (later changes ride on it); if the queue is full (a backlog of
    /// speakers' frames), the task's once-a-second refresh publishes the change and re-applies
    /// mutes instead.
    fn stage_changed(&self) {
        if self.stage_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.ingress.try_send(Ingress::StageChanged).is_err() {
            self.stage_pending.store(false, Ordering::Release);
        }
    }

    /// The task took the queued `StageChanged`: the next change queues a new one.
    pub(super) fn stage_change_taken(&self) {
        self.stage_pending.store(false, Ordering::Release);
    }

    /// Runs `f` on the roster; counts a change to save only if the roster moved (a repeated
    /// mute or request costs no write and no event). Answers whether it moved.
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut Roster) -> Result<T, StageError>,
    ) -> Result<(T, bool), ApiError> {
        let mut roster = self.roster.lock();
        let before = (roster.rev(), roster.eject_rev());
        let out = f(&mut roster)?;
        let moved = (roster.rev(), roster.eject_rev()) != before;
        if moved {
            self.changed();
        }
        Ok((out, moved))
    }

    /// The stage as the room event shows it; `speaking` tells whether a mixer slot spoke in
    /// the last window.
    pub(crate) fn stage_part(&self, speaking: impl Fn(u64) -> bool) -> StagePart {
        let mut on_air: HashMap<ParticipantId, bool> = HashMap::new();
        for (slot, p, _) in self.seated() {
            *on_air.entry(p).or_default() |= speaking(slot);
        }
        let roster = self.roster.lock();
        StagePart {
            rev: roster.rev(),
            participants: roster
                .members()
                .into_iter()
                .map(|m| Participant::of(m, on_air.get(&m.id).copied()))
                .collect(),
            requests: roster.requests().count(),
            invited: roster.invites().iter().map(|l| l.0.to_string()).collect(),
            eject_rev: roster.eject_rev(),
        }
    }
}

/// The stage's part of a room event.
pub(crate) struct StagePart {
    /// The roster's revision.
    pub rev: u64,
    /// Who is on stage.
    pub participants: Vec<Participant>,
    /// Pending requests to speak.
    pub requests: usize,
    /// Invited listener ids.
    pub invited: Vec<String>,
    /// The roster's ejection revision (listener connections check themselves when it moves).
    pub eject_rev: u64,
}
