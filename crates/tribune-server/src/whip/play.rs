//! WHEP playback sessions: a peer connection that sends the stage to a player.
//!
//! A stage participant's session plays their mix-minus; a listener's plays the program. Each
//! tick's frame is written the moment the room publishes it (no batching), stamped with the
//! room's frame number (48 kHz RTP time = seq × 960), so a gap in delivery is a gap in time the
//! player conceals, never a shift.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::Event;
use tokio::sync::watch;
use tribune_core::{unix_micros, Claims, ListenerId, ParticipantId, RoomState};

use super::peer::{Peer, Polled};
use super::sdp::Flow;
use super::WhipHub;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::node::connections::ConnectionToken;
use crate::node::state::AppState;
use crate::room::{ListenerPresence, LiveRoom, Snapshot, StageEar};

/// Longest a session task sleeps without checking its clocks.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// Samples per 20 ms frame at Opus's 48 kHz RTP clock.
const FRAME_TICKS: u64 = tribune_media::FRAME_SAMPLES as u64;

/// Who a playback session plays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Player {
    /// A participant on stage: their mix-minus.
    Stage(ParticipantId),
    /// A listener (one per ticket): the program.
    Listener(ListenerId),
}

impl Player {
    /// The credential's subject (who may end the session).
    pub fn subject(self) -> u64 {
        match self {
            Player::Stage(p) => p.0,
            Player::Listener(l) => l.0,
        }
    }
}

/// What the HTTP side keeps of a playback session.
#[derive(Debug)]
pub(super) struct PlayerCtl {
    pub room: tribune_core::RoomId,
    pub player: Player,
    pub stop: watch::Sender<bool>,
}

impl WhipHub {
    /// Registers a playback session: a participant's newer session replaces their older ones;
    /// a listener's is refused (`503` with `Retry-After`, and where else to listen) past the
    /// node's WebRTC listener cap, the listener's own sessions not counting (the new one replaces
    /// them). Checked and registered under one lock, so concurrent offers cannot pass the cap.
    fn register_player(&self, id: &str, ctl: PlayerCtl) -> Result<(), ApiError> {
        let mut players = self.inner.players.lock();
        match ctl.player {
            Player::Stage(_) => {
                for old in players.values() {
                    if old.room == ctl.room && old.player == ctl.player {
                        old.stop.send_replace(true);
                    }
                }
            }
            Player::Listener(l) => {
                let cap = self.inner.max_webrtc_listeners;
                let others = players
                    .values()
                    .filter(|c| matches!(c.player, Player::Listener(o) if o != l))
                    .count();
                if others >= cap {
                    return Err(ApiError::Full {
                        message: format!(
                            "this node plays to its most WebRTC listeners ({cap}); listen over \
                             the WebSocket or LL-HLS, or try again later"
                        ),
                        retry_after_s: 10,
                    });
                }
            }
        }
        players.insert(id.to_owned(), ctl);
        Ok(())
    }

    /// Answers a playback offer and starts its session. The caller has verified the credential:
    /// a stage token still on stage, or a listener ticket admitted to the room.
    pub(super) async fn open_player(
        &self,
        app: &AppState,
        room: Arc<LiveRoom>,
        claims: &Claims,
        offer_text: &str,
    ) -> Result<super::session::Opened, ApiError> {
        let metrics = app.metrics().clone();
        let player = match claims.kind {
            tribune_core::TokenKind::Stage => Player::Stage(ParticipantId(claims.sub)),
            _ => Player::Listener(ListenerId(claims.sub)),
        };
        if let Player::Listener(l) = player {
            room.admit_listener(l)?;
        }
        // A kick from here on ends this session, even one made before its task starts.
        let eject_since = room.eject_rev();
        // Dropping the peer (a refusal below, or this request cancelled) removes its route.
        let (peer, answer) = self.open_peer(offer_text, Flow::Play)?;
        let id = peer.id.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let ctl = PlayerCtl {
            room: room.id.clone(),
            player,
            stop: stop_tx,
        };
        self.register_player(&id, ctl)?;
        // Registered: forgotten again if this request is cancelled before its task starts.
        let registered = Registered {
            hub: self.clone(),
            id: id.clone(),
        };
        let (ear, presence) = match player {
            Player::Stage(p) => (room.stage_ear(Some(p)).await, None),
            Player::Listener(l) => {
                let presence = room.listener_guard(l, metrics.clone());
                if !presence.replacing {
                    // Its join held a seat for it, as for a listen socket.
                    app.admission().connected();
                }
                (room.stage_ear(None).await, Some(presence))
            }
        };
        metrics.stage.whep_total.inc();
        match player {
            Player::Stage(_) => metrics.stage.whep_stage.inc(),
            Player::Listener(_) => metrics.stage.whep_listeners.inc(),
        }
        tracing::info!(room = %room.id, session = %id, ?player, "WHEP session opened");
        let task = PlayTask {
            peer,
            registered,
            snapshots: room.subscribe_snapshots(),
            eject_since,
            claims: claims.clone(),
            room,
            player,
            ear,
            presence,
            metrics,
            stop: stop_rx,
            shutdown: app.shutdown(),
            connect_by: Some(Instant::now() + app.config().abuse.whip_connect_timeout),
            track: None,
            frames: 0,
            _conn: app.connections().track(),
        };
        match player {
            // A participant's return audio is part of the conversation: the stage thread.
            Player::Stage(_) => app.stage().spawn(task.run()),
            // A listener's is part of the audience: the listeners' runtime.
            Player::Listener(_) => tokio::spawn(task.run()),
        };
        Ok(super::session::Opened { id, answer })
    }

