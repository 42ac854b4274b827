//! The state shared by every handler of one node: its rooms, keys, settings and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;
use tribune_core::{Claims, Keyring, Role, RoomId, RoomInfo, RoomState, TokenKind};

use crate::admission::Admission;
use crate::config::ServerConfig;
use crate::connections::ConnectionCounter;
use crate::creation::{CreationGate, Creator};
use crate::error::ApiError;
use crate::live_room::LiveRoom;
use crate::metrics::Metrics;
use crate::recording::Recordings;
use crate::stage_runtime::StageRuntime;
use bytes::Bytes;

/// Shared node state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ServerConfig,
    rooms: RwLock<HashMap<RoomId, Arc<LiveRoom>>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    connections: ConnectionCounter,
    recordings: Arc<Recordings>,
    admission: Admission,
    creation: CreationGate,
    /// Where the rooms' mixers and the WebRTC sessions run (see `stage_runtime`).
    stage: StageRuntime,
}

impl AppState {
    /// Fresh node state that records nothing.
    pub fn new(config: ServerConfig, shutdown: watch::Receiver<bool>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let recordings = Recordings::open(None, Bytes::new(), metrics.clone())
            .expect("no data directory, nothing to open");
        Self::with_parts(config, shutdown, metrics, Arc::new(recordings))
    }

    /// Node state around opened recordings.
    pub fn with_parts(
        config: ServerConfig,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        recordings: Arc<Recordings>,
    ) -> Self {
        let admission = Admission::new(config.admission);
        let creation = CreationGate::new(&config.rooms);
        // A node cannot run without its stage thread; failing to start one thread at start-up
        // means the process is out of resources.
        let stage = StageRuntime::start().expect("starting the stage thread");
        AppState {
            inner: Arc::new(Inner {
                admission,
                creation,
                config,
                rooms: RwLock::new(HashMap::new()),
                metrics,
                shutdown,
                connections: Default::default(),
                recordings,
                stage,
            }),
        }
    }

    /// The node's admission state (capacity, waiting room, proof of work).
    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// Who may create rooms (operator keys, open-room limits).
    pub fn creation(&self) -> &CreationGate {
        &self.inner.creation
    }

    /// The node's recordings.
    pub fn recordings(&self) -> &Arc<Recordings> {
        &self.inner.recordings
    }

    /// The node's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The signing keys.
    pub fn keys(&self) -> &Keyring {
        &self.inner.config.keys
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Becomes true when the node starts shutting down.
    pub fn shutdown(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }

    /// The stage's runtime: rooms' mixers and WebRTC sessions run there.
    pub fn stage(&self) -> &StageRuntime {
        &self.inner.stage
    }

    /// Counts open WebSocket connections so shutdown can wait for them.
    pub fn connections(&self) -> &ConnectionCounter {
        &self.inner.connections
    }

    /// Creates a room for `creator` and starts it, within the node's room cap and the
    /// creator's share (see `creation`); its program is recorded (when the node has a data
    /// directory), with recording on from the start if `record`.
    pub fn create_room(
        &self,
        info: RoomInfo,
        record: bool,
        creator: Creator,
    ) -> Result<Arc<LiveRoom>, ApiError> {
        let (id, title, created_at) = (info.id.clone(), info.title.clone(), info.created_at);
        let mut rooms = self.inner.rooms.write();
        // Counted and inserted under one lock, so concurrent creations cannot pass the cap.
        let open: Vec<&Arc<LiveRoom>> = rooms
            .values()
            .filter(|r| r.state().0 != RoomState::Ended)
            .collect();
        let held = match creator {
            Creator::Anonymous(ip) => open.iter().filter(|r| r.creator() == Some(ip)).count(),
            Creator::Operator => 0,
        };
        if let Err(e) = self.inner.creation.admit(creator, open.len(), held) {
            self.inner.metrics.rooms_refused.inc();
            return Err(e);
        }
        let ip = match creator {
            Creator::Anonymous(ip) => Some(ip),
            Creator::Operator => None,
        };
        let room = LiveRoom::spawn(
            info,
            &self.inner.config,
            self.inner.metrics.clone(),
            ip,
            &self.inner.stage,
        );
        rooms.insert(room.id.clone(), room.clone());
        self.inner.metrics.rooms.set(rooms.len() as u64);
        drop(rooms);
        if self.inner.recordings.is_enabled() {
            let segments = room.hls().subscribe_segments();
            self.inner
                .recordings
                .start(id, title, created_at, record, segments);
        }
        self.inner.metrics.rooms_created.inc();
        Ok(room)
    }

    /// Lets go of rooms that ended more than `keep` ago: their recordings and replays stay
    /// (served from disk), their memory goes. Answers how many were let go.
    pub fn forget_ended(&self, keep: std::time::Duration) -> usize {
        let now = tribune_core::unix_micros() / 1_000_000;
        let mut rooms = self.inner.rooms.write();
        let before = rooms.len();
        rooms.retain(|_, r| match r.state() {
            (RoomState::Ended, Some(at)) => at.saturating_add(keep.as_secs()) > now,
            _ => true,
        });
        self.inner.metrics.rooms.set(rooms.len() as u64);
        before - rooms.len()
    }

    /// The room with this id (as text from a path), or 404.
    pub fn room(&self, id: &str) -> Result<Arc<LiveRoom>, ApiError> {
        let id = RoomId::parse(id).ok_or(ApiError::RoomNotFound)?;
        self.inner
            .rooms
            .read()
            .get(&id)
            .cloned()
            .ok_or(ApiError::RoomNotFound)
    }

    /// All rooms, newest first.
    pub fn rooms(&self) -> Vec<Arc<LiveRoom>> {
        let mut v: Vec<_> = self.inner.rooms.read().values().cloned().collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.info().created_at));
        v
    }

    /// Verifies a stage token for `room`, requiring `check` of its role.
    pub fn verify_stage(
        &self,
        token: Option<&str>,
        room: &RoomId,
        check: fn(Role) -> bool,
    ) -> Result<Claims, ApiError> {
        let token = token.ok_or(ApiError::Unauthenticated("bearer token"))?;
        let claims = self.keys().verify_for(
            token,
            TokenKind::Stage,
            room,
            tribune_core::unix_micros() / 1_000_000,
        )?;
        if !check(claims.role) {
            return Err(ApiError::Forbidden(format!(
                "a {:?} may not do this",
                claims.role
            )));
        }
        Ok(claims)
    }
}
