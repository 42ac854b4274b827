//! Removals and blocks: what closes listener connections and refuses credentials.

use super::{participant_for, Ejection, Member, Roster, StageError, KICKS_KEPT};
use crate::ids::{ListenerId, ParticipantId, Role};

impl Roster {
    /// Closes a listener's open connections (it may come back with the same ticket).
    pub fn kick_listener(&mut self, listener: ListenerId) {
        self.eject_rev += 1;
        self.kicked.push_back((listener, self.eject_rev));
        while self.kicked.len() > KICKS_KEPT {
            self.kicked.pop_front();
        }
        self.changed();
    }

    fn check_block_room(&self, extra: usize) -> Result<(), StageError> {
        let max = self.limits.max_blocked;
        if self.blocked_listeners.len() + extra > max || self.blocked_participants.len() >= max {
            return Err(StageError::BlockListFull(max));
        }
        Ok(())
    }

    /// Blocks a listener: its ticket is refused, its connections close, its request and
    /// invitation go, and if it is on stage it leaves (and its participant id is blocked too).
    /// Answers the member taken off stage, if any.
    pub fn block_listener(&mut self, listener: ListenerId) -> Result<Option<Member>, StageError> {
        let id = participant_for(listener);
        if self.member(id).is_some_and(|m| m.role == Role::Host) {
            return Err(StageError::HostStays);
        }
        if self.blocked_listeners.contains(&listener) {
            return Ok(None);
        }
        self.check_block_room(1)?;
        self.blocked_listeners.insert(listener);
        self.forget_listener(listener);
        let member = self.leave_stage(id).ok();
        if member.is_some() {
            self.blocked_participants.insert(id);
        }
        self.eject_rev += 1;
        self.changed();
        Ok(member)
    }

    /// Blocks a participant: its stage token is refused and it leaves the stage; if it came
    /// from the audience its listener id is blocked too. Answers the member taken off stage.
    pub fn block_participant(&mut self, id: ParticipantId) -> Result<Option<Member>, StageError> {
        if self.member(id).is_some_and(|m| m.role == Role::Host) {
            return Err(StageError::HostStays);
        }
        if self.blocked_participants.contains(&id) {
            return Ok(None);
        }
        let listener = self.member(id).and_then(|m| m.listener);
        self.check_block_room(usize::from(listener.is_some()))?;
        self.blocked_participants.insert(id);
        let member = self.leave_stage(id).ok();
        if let Some(l) = listener {
            self.blocked_listeners.insert(l);
            self.forget_listener(l);
        }
        self.eject_rev += 1;
        self.changed();
        Ok(member)
    }

    /// Lifts a listener's block. Answers whether it was blocked.
    pub fn unblock_listener(&mut self, listener: ListenerId) -> bool {
        let was = self.blocked_listeners.remove(&listener);
        if was {
            self.changed();
        }
        was
    }

    /// Lifts a participant's block. Answers whether it was blocked.
    pub fn unblock_participant(&mut self, id: ParticipantId) -> bool {
        let was = self.blocked_participants.remove(&id);
        if was {
            self.changed();
        }
        was
    }

    /// Whether an open listener connection, which last looked at ejection revision `since`,
    /// must close now, and why.
    pub fn eject_check(&self, listener: ListenerId, since: u64) -> Option<Ejection> {
        if self.blocked_listeners.contains(&listener) {
            return Some(Ejection::Blocked);
        }
        // Kicks are in revision order: only the ones after `since` are looked at (usually one),
        // since every open listener connection runs this when the revision moves.
        self.kicked
            .iter()
            .rev()
            .take_while(|&&(_, rev)| rev > since)
            .any(|&(l, _)| l == listener)
            .then_some(Ejection::Removed)
    }
}
