//! Durable room records and the stores that keep them: what a node must find again after a
//! restart (a room's info, its settings, its stage roster with invitations and blocks), one
//! record per room with a revision, so a write never replaces a newer one.
//!
//! The trait is synchronous and small (get, list, put with a revision check, remove), so a
//! backend is a few queries: [`MemoryStore`] here (tests, `--no-data`), SQLite in
//! `tribune-store`, Redis for a cluster. Callers on an async runtime run it on a blocking
//! thread. Every backend passes [`suite`].

use serde::{Deserialize, Serialize};

use crate::ids::RoomId;
use crate::room::RoomInfo;
use crate::stage::RosterRecord;

mod memory;
pub mod suite;

pub use memory::MemoryStore;

/// Everything about a room that outlives the process serving it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// Title, state, schedule and times.
    pub info: RoomInfo,
    /// Whether the room is recorded.
    pub recording: bool,
    /// Who is on stage, invited, asking, declined or blocked.
    pub roster: RosterRecord,
    /// Program numbers reserved ahead of use: a room back after a crash starts past them.
    #[serde(default)]
    pub reserved: Reserved,
    /// The address an anonymous creator is counted under (`None` for an operator's room).
    #[serde(default)]
    pub creator: Option<std::net::IpAddr>,
    /// Revision of this record: 1 when first stored, +1 for every write.
    pub rev: u64,
}

/// Numbers a room may have used: every number it hands out is below these, and they are stored
/// before they are reached, so a room restarted from its record never reuses one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// Program sequence numbers (20 ms frames).
    pub seq: u64,
    /// LL-HLS media sequence numbers (segments).
    pub msn: u64,
}

impl RoomRecord {
    /// A room's first record (revision 1).
    pub fn new(info: RoomInfo, recording: bool, roster: RosterRecord) -> Self {
        RoomRecord {
            info,
            recording,
            roster,
            reserved: Reserved::default(),
            creator: None,
            rev: 1,
        }
    }

    /// The room's id.
    pub fn id(&self) -> &RoomId {
        &self.info.id
    }
}

/// Why a store refused or failed a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The record offered is not the next revision of the stored one.
    #[error("room {room}: revision {offered} offered, {stored} stored (a write raced another)")]
    Conflict {
        /// The room.
        room: RoomId,
        /// The stored revision (0: none stored).
        stored: u64,
        /// The revision offered.
        offered: u64,
    },
    /// A stored record that cannot be read back.
    #[error("room {room}: stored record unreadable: {reason}")]
    Corrupt {
        /// The room (its key, as stored).
        room: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Another node holds the room now (a cluster's origins share one store): only it
    /// writes the room's record.
    #[error("room {room} is run by another origin now ({holder})")]
    Moved {
        /// The room.
        room: RoomId,
        /// The node that holds it.
        holder: String,
    },
    /// The backend failed (disk, connection).
    #[error("room store: {0}")]
    Backend(String),
}

/// Where room records live.
pub trait RoomStore: Send + Sync {
    /// The room's record, if stored.
    fn get(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError>;

    /// Every stored record, oldest room first (then by id).
    fn list(&self) -> Result<Vec<RoomRecord>, StoreError>;

    /// Stores `record` if its revision is the stored one + 1 (1 for a room not stored yet);
    /// durable when it returns `Ok`. Otherwise [`StoreError::Conflict`] and nothing changes.
    fn put(&self, record: &RoomRecord) -> Result<(), StoreError>;

    /// Forgets a room; whether it was stored.
    fn remove(&self, room: &RoomId) -> Result<bool, StoreError>;

    /// The ids of the stored rooms (a backend may answer without reading the records).
    fn ids(&self) -> Result<Vec<RoomId>, StoreError> {
        Ok(self.list()?.into_iter().map(|r| r.info.id).collect())
    }

    /// Which of `rooms` the store does not list (their records were lost, as with a Redis
    /// restarted empty). A backend may answer without listing every room.
    fn unlisted(&self, rooms: &[RoomId]) -> Result<Vec<RoomId>, StoreError> {
        let listed: std::collections::HashSet<RoomId> = self.ids()?.into_iter().collect();
        Ok(rooms
            .iter()
            .filter(|r| !listed.contains(*r))
            .cloned()
            .collect())
    }
}

/// The revision check every backend applies in [`RoomStore::put`].
pub fn check_next(room: &RoomId, stored: u64, offered: u64) -> Result<(), StoreError> {
    if stored.checked_add(1) == Some(offered) {
        return Ok(());
    }
    Err(StoreError::Conflict {
        room: room.clone(),
        stored,
        offered,
    })
}

/// Orders records as [`RoomStore::list`] returns them.
pub fn sort_records(records: &mut [RoomRecord]) {
    records.sort_by(|a, b| (a.info.created_at, a.id()).cmp(&(b.info.created_at, b.id())));
}
