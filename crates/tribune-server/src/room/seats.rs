//! The speaker seats of a room: one per publishing connection, whatever its transport
//! (WebSocket or WHIP), so moderation can find, mute and remove a participant's connections.
//!
//! A participant holds at most a few seats (`AbuseLimits::seats_per_participant`, 1 by
//! default): a new connection replaces its oldest one, so one stage token cannot fill the
//! stage, the room event or the mixer with seats.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;
use tribune_core::{ParticipantId, Role};

use crate::close;

/// Why a seat was taken away: the close code and reason its connection ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// WebSocket close code (`close::REMOVED`, `close::REPLACED`).
    pub code: u16,
    /// Human-readable reason.
    pub reason: String,
}

/// Frame counters of one seat (what it sent, what was dropped from its share).
#[derive(Debug, Default)]
pub struct SeatStats {
    /// Frames the connection offered to the mix.
    pub frames_in: AtomicU64,
    /// Frames dropped because the seat sent faster than real time.
    pub over_rate: AtomicU64,
    /// Frames dropped because the room's mixer was behind.
    pub queue_full: AtomicU64,
}

impl SeatStats {
    /// (frames in, frames dropped) so far.
    pub fn totals(&self) -> (u64, u64) {
        let dropped =
            self.over_rate.load(Ordering::Relaxed) + self.queue_full.load(Ordering::Relaxed);
        (self.frames_in.load(Ordering::Relaxed), dropped)
    }
}

#[derive(Debug)]
struct Entry {
    participant: ParticipantId,
    role: Role,
    /// Order of arrival (the oldest seat is replaced first).
    order: u64,
    removed: watch::Sender<Option<Removal>>,
    stats: Arc<SeatStats>,
}

/// A new seat's handles: how it learns of its removal, and its counters.
#[derive(Debug)]
pub struct Added {
    /// Receives the removal, if the seat is taken away.
    pub removed: watch::Receiver<Option<Removal>>,
    /// The seat's counters (also listed by [`Seats::stats_of`]).
    pub stats: Arc<SeatStats>,
    /// Seats of the same participant that this one replaced.
    pub replaced: usize,
}

/// Seats by mixer slot.
#[derive(Debug, Default)]
pub struct Seats {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_slot: HashMap<u64, Entry>,
    next_order: u64,
}

impl Seats {
    /// Registers a seat of `participant`; if it then holds more than `max_per_participant`,
    /// its oldest seats are removed (their connections close with `close::REPLACED`).
    pub fn add(
        &self,
        slot: u64,
        participant: ParticipantId,
        role: Role,
        max_per_participant: usize,
    ) -> Added {
        let (removed, rx) = watch::channel(None);
        let stats = Arc::new(SeatStats::default());
        let mut inner = self.inner.lock();
        let order = inner.next_order;
        inner.next_order += 1;
        inner.by_slot.insert(
            slot,
            Entry {
                participant,
                role,
                order,
                removed,
                stats: stats.clone(),
            },
        );
        let mut mine: Vec<(u64, u64)> = inner
            .by_slot
            .iter()
            .filter(|(_, e)| e.participant == participant)
            .map(|(&s, e)| (e.order, s))
            .collect();
        let excess = mine.len().saturating_sub(max_per_participant.max(1));
        mine.sort_unstable();
        for &(_, old) in &mine[..excess] {
            if let Some(e) = inner.by_slot.remove(&old) {
                e.removed.send_replace(Some(Removal {
                    code: close::REPLACED,
                    reason: "replaced by a newer connection of the same participant".into(),
                }));
            }
        }
        Added {
            removed: rx,
            stats,
            replaced: excess,
        }
    }

    /// Forgets a seat whose connection closed.
    pub fn remove_slot(&self, slot: u64) {
        self.inner.lock().by_slot.remove(&slot);
    }

    /// Removes all seats of a participant, telling each why. Returns how many.
    pub fn remove_participant(&self, participant: ParticipantId, reason: &str) -> usize {
        let mut inner = self.inner.lock();
        let mut n = 0;
        inner.by_slot.retain(|_, e| {
            if e.participant != participant {
                return true;
            }
            e.removed.send_replace(Some(Removal {
                code: close::REMOVED,
                reason: reason.to_owned(),
            }));
            n += 1;
            false
        });
        n
    }

    /// Removes every seat, telling each `removal` (the room moved to another node).
    pub fn remove_all(&self, removal: &Removal) {
        for (_, e) in std::mem::take(&mut self.inner.lock().by_slot) {
            e.removed.send_replace(Some(removal.clone()));
        }
    }

    /// Mixer slots of a participant.
    pub fn slots_of(&self, participant: ParticipantId) -> Vec<u64> {
        self.inner
            .lock()
            .by_slot
            .iter()
            .filter(|(_, e)| e.participant == participant)
            .map(|(&s, _)| s)
            .collect()
    }

    /// (frames in, frames dropped) summed over a participant's seats.
    pub fn stats_of(&self, participant: ParticipantId) -> (u64, u64) {
        self.inner
            .lock()
            .by_slot
            .values()
            .filter(|e| e.participant == participant)
            .map(|e| e.stats.totals())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    #[cfg(test)]
    /// How many seats are held.
    pub fn len(&self) -> usize {
        self.inner.lock().by_slot.len()
    }

    /// All seats: (slot, participant, role).
    pub fn list(&self) -> Vec<(u64, ParticipantId, Role)> {
        self.inner
            .lock()
            .by_slot
            .iter()
            .map(|(&s, e)| (s, e.participant, e.role))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_seat_replaces_the_oldest_beyond_the_limit() {
        let seats = Seats::default();
        let p = ParticipantId(7);
        let other = ParticipantId(8);
        let a = seats.add(1, p, Role::Speaker, 2);
        let b = seats.add(2, p, Role::Speaker, 2);
        let o = seats.add(3, other, Role::Host, 2);
        assert_eq!((a.replaced, b.replaced, o.replaced), (0, 0, 0));
        let c = seats.add(4, p, Role::Speaker, 2);
        assert_eq!(c.replaced, 1);
        let removal = a.removed.borrow().clone().expect("the oldest was replaced");
        assert_eq!(removal.code, close::REPLACED);
        assert!(b.removed.borrow().is_none());
        let mut slots = seats.slots_of(p);
        slots.sort_unstable();
        assert_eq!(slots, vec![2, 4]);
        assert_eq!(seats.len(), 3);
        // Moderation removes every seat of a participant with its own code.
        assert_eq!(seats.remove_participant(p, "removed by a moderator"), 2);
        assert_eq!(c.removed.borrow().as_ref().unwrap().code, close::REMOVED);
        assert_eq!(seats.slots_of(other), vec![3]);
    }

    #[test]
    fn counters_add_up_per_participant() {
        let seats = Seats::default();
        let p = ParticipantId(1);
        let a = seats.add(1, p, Role::Speaker, 3);
        let b = seats.add(2, p, Role::Speaker, 3);
        a.stats.frames_in.fetch_add(10, Ordering::Relaxed);
        b.stats.frames_in.fetch_add(5, Ordering::Relaxed);
        b.stats.over_rate.fetch_add(2, Ordering::Relaxed);
        a.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        assert_eq!(seats.stats_of(p), (15, 3));
        assert_eq!(seats.stats_of(ParticipantId(2)), (0, 0));
    }
}
