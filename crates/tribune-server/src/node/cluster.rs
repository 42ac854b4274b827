//! This node in its cluster's registry: every second it says it is alive (its role, address,
//! listeners and capacity) and reads who else is, so a join on any node can send the listener
//! to the least-loaded edge, with the others as alternates. When the registry cannot be reached
//! the node says so once (a log line and a gauge) and keeps the last list it read; joins go on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::sync::watch;
use tokio::time::Instant;
use tribune_core::admission::{Decision, SharedGate};
use tribune_core::registry::{by_load, NodeEntry, NodeKind, NodeRegistry};
use tribune_core::{RoomId, StoreError};

use crate::config::{NodeRole, ServerConfig};
use crate::counters::NodeCounters;
use crate::metrics::Metrics;

/// How often the node beats.
const BEAT: Duration = Duration::from_secs(1);
/// How long an entry lives without a beat: a node killed is gone from joins after this.
const LEASE: Duration = Duration::from_secs(3);
/// How long a room's origin stays named without being renewed: an origin killed and back
/// within it takes its rooms up again; past it, another origin takes them over.
pub(crate) const ROOM_LEASE: Duration = Duration::from_secs(10);
/// Alternates handed out with a listen URL.
const ALTERNATES: usize = 3;
/// Longest wait for the shared gate before a join is decided here.
const GATE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long joins decide here after the shared gate failed, before one tries it again.
const GATE_AWAY: Duration = Duration::from_secs(2);
/// Most calls waiting on the shared gate at once (past that, joins decide here).
const GATE_CALLS_MAX: usize = 16;

/// What a beat read: the nodes alive, and the rooms this node ran that another origin holds.
/// A beat's answer: the nodes alive, the rooms held elsewhere, and the rooms claimed.
type Beat = tokio::task::JoinHandle<
    Result<(Vec<NodeEntry>, Vec<RoomId>, Vec<RoomId>), tribune_core::StoreError>,
>;

/// This node's place in the registry.
#[derive(Debug)]
pub struct Cluster {
    registry: Arc<dyn NodeRegistry>,
    /// The cluster's admission gate.
    gate: Arc<dyn SharedGate>,
    /// Whether the last decision of the shared gate came back.
    gate_up: AtomicBool,
    /// After a failure: until when joins decide here without asking.
    gate_away_until: parking_lot::Mutex<Option<Instant>>,
    /// Calls waiting on the shared gate now.
    gate_calls: Arc<AtomicUsize>,
    me: NodeEntry,
    /// The nodes alive as last read (this one included).
    nodes: RwLock<Vec<NodeEntry>>,
    /// The same, each with the listeners sent to it since (what listen URLs are chosen by).
    sent: parking_lot::Mutex<Vec<NodeEntry>>,
    /// Whether the last beat reached the registry.
    up: AtomicBool,
    /// Rooms' origins as last looked up for a request sent on (see [`Cluster::origin_of`]).
    origins: parking_lot::Mutex<std::collections::HashMap<RoomId, (Instant, Option<String>)>>,
    /// Whether a write to the registry's lease index is under way (one at a time).
    indexing: Arc<AtomicBool>,
}

/// How long a room's origin, looked up for a request sent on, is taken as known.
const ORIGIN_KNOWN: Duration = Duration::from_secs(2);
/// Most rooms' origins remembered (past this the memory starts over).
const ORIGINS_MAX: usize = 10_000;
/// Beats between two writes of this node's rooms to the lease index: each notes a lease of
/// [`ROOM_LEASE`], so an entry is rewritten well before it looks run out (5× fewer writes than
/// one a beat).
const INDEX_EVERY: u64 = 4;

impl Cluster {
    /// This node (`config`) in `registry`, admitting through `gate`.
    pub fn new(
        registry: Arc<dyn NodeRegistry>,
        gate: Arc<dyn SharedGate>,
        config: &ServerConfig,
    ) -> Cluster {
        let kind = match config.cluster.role {
            NodeRole::All => NodeKind::All,
            NodeRole::Origin => NodeKind::Origin,
            NodeRole::Edge => NodeKind::Edge,
        };
        let url = config.own_url();
        Cluster {
            registry,
            gate,
            gate_up: AtomicBool::new(true),
            gate_away_until: parking_lot::Mutex::new(None),
            gate_calls: Arc::new(AtomicUsize::new(0)),
            me: NodeEntry {
                id: format!("{:016x}", rand::random::<u64>()),
                kind,
                url,
                listeners: 0,
                capacity: config.admission.gate.max_listeners,
            },
            nodes: RwLock::new(Vec::new()),
            sent: parking_lot::Mutex::new(Vec::new()),
            up: AtomicBool::new(true),
            origins: parking_lot::Mutex::new(std::collections::HashMap::new()),
            indexing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The URL of `room`'s origin (`None`: no origin holds it), looked up in the registry at
    /// most once per room every 2 s, so requests for made-up rooms cost Redis little.
    pub async fn origin_of(
        &self,
        room: &RoomId,
        timeout: Duration,
    ) -> Result<Option<String>, StoreError> {
        if let Some((at, url)) = self.origins.lock().get(room) {
            if at.elapsed() < ORIGIN_KNOWN {
                return Ok(url.clone());
            }
        }
        let (registry, id) = (self.registry.clone(), room.clone());
        let asked = tokio::task::spawn_blocking(move || registry.room_origin(&id));
        let url = match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(r)) => r?,
            _ => return Err(StoreError::Backend("registry: no answer".into())),
        };
        let mut origins = self.origins.lock();
        if origins.len() >= ORIGINS_MAX {
            origins.clear();
        }
        origins.insert(room.clone(), (Instant::now(), url.clone()));
        Ok(url)
    }

