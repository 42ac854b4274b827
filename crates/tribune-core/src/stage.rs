//! A room's stage roster, free of I/O: who is on stage with which role and mute state, the
//! listeners asking to speak (FIFO, bounded), outstanding invitations, blocked ids, and the
//! limits (co-hosts, speakers) that keep the stage small.
//!
//! Tokens are stateless, so the roster is what makes moderation stick: a stage token is only
//! honoured while its participant is on the roster (see [`Roster::admit`]); moving someone to the
//! audience or removing them takes them off it, and a blocked id is refused until unblocked.
//! A listener who comes on stage does so as the participant [`participant_for`] its listener
//! id, so blocking one blocks the other.
//!
//! Every change bumps [`Roster::rev`]; changes that must close listener connections (blocks and
//! removals) also bump [`Roster::eject_rev`], so a connection only looks itself up when that moves.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ids::{ListenerId, ParticipantId, Role};
use crate::permissions::rank;

mod audience;
mod blocks;
mod record;

pub use record::RosterRecord;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 40;
/// How many recent removals are remembered for open listener connections to notice.
const KICKS_KEPT: usize = 256;

/// How big the stage and its queues may grow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageLimits {
    /// Co-hosts besides the host.
    pub max_cohosts: usize,
    /// Speakers besides the host and co-hosts.
    pub max_speakers: usize,
    /// Pending requests to speak (a new one past this evicts the oldest).
    pub max_requests: usize,
    /// Outstanding invitations.
    pub max_invites: usize,
    /// Blocked ids (listeners and participants, each).
    pub max_blocked: usize,
}

impl Default for StageLimits {
    fn default() -> Self {
        StageLimits {
            max_cohosts: 2,
            max_speakers: 10,
            max_requests: 100,
            max_invites: 20,
            max_blocked: 10_000,
        }
    }
}

/// The participant a listener becomes when it comes on stage (the same number, so a block of
/// one is a block of the other).
pub fn participant_for(listener: ListenerId) -> ParticipantId {
    ParticipantId(listener.0)
}

/// Checks and trims a display name: 1 to [`MAX_NAME_CHARS`] characters, no control or
/// bidirectional formatting characters.
pub fn clean_name(name: &str) -> Result<String, StageError> {
    crate::text::clean(name, "a name", MAX_NAME_CHARS)
        .map_err(|e| StageError::BadName(e.to_string()))
}

/// Someone on stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Their participant id (the `sub` of their stage token).
    pub id: ParticipantId,
    /// Their role now (it may differ from the role their token was minted with).
    pub role: Role,
    /// Display name, if they gave one.
    pub name: Option<String>,
    /// The listener they were, if they came from the audience.
    pub listener: Option<ListenerId>,
    /// Muted by themself.
    pub self_muted: bool,
    /// Muted by a moderator (only a moderator lifts this).
    pub moderator_muted: bool,
}

impl Member {
    /// Whether their audio is kept out of the mix.
    pub fn muted(&self) -> bool {
        self.self_muted || self.moderator_muted
    }
}

/// A pending request to speak.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Who asks.
    pub listener: ListenerId,
    /// Their display name, if they gave one.
    pub name: Option<String>,
}

/// Where a listener stands with the stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenerStatus {
    /// Nothing pending.
    None,
    /// Asked to speak; `position` 1 is next in line.
    Pending {
        /// Place in the queue, from 1.
        position: usize,
    },
    /// Invited on stage.
    Invited,
    /// On stage.
    OnStage {
        /// As this participant.
        participant: ParticipantId,
        /// With this role.
        role: Role,
    },
    /// Their last request was declined.
    Declined,
    /// Blocked from this room.
    Blocked,
}

/// Who sets a mute.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Muter {
    /// The participant themself.
    Participant,
    /// A host or co-host.
    Moderator,
}