    /// Ends a playback session of `room` (asked by DELETE); `None` if there is no such session.
    pub(super) async fn stop_player(&self, room: &tribune_core::RoomId, id: &str) -> Option<()> {
        let ctl = {
            let mut players = self.inner.players.lock();
            match players.get(id) {
                Some(ctl) if &ctl.room == room => players.remove(id),
                _ => None,
            }
        }?;
        ctl.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), ctl.stop.closed()).await;
        Some(())
    }

    /// Who a playback session of `room` plays for.
    pub(super) fn player_of(&self, room: &tribune_core::RoomId, id: &str) -> Option<Player> {
        self.inner
            .players
            .lock()
            .get(id)
            .filter(|c| &c.room == room)
            .map(|c| c.player)
    }

    /// Open playback sessions.
    pub fn player_count(&self) -> usize {
        self.inner.players.lock().len()
    }
}

/// A playback session's entry in the hub, removed when dropped.
struct Registered {
    hub: WhipHub,
    id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.hub.inner.players.lock().remove(&self.id);
    }
}

struct PlayTask {
    peer: Peer,
    registered: Registered,
    room: Arc<LiveRoom>,
    snapshots: watch::Receiver<Snapshot>,
    /// The ejection revision when the session was accepted.
    eject_since: u64,
    claims: Claims,
    player: Player,
    ear: StageEar,
    /// A listener's presence (counted like every listener; fires when its ticket is reused).
    presence: Option<ListenerPresence>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    connect_by: Option<Instant>,
    /// The audio track to write to, once str0m has set it up: its mid and Opus payload type.
    track: Option<(Mid, Pt)>,
    frames: u64,
    _conn: ConnectionToken,
}

impl PlayTask {
    async fn run(mut self) {
        let reason = self.drive().await;
        tracing::info!(
            room = %self.room.id, session = %self.peer.id, frames = self.frames,
            "WHEP session ended: {reason}"
        );
        self.peer.close().await;
        // The ear and the presence go before the session stops counting and before the stop
        // receiver drops, so whoever waits for the session sees it gone.
        let PlayTask {
            ear,
            presence,
            stop,
            metrics,
            player,
            registered,
            ..
        } = self;
        drop(registered);
        drop(ear);
        drop(presence);
        match player {
            Player::Stage(_) => metrics.stage.whep_stage.dec(),
            Player::Listener(_) => metrics.stage.whep_listeners.dec(),
        }
        drop(stop);
    }

