//! Who a room counts: listener connections (one per ticket) and publishing seats, each counted
//! while its guard lives, and a seat's share of the mix.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tribune_core::admission::TokenBucket;
use tribune_core::{unix_micros, ListenerId, ParticipantId, Role};

use super::{Ingress, LiveRoom, MAX_CAPTURE_AGE_US};
use crate::metrics::Metrics;
use crate::room::seats::{Removal, SeatStats};

/// The listen connection a ticket holds.
#[derive(Debug)]
pub(super) struct Listening {
    /// Which connection (a newer one replaces it).
    conn: u64,
    /// Told when a newer connection with the same ticket replaces this one.
    replaced: Arc<Notify>,
}

impl LiveRoom {
    /// Counts a listen connection of `listener` in; the guard counts it out when dropped. A
    /// ticket is one listener: an older connection of the same ticket is told to close (its
    /// `replaced` notify fires) and this one takes its place.
    pub fn listener_guard(
        self: &Arc<Self>,
        listener: ListenerId,
        metrics: Arc<Metrics>,
    ) -> ListenerPresence {
        let conn = ParticipantId::random().0;
        let replaced = Arc::new(Notify::new());
        let previous = self.listening.lock().insert(
            listener,
            Listening {
                conn,
                replaced: replaced.clone(),
            },
        );
        let replacing = previous.is_some();
        if let Some(old) = previous {
            old.replaced.notify_one();
            metrics.listeners_replaced.inc();
        }
        self.listeners.fetch_add(1, Ordering::Relaxed);
        self.counters.listener_joined();
        metrics.listeners.inc();
        self.wake.notify_one();
        ListenerPresence {
            replaced,
            replacing,
            _guard: PresenceGuard {
                room: self.clone(),
                metrics,
                who: Presence::Listener { listener, conn },
            },
        }
    }

    /// Seats a publishing connection (WebSocket or WHIP) of `participant` in the mixer. The seat
    /// leaves the mix when dropped, and tells its connection when moderation removes it.
    ///
    /// Call `admit_speaker` first (it refuses before any upgrade or SDP work); a participant
    /// that moderation took off stage in between gets its seat removed at once ("not on stage").
    /// The seat starts muted if the participant is muted.
    pub async fn take_seat(
        self: &Arc<Self>,
        participant: ParticipantId,
        role: Role,
        metrics: Arc<Metrics>,
    ) -> Option<Seat> {
        let slot = ParticipantId::random().0;
        // Registered before the mixer hears of the slot, so it can apply the participant's mute.
        // Past the participant's seats, the oldest is replaced (its connection closes 4002).
        let added = self
            .seats
            .add(slot, participant, role, self.limits.seats_per_participant);
        metrics.seats_replaced.add(added.replaced as u64);
        if self.ingress.send(Ingress::Join(slot)).await.is_err() {
            self.seats.remove_slot(slot);
            return None;
        }
        self.speakers.fetch_add(1, Ordering::Relaxed);
        metrics.speakers.inc();
        // Moderation may have taken the participant off stage since it was admitted: either it
        // saw this seat (and removed it) or this check sees its change.
        if self.roster.lock().admit(participant).is_err() {
            self.seats.remove_participant(participant, "not on stage");
        }
        let rate = TokenBucket::new(
            self.limits.seat_frames_per_s,
            self.limits.seat_frame_burst,
            mono_us(),
        );
        Some(Seat {
            slot,
            participant,
            role,
            removed: added.removed,
            stats: added.stats,
            rate,
            presence: PresenceGuard {
                room: self.clone(),
                metrics,
                who: Presence::Speaker(slot),
            },
        })
    }
}

/// A publishing connection's place in the mix.
#[derive(Debug)]
pub struct Seat {
    /// Mixer slot.
    pub slot: u64,
    /// Who is speaking.
    pub participant: ParticipantId,
    /// With what role.
    pub role: Role,
    pub(super) removed: watch::Receiver<Option<Removal>>,
    pub(super) stats: Arc<SeatStats>,
    /// This seat's share of the mix: frames beyond real time are dropped here, so one
    /// participant can never push another's frames out of the room's queue.
    pub(super) rate: TokenBucket,
    /// Keeps the seat counted (and its slot in the mix) while the seat lives.
    pub(super) presence: PresenceGuard,
}

