//! One WHIP session: a peer connection (see `peer`) driven by one task. Every depacketized Opus
//! frame is checked and offered to the room's mixer under the session's seat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::format::Codec;
use str0m::media::MediaData;
use str0m::Event;
use tokio::sync::watch;
use tribune_core::{unix_micros, Claims, ParticipantId, RoomState};

use super::peer::{Peer, Polled};
use super::sdp::{self, Flow};
use super::{SessionCtl, WhipHub};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::node::connections::ConnectionToken;
use crate::node::state::AppState;
use crate::room::{LiveRoom, Seat};

/// Samples per 20 ms frame at Opus's 48 kHz RTP clock.
const FRAME_TICKS: u64 = tribune_media::FRAME_SAMPLES as u64;
/// Longest a session task sleeps without checking its clocks.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// An accepted offer: the session's id and the SDP answer.
pub(super) struct Opened {
    /// The session id.
    pub id: String,
    /// The SDP answer.
    pub answer: String,
}

impl WhipHub {
    /// Refuses (`503`, saying which) when the node or the room holds its most sessions. A
    /// participant's own earlier sessions do not count: the new one replaces them (its seat
    /// takes theirs).
    fn check_room_for_session(
        &self,
        room: &LiveRoom,
        participant: ParticipantId,
    ) -> Result<(), ApiError> {
        let sessions = self.inner.sessions.lock();
        let in_room = sessions
            .values()
            .filter(|c| c.room == room.id && c.participant != participant)
            .count();
        let per_room = self.inner.max_sessions_per_room;
        if in_room >= per_room {
            return Err(ApiError::Full {
                message: format!(
                    "this room holds its most WebRTC sessions ({per_room}); try again later"
                ),
                retry_after_s: 5,
            });
        }
        if sessions.len() >= self.inner.max_sessions {
            return Err(ApiError::Full {
                message: format!(
                    "this node holds its most WebRTC sessions ({}); try again later",
                    self.inner.max_sessions
                ),
                retry_after_s: 5,
            });
        }
        Ok(())
    }

    /// Answers an offer and starts its session. The caller has verified the token and the room.
    pub(super) async fn open_session(
        &self,
        app: &AppState,
        room: Arc<LiveRoom>,
        claims: &Claims,
        offer_text: &str,
    ) -> Result<Opened, ApiError> {
        // Cheap text checks first, so refusals cost no peer connection.
        sdp::parse_offer(offer_text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        self.check_room_for_session(&room, ParticipantId(claims.sub))?;
        let (peer, answer) = self.open_peer(offer_text, Flow::Publish)?;
        let metrics = app.metrics().clone();
        let participant = ParticipantId(claims.sub);
        let Some(seat) = room
            .take_seat(participant, claims.role, metrics.clone())
            .await
        else {
            return Err(ApiError::RoomEnded);
        };
        let id = peer.id.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        self.inner.sessions.lock().insert(
            id.clone(),
            SessionCtl {
                room: room.id.clone(),
                participant,
                stop: stop_tx,
            },
        );
        metrics.whip_sessions.inc();
        metrics.whip_sessions_total.inc();
        tracing::info!(room = %room.id, session = %id, slot = seat.slot, "WHIP session opened");
        let task = Task {
            peer,
            hub: self.clone(),
            snapshots: room.subscribe_snapshots(),
            room,
            seat,
            metrics,
            stop: stop_rx,
            shutdown: app.shutdown(),
            idle_timeout: self.inner.idle_timeout,
            connect_by: Some(Instant::now() + app.config().abuse.whip_connect_timeout),
            last_media: Instant::now(),
            frames: 0,
            _conn: app.connections().track(),
        };
        app.stage().spawn(task.run());
        Ok(Opened { id, answer })
    }
}

struct Task {
    peer: Peer,
    hub: WhipHub,
    room: Arc<LiveRoom>,
    snapshots: watch::Receiver<crate::room::Snapshot>,
    seat: Seat,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    idle_timeout: Duration,
    /// ICE must connect by then (`None` once it has): an offer that never completes ICE does
    /// not hold a session slot for long.
    connect_by: Option<Instant>,
    last_media: Instant,
    frames: u64,
    _conn: ConnectionToken,
}

impl Task {
    async fn run(mut self) {
        let reason = self.drive().await;
        tracing::info!(
            room = %self.room.id, session = %self.peer.id, frames = self.frames, "WHIP session ended: {reason}"
        );
        self.peer.close().await;
        self.hub.forget(&self.peer.id, self.peer.route_id);
        // Leave the mix before the session stops counting and before the stop receiver drops,
        // so whoever waits for the session to close sees the speaker gone.
        let Task {
            seat,
            stop,
            metrics,
            ..
        } = self;
        drop(seat);
        metrics.whip_sessions.dec();
        drop(stop);
    }

