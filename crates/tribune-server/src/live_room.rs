//! A room at run time: its mixer task, its fan-out ring, and the two watches listeners follow
//! (audio batches and room state).
//!
//! One task per room owns the mixer. Every 20 ms it takes the speakers' frames that arrived,
//! mixes one program frame, appends it to the ring and, once per batch interval, publishes one
//! shared batch message. Listener connections hold a cursor and a clone of the watch receivers;
//! there is no per-listener queue and no per-listener copy of audio.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tribune_core::{
    unix_micros, ParticipantId, Reactions, Ring, Role, RoomId, RoomInfo, RoomState, Roster, Seq,
};
use tribune_media::{Mixer, MixerConfig};

use crate::batching::Batching;
use crate::config::ServerConfig;
use crate::direct;
use crate::fanout::{Due, Fanout, Member, Phases};
use crate::hls::Hls;
use crate::metrics::Metrics;
use crate::seats::Seats;

/// Frames queued from speakers to the mixer task before new ones are dropped.
const INGRESS_QUEUE: usize = 1024;
/// How often the room-state event may be refreshed (listener counts change constantly; this
/// bounds the event rate whatever the audience does). It is only sent when its text changed.
const SNAPSHOT_EVERY_TICKS: u64 = 50;
/// Window over which a speaker counts as speaking (10 ticks = 200 ms, so the flag does not
/// flicker between syllables).
const SPEAKING_WINDOW_TICKS: u64 = 10;
/// RMS level (0..1) above which a speaker counts as speaking.
const SPEAKING_RMS: f32 = 0.01;
/// Reactions are counted over windows of this many ticks (1 s) and published once per window.
const REACTION_WINDOW_TICKS: u64 = 50;

/// The latest audio batch: frames `start..end` as one wire message shared by all listeners.
#[derive(Clone, Debug)]
pub struct Batch {
    /// First sequence number in the message.
    pub start: Seq,
    /// One past the last.
    pub end: Seq,
    /// The wire message (empty when `start == end`).
    pub bytes: Bytes,
    /// The same message as one WebSocket binary frame, header included (what a phase group's
    /// writer sends; `bytes` is its payload).
    pub frame: Bytes,
}

/// The latest room-state event.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Lifecycle state.
    pub state: RoomState,
    /// The JSON event, serialized once for everyone.
    pub text: Utf8Bytes,
    /// The roster's ejection revision: listener connections look themselves up (are they
    /// blocked or removed?) only when this moves.
    pub eject_rev: u64,
}

/// What speaker connections tell the mixer task.
#[derive(Debug)]
pub enum Ingress {
    /// A speaker connection opened (its mixer slot).
    Join(u64),
    /// A speaker connection closed.
    Leave(u64),
    /// A speaker muted or unmuted.
    Mute(u64, bool),
    /// One Opus frame from a speaker.
    Frame {
        /// Mixer slot.
        slot: u64,
        /// Speaker's sequence number.
        seq: u64,
        /// Capture time, µs since the Unix epoch.
        capture_us: u64,
        /// The Opus packet.
        payload: Bytes,
    },
    /// The room ends.
    End,
}

/// A room on this node.
#[derive(Debug)]
pub struct LiveRoom {
    /// Its id.
    pub id: RoomId,
    info: Mutex<RoomInfo>,
    ring: RwLock<Ring>,
    batches: Fanout,
    snapshot: watch::Sender<Snapshot>,
    ingress: mpsc::Sender<Ingress>,
    listeners: AtomicU64,
    speakers: AtomicU64,
    seats: Seats,
    /// Loudest level (linear RMS, 0..1) of each mixer slot over the last 200 ms window.
    levels: Mutex<Vec<(u64, f32)>>,
    /// Who is on stage, requests, invitations, blocks (see `moderation`).
    pub(crate) roster: Mutex<Roster>,
    /// Reaction counters of the current window (see `reactions`).
    pub(crate) reactions: Mutex<Reactions>,
    /// Set by moderation: the mixer task publishes the room event on its next tick.
    pub(crate) moderation_dirty: AtomicBool,
    /// Set when a mute changed: the mixer task re-applies every seat's mute on its next tick.
    pub(crate) mute_dirty: AtomicBool,
    /// The program as LL-HLS (see `hls`).
    hls: Hls,
}

