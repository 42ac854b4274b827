//! Relays: a room's program pulled from the node upstream, and the audience of the nodes that
//! pull it from this one.
//!
//! An edge pulls each room over one WebSocket (`GET /api/rooms/{id}/relay?from=N`, served by
//! `ws::relay`): the upstream sends a hello (the room, its roster, its latest event, its head),
//! then its program as the listeners' binary messages, and every change of its event and of its
//! blocks and removals as text. The edge feeds the frames to [`Program::push`] as a mixer would,
//! so its ring, LL-HLS and fan-out work as on the origin. After any break (the upstream gone,
//! stalled, restarted) it connects again with `from` = its ring's head and the upstream serves
//! what it missed from its own ring; its listeners stay connected meanwhile. Once a second it
//! reports its audience (its listeners and those of the nodes pulling from it) upstream, so the
//! origin's room event, which every node forwards as it is, counts the whole cluster.
//! A room nobody on the edge listens to for the grace period is let go (retired).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tribune_core::event::RoomEvent;
use tribune_core::{
    unix_micros, Claims, Keyring, ListenerId, Role, RoomId, RoomInfo, RoomState, RosterRecord, Seq,
    TokenKind,
};

use super::program::Program;
use super::{Ingress, LiveRoom};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::room::batching::Batching;

/// A relay connection that brings nothing (not even a pong) for this long is broken.
const STALL: Duration = Duration::from_secs(3);
/// Without a frame for this long, the program pauses (the upstream went quiet or away): every
/// phase group gets what it was not sent yet.
const QUIET: Duration = Duration::from_millis(100);
/// First wait before connecting again after a break; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Largest relay message accepted (a roster with its block lists).
const MAX_MESSAGE: usize = 4 << 20;

/// Text messages a node sends down a relay connection (audio goes as the listeners' binary
/// wire messages).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Down {
    /// First message: the room as it stands.
    Hello {
        /// Its info.
        info: RoomInfo,
        /// The sequence number of its next program frame.
        head: u64,
        /// Its latest room event (the text listeners get).
        event: String,
        /// Its roster's lasting state.
        roster: RosterRecord,
    },
    /// The room event changed.
    Event {
        /// The text listeners get, as it is.
        event: String,
    },
    /// Blocks or removals changed: the roster's lasting state and who was removed since.
    Roster {
        /// The roster's lasting state.
        roster: RosterRecord,
        /// Listeners removed since the last roster message.
        kicked: Vec<ListenerId>,
    },
}

/// Text messages a pulling node sends up.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Up {
    /// Listeners on the pulling node and on the nodes pulling from it.
    Audience {
        /// How many.
        listeners: u64,
    },
}

/// Why a pull could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// The upstream has no such room.
    #[error("no such room")]
    NotFound,
    /// The room has ended.
    #[error("the room has ended")]
    Ended,
    /// The upstream did not answer as it should.
    #[error("the node upstream is unavailable: {0}")]
    Unavailable(String),
}

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NotFound => ApiError::RoomNotFound,
            PullError::Ended => ApiError::RoomEnded,
            PullError::Unavailable(_) => ApiError::UpstreamUnavailable(e.to_string()),
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The node rooms are pulled from.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `ws://host:port`.
    base: String,
    keys: Keyring,
    timeout: Duration,
}

/// The room as the upstream's hello described it.
#[derive(Debug)]
pub struct Hello {
    /// Its info.
    pub info: RoomInfo,
    /// The sequence number of its next program frame.
    pub head: u64,
    /// Its latest event.
    pub event: String,
    /// Its roster.
    pub roster: RosterRecord,
}

/// An open pull: the connection and its hello.
pub struct Pull {
    upstream: Upstream,
    socket: Socket,
    /// What the upstream said first.
    pub hello: Hello,
}

impl std::fmt::Debug for Pull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pull").field("hello", &self.hello).finish()
    }
}

