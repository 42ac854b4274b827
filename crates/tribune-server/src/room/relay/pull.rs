//! The task of a pulled room: reads its upstream's relay connection into the room's program,
//! connects again after any break, and lets the room go when nobody here listens.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tribune_core::{ReactionKind, RoomState, Seq};
use tribune_media::cmaf::SegmentStart;

use super::upstream::{Hello, Pull, PullError, Socket, Source, Upstream};
use super::{Down, Up};
use crate::metrics::Metrics;
use crate::room::batching::Batching;
use crate::room::program::Program;
use crate::room::{Ingress, LiveRoom};

/// A relay connection that brings nothing (not even a pong: one is asked every second) for this
/// long is broken.
const STALL: Duration = Duration::from_secs(3);
/// Without a frame for this long (the upstream went quiet or away), every phase group gets what
/// it was not sent yet. Above the longest batch interval, so a normal batch never triggers it.
const QUIET: Duration = Duration::from_millis(500);
/// First wait before connecting again after a break; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long a pulled room waits for an origin to run it again (its origin died: the lease runs
/// out, then another origin takes it over) before it ends here.
const ORPHANED_MAX: Duration = Duration::from_secs(30);
/// How long the last audio may take to come once the upstream said the room ended.
const LAST_AUDIO: Duration = Duration::from_secs(2);

/// How a pull ended.
enum End {
    /// The room ended upstream (or is gone there).
    Ended,
    /// Nobody listened here for the grace period.
    Retired,
}

/// Runs a pulled room (its hello already applied) until it ends upstream or nobody here
/// listens to it.
pub(in crate::room) async fn run(
    room: Arc<LiveRoom>,
    mut rx: mpsc::Receiver<Ingress>,
    metrics: Arc<Metrics>,
    batching: Batching,
    pull: Pull,
    grace: Duration,
) {
    let Pull {
        upstream,
        source,
        socket,
        ..
    } = pull;
    metrics.rooms_pulled.inc();
    let mut task = PullTask {
        program: Program::new(room.clone(), metrics.clone(), batching),
        room,
        metrics: metrics.clone(),
        upstream,
        source,
        broken_since: None,
        last_frame: None,
        flushed: true,
        idle_since: None,
        grace,
        ended: None,
    };
    match task.run(socket, &mut rx).await {
        End::Ended => {
            // The last audio out first, then the end: listeners get both.
            task.program.finish();
            task.room.end_relayed(task.ended.take());
            tracing::info!(room = %task.room.id, "pulled room ended upstream");
        }
        End::Retired => {
            task.program.flush();
            task.room.retire();
            tracing::info!(room = %task.room.id, "pulled room let go: nobody listens here");
        }
    }
    metrics.rooms_pulled.dec();
}

