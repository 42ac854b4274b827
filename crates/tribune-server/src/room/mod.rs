//! A room at run time: its task (the mixer's one owner), its ring, LL-HLS packaging and fan-out,
//! its stage and reactions as commands, and its record in the store.
//!
//! One task per room owns the mixer ([`task`]). While anyone speaks or listens, every 20 ms it
//! takes the speakers' frames that arrived, mixes one program frame, appends it to the ring and,
//! once per batch interval, publishes one shared batch message. Listener connections hold a
//! cursor and a clone of the watch receivers; there is no per-listener queue and no per-listener
//! copy of audio. A room nobody speaks or listens in costs nothing but a wake-up a second.

pub(crate) mod batching;
pub(crate) mod fanout;
pub(crate) mod hands;
pub(crate) mod hls;
mod metrics;
mod persist;
mod presence;
mod program;
mod reactions;
pub(crate) mod relay;
pub(crate) mod seats;
mod stage;
mod stage_feed;
mod task;

pub use crate::net::batch::{Batch, Event};
pub use metrics::render_rooms;
pub use persist::{MSN_AHEAD, SEQ_AHEAD};
pub(crate) use stage::off_stage;
pub use stage_feed::{StageEar, StageTick};

use presence::{mono_us, Presence};
pub use presence::{ListenerPresence, PresenceGuard, Seat};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch, Notify};
use tribune_core::admission::TokenBucket;
use tribune_core::event::{OnAir, RoomEvent};
use tribune_core::{
    unix_micros, ListenerId, ParticipantId, Reactions, Reserved, Ring, Role, RoomId, RoomInfo,
    RoomState, RoomStore, Roster, RosterRecord, Seq,
};
use tribune_media::{Mixer, MixerConfig};

use crate::config::{AbuseLimits, ServerConfig};
use crate::counters::NodeCounters;
use crate::metrics::Metrics;
use crate::room::fanout::{Fanout, Member};
use crate::room::hands::HandRaises;
use crate::room::hls::Hls;
use crate::room::seats::Seats;
use batching::Batching;

/// Commands queued to the room's task (mostly speakers' frames) before new ones are dropped.
/// Each seat's rate is bounded (`AbuseLimits::seat_frames_per_s`) and a room has few seats, so a
/// full stage stays well below it; stage changes take at most one place (see `stage_pending`).
const INGRESS_QUEUE: usize = 1024;
/// How long after its last request an LL-HLS client still counts as listening (players ask
/// every part, 200 ms; a CDN asks once a second at most per edge).
const HLS_AUDIENCE_S: u64 = 15;
/// Oldest capture time a speaker's frame may claim, relative to its arrival (µs).
const MAX_CAPTURE_AGE_US: u64 = 1_000_000;
/// How long a room keeps producing after its last listener left: a listener that dropped and
/// resumes within the ring's length finds every frame it missed.
const AUDIENCE_GRACE_S: u64 = 30;

/// The latest room-state event.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Lifecycle state.
    pub state: RoomState,
    /// The JSON event, serialized once for everyone.
    pub text: Utf8Bytes,
    /// The same as one WebSocket text frame with its revision (what phase-group writers send).
    pub event: Event,
    /// The roster's ejection revision: listener connections look themselves up (are they
    /// blocked or removed?) only when this moves.
    pub eject_rev: u64,
}

/// What in a room's events a listener connection acts on itself (the room ending, someone
/// removed or blocked): its task follows this, not every event (counts and who speaks reach a
/// listener at the live edge through its phase group's writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Lifecycle state.
    pub state: RoomState,
    /// The roster's ejection revision.
    pub eject_rev: u64,
    /// A pulled room this node let go: its connections reconnect (and pull it again).
    pub retired: bool,
}

