//! Roles and moderation over HTTP: requests to speak, invitations, mutes, moving someone to the
//! audience, removals and blocks. Every call is authenticated (stage token or listen ticket),
//! checked against the permission matrix (`tribune_core::permissions`) with the caller's role
//! as the roster knows it now, applied to the room's roster (`tribune_core::stage`), and
//! announced in the room event on the listeners' WebSocket.
//!
//! Ids in these JSON bodies are decimal strings (they are 64-bit; JavaScript numbers are not);
//! ids sent to the server may be strings or numbers.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::Router;

use tribune_core::event::Participant;
use tribune_core::permissions::{allowed, ROLES};
use tribune_core::stage::{Ejection, Muter};
use tribune_core::{
    unix_micros, Action, Claims, ListenerId, ParticipantId, Role, RoomState, Roster, StageError,
    TokenError, TokenKind,
};

use crate::api::bearer;
use crate::error::ApiError;
use crate::live_room::LiveRoom;
use crate::state::AppState;

pub mod handlers;

use handlers::{
    accept_invite, accept_request, cancel_invite, cancel_request, decline_invite, decline_request,
    demote, invite, mute, my_status, remove_listener, remove_participant, request_to_speak,
    set_role, stage_view, unblock,
};

/// The moderation routes (merged into the node's router).
pub fn routes() -> Router<AppState> {
    let p = |pid: &str| format!("/api/rooms/{{id}}/participants/{{pid}}/{pid}");
    Router::new()
        .route("/api/rooms/{id}/stage", get(stage_view))
        .route("/api/rooms/{id}/requests", post(request_to_speak))
        .route(
            "/api/rooms/{id}/requests/me",
            get(my_status).delete(cancel_request),
        )
        .route(
            "/api/rooms/{id}/requests/{lid}/accept",
            post(accept_request),
        )
        .route(
            "/api/rooms/{id}/requests/{lid}/decline",
            post(decline_request),
        )
        .route("/api/rooms/{id}/invites", post(invite))
        .route("/api/rooms/{id}/invites/me/accept", post(accept_invite))
        .route("/api/rooms/{id}/invites/me/decline", post(decline_invite))
        .route("/api/rooms/{id}/invites/{lid}", delete(cancel_invite))
        .route(&p("mute"), post(mute))
        .route(&p("demote"), post(demote))
        .route(&p("role"), post(set_role))
        .route(&p("remove"), post(remove_participant))
        .route(
            "/api/rooms/{id}/listeners/{lid}/remove",
            post(remove_listener),
        )
        .route("/api/rooms/{id}/blocks/{subject}", delete(unblock))
        .route("/api/rooms/{id}/reactions", post(crate::reactions::react))
}

/// Who is calling.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// A stage participant (stage token).
    Participant(ParticipantId),
    /// A listener (listen ticket).
    Listener(ListenerId),
}

/// An authenticated caller with its role as the roster knows it now.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Current role (a promoted speaker is a co-host whatever its token says).
    pub role: Role,
    /// Identity.
    pub who: Who,
}

impl Actor {
    fn listener(&self) -> Result<ListenerId, ApiError> {
        match self.who {
            Who::Listener(l) => Ok(l),
            Who::Participant(_) => Err(ApiError::Forbidden("this needs a listen ticket".into())),
        }
    }
}

/// The role's name on the wire.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Host => "host",
        Role::CoHost => "co_host",
        Role::Speaker => "speaker",
        Role::Listener => "listener",
    }
}

fn now_s() -> u64 {
    unix_micros() / 1_000_000
}

fn off_stage(e: StageError) -> ApiError {
    match e {
        StageError::NotOnStage => ApiError::Forbidden(
            "this stage token is no longer valid: not on stage (moved to the audience or removed)"
                .into(),
        ),
        other => ApiError::Forbidden(other.to_string()),
    }
}