impl Seat {
    /// Resolves when the seat is taken away (moderation, or a newer connection replacing it),
    /// with how its connection should close; never otherwise.
    pub async fn removed(&mut self) -> Removal {
        match self.removed.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_else(removed_by_room),
            // The room dropped the seat's entry: treat as removed by the room.
            Err(_) => removed_by_room(),
        }
    }

    /// Offers one of this seat's frames to the mix; `arrived_us` is when its packet reached the
    /// node (now, if `None`). Frames beyond the seat's rate are dropped from its own share
    /// (counted), as are frames the room's queue has no room for (the mixer is behind: dropping
    /// is what a jitter buffer would do with a late packet).
    pub fn offer(
        &mut self,
        seq: u64,
        capture_us: u64,
        arrived_us: Option<u64>,
        payload: Bytes,
        metrics: &Metrics,
    ) -> bool {
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        metrics.speak_frames.inc();
        if !self.rate.try_take(mono_us()) {
            self.stats.over_rate.fetch_add(1, Ordering::Relaxed);
            metrics.ingress_over_rate.inc();
            return false;
        }
        // The program's capture time follows its oldest frame: a client's claimed time is held
        // to the last second before arrival, so no one can make the room look late (or early).
        let now = unix_micros();
        let capture_us = capture_us.clamp(now.saturating_sub(MAX_CAPTURE_AGE_US), now);
        let frame = Ingress::Frame {
            slot: self.slot,
            seq,
            capture_us,
            arrived_us: arrived_us.unwrap_or(now).min(now),
            payload,
        };
        if self.presence.room.ingress.try_send(frame).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            metrics.ingress_dropped.inc();
            return false;
        }
        true
    }
}

fn removed_by_room() -> Removal {
    Removal {
        code: crate::close::REMOVED,
        reason: "removed".to_owned(),
    }
}

/// Microseconds on a monotonic clock (for rate buckets).
pub(super) fn mono_us() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// A listen connection's presence: counted while held; `replaced` fires when a newer
/// connection with the same ticket takes over.
#[derive(Debug)]
pub struct ListenerPresence {
    /// Notified when this connection is replaced.
    pub replaced: Arc<Notify>,
    /// Whether this connection replaced an open one of the same ticket.
    pub replacing: bool,
    pub(super) _guard: PresenceGuard,
}

/// Who a presence counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Presence {
    Listener { listener: ListenerId, conn: u64 },
    Speaker(u64),
}

/// Keeps a listener or speaker counted while it is connected.
#[derive(Debug)]
pub struct PresenceGuard {
    pub(super) room: Arc<LiveRoom>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) who: Presence,
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        match self.who {
            Presence::Listener { listener, conn } => {
                self.room.listeners.fetch_sub(1, Ordering::Relaxed);
                self.room.counters.listener_left();
                self.metrics.listeners.dec();
                self.room
                    .listener_left_s
                    .store(unix_micros() / 1_000_000, Ordering::Relaxed);
                let mut listening = self.room.listening.lock();
                if listening.get(&listener).is_some_and(|l| l.conn == conn) {
                    listening.remove(&listener);
                }
            }
            Presence::Speaker(slot) => {
                self.room.seats.remove_slot(slot);
                self.room.speakers.fetch_sub(1, Ordering::Relaxed);
                self.metrics.speakers.dec();
                if self.room.ingress.try_send(Ingress::Leave(slot)).is_err() {
                    // Queue full: leave from a task so the slot is never leaked.
                    let room = self.room.clone();
                    tokio::spawn(async move {
                        let _ = room.ingress.send(Ingress::Leave(slot)).await;
                    });
                }
            }
        }
    }
}