/// What speaker connections tell the mixer task.
#[derive(Debug)]
pub enum Ingress {
    /// A speaker connection opened (its mixer slot).
    Join(u64),
    /// A speaker connection closed.
    Leave(u64),
    /// A participant started (`true`) or stopped playing their mix-minus.
    Hear(ParticipantId, bool),
    /// One Opus frame from a speaker.
    Frame {
        /// Mixer slot.
        slot: u64,
        /// Speaker's sequence number.
        seq: u64,
        /// Capture time, µs since the Unix epoch.
        capture_us: u64,
        /// When it reached the node, µs since the Unix epoch.
        arrived_us: u64,
        /// The Opus packet.
        payload: Bytes,
    },
    /// The roster changed: publish the room event and re-apply every seat's mute.
    StageChanged,
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
    control: watch::Sender<Control>,
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
    /// Requests to speak per address, and the addresses a moderator refused (see `hands`).
    pub(crate) hands: Mutex<HandRaises>,
    /// Wakes the room's task when it is quiet (a change to publish, an audience arriving).
    wake: Notify,
    /// The program as LL-HLS (see `hls`).
    hls: Hls,
    /// When an LL-HLS client last asked for this room (seconds since the Unix epoch).
    hls_seen_s: AtomicU64,
    /// When a listener connection last closed (seconds since the Unix epoch).
    listener_left_s: AtomicU64,
    /// The open listen connection of each ticket (a ticket is one listener).
    listening: Mutex<HashMap<ListenerId, Listening>>,
    /// Who created the room, on a node with open rooms (the address it counts against).
    creator: Option<IpAddr>,
    /// Per-participant limits (seats, frame rate).
    limits: AbuseLimits,
    /// The stage's return audio, each tick (see `stage_feed`).
    stage_feed: stage_feed::Feed,
    /// Jitter-buffer figures of the room's speakers: frames concealed and frames too late.
    pub(crate) concealed: AtomicU64,
    pub(crate) late: AtomicU64,
    /// Each speaker's jitter reserve (slot, depth, target), refreshed once a second.
    depths: Mutex<Vec<SpeakerDepth>>,
    /// Whether the room's program is recorded (its lasting switch; the recording applies it).
    recording: AtomicBool,
    /// The room's record in the node's store (see `persist`).
    persist: persist::Persist,
    /// A `StageChanged` command is queued and not yet taken: further changes ride on it, so a
    /// burst of moderation takes one place in the queue, not one per action.
    stage_pending: AtomicBool,
    /// The node's counts.
    counters: Arc<NodeCounters>,
    /// Its relays: the audience of the nodes pulling it, or the node it is pulled from.
    relay: relay::Relaying,
}

/// What a room starts from.
pub struct RoomSetup {
    /// Its info (a restored room keeps its id, times and state).
    pub info: RoomInfo,
    /// The address an anonymous creator is counted under.
    pub creator: Option<IpAddr>,
    /// Whether its program is recorded.
    pub recording: bool,
    /// Where its record is kept.
    pub store: Arc<dyn RoomStore>,
    /// Its stored state, when it comes back after a restart.
    pub restored: Option<Restored>,
    /// The node's counts (the room adds its listeners; its batch interval follows the node's).
    pub counters: Arc<NodeCounters>,
}

/// A room's state brought back from the store after a restart.
#[derive(Debug)]
pub struct Restored {
    /// Its roster as stored.
    pub roster: RosterRecord,
    /// The stored record's revision.
    pub rev: u64,
    /// The first program sequence number it may use (past every one used before).
    pub first_seq: u64,
    /// The last LL-HLS segment number used before, if known (numbers go on from there).
    pub last_msn: Option<u64>,
    /// Numbers reserved in its record (the restore already reserved past `first_seq`).
    pub reserved: Reserved,
}

/// A speaker's jitter-buffer reserve as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerDepth {
    /// Mixer slot.
    pub slot: u64,
    /// Frames held in reserve at the low point of the last window (`None`: not measured yet).
    pub depth: Option<usize>,
    /// The reserve the buffer keeps.
    pub target: usize,
}

/// The listen connection a ticket holds.
#[derive(Debug)]
struct Listening {
    /// Which connection (a newer one replaces it).
    conn: u64,
    /// Told when a newer connection with the same ticket replaces this one.
    replaced: Arc<Notify>,
}

impl LiveRoom {
    /// Creates the room (or brings it back, see [`Restored`]) and starts its mixer task.
    pub fn spawn(
        setup: RoomSetup,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        stage: &crate::stage_runtime::StageRuntime,
    ) -> Arc<LiveRoom> {
        let (room, rx) = Self::build(setup, config, &metrics, false);
        let mixer_cfg = MixerConfig {
            bitrate_bps: config.program_bitrate,
            ..MixerConfig::default()
        };
        // The mixer runs on the stage thread: the audience's writers never delay it.
        stage.spawn(task::run(
            room.clone(),
            rx,
            metrics,
            Batching::of(config),
            mixer_cfg,
            config.rooms.idle_end,
        ));
        room
    }

    /// A room this node relays (an edge): its program comes through `pull`, an open connection
    /// to the node upstream, which the room's pull task keeps (and makes again after a break).
    pub fn spawn_relayed(
        setup: RoomSetup,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        stage: &crate::stage_runtime::StageRuntime,
        pull: relay::Pull,
    ) -> Arc<LiveRoom> {
        let (room, rx) = Self::build(setup, config, &metrics, true);
        // Before anyone finds the room: its event and roster as the upstream has them.
        room.take_roster(pull.hello.roster.clone(), &[]);
        room.take_event(pull.hello.event.clone());
        room.hls
            .upstream_discontinuity_sequence(pull.hello.discontinuity_sequence);
        stage.spawn(relay::run(
            room.clone(),
            rx,
            metrics,
            Batching::of(config),
            pull,
            config.cluster.pull_grace,
        ));
        room
    }

