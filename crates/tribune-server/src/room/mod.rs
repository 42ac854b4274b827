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
mod setup;
mod snapshot;
mod stage;
mod stage_feed;
mod task;

pub use crate::net::batch::{Batch, Event};
pub use metrics::render_rooms;
pub use persist::{MSN_AHEAD, SEQ_AHEAD};
pub use setup::{Restored, RoomSetup};
pub use snapshot::{Control, Snapshot};
pub(crate) use stage::off_stage;
pub use stage_feed::{StageEar, StageTick};

use presence::Listening;
pub use presence::{ListenerPresence, Seat};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch, Notify};
use tribune_core::{
    unix_micros, ListenerId, ParticipantId, Reactions, Ring, Role, RoomId, RoomInfo, RoomState,
    Roster, Seq,
};
use tribune_media::Mixer;

use crate::config::AbuseLimits;
use crate::counters::NodeCounters;
use crate::room::fanout::{Fanout, Member};
use crate::room::hands::HandRaises;
use crate::room::hls::Hls;
use crate::room::seats::Seats;

/// How long after its last request an LL-HLS client still counts as listening (players ask
/// every part, 200 ms; a CDN asks once a second at most per edge).
const HLS_AUDIENCE_S: u64 = 15;
/// Oldest capture time a speaker's frame may claim, relative to its arrival (µs).
const MAX_CAPTURE_AGE_US: u64 = 1_000_000;
/// How long a room keeps producing after its last listener left: a listener that dropped and
/// resumes within the ring's length finds every frame it missed.
const AUDIENCE_GRACE_S: u64 = 30;

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

impl LiveRoom {
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
