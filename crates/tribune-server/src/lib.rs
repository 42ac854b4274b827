//! Tribune's I/O layer: a node's HTTP API, WebSockets, WebRTC, rooms at run time, recordings,
//! metrics and graceful shutdown. Protocol logic lives in `tribune-core` and `tribune-media`.
//!
//! Folders, from the bottom up (each imports only from those below it, or the shared vocabulary
//! at the top level: `config`, `counters`, `metrics`, `error`, `close`, `stage_runtime`):
//! - `net/`: the accept loop and its limits, per-address limits, direct socket writes of
//!   shared batches;
//! - `room/`: a room at run time: its task, ring, LL-HLS packaging, fan-out, seats, stage and
//!   reactions as room commands, its record in the store;
//! - `recording/`: recordings on disk (and their routes);
//! - `node/`: the room registry (`AppState`), admission, who may create rooms;
//! - `http/`, `ws/`, `whip/`: the routes, the WebSockets, WebRTC.

mod close;
pub mod config;
mod counters;
mod error;
mod http;
pub mod metrics;
mod net;
mod node;
pub mod recording;
mod room;
mod stage_runtime;
pub mod whip;
mod ws;

pub use error::ApiError;
pub use node::state::AppState;
pub use node::{admission, creation};
pub use room::{LiveRoom, MSN_AHEAD, SEQ_AHEAD};
/// Pulling rooms between the nodes of a cluster.
pub mod relay {
    pub use crate::room::relay::{Down, PullError, Start, Up, Upstream};
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::net::limits::JoinLimiter;
use crate::recording::Recordings;

pub use config::ServerConfig;

/// The HTTP routes of one node.
pub fn router(app: AppState) -> Router {
    let joins = Arc::new(JoinLimiter::new(&app.config().limits));
    router_with(app, joins)
}

/// The HTTP routes of one node, with its join rate limiter.
fn router_with(app: AppState, joins: Arc<JoinLimiter>) -> Router {
    let body_limit = app.config().max_body_bytes;
    Router::new()
        .route(
            "/api/rooms",
            post(http::rooms::create_room).get(http::rooms::list_rooms),
        )
        .route("/api/rooms/{id}", get(http::rooms::get_room))
        .route("/api/rooms/{id}/end", post(http::rooms::end_room))
        .route("/api/rooms/{id}/join", post(http::join::join))
        .route("/api/rooms/{id}/speakers", post(http::rooms::add_speaker))
        .route("/api/rooms/{id}/listen", get(ws::listen::listen))
        .route("/api/rooms/{id}/relay", get(ws::relay::relay))
        .route("/api/rooms/{id}/speak", get(ws::speak::speak))
        .route(
            "/api/rooms/{id}/whip",
            post(whip::http::publish)
                .layer(DefaultBodyLimit::max(whip::MAX_OFFER_BYTES))
                .options(whip::http::preflight),
        )
        .route(
            "/api/rooms/{id}/whip/{session}",
            axum::routing::delete(whip::http::end)
                .patch(whip::http::patch)
                .options(whip::http::preflight),
        )
        .route(
            "/api/rooms/{id}/whep",
            post(whip::http::play)
                .layer(DefaultBodyLimit::max(whip::MAX_OFFER_BYTES))
                .options(whip::http::preflight),
        )
        .route(
            "/api/rooms/{id}/whep/{session}",
            axum::routing::delete(whip::http::stop_play)
                .patch(whip::http::patch)
                .options(whip::http::preflight),
        )
        .route("/hls/{id}/live.m3u8", get(http::hls::live_playlist))
        .route(
            "/hls/{id}/replay.m3u8",
            get(http::recording::replay_playlist),
        )
        .route(
            "/api/rooms/{id}/recording",
            get(http::recording::status).post(http::recording::set),
        )
        .route(
            "/api/rooms/{id}/recording.m4a",
            get(http::recording::download),
        )
        .route("/api/rooms/{id}/clips", post(http::recording::create_clip))
        .route(
            "/api/rooms/{id}/clips/{file}",
            get(http::recording::get_clip),
        )
        .route("/hls/{id}/{*path}", get(http::hls::media))
        .route("/healthz", get(http::rooms::healthz))
        .route("/metrics", get(http::rooms::metrics))
        .merge(http::moderation::routes())
        .route("/api/rooms/{id}/reactions", post(http::reactions::react))
        .route("/", get(http::web::lobby))
        .route("/r/{id}", get(http::web::room_page))
        .route("/host/{id}", get(http::web::host_page))
        .route("/web/{*path}", get(http::web::asset))
        .fallback(http::rooms::not_found)
        // Innermost: what an edge refuses as misdirected goes on to the room's origin, with
        // the client's address (vouched for by a relay token) for the origin's limits.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http::forward::misdirected_upstream,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http::forward::forwarded_client,
        ))
        .layer(axum::middleware::from_fn(
            http::same_origin::refuse_cross_site_writes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            (app.config().abuse.body_timeout, app.metrics().clone()),
            http::body_deadline::limit_body_time,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(joins))
        .with_state(app)
}