    /// Runs until the session ends; returns why.
    async fn drive(&mut self) -> String {
        if *self.shutdown.borrow_and_update() {
            return "node shutting down".to_owned();
        }
        let mut eject_seen = {
            let snap = self.snapshots.borrow_and_update();
            if snap.state == RoomState::Ended {
                return "room ended".to_owned();
            }
            snap.eject_rev
        };
        // Moderation since the session was accepted, which the snapshot read just now may
        // already carry (and the loop below would then never see move).
        if let Some(why) = self.still_welcome(self.eject_since) {
            return why;
        }
        let replaced = self.presence.as_ref().map(|p| p.replaced.clone());
        loop {
            let deadline = match self.peer.poll().await {
                Ok(Polled::Timeout(t)) => t,
                Ok(Polled::Event(e)) => {
                    self.event(e);
                    continue;
                }
                Ok(Polled::Closed) => return "peer connection closed".to_owned(),
                Err(e) => return e,
            };
            let now = Instant::now();
            if let Some(by) = self.connect_by {
                if now >= by {
                    self.metrics.whip_connect_timeouts.inc();
                    return "ICE did not connect in time".to_owned();
                }
            }
            let wake = deadline
                .min(self.connect_by.unwrap_or(deadline))
                .min(now + MAX_SLEEP);
            let connected = self.connect_by.is_none() && self.track.is_some();
            let input = tokio::select! {
                biased;
                _ = self.stop.changed() => return "ended".to_owned(),
                _ = self.shutdown.changed() => return "node shutting down".to_owned(),
                _ = async { replaced.as_ref().expect("guarded").notified().await }, if replaced.is_some() => {
                    return "replaced by a newer connection with the same ticket".to_owned();
                }
                changed = self.snapshots.changed() => {
                    let (state, rev) = match changed {
                        Ok(()) => {
                            let snap = self.snapshots.borrow_and_update();
                            (snap.state, snap.eject_rev)
                        }
                        Err(_) => (RoomState::Ended, eject_seen),
                    };
                    if state == RoomState::Ended {
                        return "room ended".to_owned();
                    }
                    if let Some(why) = self.still_welcome(std::mem::replace(&mut eject_seen, rev)) {
                        return why;
                    }
                    continue;
                }
                tick = self.ear.next(), if connected => {
                    let Some((tick, missed)) = tick else { return "room ended".to_owned() };
                    self.metrics.stage.frames_skipped.add(missed);
                    if let Err(e) = self.write(&tick) {
                        return e;
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

    /// Whether the session may go on after a roster change: a participant must still be on
    /// stage, a listener not blocked or removed. The reason to end it, if not.
    fn still_welcome(&self, eject_since: u64) -> Option<String> {
        match self.player {
            Player::Stage(_) => self
                .room
                .admit_speaker(&self.claims)
                .err()
                .map(|e| format!("no longer on stage: {e}")),
            Player::Listener(l) => self
                .room
                .eject_check(l, eject_since)
                .map(|why| why.to_owned()),
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Connected => {
                self.connect_by = None;
                tracing::debug!(session = %self.peer.id, "WebRTC connected");
            }
            Event::MediaAdded(m) if m.kind == MediaKind::Audio && self.track.is_none() => {
                let pt = self.peer.rtc.writer(m.mid).and_then(|w| {
                    w.payload_params()
                        .find(|p| p.spec().codec == Codec::Opus)
                        .map(|p| p.pt())
                });
                if let Some(pt) = pt {
                    self.track = Some((m.mid, pt));
                }
            }
            _ => {}
        }
    }

    /// Writes this tick's frame for the player.
    fn write(&mut self, tick: &crate::room::StageTick) -> Result<(), String> {
        let Some((mid, pt)) = self.track else {
            return Ok(());
        };
        let who = match self.player {
            Player::Stage(p) => Some(p),
            Player::Listener(_) => None,
        };
        let heard = tick.heard_by(who);
        let Some(writer) = self.peer.rtc.writer(mid) else {
            return Err("the audio track is gone".to_owned());
        };
        let rtp_time = MediaTime::new(
            tick.seq.wrapping_mul(FRAME_TICKS),
            Frequency::FORTY_EIGHT_KHZ,
        );
        // The tick's shared slice: str0m packetizes and encrypts per session, but no session
        // copies the frame.
        writer
            .write(pt, Instant::now(), rtp_time, heard.rtp.clone())
            .map_err(|e| format!("WebRTC write: {e}"))?;
        self.frames += 1;
        self.metrics.stage.frames_sent.inc();
        if let (Player::Stage(_), Some(arrived)) = (self.player, heard.arrived_us) {
            self.metrics
                .stage
                .delay
                .observe_us(unix_micros().saturating_sub(arrived));
        }
        Ok(())
    }
}
