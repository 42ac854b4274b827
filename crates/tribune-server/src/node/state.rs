//! The state shared by every handler of one node: its rooms, keys, settings and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;
use tribune_core::{
    Claims, Keyring, MemoryStore, Role, RoomId, RoomInfo, RoomRecord, RoomState, RoomStore,
    StoreError, TokenKind,
};

use crate::config::{NodeRole, ServerConfig};
use crate::counters::NodeCounters;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::node::admission::Admission;
use crate::node::cluster::Cluster;
use crate::node::connections::ConnectionCounter;
use crate::node::creation::{CreationGate, Creator};
use crate::node::pulls::Pulls;
use crate::recording::Recordings;
use crate::room::relay::{Pull, Source, Upstream};
use crate::room::{LiveRoom, Restored, RoomSetup};
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
    /// Where rooms' records are kept (see `tribune_core::store`).
    store: Arc<dyn RoomStore>,
    /// The node's own counts (what admission and batch sizing read).
    counters: Arc<NodeCounters>,
    /// On an edge: the rooms it pulls from its upstream.
    pulls: Option<Pulls>,
    /// This node in its cluster's registry (with `--redis`).
    cluster: Option<Arc<Cluster>>,
}

impl AppState {
    /// Fresh node state that records nothing and keeps rooms in memory.
    pub fn new(config: ServerConfig, shutdown: watch::Receiver<bool>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let recordings = Recordings::open(None, Bytes::new(), metrics.clone())
            .expect("no data directory, nothing to open");
        let store = Arc::new(MemoryStore::default());
        Self::with_parts(config, shutdown, metrics, Arc::new(recordings), store)
    }