/// Why a roster change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StageError {
    /// The room already has its host.
    #[error("the room already has a host")]
    HostTaken,
    /// The co-host limit is reached.
    #[error("the stage already has {0} co-hosts, the limit")]
    CoHostsFull(usize),
    /// The speaker limit is reached.
    #[error("the stage already has {0} speakers, the limit")]
    SpeakersFull(usize),
    /// Too many invitations are outstanding.
    #[error("{0} invitations are already outstanding")]
    InvitesFull(usize),
    /// The block list is full.
    #[error("the block list is full ({0})")]
    BlockListFull(usize),
    /// The participant is not on stage.
    #[error("not on stage")]
    NotOnStage,
    /// Already on stage.
    #[error("already on stage")]
    AlreadyOnStage,
    /// No such pending request.
    #[error("no pending request from this listener")]
    NoRequest,
    /// No such invitation.
    #[error("no invitation for this listener")]
    NoInvite,
    /// Blocked from this room.
    #[error("blocked from this room")]
    Blocked,
    /// A moderator declined this listener's request: it may not ask again in this room.
    #[error("your request to speak was declined; you may not ask again in this room")]
    Declined,
    /// A participant tried to unmute past a moderator's mute.
    #[error("muted by a moderator")]
    MutedByModerator,
    /// The host cannot leave, be moved or removed (end the room instead).
    #[error("the host stays on stage; end the room instead")]
    HostStays,
    /// Not a role anyone can be given on stage.
    #[error("{0:?} is not a role that can be given on stage")]
    NotAStageRole(Role),
    /// A display name that does not fit.
    #[error("{0}")]
    BadName(String),
}

/// Why an open listener connection must close.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Ejection {
    /// The listener is blocked (its ticket is refused from now on).
    Blocked,
    /// A moderator removed the listener (it may come back with the same ticket).
    Removed,
}

/// A room's stage roster.
#[derive(Debug, Default)]
pub struct Roster {
    limits: StageLimits,
    members: Vec<Member>,
    requests: VecDeque<Request>,
    invites: Vec<ListenerId>,
    /// Listeners whose request was declined (kept out of the queue for the room's life), in
    /// order, bounded by `max_blocked`.
    declined: VecDeque<ListenerId>,
    declined_set: HashSet<ListenerId>,
    blocked_listeners: HashSet<ListenerId>,
    blocked_participants: HashSet<ParticipantId>,
    kicked: VecDeque<(ListenerId, u64)>,
    rev: u64,
    eject_rev: u64,
}

impl Roster {
    /// An empty roster with these limits.
    pub fn new(limits: StageLimits) -> Self {
        Roster {
            limits,
            ..Roster::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &StageLimits {
        &self.limits
    }

    /// Revision: bumped by every change.
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// Revision of blocks and removals, which open listener connections watch.
    pub fn eject_rev(&self) -> u64 {
        self.eject_rev
    }

    /// Who is on stage: host, then co-hosts, then speakers, each in the order they came.
    pub fn members(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by_key(|m| std::cmp::Reverse(rank(m.role)));
        v
    }

    /// One member.
    pub fn member(&self, id: ParticipantId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// How many members hold `role`.
    pub fn count(&self, role: Role) -> usize {
        self.members.iter().filter(|m| m.role == role).count()
    }

    /// Pending requests, oldest first.
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.iter()
    }

    /// Listeners invited on stage, oldest first.
    pub fn invites(&self) -> &[ListenerId] {
        &self.invites
    }

    /// Blocked listener ids.
    pub fn blocked_listeners(&self) -> impl Iterator<Item = ListenerId> + '_ {
        self.blocked_listeners.iter().copied()
    }

    /// Blocked participant ids.
    pub fn blocked_participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.blocked_participants.iter().copied()
    }

    /// Whether a listener id is blocked.
    pub fn is_listener_blocked(&self, listener: ListenerId) -> bool {
        self.blocked_listeners.contains(&listener)
    }

    /// Whether a participant id is blocked.
    pub fn is_participant_blocked(&self, id: ParticipantId) -> bool {
        self.blocked_participants.contains(&id)
    }