    /// Runs until the session ends; returns why.
    async fn drive(&mut self) -> String {
        // Changes before the session started are not seen by `changed()`.
        if *self.shutdown.borrow_and_update() {
            return "node shutting down".to_owned();
        }
        if self.snapshots.borrow_and_update().state == RoomState::Ended {
            return "room ended".to_owned();
        }
        loop {
            let deadline = match self.peer.poll().await {
                Ok(Polled::Timeout(t)) => t,
                Ok(Polled::Event(Event::MediaData(data))) => {
                    self.media(data);
                    continue;
                }
                Ok(Polled::Event(Event::Connected)) => {
                    self.connect_by = None;
                    tracing::debug!(session = %self.peer.id, "WebRTC connected");
                    continue;
                }
                Ok(Polled::Event(_)) => continue,
                Ok(Polled::Closed) => return "peer connection closed".to_owned(),
                Err(e) => return e,
            };
            let idle_at = self.last_media + self.idle_timeout;
            let now = Instant::now();
            if now >= idle_at {
                return format!("no media for {} s", self.idle_timeout.as_secs());
            }
            if let Some(by) = self.connect_by {
                if now >= by {
                    self.metrics.whip_connect_timeouts.inc();
                    return "ICE did not connect in time".to_owned();
                }
            }
            let wake = deadline
                .min(idle_at)
                .min(self.connect_by.unwrap_or(idle_at))
                .min(now + MAX_SLEEP);
            let input = tokio::select! {
                biased;
                _ = self.stop.changed() => return "ended by DELETE".to_owned(),
                _ = self.shutdown.changed() => return "node shutting down".to_owned(),
                removal = self.seat.removed() => return format!("removed: {}", removal.reason),
                changed = self.snapshots.changed() => {
                    if changed.is_err()
                        || self.snapshots.borrow_and_update().state == RoomState::Ended
                    {
                        return "room ended".to_owned();
                    }
                    continue;
                }
                d = self.peer.recv() => match d {
                    Some(d) => Some(d),
                    None => return "router dropped the session".to_owned(),
                },
                _ = tokio::time::sleep_until(wake.into()) => None,
            };
            if let Err(e) = self.peer.input(input, &self.metrics) {
                return e;
            }
        }
    }

    /// One depacketized frame: a 20 ms Opus packet goes to the mixer; anything else is counted
    /// and dropped (the session carries on).
    fn media(&mut self, data: MediaData) {
        let spec = data.params.spec();
        let valid = spec.codec == Codec::Opus
            && tribune_media::validate_packet(&data.data).is_ok()
            && data.time.denom() > 0;
        if !valid {
            self.metrics.whip_frames_invalid.inc();
            return;
        }
        self.last_media = Instant::now();
        // The extended 48 kHz RTP timestamp, in frames: +1 per 20 ms, reordered by the jitter
        // buffer, and gaps (DTX, loss) show as missing frames to conceal.
        let ticks = if data.time.denom() == tribune_media::SAMPLE_RATE {
            data.time.numer()
        } else {
            (u128::from(data.time.numer()) * u128::from(tribune_media::SAMPLE_RATE)
                / u128::from(data.time.denom())) as u64
        };
        // Capture time: when the packet reached the node (the publisher's clock is unknown).
        let age_us = Instant::now()
            .saturating_duration_since(data.network_time)
            .as_micros() as u64;
        self.frames += 1;
        self.metrics.whip_frames.inc();
        // Dropped frames are counted by the seat (over its rate, or the mixer behind).
        let arrived_us = unix_micros().saturating_sub(age_us);
        self.seat.offer(
            ticks / FRAME_TICKS,
            arrived_us,
            Some(arrived_us),
            Bytes::copy_from_slice(&data.data),
            &self.metrics,
        );
    }
}