impl LiveRoom {
    /// Creates the room and starts its mixer task.
    pub fn spawn(info: RoomInfo, config: &ServerConfig, metrics: Arc<Metrics>) -> Arc<LiveRoom> {
        let (ingress, rx) = mpsc::channel(INGRESS_QUEUE);
        let batching = config.batching();
        let state = info.state;
        let room = Arc::new(LiveRoom {
            id: info.id.clone(),
            info: Mutex::new(info),
            ring: RwLock::new(Ring::new(config.ring_frames(), Seq(0))),
            batches: Fanout::new(batching.max_frames() as usize),
            snapshot: watch::Sender::new(Snapshot {
                state,
                text: Utf8Bytes::from_static("{}"),
                eject_rev: 0,
            }),
            ingress,
            listeners: AtomicU64::new(0),
            speakers: AtomicU64::new(0),
            seats: Seats::default(),
            levels: Mutex::new(Vec::new()),
            roster: Mutex::new(Roster::new(config.stage_limits.clone())),
            reactions: Mutex::new(Reactions::new(config.reaction_limits.clone())),
            moderation_dirty: AtomicBool::new(false),
            mute_dirty: AtomicBool::new(false),
            hls: Hls::new(),
        });
        room.publish_snapshot(&Stage::default());
        room.batches.spawn_writers(&metrics);
        if state == RoomState::Live {
            metrics.rooms_live.inc();
        }
        let mixer_cfg = MixerConfig {
            bitrate_bps: config.program_bitrate,
            ..MixerConfig::default()
        };
        let task = MixTask {
            room: room.clone(),
            rx,
            metrics,
            batching,
            mixer_cfg,
        };
        tokio::spawn(task.run());
        room
    }

    /// The room's descriptive state.
    pub fn info(&self) -> RoomInfo {
        self.info.lock().clone()
    }

    /// Open listener connections.
    pub fn listener_count(&self) -> u64 {
        self.listeners.load(Ordering::Relaxed)
    }

    /// Open speaker connections.
    pub fn speaker_count(&self) -> u64 {
        self.speakers.load(Ordering::Relaxed)
    }

    /// Sequence number of the next program frame.
    pub fn head(&self) -> Seq {
        self.ring.read().head()
    }

    /// The ring, for readers that are not at the live edge.
    pub fn ring(&self) -> parking_lot::RwLockReadGuard<'_, Ring> {
        self.ring.read()
    }

    /// The program as LL-HLS.
    pub fn hls(&self) -> &Hls {
        &self.hls
    }

    /// Joins a phase group (see `fanout`): its published batches and its writer.
    pub fn subscribe_batches(&self) -> Member {
        self.batches.subscribe()
    }

    /// Follows the room-state events.
    pub fn subscribe_snapshots(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }

    /// Counts a listener in; the guard counts it out when dropped.
    pub fn listener_guard(self: &Arc<Self>, metrics: Arc<Metrics>) -> PresenceGuard {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        metrics.listeners.inc();
        PresenceGuard {
            room: self.clone(),
            metrics,
            speaker: None,
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
        let removed = self.seats.add(slot, participant, role);
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
        Some(Seat {
            slot,
            participant,
            role,
            removed,
            _presence: PresenceGuard {
                room: self.clone(),
                metrics,
                speaker: Some(slot),
            },
        })
    }

    /// Removes every seat of `participant` (their connections close with `reason`). Returns how
    /// many seats were removed.
    pub fn remove_participant(&self, participant: ParticipantId, reason: &str) -> usize {
        self.seats.remove_participant(participant, reason)
    }

    /// Mutes or unmutes every seat of `participant` in the mix. Returns how many seats changed.
    ///
    /// Low level: the roster's mute state (`set_self_muted`, or a moderator's mute through
    /// `change`) is what the mixer re-applies, and it overrides this at the next roster change.
    pub async fn set_participant_muted(&self, participant: ParticipantId, muted: bool) -> usize {
        let slots = self.seats.slots_of(participant);
        for &slot in &slots {
            // A closed queue means the room has ended; muting no longer matters.
            let _ = self.ingress.send(Ingress::Mute(slot, muted)).await;
        }
        slots.len()
    }

    /// Audio level of each participant on air: the loudest of its seats over the last 200 ms.
    pub fn participant_levels(&self) -> std::collections::HashMap<ParticipantId, f32> {
        let by_slot: std::collections::HashMap<u64, f32> =
            self.levels.lock().iter().copied().collect();
        let mut out = std::collections::HashMap::new();
        for (slot, participant, _) in self.seats.list() {
            let level = by_slot.get(&slot).copied().unwrap_or(0.0);
            let e = out.entry(participant).or_insert(0.0f32);
            *e = e.max(level);
        }
        out
    }

    /// Who holds a seat now: (slot, participant, role).
    pub fn seated(&self) -> Vec<(u64, ParticipantId, Role)> {
        self.seats.list()
    }

    /// Queues a speaker frame for the mixer; false if the queue is full (the frame is dropped,
    /// as a late packet would be, rather than delaying the room).
    pub fn offer(&self, ingress: Ingress) -> bool {
        self.ingress.try_send(ingress).is_ok()
    }

    /// Makes a scheduled room live. Returns whether it changed.
    pub fn go_live(&self) -> bool {
        let changed = self
            .info
            .lock()
            .go_live(unix_micros() / 1_000_000)
            .unwrap_or(false);
        changed
    }

    /// Ends the room: the mixer stops, listeners are told and closed.
    pub async fn end(&self) -> bool {
        let changed = self.info.lock().end(unix_micros() / 1_000_000);
        if changed {
            // If the task is gone the room is already over; nothing else to do.
            let _ = self.ingress.send(Ingress::End).await;
        }
        changed
    }

    /// Publishes the room-state event if its text changed.
    fn publish_snapshot(&self, stage: &Stage) {
        let info = self.info.lock().clone();
        let speakers: Vec<_> = stage
            .speakers
            .iter()
            .map(|(id, s)| json!({"id": id, "speaking": s.speaking}))
            .collect();
        let mut event = json!({
            "type": "room",
            "id": info.id,
            "title": info.title,
            "state": info.state,
            "listeners": self.listener_count(),
            "speakers": speakers,
        });
        let speaking = |slot| stage.speakers.get(&slot).is_some_and(|s| s.speaking);
        let eject_rev = self.add_stage_fields(&mut event, speaking);
        self.add_reaction_fields(&mut event);
        let text = event.to_string();
        self.snapshot.send_if_modified(|snap| {
            if snap.state == info.state && snap.text.as_str() == text {
                return false;
            }
            *snap = Snapshot {
                state: info.state,
                text: Utf8Bytes::from(text),
                eject_rev,
            };
            true
        });
    }

    /// Mutes or unmutes each seat in the mixer as the roster says.
    fn apply_mutes(&self, mixer: &mut Mixer) {
        let seated = self.seats.list();
        let roster = self.roster.lock();
        for (slot, participant, _) in seated {
            mixer.set_muted(slot, roster.is_muted(participant));
        }
    }

    /// Whether the participant holding `slot` is muted.
    fn slot_muted(&self, slot: u64) -> bool {
        let participant = self.seats.list().into_iter().find(|s| s.0 == slot);
        participant.is_some_and(|(_, p, _)| self.roster.lock().is_muted(p))
    }
}