impl Upstream {
    /// The node at `base` (`http://host:port`), trusted through the shared signing `keys`;
    /// each attempt to open a pull takes at most `timeout`.
    pub fn new(base: &str, keys: Keyring, timeout: Duration) -> Result<Upstream, String> {
        let base = base.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base:?}: the upstream must be an http:// URL"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(format!(
                "{base:?}: the upstream is http://host:port, no path"
            ));
        }
        Ok(Upstream {
            base: format!("ws://{rest}"),
            keys,
            timeout,
        })
    }

    /// Opens a pull of `room`, from sequence number `from` (its live edge if `None`).
    pub async fn open(&self, room: &RoomId, from: Option<Seq>) -> Result<Pull, PullError> {
        match tokio::time::timeout(self.timeout, self.connect(room, from)).await {
            Ok(r) => r,
            Err(_) => Err(PullError::Unavailable(format!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    async fn connect(&self, room: &RoomId, from: Option<Seq>) -> Result<Pull, PullError> {
        let unavailable = |e: &dyn std::fmt::Display| PullError::Unavailable(e.to_string());
        let mut url = format!("{}/api/rooms/{}/relay", self.base, room);
        if let Some(Seq(n)) = from {
            url.push_str(&format!("?from={n}"));
        }
        let mut request = url.into_client_request().map_err(|e| unavailable(&e))?;
        let token = self.keys.sign(&Claims {
            kid: String::new(),
            kind: TokenKind::Relay,
            room: room.clone(),
            role: Role::Listener,
            sub: 0,
            exp: unix_micros() / 1_000_000 + 60,
        });
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|e| unavailable(&e))?;
        request
            .headers_mut()
            .insert(axum::http::header::AUTHORIZATION, auth);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(r) => match r.status().as_u16() {
                        404 => PullError::NotFound,
                        410 => PullError::Ended,
                        s => PullError::Unavailable(format!("answered {s}")),
                    },
                    e => unavailable(&e),
                })?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) => {
                    let Ok(Down::Hello {
                        info,
                        head,
                        event,
                        roster,
                    }) = serde_json::from_str(&t)
                    else {
                        return Err(PullError::Unavailable("no hello".into()));
                    };
                    if info.id != *room {
                        return Err(PullError::Unavailable("hello for another room".into()));
                    }
                    let hello = Hello {
                        info,
                        head,
                        event,
                        roster,
                    };
                    return Ok(Pull {
                        upstream: self.clone(),
                        socket,
                        hello,
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => {
                    return Err(PullError::Unavailable("closed before its hello".into()))
                }
                Some(Ok(_)) => return Err(PullError::Unavailable("no hello".into())),
                Some(Err(e)) => return Err(unavailable(&e)),
            }
        }
    }
}

/// A room's relay bookkeeping: the audience of the nodes pulling it, or, on a room this node
/// pulls, what its upstream counts.
#[derive(Debug, Default)]
pub(crate) struct Relaying {
    /// Whether this node pulls the room (rather than mixing it).
    relayed: bool,
    /// A pulled room let go (nobody listened): lookups ignore it and pull again.
    retired: AtomicBool,
    /// Open relay connections of nodes pulling this room, with each one's audience.
    downstream: Mutex<HashMap<u64, u64>>,
    /// Their sum.
    downstream_total: AtomicU64,
    /// On a pulled room: the whole audience, as the upstream's last event counted it.
    upstream_total: AtomicU64,
}

impl Relaying {
    pub(crate) fn new(relayed: bool) -> Self {
        Relaying {
            relayed,
            ..Relaying::default()
        }
    }

    /// Whether a node pulls this room from this one.
    pub(crate) fn pulled(&self) -> bool {
        !self.downstream.lock().is_empty()
    }