    fn build(
        setup: RoomSetup,
        config: &ServerConfig,
        metrics: &Arc<Metrics>,
        relayed: bool,
    ) -> (Arc<LiveRoom>, mpsc::Receiver<Ingress>) {
        let RoomSetup {
            info,
            creator,
            recording,
            store,
            restored,
            counters,
        } = setup;
        let (ingress, rx) = mpsc::channel(INGRESS_QUEUE);
        let batching = Batching::of(config);
        let state = info.state;
        let first_seq = restored.as_ref().map_or(0, |r| r.first_seq);
        let (roster, hls, rev, reserved) = match restored {
            Some(r) => (
                Roster::from_record(config.stage_limits.clone(), r.roster),
                r.last_msn.map_or_else(Hls::new, Hls::resuming),
                r.rev,
                r.reserved,
            ),
            None => (
                Roster::new(config.stage_limits.clone()),
                Hls::new(),
                0,
                Reserved {
                    seq: persist::SEQ_AHEAD,
                    msn: persist::MSN_AHEAD,
                },
            ),
        };
        // A relayed program is packaged where its upstream cut it: the same bytes everywhere.
        let hls = if relayed { Hls::following() } else { hls };
        let room = Arc::new(LiveRoom {
            id: info.id.clone(),
            info: Mutex::new(info),
            ring: RwLock::new(Ring::new(config.ring_frames(), Seq(first_seq))),
            batches: Fanout::new(batching.max_frames() as usize, Seq(first_seq)),
            snapshot: watch::Sender::new(Snapshot {
                state,
                text: Utf8Bytes::from_static("{}"),
                event: Event {
                    rev: 0,
                    frame: crate::net::direct::text_frame("{}"),
                },
                eject_rev: 0,
            }),
            control: watch::Sender::new(Control {
                state,
                eject_rev: 0,
                retired: false,
            }),
            ingress,
            listeners: AtomicU64::new(0),
            speakers: AtomicU64::new(0),
            seats: Seats::default(),
            levels: Mutex::new(Vec::new()),
            roster: Mutex::new(roster),
            reactions: Mutex::new(Reactions::new(config.reaction_limits.clone())),
            hands: Mutex::new(HandRaises::new(config.abuse.hand_raises_per_ip_per_minute)),
            wake: Notify::new(),
            hls,
            hls_seen_s: AtomicU64::new(0),
            listener_left_s: AtomicU64::new(0),
            listening: Mutex::new(HashMap::new()),
            creator,
            limits: config.abuse.clone(),
            stage_feed: watch::Sender::new(None),
            concealed: AtomicU64::new(0),
            late: AtomicU64::new(0),
            depths: Mutex::new(Vec::new()),
            recording: AtomicBool::new(recording),
            persist: persist::Persist::new(store, rev, reserved),
            stage_pending: AtomicBool::new(false),
            counters,
            relay: relay::Relaying::new(relayed),
        });
        if !relayed {
            room.publish_snapshot(&Stage::default());
        }
        room.batches.spawn_writers(metrics);
        if state == RoomState::Live && !relayed {
            metrics.rooms_live.inc();
        }
        (room, rx)
    }

    /// The address an anonymous creator is counted under (`None` for an operator's room).
    pub fn creator(&self) -> Option<IpAddr> {
        self.creator
    }

    /// Whether the room's program is recorded (its lasting switch).
    pub fn recording_on(&self) -> bool {
        self.recording.load(Ordering::Acquire)
    }

    /// Sets the recording switch (save afterwards to make it last).
    pub fn set_recording_on(&self, on: bool) {
        if self.recording.swap(on, Ordering::AcqRel) != on {
            self.changed();
        }
    }

    /// Notes an LL-HLS request: the room has an audience (and starts producing if quiet).
    pub fn touch_hls(&self) {
        let now = unix_micros() / 1_000_000;
        if self.hls_seen_s.swap(now, Ordering::Relaxed) != now {
            self.wake.notify_one();
        }
    }

    /// Whether anyone listens: a listener connection, one that left moments ago (and may
    /// resume), or an LL-HLS client lately.
    fn has_audience(&self) -> bool {
        let now = unix_micros() / 1_000_000;
        let hls_seen = self.hls_seen_s.load(Ordering::Relaxed);
        let left = self.listener_left_s.load(Ordering::Relaxed);
        self.listener_count() > 0
            || self.relay.pulled()
            || self.has_stage_ears()
            || now <= hls_seen.saturating_add(HLS_AUDIENCE_S)
            || now <= left.saturating_add(AUDIENCE_GRACE_S)
    }