    /// Where a listener goes: the least-loaded node serving listeners (its base URL), then up
    /// to three alternates; empty if the registry lists none. Listeners sent since the last
    /// read count towards their node, so a burst of joins between two reads spreads out
    /// rather than landing on one node.
    pub fn listen_bases(&self) -> Vec<String> {
        let mut nodes = self.sent.lock();
        // Processes sharing one port (--reuse-port) share a URL: one alternate, not several.
        let mut urls = std::collections::HashSet::new();
        let order: Vec<String> = by_load(&nodes)
            .into_iter()
            .filter(|n| urls.insert(n.url.clone()))
            .take(1 + ALTERNATES)
            .map(|n| n.id.clone())
            .collect();
        if let Some(first) = order.first() {
            if let Some(n) = nodes.iter_mut().find(|n| &n.id == first) {
                n.listeners += 1;
            }
        }
        order
            .iter()
            .filter_map(|id| nodes.iter().find(|n| &n.id == id))
            .map(|n| n.url.clone())
            .collect()
    }

    /// The base URLs of the nodes that serve listeners (as last read).
    pub fn node_urls(&self) -> Vec<String> {
        let nodes = self.nodes.read();
        by_load(&nodes).into_iter().map(|n| n.url.clone()).collect()
    }

    /// Names this node as `room`'s origin now (a room just created is found by edges at once,
    /// not at the next beat). Best effort: the beat says it again within a second.
    pub fn claim(&self, room: RoomId) {
        let (registry, url) = (self.registry.clone(), self.me.url.clone());
        tokio::task::spawn_blocking(move || {
            match registry.claim_rooms(&url, std::slice::from_ref(&room), ROOM_LEASE) {
                Ok(held) if held.is_empty() => {
                    let _ = registry.index_leases(&[room], ROOM_LEASE);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("room origin not named yet: {e}"),
            }
        });
    }

    /// Notes `rooms` (claimed by this node) in the registry's lease index, apart from the
    /// claims and their deadlines: a slow index never delays a claim. One write at a time; one
    /// skipped is made good by a later beat.
    fn index(&self, rooms: Vec<RoomId>) {
        if rooms.is_empty() || self.indexing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (registry, busy) = (self.registry.clone(), self.indexing.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = registry.index_leases(&rooms, ROOM_LEASE) {
                tracing::debug!("rooms' leases not indexed: {e}");
            }
            busy.store(false, Ordering::Release);
        });
    }

    /// Names this node the origin of `rooms` unless another holds them: answers those held
    /// elsewhere (an error: the registry could not be reached in time).
    pub async fn claim_now(&self, rooms: Vec<RoomId>) -> Result<Vec<RoomId>, StoreError> {
        let (registry, url) = (self.registry.clone(), self.me.url.clone());
        let asked = tokio::task::spawn_blocking(move || {
            registry
                .claim_rooms(&url, &rooms, ROOM_LEASE)
                .map(|held| (held, rooms))
        });
        match tokio::time::timeout(LEASE, asked).await {
            Ok(Ok(Ok((held, rooms)))) => {
                let mine = rooms.into_iter().filter(|r| !held.contains(r)).collect();
                self.index(mine);
                Ok(held)
            }
            Ok(Ok(Err(e))) => Err(e),
            _ => Err(StoreError::Backend("registry: no answer".into())),
        }
    }

    /// This node's URL, as the registry lists it.
    pub fn url(&self) -> &str {
        &self.me.url
    }

    /// The registry (an edge asks it for rooms' origins).
    pub fn registry(&self) -> Arc<dyn NodeRegistry> {
        self.registry.clone()
    }

    /// Listeners across the cluster, as the registry last counted them.
    pub fn listeners(&self) -> u64 {
        self.nodes.read().iter().map(|n| n.listeners).sum()
    }

    /// Listeners across the cluster as this node knows them: the registry's last count plus
    /// the listeners it sent to edges since (what its own gate reads while the shared one is
    /// away: this node's connections alone say nothing on an origin or a busy edge's peer).
    pub fn listeners_estimate(&self) -> u64 {
        self.sent.lock().iter().map(|n| n.listeners).sum()
    }