    fn set(&self, conn: u64, listeners: Option<u64>) {
        let mut d = self.downstream.lock();
        match listeners {
            Some(n) => d.insert(conn, n),
            None => d.remove(&conn),
        };
        self.downstream_total
            .store(d.values().sum(), Ordering::Relaxed);
    }
}

/// A node pulling a room from this one: counted while it is held.
pub struct Downstream {
    room: Arc<LiveRoom>,
    conn: u64,
    metrics: Arc<Metrics>,
}

impl Downstream {
    /// The pulling node's audience (its listeners and those below it).
    pub fn report(&self, listeners: u64) {
        self.room.relay.set(self.conn, Some(listeners));
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.room.relay.set(self.conn, None);
        self.metrics.relays_out.dec();
    }
}

impl LiveRoom {
    /// Whether this node pulls the room from another (stage actions belong to its origin).
    pub fn is_relayed(&self) -> bool {
        self.relay.relayed
    }

    /// Whether this pulled room was let go (a lookup pulls it again).
    pub fn is_retired(&self) -> bool {
        self.relay.retired.load(Ordering::Acquire)
    }

    /// Refuses stage actions on a room this node only relays.
    pub fn ensure_origin(&self) -> Result<(), ApiError> {
        if self.is_relayed() {
            return Err(ApiError::Misdirected(
                "this node relays the room; the stage and its moderation are on its origin".into(),
            ));
        }
        Ok(())
    }

    /// The room's listeners across the cluster: on a pulled room, as its upstream last counted
    /// them; otherwise this node's and those of the nodes pulling from it.
    pub fn audience(&self) -> u64 {
        if self.relay.relayed {
            self.relay.upstream_total.load(Ordering::Relaxed)
        } else {
            self.audience_below()
        }
    }

    /// Listeners on this node and on the nodes pulling the room from it.
    pub fn audience_below(&self) -> u64 {
        self.listener_count() + self.relay.downstream_total.load(Ordering::Relaxed)
    }

    /// Counts a node pulling this room in (until the guard drops); it keeps the room producing.
    pub fn downstream(self: &Arc<Self>, metrics: Arc<Metrics>) -> Downstream {
        let conn = tribune_core::ParticipantId::random().0;
        self.relay.set(conn, Some(0));
        metrics.relays_out.inc();
        self.wake();
        Downstream {
            room: self.clone(),
            conn,
            metrics,
        }
    }

    /// Takes the upstream's room event: forwarded as it is (its counts are the cluster's).
    fn take_event(&self, text: String) -> Option<RoomState> {
        let event = RoomEvent::parse(&text)?;
        self.relay
            .upstream_total
            .store(event.listeners, Ordering::Relaxed);
        let now_s = unix_micros() / 1_000_000;
        {
            let mut info = self.info.lock();
            match event.state {
                RoomState::Live => {
                    let _ = info.go_live(now_s);
                }
                RoomState::Ended => {
                    info.end(now_s);
                }
                RoomState::Scheduled => {}
            }
            info.title = event.title;
        }
        let eject_rev = self.roster.lock().eject_rev();
        self.publish_text(event.state, text, eject_rev);
        Some(event.state)
    }

    /// Takes the upstream's blocks and removals: open connections look themselves up again.
    fn take_roster(&self, roster: RosterRecord, kicked: &[ListenerId]) {
        let eject_rev = {
            let mut r = self.roster.lock();
            r.mirror(roster, kicked);
            r.eject_rev()
        };
        let (state, text) = {
            let s = self.snapshot.borrow();
            (s.state, s.text.clone())
        };
        self.publish_text(state, Utf8Bytes::as_str(&text).to_owned(), eject_rev);
    }
}

/// How a pull ended.
enum End {
    /// The room ended upstream (or is gone there).
    Ended,
    /// Nobody listened here for the grace period.
    Retired,
}

