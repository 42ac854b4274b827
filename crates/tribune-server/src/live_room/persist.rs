//! Keeping a room's lasting state in the node's room store.
//!
//! Every change to what outlives the process (the room's info, its roster, its recording
//! switch) is counted once applied. A save writes the room's whole record, one revision more,
//! covering every change counted before it began; callers that arrive while a write runs wait
//! for it and find their change already covered, so a burst of moderation actions shares a few
//! durable writes (a group commit). HTTP handlers answer `2xx` only after their save; changes
//! made where nobody waits (a self-mute on a speak socket, a scheduled room going live) are
//! saved by the room's task within a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tribune_core::{RoomRecord, RoomStore, StoreError};

use super::LiveRoom;
use crate::error::ApiError;

/// A room's link to the store.
pub(crate) struct Persist {
    store: Arc<dyn RoomStore>,
    /// The revision stored; held while a write runs (one write per room at a time).
    stored: tokio::sync::Mutex<u64>,
    /// Changes applied so far.
    changes: AtomicU64,
    /// Changes known to be in the store.
    saved: AtomicU64,
}

impl std::fmt::Debug for Persist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persist")
            .field("changes", &self.changes)
            .field("saved", &self.saved)
            .finish()
    }
}

impl Persist {
    /// A room whose record is at revision `rev` in `store` (0: not stored yet).
    pub(crate) fn new(store: Arc<dyn RoomStore>, rev: u64) -> Self {
        // A room not stored yet has a change pending: its first record.
        let pending = u64::from(rev == 0);
        Persist {
            store,
            stored: tokio::sync::Mutex::new(rev),
            changes: AtomicU64::new(pending),
            saved: AtomicU64::new(0),
        }
    }

    /// Counts a change that was just applied.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a change is not in the store yet.
    pub(crate) fn dirty(&self) -> bool {
        self.saved.load(Ordering::Acquire) < self.changes.load(Ordering::Acquire)
    }
}

impl LiveRoom {
    /// Counts a change to the room's lasting state (see [`LiveRoom::save`]).
    pub(crate) fn changed(&self) {
        self.persist.changed();
    }

    /// Makes every change applied so far durable; returns once the store holds it. `503`
    /// ([`ApiError::NotSaved`]) when the store fails: the change stays applied here, and the
    /// room's task tries again within a second.
    pub async fn save(self: &Arc<Self>) -> Result<(), ApiError> {
        let p = &self.persist;
        let wanted = p.changes.load(Ordering::Acquire);
        let mut stored = p.stored.lock().await;
        if p.saved.load(Ordering::Acquire) >= wanted {
            // A write that began after this change already covered it.
            return Ok(());
        }
        // Counted before the record is taken: the record holds at least these changes.
        let covers = p.changes.load(Ordering::Acquire);
        for _ in 0..2 {
            let record = self.record(*stored + 1);
            let store = p.store.clone();
            let put = tokio::task::spawn_blocking(move || store.put(&record).map(|()| record.rev))
                .await
                .unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())));
            match put {
                Ok(rev) => {
                    *stored = rev;
                    p.saved.fetch_max(covers, Ordering::AcqRel);
                    return Ok(());
                }
                Err(StoreError::Conflict { stored: s, .. }) => {
                    // Someone else wrote this room (another process on the same store): the
                    // whole record is ours to write, so go on from their revision.
                    tracing::warn!(room = %self.id, stored = s, "room record raced another writer");
                    *stored = s;
                }
                Err(e) => {
                    tracing::error!(room = %self.id, "room not saved: {e}");
                    return Err(ApiError::NotSaved);
                }
            }
        }
        Err(ApiError::NotSaved)
    }

    /// Saves in the background if a change is pending (the room's task, once a second).
    pub(crate) fn save_soon(self: &Arc<Self>) {
        if !self.persist.dirty() {
            return;
        }
        let room = self.clone();
        tokio::spawn(async move {
            // A failure is logged by `save`; the next second tries again.
            let _ = room.save().await;
        });
    }

    /// The room's lasting state as a record of revision `rev`.
    pub fn record(&self, rev: u64) -> RoomRecord {
        let roster = self.roster.lock().to_record();
        RoomRecord {
            info: self.info(),
            recording: self.recording_on(),
            roster,
            rev,
        }
    }
}