    /// Node state around opened recordings and room store (call [`AppState::restore`] next).
    pub fn with_parts(
        config: ServerConfig,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        recordings: Arc<Recordings>,
        store: Arc<dyn RoomStore>,
    ) -> Self {
        let admission = Admission::new(config.admission);
        let creation = CreationGate::new(&config.rooms);
        // A node cannot run without its stage thread; failing to start one thread at start-up
        // means the process is out of resources.
        let stage = StageRuntime::start().expect("starting the stage thread");
        let cluster = config.cluster.redis.as_ref().and_then(|r| {
            let opened = tribune_store::RedisRegistry::lazy(r.clone()).and_then(|registry| {
                let gate = tribune_store::RedisGate::new(r.clone(), config.admission.gate)?;
                Ok(Cluster::new(Arc::new(registry), Arc::new(gate), &config))
            });
            match opened {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::error!("no cluster registry: {e}");
                    None
                }
            }
        });
        // An edge pulls from its --upstream, or (without one) from each room's origin.
        let pulls = match (&config.cluster.role, &config.cluster.upstream, &cluster) {
            (NodeRole::Edge, Some(url), _) => {
                match Upstream::new(url, config.keys.clone(), config.cluster.pull_timeout) {
                    Ok(u) => Some(Pulls::new(Source::Fixed(u))),
                    Err(e) => {
                        tracing::error!("no upstream: {e}");
                        None
                    }
                }
            }
            (NodeRole::Edge, None, Some(c)) => Some(Pulls::new(Source::Registry {
                registry: c.registry(),
                keys: config.keys.clone(),
                timeout: config.cluster.pull_timeout,
            })),
            _ => None,
        };
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
                store,
                counters: Default::default(),
                pulls,
                cluster,
            }),
        }
    }

    /// Brings back the rooms `records` hold (read from the store at start): live and scheduled
    /// rooms go on with their ids, rosters and blocks; ended ones are let go (their recordings
    /// stay). Each room's record is first rewritten with numbers reserved past everything it
    /// may have used, so a crash right after this start cannot hand them out twice. Answers how
    /// many rooms came back; a store that fails here stops the node.
    pub async fn restore(&self, records: Vec<RoomRecord>) -> std::io::Result<usize> {
        let frame_us = u64::from(tribune_media::FRAME_MS) * 1000;
        let mut back = 0;
        for mut record in records {
            let id = record.id().clone();
            let store = self.inner.store.clone();
            if record.info.state == RoomState::Ended {
                // An ended room left in the store is skipped again next time if this fails.
                let _ = tokio::task::spawn_blocking(move || store.remove(&id)).await;
                continue;
            }
            // Frames follow the room's clock from its creation (whole seconds, rounded down),
            // so the clock is past every number used unless it stepped back: the reservation
            // covers that. One second more for a clock that stepped back a little.
            let now_us = tribune_core::unix_micros();
            let by_clock = now_us.saturating_sub(record.info.created_at.saturating_mul(1_000_000))
                / frame_us
                + 1_000_000 / frame_us;
            let first_seq = by_clock.max(record.reserved.seq);
            let recorded = self
                .inner
                .recordings
                .get(&id)
                .and_then(|r| r.snapshot().entries.last().map(|e| e.msn + 1));
            let next_msn = record
                .reserved
                .msn
                .max(recorded.unwrap_or(0))
                .max(first_seq / 100);
            let roster = record.roster.clone();
            record.reserved = tribune_core::Reserved {
                seq: first_seq + crate::room::SEQ_AHEAD,
                msn: next_msn + crate::room::MSN_AHEAD,
            };
            record.rev += 1;
            let saved = {
                let record = record.clone();
                tokio::task::spawn_blocking(move || store.put(&record))
                    .await
                    .map_err(std::io::Error::other)?
            };
            match saved {
                Ok(()) => {}
                // Another origin took it, or wrote it, since it was read: it is theirs.
                Err(e @ (StoreError::Moved { .. } | StoreError::Conflict { .. })) => {
                    tracing::warn!(room = %id, "room not restored here: {e}");
                    continue;
                }
                Err(e) => {
                    return Err(std::io::Error::other(format!("restoring room {id}: {e}")));
                }
            }
            let setup = RoomSetup {
                info: record.info.clone(),
                creator: record.creator,
                recording: record.recording,
                store: self.inner.store.clone(),
                counters: self.inner.counters.clone(),
                restored: Some(Restored {
                    roster,
                    rev: record.rev,
                    first_seq,
                    // Packager::resuming takes the last number used.
                    last_msn: next_msn.checked_sub(1),
                    reserved: record.reserved,
                }),
            };
            let room = LiveRoom::spawn(
                setup,
                &self.inner.config,
                self.inner.metrics.clone(),
                &self.inner.stage,
            );
            self.inner.rooms.write().insert(id.clone(), room.clone());
            if self.inner.recordings.is_enabled() {
                let segments = room.hls().subscribe_segments();
                self.inner.recordings.resume(
                    id.clone(),
                    record.info.title.clone(),
                    record.info.created_at,
                    record.recording,
                    segments,
                );
            }
            tracing::info!(room = %id, state = ?record.info.state, "room restored");
            back += 1;
        }
        self.inner
            .metrics
            .rooms
            .set(self.inner.rooms.read().len() as u64);
        Ok(back)
    }

    /// Lets go of a room whose creation could not be saved (its creator was answered an
    /// error): it ends and leaves the registry.
    pub async fn discard(&self, room: &Arc<LiveRoom>) {
        room.end().await;
        self.inner.rooms.write().remove(&room.id);
        self.inner
            .metrics
            .rooms
            .set(self.inner.rooms.read().len() as u64);
    }

    /// The node's own counts (what control decisions read; metrics only report).
    pub fn counters(&self) -> &NodeCounters {
        &self.inner.counters
    }

    /// The node's room store.
    pub fn store(&self) -> &Arc<dyn RoomStore> {
        &self.inner.store
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
        if self.inner.config.cluster.role == NodeRole::Edge {
            return Err(ApiError::Misdirected(
                "this node is an edge: rooms are created on an origin".into(),
            ));
        }
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
        let setup = RoomSetup {
            info,
            creator: ip,
            recording: record,
            store: self.inner.store.clone(),
            restored: None,
            counters: self.inner.counters.clone(),
        };
        let room = LiveRoom::spawn(
            setup,
            &self.inner.config,
            self.inner.metrics.clone(),
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
        if let Some(c) = &self.inner.cluster {
            c.claim(room.id.clone());
        }
        Ok(room)
    }

    /// Lets go of rooms that ended more than `keep` ago: their recordings and replays stay
    /// (served from disk), their memory goes. Answers how many were let go.
    pub fn forget_ended(&self, keep: std::time::Duration) -> usize {
        let now = tribune_core::unix_micros() / 1_000_000;
        let mut rooms = self.inner.rooms.write();
        let mut gone = Vec::new();
        rooms.retain(|id, r| match r.state() {
            // A pulled room let go holds nothing to keep.
            _ if r.is_retired() => false,
            // An ended room whose end is not saved yet stays until it is (else it would come
            // back after a restart).
            (RoomState::Ended, Some(_)) if r.unsaved() => {
                r.save_soon();
                true
            }
            (RoomState::Ended, Some(at)) if at.saturating_add(keep.as_secs()) <= now => {
                gone.push(id.clone());
                false
            }
            _ => true,
        });
        self.inner.metrics.rooms.set(rooms.len() as u64);
        drop(rooms);
        let count = gone.len();
        if count > 0 {
            let store = self.inner.store.clone();
            tokio::task::spawn_blocking(move || {
                for id in gone {
                    if let Err(e) = store.remove(&id) {
                        tracing::warn!(room = %id, "ended room not removed from the store: {e}");
                    }
                }
            });
        }
        count
    }

    /// The room with this id (as text from a path), or 404.
    pub fn room(&self, id: &str) -> Result<Arc<LiveRoom>, ApiError> {
        let id = RoomId::parse(id).ok_or(ApiError::RoomNotFound)?;
        self.inner
            .rooms
            .read()
            .get(&id)
            .filter(|r| !r.is_retired())
            .cloned()
            .ok_or(ApiError::RoomNotFound)
    }

    /// This node in its cluster's registry, if it has one.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// The node's counts, shared (what the registry beat reports).
    pub fn counters_arc(&self) -> Arc<NodeCounters> {
        self.inner.counters.clone()
    }

    /// The rooms this node runs itself (live or scheduled, not pulled from elsewhere).
    pub fn owned_rooms(&self) -> Vec<RoomId> {
        self.inner
            .rooms
            .read()
            .values()
            .filter(|r| !r.is_relayed() && !r.is_retired() && r.state().0 != RoomState::Ended)
            .map(|r| r.id.clone())
            .collect()
    }

    /// The node `room` is pulled from now (an edge's upstream, or the room's origin as the
    /// registry names it); `None` on a node that pulls nothing.
    pub async fn upstream_for(
        &self,
        room: &RoomId,
    ) -> Option<Result<Upstream, crate::room::relay::PullError>> {
        if let Some(pulls) = &self.inner.pulls {
            return Some(pulls.source().resolve(room).await);
        }
        // An origin sharing rooms: the origin that runs this one, if it is another.
        let cluster = self
            .inner
            .cluster
            .as_ref()
            .filter(|_| self.inner.config.cluster.shared_rooms().is_some())?;
        let cfg = &self.inner.config;
        let url = match cluster.origin_of(room, cfg.cluster.pull_timeout).await {
            Ok(Some(url)) if url.trim_end_matches('/') != cluster.url().trim_end_matches('/') => {
                url
            }
            Ok(_) => return None,
            Err(e) => {
                return Some(Err(crate::room::relay::PullError::Unavailable(format!(
                    "registry: {e}"
                ))))
            }
        };
        Some(
            Upstream::new(&url, cfg.keys.clone(), cfg.cluster.pull_timeout).map_err(|e| {
                crate::room::relay::PullError::Unavailable(format!("the room's origin: {e}"))
            }),
        )
    }

    /// Whether requests for rooms this node does not run may go to the node that does: an
    /// edge (its upstream), or an origin sharing rooms with others (the room's origin).
    pub fn sends_on(&self) -> bool {
        self.pulls_rooms() || self.inner.config.cluster.shared_rooms().is_some()
    }

    /// Whether this node pulls rooms it does not carry from an upstream (an edge).
    pub fn pulls_rooms(&self) -> bool {
        self.inner.pulls.is_some()
    }

    /// The room with this id; on an edge, pulled from its upstream if this node does not
    /// carry it yet (`503` with `Retry-After` if the upstream does not answer in time).
    pub async fn room_or_pull(&self, id: &str) -> Result<Arc<LiveRoom>, ApiError> {
        let found = self.room(id);
        let Some(pulls) = &self.inner.pulls else {
            return found;
        };
        if found.is_ok() {
            return found;
        }
        let id = RoomId::parse(id).ok_or(ApiError::RoomNotFound)?;
        Ok(pulls.room(&id, |pull| self.start_pulled(pull)).await?)
    }

    /// Starts a room this node pulls and puts it in the registry (replacing one let go); if a
    /// request that came in between already did, that room stays and this pull is dropped.
    fn start_pulled(&self, pull: Pull) -> Arc<LiveRoom> {
        if let Ok(room) = self.room(pull.hello.info.id.as_str()) {
            return room;
        }
        let hello = &pull.hello;
        let setup = RoomSetup {
            info: hello.info.clone(),
            creator: None,
            recording: false,
            // A pulled room's record is its origin's: nothing here is kept.
            store: Arc::new(MemoryStore::default()),
            counters: self.inner.counters.clone(),
            restored: Some(Restored {
                roster: hello.roster.clone(),
                rev: 0,
                first_seq: hello.head,
                last_msn: None,
                reserved: tribune_core::Reserved { seq: 0, msn: 0 },
            }),
        };
        let room = LiveRoom::spawn_relayed(
            setup,
            &self.inner.config,
            self.inner.metrics.clone(),
            &self.inner.stage,
            pull,
        );
        let mut rooms = self.inner.rooms.write();
        if let Some(other) = rooms.get(&room.id).filter(|r| !r.is_retired()) {
            // Lost a race with another pull of the same room: this one ends at once.
            let other = other.clone();
            drop(rooms);
            tokio::spawn(async move { room.end().await });
            return other;
        }
        rooms.insert(room.id.clone(), room.clone());
        self.inner.metrics.rooms.set(rooms.len() as u64);
        room
    }

    /// All rooms, newest first.
    pub fn rooms(&self) -> Vec<Arc<LiveRoom>> {
        let mut v: Vec<_> = (self.inner.rooms.read().values())
            .filter(|r| !r.is_retired())
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.info().created_at));
        v
    }

    /// Mints a stage token for `who` in `room`.
    pub fn stage_token(
        &self,
        room: &RoomId,
        role: Role,
        who: tribune_core::ParticipantId,
    ) -> String {
        self.keys().sign(&Claims {
            kid: String::new(),
            kind: TokenKind::Stage,
            room: room.clone(),
            role,
            sub: who.0,
            exp: tribune_core::unix_micros() / 1_000_000 + self.config().stage_token_ttl.as_secs(),
        })
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