struct PullTask {
    room: Arc<LiveRoom>,
    metrics: Arc<Metrics>,
    upstream: Upstream,
    /// Where the node to connect to again is asked for (a room's origin can move).
    source: Option<Arc<Source>>,
    /// Since when the pull is broken (none while connected).
    broken_since: Option<Instant>,
    program: Program,
    /// When the last frame came.
    last_frame: Option<Instant>,
    /// Whether every group has had what came (no frame since the last flush).
    flushed: bool,
    /// Since when nobody listens here.
    idle_since: Option<Instant>,
    grace: Duration,
    /// The upstream's last event once it said the room ended (its last audio may follow).
    ended: Option<(String, Instant)>,
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
        let mut last_rx = Instant::now();
        loop {
            let quiet_at = self.last_frame.map_or_else(Instant::now, |t| t + QUIET);
            let deadline = match &self.ended {
                Some((_, at)) => (last_rx + STALL).min(*at + LAST_AUDIO),
                None => last_rx + STALL,
            };
            let step = match socket.as_mut() {
                Some(ws) => tokio::select! {
                    msg = ws.next() => match msg {
                        Some(Ok(m)) => {
                            last_rx = Instant::now();
                            let step = self.message(m);
                            if matches!(step, Step::Go) {
                                // A connection that works again: the next break waits little.
                                retry = RETRY_MIN;
                            }
                            step
                        }
                        Some(Err(e)) => Step::Broken(e.to_string()),
                        None => Step::Broken("closed".into()),
                    },
                    _ = tokio::time::sleep_until(deadline) => match self.ended {
                        Some(_) => Step::Stop(End::Ended),
                        None => Step::Broken("stalled".into()),
                    },
                    _ = second.tick() => match self.second() {
                        Some(end) => Step::Stop(end),
                        None => report(ws, self.room.audience_below(), self.room.relay.take_up()).await,
                    },
                    _ = tokio::time::sleep_until(quiet_at), if !self.flushed => self.flush(),
                    m = rx.recv() => command(m),
                },
                None => tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => {
                        let from = self.room.head();
                        match self.reopen(from).await {
                            Ok(pull) => {
                                self.broken_since = None;
                                self.metrics.pull_reconnects.inc();
                                socket = Some(pull.socket);
                                last_rx = Instant::now();
                                self.hello(pull.hello)
                            }
                            Err(PullError::NotFound | PullError::Ended) => Step::Stop(End::Ended),
                            Err(e) => {
                                tracing::debug!(room = %self.room.id, "pull not made again: {e}");
                                Step::Broken(e.to_string())
                            }
                        }
                    }
                    _ = second.tick() => match self.second() {
                        Some(end) => Step::Stop(end),
                        None => Step::Go,
                    },
                    _ = tokio::time::sleep_until(quiet_at), if !self.flushed => self.flush(),
                    m = rx.recv() => command(m),
                },
            };
            match step {
                Step::Go => {}
                Step::Stop(end) => return end,
                Step::Broken(why) => {
                    if self.ended.is_some() {
                        // The upstream said the room ended, then closed: that is the end.
                        return End::Ended;
                    }
                    if socket.take().is_some() {
                        tracing::warn!(room = %self.room.id, "pull broken ({why}); connecting again");
                        self.broken_since = Some(Instant::now());
                    }
                    retry_at = Instant::now() + retry;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Opens the pull again from `from`: at the node the source names now (a room's origin
    /// that died is replaced by the one that took the room over), else the same node. While
    /// no origin holds the room (between the old one's lease and the new one's claim) the
    /// pull waits; the room ending is said on the relay itself.
    async fn reopen(&mut self, from: Seq) -> Result<Pull, PullError> {
        let Some(source) = &self.source else {
            return self.upstream.open(&self.room.id, Some(from)).await;
        };
        // Between its origin's death and another origin's takeover, nobody runs the room (the
        // registry names nobody, or a node that does not run it yet): that is a wait, up to a
        // bound, not the room's end.
        let waiting = self
            .broken_since
            .is_some_and(|t| t.elapsed() < ORPHANED_MAX);
        let orphaned = |e: PullError| match e {
            PullError::NotFound if waiting => {
                PullError::Unavailable("no origin runs the room now".into())
            }
            e => e,
        };
        self.upstream = source.resolve(&self.room.id).await.map_err(orphaned)?;
        self.upstream
            .open(&self.room.id, Some(from))
            .await
            .map_err(orphaned)
    }

    /// Every group gets what came (the upstream went quiet or away).
    fn flush(&mut self) -> Step {
        self.program.flush();
        self.flushed = true;
        Step::Go
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

    /// A hello after a reconnect: the room as it stands now.
    fn hello(&mut self, hello: Hello) -> Step {
        self.room
            .hls
            .upstream_discontinuity_sequence(hello.discontinuity_sequence);
        self.room.take_roster(hello.roster, &[]);
        self.event(hello.event)
    }

    fn event(&mut self, text: String) -> Step {
        match self.room.take_event(text) {
            Some((RoomState::Ended, text)) => {
                // Its last audio may still come; the end goes out after it.
                self.ended = Some((text, Instant::now()));
                Step::Go
            }
            Some(_) => {
                // A room not producing has no batch to carry its event.
                if self.flushed {
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
                Ok(Down::Segments { starts }) => {
                    let starts: Vec<SegmentStart> = starts.into_iter().map(Into::into).collect();
                    self.room.hls.declare(&starts);
                    Step::Go
                }
                Ok(Down::Hello { .. }) | Err(_) => Step::Broken("unexpected message".into()),
            },
            Message::Close(_) => Step::Broken("closed by the upstream".into()),
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
        self.flushed = false;
        Step::Go
    }
}

/// A command on the room's queue: only the end matters to a pulled room (it has no mixer).
fn command(m: Option<Ingress>) -> Step {
    match m {
        None | Some(Ingress::End) => Step::Stop(End::Ended),
        Some(_) => Step::Go,
    }
}

/// Tells the upstream this node's audience and its listeners' reactions, and asks for a pong
/// (so a silent upstream shows).
async fn report(ws: &mut Socket, listeners: u64, reactions: Vec<(u64, ReactionKind)>) -> Step {
    let text = serde_json::to_string(&Up::Audience { listeners }).unwrap_or_default();
    let reactions = (!reactions.is_empty())
        .then(|| serde_json::to_string(&Up::Reactions { items: reactions }).unwrap_or_default());
    let sent = tokio::time::timeout(STALL, async {
        ws.send(Message::Text(text.into())).await?;
        if let Some(r) = reactions {
            ws.send(Message::Text(r.into())).await?;
        }
        ws.send(Message::Ping(Bytes::new())).await
    });
    match sent.await {
        Ok(Ok(())) => Step::Go,
        _ => Step::Broken("could not report the audience".into()),
    }
}