    /// Whether a participant's audio is kept out of the mix (false if not on stage).
    pub fn is_muted(&self, id: ParticipantId) -> bool {
        self.member(id).is_some_and(Member::muted)
    }

    /// Whether a stage credential for `id` may be used now: its role on stage, or why not.
    pub fn admit(&self, id: ParticipantId) -> Result<Role, StageError> {
        if self.blocked_participants.contains(&id) {
            return Err(StageError::Blocked);
        }
        self.member(id)
            .map(|m| m.role)
            .ok_or(StageError::NotOnStage)
    }

    fn changed(&mut self) {
        self.rev += 1;
    }

    fn has_room_for(&self, role: Role) -> Result<(), StageError> {
        let (count, max, full) = match role {
            Role::Host => (self.count(Role::Host), 1, StageError::HostTaken),
            Role::CoHost => {
                let max = self.limits.max_cohosts;
                (self.count(Role::CoHost), max, StageError::CoHostsFull(max))
            }
            Role::Speaker => {
                let max = self.limits.max_speakers;
                (
                    self.count(Role::Speaker),
                    max,
                    StageError::SpeakersFull(max),
                )
            }
            Role::Listener => return Err(StageError::NotAStageRole(role)),
        };
        if count >= max {
            return Err(full);
        }
        Ok(())
    }

    /// Puts a participant on stage (the host at creation, a minted speaker, an accepted
    /// listener). Refused when the role's limit is reached, the id is blocked or already on.
    pub fn add(
        &mut self,
        id: ParticipantId,
        role: Role,
        name: Option<String>,
        listener: Option<ListenerId>,
    ) -> Result<(), StageError> {
        let listener_blocked = listener.is_some_and(|l| self.blocked_listeners.contains(&l));
        if self.blocked_participants.contains(&id) || listener_blocked {
            return Err(StageError::Blocked);
        }
        if self.member(id).is_some() {
            return Err(StageError::AlreadyOnStage);
        }
        self.has_room_for(role)?;
        if let Some(l) = listener {
            self.forget_listener(l);
        }
        self.members.push(Member {
            id,
            role,
            name,
            listener,
            self_muted: false,
            moderator_muted: false,
        });
        self.changed();
        Ok(())
    }

    /// Sets a participant's own or moderator mute. A participant cannot unmute past a
    /// moderator's mute. Answers whether anything changed.
    pub fn set_muted(
        &mut self,
        id: ParticipantId,
        by: Muter,
        muted: bool,
    ) -> Result<bool, StageError> {
        let m = self
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(StageError::NotOnStage)?;
        let flag = match by {
            Muter::Participant if !muted && m.moderator_muted => {
                return Err(StageError::MutedByModerator)
            }
            Muter::Participant => &mut m.self_muted,
            Muter::Moderator => &mut m.moderator_muted,
        };
        let changed = *flag != muted;
        *flag = muted;
        if changed {
            self.changed();
        }
        Ok(changed)
    }

    /// Takes a participant off stage (moved to the audience or removed). The host stays.
    pub fn leave_stage(&mut self, id: ParticipantId) -> Result<Member, StageError> {
        let i = self
            .members
            .iter()
            .position(|m| m.id == id)
            .ok_or(StageError::NotOnStage)?;
        if self.members[i].role == Role::Host {
            return Err(StageError::HostStays);
        }
        let m = self.members.remove(i);
        self.changed();
        Ok(m)
    }

    /// Makes a speaker a co-host or a co-host a speaker, within the limits. Answers whether the
    /// role changed.
    pub fn set_role(&mut self, id: ParticipantId, role: Role) -> Result<bool, StageError> {
        if !matches!(role, Role::CoHost | Role::Speaker) {
            return Err(StageError::NotAStageRole(role));
        }
        let current = self.member(id).ok_or(StageError::NotOnStage)?.role;
        if current == Role::Host {
            return Err(StageError::HostStays);
        }
        if current == role {
            return Ok(false);
        }
        self.has_room_for(role)?;
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.role = role;
        }
        self.changed();
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
