//! The audience's side of the roster: requests to speak and invitations.

use super::{participant_for, ListenerStatus, Request, Roster, StageError};
use crate::ids::{ListenerId, ParticipantId, Role};

impl Roster {
    /// Drops a listener's request and invitation (its declined mark stays: it came on stage
    /// or was blocked, and either way does not join the queue again).
    pub(super) fn forget_listener(&mut self, listener: ListenerId) {
        self.requests.retain(|r| r.listener != listener);
        self.invites.retain(|&l| l != listener);
    }

    fn check_listener_free(&self, listener: ListenerId) -> Result<(), StageError> {
        if self.blocked_listeners.contains(&listener) {
            return Err(StageError::Blocked);
        }
        if self.member(participant_for(listener)).is_some() {
            return Err(StageError::AlreadyOnStage);
        }
        Ok(())
    }

    fn request_position(&self, listener: ListenerId) -> Option<usize> {
        self.requests.iter().position(|r| r.listener == listener)
    }

    /// A listener asks to speak. Asking again keeps its place (and updates its name). A
    /// declined listener may not ask again. When the queue is full the oldest request goes, so
    /// a flood of requests cannot lock real listeners out (it only pushes itself through).
    /// Answers its position, from 1.
    pub fn request(
        &mut self,
        listener: ListenerId,
        name: Option<String>,
    ) -> Result<usize, StageError> {
        self.check_listener_free(listener)?;
        if self.declined_set.contains(&listener) {
            return Err(StageError::Declined);
        }
        if let Some(i) = self.request_position(listener) {
            if name.is_some() && self.requests[i].name != name {
                self.requests[i].name = name;
                self.changed();
            }
            return Ok(i + 1);
        }
        while self.requests.len() >= self.limits.max_requests.max(1) {
            self.requests.pop_front();
        }
        self.requests.push_back(Request { listener, name });
        self.changed();
        Ok(self.requests.len())
    }

    /// A listener withdraws its request.
    pub fn cancel_request(&mut self, listener: ListenerId) -> Result<(), StageError> {
        let i = self
            .request_position(listener)
            .ok_or(StageError::NoRequest)?;
        self.requests.remove(i);
        self.changed();
        Ok(())
    }

    /// A moderator accepts a request: the listener comes on stage as a speaker. When the stage
    /// is full the request stays pending.
    pub fn accept_request(&mut self, listener: ListenerId) -> Result<ParticipantId, StageError> {
        let i = self
            .request_position(listener)
            .ok_or(StageError::NoRequest)?;
        let name = self.requests[i].name.clone();
        let id = participant_for(listener);
        self.add(id, Role::Speaker, name, Some(listener))?;
        Ok(id)
    }

    /// A moderator declines a request: the listener may not ask again in this room.
    pub fn decline_request(&mut self, listener: ListenerId) -> Result<(), StageError> {
        let i = self
            .request_position(listener)
            .ok_or(StageError::NoRequest)?;
        self.requests.remove(i);
        if self.declined_set.insert(listener) {
            self.declined.push_back(listener);
        }
        while self.declined.len() > self.limits.max_blocked.max(1) {
            if let Some(old) = self.declined.pop_front() {
                self.declined_set.remove(&old);
            }
        }
        self.changed();
        Ok(())
    }

    /// A moderator invites a listener on stage (inviting twice is one invitation).
    pub fn invite(&mut self, listener: ListenerId) -> Result<(), StageError> {
        self.check_listener_free(listener)?;
        if self.invites.contains(&listener) {
            return Ok(());
        }
        if self.invites.len() >= self.limits.max_invites {
            return Err(StageError::InvitesFull(self.limits.max_invites));
        }
        self.invites.push(listener);
        self.changed();
        Ok(())
    }

    /// A moderator withdraws an invitation.
    pub fn cancel_invite(&mut self, listener: ListenerId) -> Result<(), StageError> {
        self.take_invite(listener)?;
        self.changed();
        Ok(())
    }

    fn take_invite(&mut self, listener: ListenerId) -> Result<(), StageError> {
        let i = self
            .invites
            .iter()
            .position(|&l| l == listener)
            .ok_or(StageError::NoInvite)?;
        self.invites.remove(i);
        Ok(())
    }

    /// The invited listener comes on stage as a speaker. When the stage is full the invitation
    /// stays open.
    pub fn accept_invite(
        &mut self,
        listener: ListenerId,
        name: Option<String>,
    ) -> Result<ParticipantId, StageError> {
        if !self.invites.contains(&listener) {
            return Err(StageError::NoInvite);
        }
        let name = name.or_else(|| {
            self.request_position(listener)
                .and_then(|i| self.requests[i].name.clone())
        });
        let id = participant_for(listener);
        self.add(id, Role::Speaker, name, Some(listener))?;
        Ok(id)
    }

    /// The invited listener turns the invitation down.
    pub fn decline_invite(&mut self, listener: ListenerId) -> Result<(), StageError> {
        self.cancel_invite(listener)
    }

    /// Where a listener stands.
    pub fn status(&self, listener: ListenerId) -> ListenerStatus {
        if self.blocked_listeners.contains(&listener) {
            return ListenerStatus::Blocked;
        }
        let id = participant_for(listener);
        if let Some(m) = self.member(id) {
            return ListenerStatus::OnStage {
                participant: id,
                role: m.role,
            };
        }
        if self.invites.contains(&listener) {
            return ListenerStatus::Invited;
        }
        if let Some(i) = self.request_position(listener) {
            return ListenerStatus::Pending { position: i + 1 };
        }
        if self.declined_set.contains(&listener) {
            return ListenerStatus::Declined;
        }
        ListenerStatus::None
    }
}