    /// A decision of the cluster's gate: a fresh join, or (`Some((number, epoch))`) a return
    /// with a number from its line. `None` when the gate is away: the caller decides with its
    /// own. After a failure the gate is left alone for a moment (joins decide here at once),
    /// then tried by one join at a time; at most a few calls wait on it at once. A decision
    /// that did not come back in time may still be made by Redis later: at worst a seat held
    /// for nobody, for its hold.
    pub async fn admit(
        &self,
        number: Option<(u64, u64)>,
        metrics: &Metrics,
    ) -> Option<(Decision, u64)> {
        let fallback = || {
            metrics.admission_fallbacks.inc();
            None
        };
        {
            let mut away = self.gate_away_until.lock();
            match *away {
                Some(until) if Instant::now() < until => return fallback(),
                // One probe; the others keep deciding here until it answers.
                Some(_) => *away = Some(Instant::now() + GATE_TIMEOUT),
                None => {}
            }
        }
        if self.gate_calls.fetch_add(1, Ordering::AcqRel) >= GATE_CALLS_MAX {
            self.gate_calls.fetch_sub(1, Ordering::AcqRel);
            return fallback();
        }
        let gate = self.gate.clone();
        let listeners = self.listeners();
        let calls = self.gate_calls.clone();
        // A task of its own: a decision this join stops waiting for still ends (and is counted
        // out) when Redis answers or its deadline passes.
        let asked = tokio::spawn(async move {
            let r = match number {
                Some((n, epoch)) => gate.rejoin(listeners, n, epoch).await,
                None => gate.join(listeners).await,
            };
            calls.fetch_sub(1, Ordering::AcqRel);
            r
        });
        match tokio::time::timeout(GATE_TIMEOUT, asked).await {
            Ok(Ok(Ok(d))) => {
                *self.gate_away_until.lock() = None;
                if !self.gate_up.swap(true, Ordering::AcqRel) {
                    tracing::warn!("cluster admission reachable again: joins use the shared gate");
                }
                Some(d)
            }
            other => {
                *self.gate_away_until.lock() = Some(Instant::now() + GATE_AWAY);
                if self.gate_up.swap(false, Ordering::AcqRel) {
                    let why = match other {
                        Ok(Ok(Err(e))) => e.to_string(),
                        _ => "no answer".into(),
                    };
                    tracing::warn!(
                        "cluster admission unreachable ({why}): joins fall back to this node's \
                         own capacity, rate and waiting room"
                    );
                }
                fallback()
            }
        }
    }

    /// Beats every second until shutdown, then leaves the registry. `owned` lists the rooms
    /// this node runs (it renews their leases); `lost` is given those another origin holds now
    /// (this node's lease ran out while it could not reach the registry).
    pub async fn run(
        self: Arc<Self>,
        counters: Arc<NodeCounters>,
        metrics: Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
        owned: impl Fn() -> Vec<RoomId> + Send + 'static,
        lost: impl Fn(Vec<RoomId>) + Send + 'static,
    ) {
        let mut tick = tokio::time::interval(BEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Option<Beat> = None;
        for n in 0u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            let mut me = self.me.clone();
            me.listeners = counters.listeners();
            let registry = self.registry.clone();
            // The rooms this node runs: it is their origin (edges find it here).
            let rooms = owned();
            // A beat still blocked on a hung Redis is waited for, not joined by another one.
            let mut beat = match pending.take() {
                Some(b) => b,
                None => tokio::task::spawn_blocking(move || {
                    registry.beat(&me, LEASE)?;
                    let lost = registry.claim_rooms(&me.url, &rooms, ROOM_LEASE)?;
                    Ok((registry.nodes()?, lost, rooms))
                }),
            };
            let read = match tokio::time::timeout(LEASE, &mut beat).await {
                Ok(r) => Ok(r),
                Err(e) => {
                    pending = Some(beat);
                    Err(e)
                }
            };
            match read {
                Ok(Ok(Ok((nodes, gone, claimed)))) => {
                    if n % INDEX_EVERY == 0 {
                        self.index(claimed.into_iter().filter(|r| !gone.contains(r)).collect());
                    }
                    if !gone.is_empty() {
                        tracing::error!(
                            rooms = ?gone,
                            "another origin took over rooms this node runs (its lease ran out \
                             while the registry was away): letting them go"
                        );
                        lost(gone);
                    }
                    *self.sent.lock() = nodes.clone();
                    *self.nodes.write() = nodes;
                    if !self.up.swap(true, Ordering::AcqRel) {
                        tracing::warn!("cluster registry reachable again");
                    }
                    metrics.registry_up.set(1);
                }
                other => {
                    let why = match other {
                        Ok(Ok(Err(e))) => e.to_string(),
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer".into(),
                    };
                    metrics.registry_errors.inc();
                    metrics.registry_up.set(0);
                    if self.up.swap(false, Ordering::AcqRel) {
                        tracing::warn!(
                            "cluster registry unreachable ({why}): joins use the last list of \
                             nodes and this node's own admission until it is back"
                        );
                    }
                }
            }
        }
        let registry = self.registry.clone();
        let id = self.me.id.clone();
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::task::spawn_blocking(move || registry.leave(&id)),
        )
        .await;
    }
}
