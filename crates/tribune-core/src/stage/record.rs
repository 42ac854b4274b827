//! A roster as a durable record (what a restart must bring back), and back again.

use serde::{Deserialize, Serialize};

use super::{Member, Request, Roster, StageLimits};
use crate::ids::{ListenerId, ParticipantId};

/// The lasting part of a [`Roster`]: members, requests, invitations, declines and blocks.
/// Removals (`kick_listener`) close open connections and are not kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterRecord {
    /// Who is on stage, in the order they came.
    pub members: Vec<Member>,
    /// Pending requests to speak, oldest first.
    pub requests: Vec<Request>,
    /// Listeners invited on stage, oldest first.
    pub invites: Vec<ListenerId>,
    /// Listeners whose request was declined, oldest first.
    pub declined: Vec<ListenerId>,
    /// Blocked listener ids.
    pub blocked_listeners: Vec<ListenerId>,
    /// Blocked participant ids.
    pub blocked_participants: Vec<ParticipantId>,
    /// The roster's revision when recorded (it carries on from there).
    pub rev: u64,
}

impl Roster {
    /// The roster's lasting state (blocks sorted, so equal rosters give equal records).
    pub fn to_record(&self) -> RosterRecord {
        let mut blocked_listeners: Vec<ListenerId> =
            self.blocked_listeners.iter().copied().collect();
        blocked_listeners.sort_by_key(|l| l.0);
        let mut blocked_participants: Vec<ParticipantId> =
            self.blocked_participants.iter().copied().collect();
        blocked_participants.sort_by_key(|p| p.0);
        RosterRecord {
            members: self.members.clone(),
            requests: self.requests.iter().cloned().collect(),
            invites: self.invites.clone(),
            declined: self.declined.iter().copied().collect(),
            blocked_listeners,
            blocked_participants,
            rev: self.rev,
        }
    }

    /// A roster restored from its record, under `limits` (a record is trusted as written:
    /// the limits bound what comes next, not what was already there).
    pub fn from_record(limits: StageLimits, record: RosterRecord) -> Roster {
        Roster {
            limits,
            members: record.members,
            requests: record.requests.into(),
            invites: record.invites,
            declined_set: record.declined.iter().copied().collect(),
            declined: record.declined.into(),
            blocked_listeners: record.blocked_listeners.into_iter().collect(),
            blocked_participants: record.blocked_participants.into_iter().collect(),
            kicked: Default::default(),
            rev: record.rev,
            eject_rev: 0,
        }
    }

    /// Takes the lasting state of `record` (another node's roster, mirrored here) and the
    /// listeners it removed since the last mirror: open connections look themselves up again.
    pub fn mirror(&mut self, record: RosterRecord, kicked: &[ListenerId]) {
        let kicks = std::mem::take(&mut self.kicked);
        let eject_rev = self.eject_rev;
        *self = Roster::from_record(self.limits.clone(), record);
        self.kicked = kicks;
        self.eject_rev = eject_rev + 1;
        for &l in kicked {
            self.kick_listener(l);
        }
    }

    /// The listeners removed after ejection revision `since` (at most the last few hundred).
    pub fn kicked_since(&self, since: u64) -> Vec<ListenerId> {
        let mut v: Vec<ListenerId> = self
            .kicked
            .iter()
            .rev()
            .take_while(|&&(_, rev)| rev > since)
            .map(|&(l, _)| l)
            .collect();
        v.reverse();
        v
    }
}