/// A listening socket other processes may bind too (`SO_REUSEPORT`): the kernel spreads new
/// connections among them.
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A bound, not yet running node.
pub struct Server {
    listener: TcpListener,
    app: AppState,
    shutdown_tx: watch::Sender<bool>,
    whip: whip::WhipHub,
    generated_key: Option<node::creation::GeneratedKey>,
}

impl Server {
    /// Binds the listening socket and the WebRTC (WHIP) UDP socket. A node given no operator
    /// key (and not open to anonymous rooms) uses its own: read from the data directory, or
    /// made there on first start (see [`Server::generated_key`]).
    pub async fn bind(mut config: ServerConfig) -> std::io::Result<Server> {
        let mut generated_key = None;
        if config.rooms.api_keys.is_empty() && !config.rooms.open {
            let dir = config.data_dir.clone();
            let (key, told) =
                tokio::task::spawn_blocking(move || node::creation::own_key(dir.as_deref()))
                    .await
                    .map_err(std::io::Error::other)??;
            config.rooms.api_keys.push(key);
            generated_key = told;
        }
        let listener = if config.cluster.reuse_port {
            bind_shared(config.listen)?
        } else {
            TcpListener::bind(config.listen).await?
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let recordings = {
            let (dir, metrics) = (config.data_dir.clone(), metrics.clone());
            tokio::task::spawn_blocking(move || {
                Recordings::open(dir.as_deref(), recording_init(), metrics)
            })
            .await
            .map_err(std::io::Error::other)??
        };
        let (store, records) = {
            let dir = config.data_dir.clone();
            let shared = config
                .cluster
                .shared_rooms()
                .map(|r| (r.clone(), config.own_url()));
            tokio::task::spawn_blocking(move || open_store(dir.as_deref(), shared))
                .await
                .map_err(std::io::Error::other)??
        };
        let app = AppState::with_parts(config, shutdown_rx, metrics, Arc::new(recordings), store);
        // With rooms shared among origins, this one runs those whose lease names it.
        let back = node::takeover::restore_at_start(&app, records).await?;
        if back > 0 {
            tracing::info!(rooms = back, "rooms restored");
        }
        // Bound on the stage thread, so its readiness comes from that thread's reactor.
        let whip = {
            let config = app.config().clone();
            app.stage()
                .spawn(async move { whip::WhipHub::bind(&config).await })
                .await
                .map_err(std::io::Error::other)??
        };
        Ok(Server {
            listener,
            app,
            shutdown_tx,
            whip,
            generated_key,
        })
    }

    /// The operator key this node made for itself just now (first start, or no data
    /// directory), for the operator to be told once; `None` when it was configured or read.
    pub fn generated_key(&self) -> Option<&node::creation::GeneratedKey> {
        self.generated_key.as_ref()
    }

    /// The WebRTC UDP socket's address (WHIP media).
    pub fn udp_addr(&self) -> std::io::Result<SocketAddr> {
        self.whip.local_addr()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The node's shared state (rooms, metrics).
    pub fn state(&self) -> AppState {
        self.app.clone()
    }

    /// Serves until `signal` resolves, then tells every WebSocket client to reconnect, waits for
    /// them to close (at most the configured grace period) and returns.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            app,
            shutdown_tx,
            whip,
            ..
        } = self;
        let udp_task = whip.start(&app);
        if let Some(retention) = app.config().recording_retention {
            if app.recordings().is_enabled() {
                tokio::spawn(
                    app.recordings()
                        .clone()
                        .sweep_forever(retention, app.shutdown()),
                );
            }
        }
        let grace = app.config().shutdown_grace;
        let connections = app.connections().clone();
        if let Some(cluster) = app.cluster() {
            let (rooms, gone) = (app.clone(), app.clone());
            tokio::spawn(cluster.clone().run(
                app.counters_arc(),
                app.metrics().clone(),
                app.shutdown(),
                move || rooms.owned_rooms(),
                move |lost| node::takeover::let_go(&gone, lost),
            ));
            if app.config().cluster.shared_rooms().is_some() {
                tokio::spawn(node::takeover::adopt_orphans(app.clone()));
            }
        }
        let joins = Arc::new(JoinLimiter::new(&app.config().limits));
        tokio::spawn(sweep_join_limits(joins.clone(), app.clone()));
        let acceptor = net::serve::Acceptor::new(&app.config().limits, app.metrics().clone());
        let shutdown = app.shutdown();
        let service = router_with(app, joins).layer(Extension(whip));
        acceptor.run(listener, service, shutdown, signal).await;
        tracing::info!("shutting down: closing connections");
        let _ = shutdown_tx.send(true);
        // In-flight requests finish; WebSockets are told to reconnect (1012) and close. Every
        // socket holds an accept slot until it closes, so waiting for the slots waits for all.
        let closed = async {
            connections.wait_idle().await;
            acceptor.wait_closed().await;
        };
        if tokio::time::timeout(grace, closed).await.is_err() {
            tracing::warn!(
                websockets = connections.count(),
                connections = acceptor.open(),
                "shutdown grace expired"
            );
        }
        drop(shutdown_tx);
        let _ = udp_task.await;
        Ok(())
    }