/// Runs a pulled room until it ends upstream or nobody here listens to it.
pub(super) async fn run(
    room: Arc<LiveRoom>,
    mut rx: mpsc::Receiver<Ingress>,
    metrics: Arc<Metrics>,
    batching: Batching,
    pull: Pull,
    grace: Duration,
) {
    let Pull {
        upstream,
        socket,
        hello,
    } = pull;
    metrics.rooms_pulled.inc();
    let mut task = PullTask {
        program: Program::new(room.clone(), metrics.clone(), batching),
        room,
        metrics: metrics.clone(),
        upstream,
        last_frame: None,
        paused: true,
        idle_since: None,
        grace,
    };
    let _ = task.hello(hello);
    let end = task.run(socket, &mut rx).await;
    match end {
        End::Ended => {
            let now_s = unix_micros() / 1_000_000;
            task.room.info.lock().end(now_s);
            task.program.finish();
            let eject_rev = task.room.roster.lock().eject_rev();
            let text = task.room.snapshot.borrow().text.as_str().to_owned();
            let text = match RoomEvent::parse(&text) {
                Some(mut e) if e.state != RoomState::Ended => {
                    e.state = RoomState::Ended;
                    e.to_text()
                }
                _ => text,
            };
            task.room.publish_text(RoomState::Ended, text, eject_rev);
            tracing::info!(room = %task.room.id, "pulled room ended upstream");
        }
        End::Retired => {
            task.room.relay.retired.store(true, Ordering::Release);
            task.program.finish();
            tracing::info!(room = %task.room.id, "pulled room let go: nobody listens here");
        }
    }
    metrics.rooms_pulled.dec();
}

struct PullTask {
    room: Arc<LiveRoom>,
    metrics: Arc<Metrics>,
    upstream: Upstream,
    program: Program,
    /// When the last frame came.
    last_frame: Option<Instant>,
    /// Whether the program is paused (no frame lately).
    paused: bool,
    /// Since when nobody listens here.
    idle_since: Option<Instant>,
    grace: Duration,
}

/// What a message from upstream asks of the loop.
enum Step {
    Go,
    Broken(String),
    Stop(End),
}

