//! How a room comes to be: built from its setup (new, or restored from its record), then its
//! task started, mixing here or relaying a program pulled from upstream.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch, Notify};
use tribune_core::{
    Reactions, Reserved, Ring, RoomInfo, RoomState, RoomStore, Roster, RosterRecord, Seq,
};
use tribune_media::MixerConfig;

use super::batching::Batching;
use super::fanout::Fanout;
use super::hands::HandRaises;
use super::hls::Hls;
use super::seats::Seats;
use super::{persist, relay, task, Control, Event, Ingress, LiveRoom, Snapshot, Stage};
use crate::config::ServerConfig;
use crate::counters::NodeCounters;
use crate::metrics::Metrics;

/// Commands queued to the room's task (mostly speakers' frames) before new ones are dropped.
/// Each seat's rate is bounded (`AbuseLimits::seat_frames_per_s`) and a room has few seats, so a
/// full stage stays well below it; stage changes take at most one place (see `stage_pending`).
const INGRESS_QUEUE: usize = 1024;
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
}