/// Verifies a stage token or listen ticket for `room` and finds the caller's current role.
/// A stage token is honoured only while its participant is on stage and not blocked; a
/// ticket only while its listener is not blocked.
pub fn authenticate(
    app: &AppState,
    room: &LiveRoom,
    token: Option<&str>,
) -> Result<Actor, ApiError> {
    let token = token.ok_or(ApiError::Unauthenticated("bearer token"))?;
    let claims = app.keys().verify(token, now_s())?;
    if claims.room != room.id {
        return Err(TokenError::WrongRoom.into());
    }
    match claims.kind {
        TokenKind::Stage => {
            let id = ParticipantId(claims.sub);
            let role = room.roster.lock().admit(id).map_err(off_stage)?;
            Ok(Actor {
                role,
                who: Who::Participant(id),
            })
        }
        TokenKind::Listen => {
            let id = ListenerId(claims.sub);
            room.admit_listener(id)?;
            Ok(Actor {
                role: Role::Listener,
                who: Who::Listener(id),
            })
        }
    }
}

fn action_name(action: Action) -> String {
    serde_json::to_string(&action)
        .unwrap_or_default()
        .trim_matches('"')
        .replace('_', " ")
}

/// Refuses with 403 unless the permission matrix allows `action` (on `target`).
pub fn require(actor: &Actor, action: Action, target: Option<Role>) -> Result<(), ApiError> {
    if allowed(actor.role, action, target) {
        return Ok(());
    }
    Err(refusal(actor, action, target))
}

fn refusal(actor: &Actor, action: Action, target: Option<Role>) -> ApiError {
    let who = role_name(actor.role);
    let what = action_name(action);
    ApiError::Forbidden(match target {
        Some(t) if action.is_targeted() => format!("a {who} may not {what} a {}", role_name(t)),
        _ => format!("a {who} may not {what}"),
    })
}

fn ensure_open(room: &LiveRoom) -> Result<(), ApiError> {
    if room.info().state == RoomState::Ended {
        return Err(ApiError::RoomEnded);
    }
    Ok(())
}

/// Authenticates the caller and checks the matrix allows it `action` (for a targeted action:
/// on some target), in a room that has not ended (`EndRoom` and `ViewModeration` excepted).
pub fn authorize(
    app: &AppState,
    room: &LiveRoom,
    headers: &HeaderMap,
    action: Action,
) -> Result<Actor, ApiError> {
    let actor = authenticate(app, room, bearer(headers))?;
    let permitted = if action.is_targeted() {
        ROLES.iter().any(|&t| allowed(actor.role, action, Some(t)))
    } else {
        allowed(actor.role, action, None)
    };
    if !permitted {
        return Err(refusal(&actor, action, None));
    }
    if !matches!(action, Action::EndRoom | Action::ViewModeration) {
        ensure_open(room)?;
    }
    Ok(actor)
}

/// The target's role on stage (404 if not on stage), checked against the matrix.
fn target_role(
    room: &LiveRoom,
    actor: &Actor,
    action: Action,
    pid: ParticipantId,
) -> Result<Role, ApiError> {
    let role = room.roster.lock().member(pid).map(|m| m.role);
    let role = role.ok_or(StageError::NotOnStage)?;
    require(actor, action, Some(role))?;
    Ok(role)
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
        let out = self.apply(f)?;
        self.mute_dirty.store(true, Ordering::Release);
        self.moderation_dirty.store(true, Ordering::Release);
        self.wake();
        Ok(out)
    }

    /// Applies a change that listeners can cause at any rate (requests to speak): it reaches
    /// the room event with the next periodic refresh (once a second), never faster.
    pub fn change_lazily<T>(
        &self,
        f: impl FnOnce(&mut Roster) -> Result<T, StageError>,
    ) -> Result<T, ApiError> {
        self.apply(f)
    }

    /// Runs `f` on the roster; counts a change to save only if the roster moved (a repeated
    /// mute or request costs no write).
    fn apply<T>(
        &self,
        f: impl FnOnce(&mut Roster) -> Result<T, StageError>,
    ) -> Result<T, ApiError> {
        let mut roster = self.roster.lock();
        let before = (roster.rev(), roster.eject_rev());
        let out = f(&mut roster)?;
        if (roster.rev(), roster.eject_rev()) != before {
            self.changed();
        }
        Ok(out)
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