    /// Wakes the room's task (a change it must publish now, even while quiet).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// The room's descriptive state.
    pub fn info(&self) -> RoomInfo {
        self.info.lock().clone()
    }

    /// Where the room is in its life, and when it ended (no copy of its title).
    pub fn state(&self) -> (RoomState, Option<u64>) {
        let info = self.info.lock();
        (info.state, info.ended_at)
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

    /// Follows the room's state and ejections only (see [`Control`]).
    pub fn subscribe_control(&self) -> watch::Receiver<Control> {
        self.control.subscribe()
    }

    /// The latest room event as a frame, for the phase-group writers.
    pub(crate) fn event(&self) -> Event {
        self.snapshot.borrow().event.clone()
    }

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

    /// Removes every seat of `participant` (their connections close with `reason`). Returns how
    /// many seats were removed.
    pub fn remove_participant(&self, participant: ParticipantId, reason: &str) -> usize {
        self.seats.remove_participant(participant, reason)
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

    /// (frames concealed, frames too late) in the room's speakers' jitter buffers so far.
    pub fn jitter_figures(&self) -> (u64, u64) {
        (
            self.concealed.load(Ordering::Relaxed),
            self.late.load(Ordering::Relaxed),
        )
    }

    /// Each speaker's jitter-buffer reserve, as of the last second.
    pub fn jitter_depths(&self) -> Vec<SpeakerDepth> {
        self.depths.lock().clone()
    }

    /// Who holds a seat now: (slot, participant, role).
    pub fn seated(&self) -> Vec<(u64, ParticipantId, Role)> {
        self.seats.list()
    }

    /// (frames in, frames dropped) of a participant's open seats.
    pub fn seat_stats(&self, participant: ParticipantId) -> (u64, u64) {
        self.seats.stats_of(participant)
    }

    /// Makes a scheduled room live. Returns whether it changed.
    pub fn go_live(&self) -> bool {
        let changed = self
            .info
            .lock()
            .go_live(unix_micros() / 1_000_000)
            .unwrap_or(false);
        if changed {
            self.changed();
        }
        changed
    }

    /// Ends the room: the mixer stops, listeners are told and closed.
    pub async fn end(&self) -> bool {
        let changed = self.info.lock().end(unix_micros() / 1_000_000);
        if changed {
            self.changed();
            // If the task is gone the room is already over; nothing else to do.
            let _ = self.ingress.send(Ingress::End).await;
        }
        changed
    }

    /// Lets go of a room another origin holds now (its lease here ran out and that origin took
    /// it): nothing more is written to its record, its connections are told to reconnect
    /// (edges and listeners find it at the new origin), and its mixer stops.
    pub async fn hand_over(&self) {
        self.persist.hand_over();
        self.retire();
        // Speakers reconnect (1012) rather than talk into a room nobody hears any more.
        self.seats.remove_all(&seats::Removal {
            code: crate::close::RESTART,
            reason: "this room moved to another origin; reconnect".into(),
        });
        let _ = self.ingress.send(Ingress::End).await;
    }

    /// Publishes the room-state event if its text changed; says whether it did.
    fn publish_snapshot(&self, stage: &Stage) -> bool {
        let info = self.info.lock().clone();
        let speaking = |slot| stage.speakers.get(&slot).is_some_and(|s| s.speaking);
        let part = self.stage_part(speaking);
        let state = info.state;
        let event = RoomEvent {
            id: info.id,
            title: info.title,
            state,
            listeners: self.audience(),
            speakers: stage
                .speakers
                .iter()
                .map(|(&id, s)| OnAir {
                    id,
                    speaking: s.speaking,
                })
                .collect(),
            rev: part.rev,
            participants: part.participants,
            requests: part.requests,
            invited: part.invited,
            reactions: self.reaction_window(),
        };
        self.publish_text(state, event.to_text(), part.eject_rev)
    }

    /// Publishes `text` as the room event (if it changed), then the control part; says whether
    /// the event changed.
    fn publish_text(&self, state: RoomState, text: String, eject_rev: u64) -> bool {
        let mut changed = false;
        self.snapshot.send_if_modified(|snap| {
            if snap.state == state && snap.text.as_str() == text {
                // Same event; an ejection (a mirrored roster) still reaches the snapshot.
                return std::mem::replace(&mut snap.eject_rev, eject_rev) != eject_rev;
            }
            changed = true;
            *snap = Snapshot {
                state,
                event: Event {
                    rev: snap.event.rev + 1,
                    frame: crate::net::direct::text_frame(&text),
                },
                text: Utf8Bytes::from(text),
                eject_rev,
            };
            true
        });
        // After the event itself: a task woken by this finds the event that goes with it.
        let control = Control {
            state,
            eject_rev,
            retired: self.is_retired(),
        };
        self.control
            .send_if_modified(|c| std::mem::replace(c, control) != control);
        changed
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
