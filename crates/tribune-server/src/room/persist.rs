//! Keeping a room's lasting state in the node's room store.
//!
//! Every change to what outlives the process (the room's info, its roster, its recording
//! switch) is counted once applied. A save writes the room's whole record, one revision more,
//! covering every change counted before it began; callers that arrive while a write runs wait
//! for it and find their change already covered, so a burst of moderation actions shares a few
//! durable writes (a group commit). HTTP handlers answer `2xx` only after their save; changes
//! made where nobody waits (a self-mute on a speak socket, a scheduled room going live) are
//! saved by the room's task within a second.
//!
//! Writes run as tasks of their own on the node's main runtime: a client that hangs up while
//! its save runs cancels nothing, and no write runs on the stage's real-time thread.
//!
//! The record also reserves program numbers ahead of use ([`Reserved`]): sequence numbers for
//! half an hour, segment numbers for a thousand segments, renewed when half is used. A room
//! back after a crash starts past the reservation, so no number a listener, a cache or the
//! recording holds is ever used again for other audio (whatever the wall clock did).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tribune_core::{Reserved, RoomRecord, RoomStore, StoreError};

use super::LiveRoom;
use crate::error::ApiError;

/// Sequence numbers reserved at a time (30 minutes of 20 ms frames).
pub const SEQ_AHEAD: u64 = 90_000;
/// Segment numbers reserved at a time (at least 2 s each, so at least half an hour).
pub const MSN_AHEAD: u64 = 1_000;

/// A room's link to the store.
pub(crate) struct Persist {
    store: Arc<dyn RoomStore>,
    /// The node's main runtime, where writes run.
    runtime: Handle,
    /// Sequence numbers reserved: every one used is below.
    reserved_seq: AtomicU64,
    /// Segment numbers reserved: every one used is below.
    reserved_msn: AtomicU64,
    /// The revision stored; held while a write runs (one write per room at a time).
    stored: tokio::sync::Mutex<u64>,
    /// Changes applied so far.
    changes: AtomicU64,
    /// Changes known to be in the store.
    saved: AtomicU64,
    /// Set when another origin holds the room now: its record is theirs to write.
    handed_over: AtomicBool,
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
    /// A room whose record is at revision `rev` in `store` (0: not stored yet), with numbers
    /// reserved up to `reserved`. Call on the main runtime: writes run where it was made.
    pub(crate) fn new(store: Arc<dyn RoomStore>, rev: u64, reserved: Reserved) -> Self {
        // A room not stored yet has a change pending: its first record.
        let pending = u64::from(rev == 0);
        Persist {
            store,
            runtime: Handle::current(),
            reserved_seq: AtomicU64::new(reserved.seq),
            reserved_msn: AtomicU64::new(reserved.msn),
            stored: tokio::sync::Mutex::new(rev),
            changes: AtomicU64::new(pending),
            saved: AtomicU64::new(0),
            handed_over: AtomicBool::new(false),
        }
    }

    /// Counts a change that was just applied.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a change is not in the store yet.
    pub(crate) fn dirty(&self) -> bool {
        !self.handed_over.load(Ordering::Acquire)
            && self.saved.load(Ordering::Acquire) < self.changes.load(Ordering::Acquire)
    }

    /// Writes nothing more: another origin holds the room (see [`LiveRoom::hand_over`]).
    pub(crate) fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
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
        let room = self.clone();
        self.persist
            .runtime
            .spawn(async move { room.write_pending().await })
            .await
            .unwrap_or(Err(ApiError::NotSaved))
    }

    /// The write itself, on a task of its own (see [`LiveRoom::save`]).
    async fn write_pending(self: Arc<Self>) -> Result<(), ApiError> {
        let p = &self.persist;
        if p.handed_over.load(Ordering::Acquire) {
            // Another origin runs the room: a write from here would undo theirs.
            return Err(ApiError::Misdirected(
                "this room moved to another origin".into(),
            ));
        }
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
                Err(e @ StoreError::Moved { .. }) => {
                    // This origin's lease ran out and another took the room: it is theirs.
                    tracing::error!(room = %self.id, "room not saved: {e}; letting it go");
                    self.hand_over().await;
                    return Err(ApiError::Misdirected(e.to_string()));
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
        // A failure is logged by the write; the next second tries again.
        drop(self.persist.runtime.spawn(room.write_pending()));
    }

    /// Whether a change is not in the store yet.
    pub(crate) fn unsaved(&self) -> bool {
        self.persist.dirty()
    }

    /// Renews the reservation of program numbers when half of it is used (`seq`: the next
    /// sequence number, `msn`: the next segment number); the room's task calls it every second
    /// and the renewal is saved with the next write.
    pub(crate) fn reserve_numbers(&self, seq: u64, msn: u64) {
        let p = &self.persist;
        let mut renewed = false;
        for (next, reserved, ahead) in [
            (seq, &p.reserved_seq, SEQ_AHEAD),
            (msn, &p.reserved_msn, MSN_AHEAD),
        ] {
            if next.saturating_add(ahead / 2) > reserved.load(Ordering::Acquire) {
                reserved.fetch_max(next.saturating_add(ahead), Ordering::AcqRel);
                renewed = true;
            }
        }
        if renewed {
            self.changed();
        }
    }

    /// The room's lasting state as a record of revision `rev`.
    pub fn record(&self, rev: u64) -> RoomRecord {
        let roster = self.roster.lock().to_record();
        RoomRecord {
            info: self.info(),
            recording: self.recording_on(),
            roster,
            reserved: Reserved {
                seq: self.persist.reserved_seq.load(Ordering::Acquire),
                msn: self.persist.reserved_msn.load(Ordering::Acquire),
            },
            creator: self.creator(),
            rev,
        }
    }
}