    /// Runs the node on a background task; the handle stops it.
    pub fn spawn(self) -> RunningServer {
        let addr = self.local_addr().expect("bound socket has an address");
        let udp_addr = self.udp_addr().expect("bound socket has an address");
        let state = self.state();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            let _ = stop_rx.await;
        }));
        RunningServer {
            addr,
            udp_addr,
            state,
            stop: Some(stop_tx),
            task,
        }
    }
}

/// A node running on a background task.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its WebRTC (WHIP media) UDP socket listens.
    pub udp_addr: SocketAddr,
    /// Its shared state.
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts down gracefully and waits for it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Now and then: forgets idle entries of the per-address rate limiters, so their memory
/// follows the clients of the last seconds, not every address ever seen; and lets go of rooms
/// that ended a while ago (their recordings stay).
async fn sweep_join_limits(joins: Arc<JoinLimiter>, app: AppState) {
    let mut shutdown = app.shutdown();
    let keep = app.config().rooms.ended_keep;
    let every = (keep / 2).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(10),
    );
    let mut every = tokio::time::interval(every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {
                joins.sweep();
                app.creation().sweep();
                let gone = app.forget_ended(keep);
                if gone > 0 {
                    tracing::debug!(rooms = gone, "ended rooms let go");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The node's room store and what it holds: Redis for an origin sharing its rooms with the
/// cluster, else SQLite under the data directory, or memory without one. A store that cannot
/// be opened or read stops the node with its reason (which file or server, and why): a node
/// never starts empty over rooms it could not read.
fn open_store(
    data_dir: Option<&std::path::Path>,
    shared: Option<(tribune_store::RedisConfig, String)>,
) -> std::io::Result<(
    Arc<dyn tribune_core::RoomStore>,
    Vec<tribune_core::RoomRecord>,
)> {
    let store: Arc<dyn tribune_core::RoomStore> = match (shared, data_dir) {
        (Some((redis, me)), dir) => {
            let store = tribune_store::RedisStore::open(redis)
                .map_err(std::io::Error::other)?
                .fenced_by(&me);
            if let Some(dir) = dir {
                import_local_rooms(dir, &store)?;
            }
            Arc::new(store)
        }
        (None, Some(dir)) => {
            Arc::new(tribune_store::SqliteStore::open_dir(dir).map_err(std::io::Error::other)?)
        }
        (None, None) => Arc::new(tribune_core::MemoryStore::default()),
    };
    let records = store.list().map_err(std::io::Error::other)?;
    Ok((store, records))
}

/// Moves the rooms an origin kept on its own disk (before it shared them in Redis) into the
/// shared store, once: each room not in Redis yet is written there, then the file is renamed
/// (`….imported`) so rooms removed from Redis later never come back from it.
fn import_local_rooms(
    dir: &std::path::Path,
    shared: &tribune_store::RedisStore,
) -> std::io::Result<()> {
    use tribune_core::RoomStore;
    let file = dir.join(tribune_store::FILE_NAME);
    if !file.exists() {
        return Ok(());
    }
    let local = tribune_store::SqliteStore::open_dir(dir).map_err(std::io::Error::other)?;
    let mut moved = 0;
    for mut record in local.list().map_err(std::io::Error::other)? {
        if record.info.state == tribune_core::RoomState::Ended {
            continue;
        }
        if shared
            .get(record.id())
            .map_err(std::io::Error::other)?
            .is_some()
        {
            continue;
        }
        record.rev = 1;
        shared.put(&record).map_err(std::io::Error::other)?;
        moved += 1;
    }
    drop(local);
    let mut done = file.clone().into_os_string();
    done.push(".imported");
    std::fs::rename(&file, &done)?;
    tracing::warn!(
        rooms = moved,
        "rooms moved from {} into Redis (the file is now {})",
        file.display(),
        std::path::Path::new(&done).display()
    );
    Ok(())
}

/// The init segment of every recording (the program track's).
fn recording_init() -> bytes::Bytes {
    bytes::Bytes::from(tribune_media::cmaf::init_segment(
        &tribune_media::cmaf::OpusTrackConfig::default(),
    ))
}