impl PullTask {
    async fn run(&mut self, socket: Socket, rx: &mut mpsc::Receiver<Ingress>) -> End {
        let mut socket = Some(socket);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry = RETRY_MIN;
        let mut retry_at = Instant::now();
        loop {
            let quiet_at = self.last_frame.map_or_else(Instant::now, |t| t + QUIET);
            let step = match socket.as_mut() {
                Some(ws) => tokio::select! {
                    msg = tokio::time::timeout(STALL, ws.next()) => match msg {
                        Ok(Some(Ok(m))) => self.message(m),
                        Ok(Some(Err(e))) => Step::Broken(e.to_string()),
                        Ok(None) => Step::Broken("closed".into()),
                        Err(_) => Step::Broken("stalled".into()),
                    },
                    _ = second.tick() => match self.second() {
                        Some(end) => Step::Stop(end),
                        None => {
                            let up = Up::Audience { listeners: self.room.audience_below() };
                            let text = serde_json::to_string(&up).unwrap_or_default();
                            let sent = tokio::time::timeout(STALL, async {
                                ws.send(Message::Text(text.into())).await?;
                                ws.send(Message::Ping(Bytes::new())).await
                            });
                            match sent.await {
                                Ok(Ok(())) => Step::Go,
                                _ => Step::Broken("could not report the audience".into()),
                            }
                        }
                    },
                    _ = tokio::time::sleep_until(quiet_at), if !self.paused => {
                        self.program.pause();
                        self.paused = true;
                        Step::Go
                    }
                    m = rx.recv() => self.command(m),
                },
                None => tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => {
                        let from = self.room.head();
                        match self.upstream.open(&self.room.id, Some(from)).await {
                            Ok(pull) => {
                                self.metrics.pull_reconnects.inc();
                                retry = RETRY_MIN;
                                socket = Some(pull.socket);
                                self.hello(pull.hello)
                            }
                            Err(PullError::NotFound | PullError::Ended) => Step::Stop(End::Ended),
                            Err(e) => {
                                tracing::debug!(room = %self.room.id, "pull not made again: {e}");
                                retry_at = Instant::now() + retry;
                                retry = (retry * 2).min(RETRY_MAX);
                                Step::Go
                            }
                        }
                    }
                    _ = second.tick() => match self.second() {
                        Some(end) => Step::Stop(end),
                        None => Step::Go,
                    },
                    _ = tokio::time::sleep_until(quiet_at), if !self.paused => {
                        self.program.pause();
                        self.paused = true;
                        Step::Go
                    }
                    m = rx.recv() => self.command(m),
                },
            };
            match step {
                Step::Go => {}
                Step::Stop(end) => return end,
                Step::Broken(why) => {
                    if socket.take().is_some() {
                        tracing::warn!(room = %self.room.id, "pull broken ({why}); connecting again");
                        retry_at = Instant::now() + RETRY_MIN;
                    }
                }
            }
        }
    }

    /// A command on the room's queue: only the end matters to a pulled room (it has no mixer).
    fn command(&mut self, m: Option<Ingress>) -> Step {
        match m {
            None | Some(Ingress::End) => Step::Stop(End::Ended),
            Some(_) => Step::Go,
        }
    }

    /// Once a second: lets the room go when nobody listened here for the grace period.
    fn second(&mut self) -> Option<End> {
        if self.room.has_audience() {
            self.idle_since = None;
            return None;
        }
        let since = *self.idle_since.get_or_insert_with(Instant::now);
        (since.elapsed() >= self.grace).then_some(End::Retired)
    }

    fn hello(&mut self, hello: Hello) -> Step {
        let kicked: [ListenerId; 0] = [];
        self.room.take_roster(hello.roster, &kicked);
        self.event(hello.event)
    }

    fn event(&mut self, text: String) -> Step {
        match self.room.take_event(text) {
            Some(RoomState::Ended) => Step::Stop(End::Ended),
            Some(_) => {
                // A room not producing has no batch to carry its event.
                if self.paused {
                    self.program.announce();
                }
                Step::Go
            }
            None => Step::Broken("a room event that does not parse".into()),
        }
    }

    fn message(&mut self, m: Message) -> Step {
        match m {
            Message::Binary(b) => self.feed(&b),
            Message::Text(t) => match serde_json::from_str::<Down>(&t) {
                Ok(Down::Event { event }) => self.event(event),
                Ok(Down::Roster { roster, kicked }) => {
                    self.room.take_roster(roster, &kicked);
                    Step::Go
                }
                Ok(Down::Hello { .. }) | Err(_) => Step::Broken("unexpected message".into()),
            },
            Message::Close(_) => {
                // The upstream says goodbye: the room ended (it said so in its last event) or
                // the node is going away (then connect again).
                if self.room.state().0 == RoomState::Ended {
                    Step::Stop(End::Ended)
                } else {
                    Step::Broken("closed by the upstream".into())
                }
            }
            _ => Step::Go,
        }
    }

    /// Feeds the program frames of one binary message; frames this node has are skipped (a
    /// resume overlaps what came before the break).
    fn feed(&mut self, msg: &Bytes) -> Step {
        let records = match tribune_media::wire::parse_message(msg) {
            Ok(r) => r,
            Err(e) => return Step::Broken(format!("bad audio message: {e}")),
        };
        for r in records {
            let head = self.room.head().0;
            if r.seq < head {
                continue;
            }
            if r.seq > head && self.last_frame.is_some() {
                self.metrics.pull_gap_frames.add(r.seq - head);
            }
            self.program
                .push(r.seq, r.capture_us, &msg.slice_ref(r.payload), false);
            self.metrics.pull_frames.inc();
        }
        self.last_frame = Some(Instant::now());
        self.paused = false;
        Step::Go
    }
}