/// Who is on stage, as the mixer task sees it.
#[derive(Debug, Default)]
struct Stage {
    speakers: std::collections::BTreeMap<u64, SpeakerState>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SpeakerState {
    /// Loudest level in the current window.
    peak: f32,
    /// Whether the last window was above the speaking threshold.
    speaking: bool,
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
    removed: watch::Receiver<Option<String>>,
    _presence: PresenceGuard,
}

impl Seat {
    /// Resolves with the reason when moderation removes this seat (never, otherwise).
    pub async fn removed(&mut self) -> String {
        match self.removed.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            // The room dropped the seat's entry: treat as removed by the room.
            Err(_) => "removed".to_owned(),
        }
    }
}

/// Keeps a listener or speaker counted while it is connected.
#[derive(Debug)]
pub struct PresenceGuard {
    room: Arc<LiveRoom>,
    metrics: Arc<Metrics>,
    speaker: Option<u64>,
}

impl PresenceGuard {
    /// The room this presence is in.
    pub fn room(&self) -> &Arc<LiveRoom> {
        &self.room
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        match self.speaker {
            None => {
                self.room.listeners.fetch_sub(1, Ordering::Relaxed);
                self.metrics.listeners.dec();
            }
            Some(slot) => {
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

struct MixTask {
    room: Arc<LiveRoom>,
    rx: mpsc::Receiver<Ingress>,
    metrics: Arc<Metrics>,
    batching: Batching,
    mixer_cfg: MixerConfig,
}

impl MixTask {
    async fn run(mut self) {
        let mut mixer = match Mixer::new(self.mixer_cfg) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(room = %self.room.id, "cannot create mixer: {e}");
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(tribune_media::FRAME_MS as u64));
        // A late task catches up with a burst of ticks so the timeline stays at real-time rate.
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut phases = Phases::new(self.room.batches.groups(), self.room.head());
        let mut due: Vec<Due> = Vec::with_capacity(self.room.batches.groups());
        let mut ticks: u64 = 0;
        let mut stage = Stage::default();
        let mut stage_changed = false;
        loop {
            tick.tick().await;
            ticks += 1;
            // Take everything speakers sent since the last tick.
            loop {
                match self.rx.try_recv() {
                    Ok(Ingress::Frame {
                        slot,
                        seq,
                        capture_us,
                        payload,
                    }) => {
                        // An unknown slot (a frame racing its speaker's leave) is dropped.
                        let _ = mixer.push(slot, seq, capture_us, payload);
                    }
                    Ok(Ingress::Join(slot)) => {
                        if let Err(e) = mixer.add_speaker(slot) {
                            tracing::warn!(room = %self.room.id, "speaker slot refused: {e}");
                        }
                        mixer.set_muted(slot, self.room.slot_muted(slot));
                        if self.room.go_live() {
                            self.metrics.rooms_live.inc();
                        }
                        stage.speakers.insert(slot, SpeakerState::default());
                        stage_changed = true;
                    }
                    Ok(Ingress::Leave(slot)) => {
                        mixer.remove_speaker(slot);
                        stage.speakers.remove(&slot);
                        stage_changed = true;
                    }
                    Ok(Ingress::Mute(slot, muted)) => mixer.set_muted(slot, muted),
                    Ok(Ingress::End) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.finish(&mut phases, &mut due);
                        return;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            // Moderation and reactions change the room event whether or not the room is live.
            if self.room.mute_dirty.swap(false, Ordering::AcqRel) {
                self.room.apply_mutes(&mut mixer);
            }
            if ticks.is_multiple_of(REACTION_WINDOW_TICKS) {
                self.room.reactions.lock().roll();
                // Also picks up the lazily published changes (requests to speak).
                stage_changed = true;
            }
            stage_changed |= self.room.moderation_dirty.swap(false, Ordering::AcqRel);
            if self.room.info.lock().state != RoomState::Live {
                if stage_changed {
                    self.room.publish_snapshot(&stage);
                    stage_changed = false;
                }
                continue;
            }
            let started = Instant::now();
            let frame = match mixer.tick(unix_micros()) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(room = %self.room.id, "mixer tick failed: {e}");
                    continue;
                }
            };
            self.metrics.mixer_ticks.inc();
            self.metrics
                .mixer_busy_us
                .add(started.elapsed().as_micros() as u64);
            self.metrics.program_frames.inc();
            let head = {
                let mut ring = self.room.ring.write();
                ring.push(frame.capture_us, &frame.payload);
                ring.head()
            };
            let seq = head.0 - 1;
            self.room
                .hls
                .push(seq, frame.capture_us, frame.payload.clone());
            // The interval follows the node's listeners (read each tick: one atomic load).
            let batch_frames = self.batching.frames(self.metrics.listeners.get());
            let interval_ms = batch_frames * u64::from(tribune_media::FRAME_MS);
            if self.metrics.batch_interval_ms.get() != interval_ms {
                self.metrics.batch_interval_ms.set(interval_ms);
            }
            phases.due(ticks, batch_frames, head, &mut due);
            self.publish(&due);
            for (slot, level) in &frame.levels {
                if let Some(s) = stage.speakers.get_mut(slot) {
                    s.peak = s.peak.max(*level);
                }
            }
            if ticks.is_multiple_of(SPEAKING_WINDOW_TICKS) {
                {
                    let mut levels = self.room.levels.lock();
                    levels.clear();
                    levels.extend(stage.speakers.iter().map(|(slot, s)| (*slot, s.peak)));
                }
                for s in stage.speakers.values_mut() {
                    let speaking = s.peak > SPEAKING_RMS;
                    stage_changed |= speaking != s.speaking;
                    s.speaking = speaking;
                    s.peak = 0.0;
                }
            }
            if stage_changed || ticks.is_multiple_of(SNAPSHOT_EVERY_TICKS) {
                self.room.publish_snapshot(&stage);
                stage_changed = false;
            }
        }
    }

    /// Publishes each due group's range; groups due with the same range share one message.
    fn publish(&self, due: &[Due]) {
        let mut last: Option<Batch> = None;
        for &(g, start, end) in due {
            let batch = match &last {
                Some(b) if (b.start, b.end) == (start, end) => b.clone(),
                _ => {
                    let Some(payload) = self.room.ring.read().message(start, end) else {
                        continue;
                    };
                    let frame = direct::binary_frame(&payload);
                    let bytes = frame.slice(frame.len() - payload.len()..);
                    let b = Batch {
                        start,
                        end,
                        bytes,
                        frame,
                    };
                    last = Some(b.clone());
                    b
                }
            };
            self.room.batches.publish(g, batch);
        }
    }

    fn finish(&self, phases: &mut Phases, due: &mut Vec<Due>) {
        let head = self.room.head();
        phases.flush(head, due);
        self.publish(due);
        if self.room.info.lock().started_at.is_some() {
            self.metrics.rooms_live.dec();
        }
        self.room.hls.finish();
        self.room.publish_snapshot(&Stage::default());
        tracing::info!(room = %self.room.id, frames = head.0, "room ended");
    }
}
