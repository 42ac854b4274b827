//! The listener WebSocket: `GET /api/rooms/{id}/listen?ticket=…`.
//!
//! A connection holds only a cursor. When the room publishes a batch, a listener at the batch's
//! start sends the shared batch bytes as they are (one write); a listener elsewhere (a resume, a
//! lagging socket) is served from the ring, skipping to the live edge if it fell out of it.
//!
//! A ticket is one listener: a second connection with the same ticket replaces the first (which
//! closes with 4002), so capacity, join rate and proof of work cannot be skipped by opening many
//! sockets with one admission. A connection made right after its join takes the seat the join
//! held for it. A listener may send a few messages a second (reactions); past that its socket is
//! closed (1008).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::response::Response;
use axum::Extension;
use futures_util::SinkExt;
use serde::Deserialize;
use tokio::sync::watch;
use tribune_core::{unix_micros, ListenerId, Reactor, RoomState, Seq, TokenKind};

use crate::close;
use crate::error::ApiError;
use crate::http::reactions::ListenerMessage;
use crate::metrics::Metrics;
use crate::net::direct::{ConnectionSocket, SharedSocket};
use crate::net::limits::MessageRate;
use crate::node::state::AppState;
use crate::room::{Batch, LiveRoom, Snapshot};

/// Why a connection to a pulled room this node let go closes: it resumes, and finds the room
/// pulled again.
pub(crate) const RETIRED: CloseReason = (close::RESUME, "this node let the room go; resume");

/// Most frames sent in one catch-up message, so one write stays small.
const MAX_CATCH_UP_FRAMES: u64 = 250;

/// Query of the listen endpoint.
#[derive(Deserialize)]
pub struct ListenQuery {
    ticket: Option<String>,
    /// Resume from this sequence number (the client's next wanted frame).
    from: Option<u64>,
}

/// Verifies the ticket, then upgrades to the listener WebSocket.
pub async fn listen(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListenQuery>,
    socket: Option<Extension<ConnectionSocket>>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    let local = match app.room(&id) {
        Ok(room) => Some(room),
        Err(e) if !app.pulls_rooms() => return Err(e),
        Err(_) => None,
    };
    let room_id = tribune_core::RoomId::parse(&id).ok_or(ApiError::RoomNotFound)?;
    let ticket = q
        .ticket
        .as_deref()
        .ok_or(ApiError::Unauthenticated("ticket"))?;
    let claims = app.keys().verify_for(
        ticket,
        TokenKind::Listen,
        &room_id,
        unix_micros() / 1_000_000,
    )?;
    // Checked first: on an edge only a listener of the room makes it pull the room.
    let room = match local {
        Some(room) => room,
        None => app.room_or_pull(&id).await?,
    };
    let listener = ListenerId(claims.sub);
    room.admit_listener(listener)?;
    // Kicks from here on close this connection, even one made before its task starts (the
    // room's snapshot may already carry it).
    let since = room.eject_rev();
    // A ticket made within the connect hold was just admitted: its join holds a seat for it.
    let issued_at = claims.exp.saturating_sub(app.config().ticket_ttl.as_secs());
    let hold = u64::from(app.admission().config().gate.connect_hold_s);
    let fresh = unix_micros() / 1_000_000 <= issued_at.saturating_add(hold);
    let cfg = app.config();
    let ws = ws
        .read_buffer_size(cfg.ws_read_buffer_bytes)
        .write_buffer_size(0)
        .max_message_size(cfg.max_ws_message_bytes)
        .max_frame_size(cfg.max_ws_message_bytes);
    let wire = socket.map(|Extension(ConnectionSocket(s))| s);
    let from = q.from.map(Seq);
    let accepted = Accepted {
        listener,
        fresh,
        since,
    };
    Ok(ws.on_upgrade(move |socket| run(socket, app, room, from, accepted, wire)))
}

/// What the handshake established about a listener connection.
struct Accepted {
    listener: ListenerId,
    /// Whether its ticket was just admitted (it holds a seat to release).
    fresh: bool,
    /// The ejection revision when it was accepted.
    since: u64,
}

async fn run(
    mut socket: WebSocket,
    app: AppState,
    room: Arc<LiveRoom>,
    from: Option<Seq>,
    accepted: Accepted,
    wire: Option<Arc<SharedSocket>>,
) {
    let Accepted {
        listener,
        fresh,
        since,
    } = accepted;
    let _conn = app.connections().track();
    let metrics = app.metrics().clone();
    let presence = room.listener_guard(listener, metrics.clone());
    // Counted among the listeners now: the seat held since its admission is released. An old
    // ticket (a resume) holds no seat, and a connection replacing this ticket's previous one
    // already counts; releasing a seat for either would hand out one held for someone else.
    if fresh && !presence.replacing {
        app.admission().connected();
    }
    let limits = &app.config().abuse;
    let mut rate = MessageRate::new(
        limits.listener_messages_per_s,
        limits.listener_message_burst,
    );
    let member = room.subscribe_batches();
    let mut batches = member.batches;
    if let Some(w) = &wire {
        member.joining.push(w);
    }
    let mut snapshots = room.subscribe_snapshots();
    let mut control = room.subscribe_control();
    control.borrow_and_update();
    let mut shutdown = app.shutdown();
    let send_timeout = app.config().send_timeout;
    // Start with the latest batch (a short prefill for the client's jitter buffer), or where a
    // resuming client left off.
    let latest = batches.borrow_and_update().clone();
    let mut cursor = from.unwrap_or(latest.start);
    let hello = snapshots.borrow_and_update().clone();
    let mut seen = Seen {
        event_rev: hello.event.rev,
        // Moderation closes this connection (4001) by bumping the ejection revision; checked
        // below against the revision it was accepted at.
        eject_rev: since,
    };
    let mut out = Outbox {
        socket: &mut socket,
        send_timeout,
    };
    // Whether the phase group's writer holds the socket (then it keeps the cursor and sends
    // the room's events).
    let mut direct = false;
    if out.send(Message::Text(hello.text)).await.is_err() {
        return;
    }
    if let Err(reason) = out.catch_up(&room, &metrics, &mut cursor, latest.end).await {
        out.close(reason).await;
        return;
    }
    if hello.state == RoomState::Ended {
        out.close((close::NORMAL, "room ended")).await;
        return;
    }
    if let Some(reason) = room.eject_check(listener, seen.eject_rev) {
        out.close((close::REMOVED, reason)).await;
        return;
    }
    // Counted in before this look: a pulled room let go after it tells this connection.
    if room.is_retired() {
        out.close(RETIRED).await;
        return;
    }
    let handed_back = || async {
        match &wire {
            Some(w) => w.handed_back().await,
            None => std::future::pending().await,
        }
    };
    let mut step = Ok(());
    loop {
        if let (Ok(()), Some(w)) = (&step, &wire) {
            step = out
                .go_direct(
                    w,
                    &mut direct,
                    &room,
                    &metrics,
                    &mut cursor,
                    &mut seen,
                    &mut snapshots,
                    &batches,
                )
                .await;
        }
        if let Err(reason) = step {
            take_back(wire.as_deref(), &mut direct, &mut cursor, &mut seen);
            out.close(reason).await;
            return;
        }
        step = tokio::select! {
            biased;
            _ = shutdown.changed() => Err((close::RESTART, "server restarting; reconnect")),
            _ = presence.replaced.notified() => Err((
                close::REPLACED,
                "this ticket opened another connection; one ticket is one listener",
            )),
            _ = handed_back(), if direct => {
                take_back(wire.as_deref(), &mut direct, &mut cursor, &mut seen);
                Ok(())
            }
            changed = batches.changed(), if !direct => match changed {
                Ok(()) => {
                    let batch = batches.borrow_and_update().clone();
                    out.deliver(&batch, &room, &metrics, &mut cursor).await
                }
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            // The room ending or someone removed: this task acts, direct or not.
            changed = control.changed() => match changed {
                Ok(()) if control.borrow_and_update().retired => {
                    take_back(wire.as_deref(), &mut direct, &mut cursor, &mut seen);
                    Err(RETIRED)
                }
                Ok(()) => {
                    take_back(wire.as_deref(), &mut direct, &mut cursor, &mut seen);
                    out.room_event(&mut snapshots, &mut seen, &room, &metrics, &mut cursor, &batches, listener).await
                }
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            // Any other event: the group writer sends it while it holds the socket.
            changed = snapshots.changed(), if !direct => match changed {
                Ok(()) => {
                    out.room_event(&mut snapshots, &mut seen, &room, &metrics, &mut cursor, &batches, listener).await
                }
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            msg = out.socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Binary(_) | Message::Text(_))) if !rate.allow() => {
                    metrics.message_rate_closes.inc();
                    Err((close::POLICY, "too many messages; listeners may send a few a second"))
                }
                Some(Ok(Message::Binary(_))) => {
                    metrics.bad_input_closes.inc();
                    Err((close::UNSUPPORTED, "listeners do not send binary messages"))
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(ListenerMessage::Reaction { kind }) = serde_json::from_str(&t) {
                        // Over the limit, a reaction is dropped (counted in the metrics).
                        let _ = room.react(Reactor::Listener(listener), kind, &metrics);
                        Ok(())
                    } else if serde_json::from_str::<serde_json::Value>(&t).is_ok() {
                        Ok(())
                    } else {
                        metrics.bad_input_closes.inc();
                        Err((close::INVALID, "malformed JSON message"))
                    }
                }
                Some(Ok(_)) => Ok(()),
            },
        };
    }
}

/// What of the room's events this connection has had.
struct Seen {
    /// The last event sent (by this task or the group writer).
    event_rev: u64,
    /// The ejection revision this connection last checked itself against.
    eject_rev: u64,
}

/// Takes the socket back from the group writer (if it held it), with the cursor and last
/// event it left.
fn take_back(wire: Option<&SharedSocket>, direct: &mut bool, cursor: &mut Seq, seen: &mut Seen) {
    if let Some(w) = wire {
        let (at, event_rev) = w.take_back();
        if *direct {
            *cursor = at;
            seen.event_rev = event_rev;
        }
    }
    *direct = false;
}

/// A close code and its reason.
pub(crate) type CloseReason = (u16, &'static str);

/// A connection's sending side: every write bounded by the send timeout.
pub(crate) struct Outbox<'a> {
    pub(crate) socket: &'a mut WebSocket,
    pub(crate) send_timeout: std::time::Duration,
}

impl Outbox<'_> {
    /// Sends one message within the send timeout.
    pub(crate) async fn send(&mut self, msg: Message) -> Result<(), CloseReason> {
        match tokio::time::timeout(self.send_timeout, self.socket.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err((close::NORMAL, "connection lost")),
            Err(_) => Err((close::RESUME, "too slow; resume")),
        }
    }

    /// Hands the socket to the phase group's writer when the listener is at the group's
    /// published edge: first whatever the writer left unsent, then a catch-up from the ring.
    /// Leaves it with the task (serving batches itself) when the edge keeps moving.
    #[allow(clippy::too_many_arguments)]
    async fn go_direct(
        &mut self,
        wire: &SharedSocket,
        direct: &mut bool,
        room: &LiveRoom,
        metrics: &Metrics,
        cursor: &mut Seq,
        seen: &mut Seen,
        snapshots: &mut watch::Receiver<Snapshot>,
        batches: &watch::Receiver<Batch>,
    ) -> Result<(), CloseReason> {
        if *direct && wire.is_direct() {
            return Ok(());
        }
        take_back(Some(wire), direct, cursor, seen);
        match tokio::time::timeout(self.send_timeout, self.socket.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err((close::NORMAL, "connection lost")),
            Err(_) => return Err((close::RESUME, "too slow; resume")),
        }
        for _ in 0..3 {
            // The writer sends only events newer than the socket's: whatever it skipped while
            // the task held the socket goes out here.
            self.latest_event(snapshots, seen).await?;
            let edge = batches.borrow().end;
            self.catch_up(room, metrics, cursor, edge).await?;
            if wire.go_direct(*cursor, edge, seen.event_rev) {
                *direct = true;
                // An event published since the look above may have passed the writer while
                // the socket was not yet direct (a room not producing has no next batch to
                // carry it): if so, take the socket back and send it.
                if snapshots.borrow().event.rev > seen.event_rev {
                    take_back(Some(wire), direct, cursor, seen);
                    continue;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Sends the room's latest event unless this connection has had it; returns it.
    async fn latest_event(
        &mut self,
        snapshots: &mut watch::Receiver<Snapshot>,
        seen: &mut Seen,
    ) -> Result<Snapshot, CloseReason> {
        let snap = snapshots.borrow_and_update().clone();
        if snap.event.rev > seen.event_rev {
            self.send(Message::Text(snap.text.clone())).await?;
            seen.event_rev = snap.event.rev;
        }
        Ok(snap)
    }

    /// Sends the room's latest event unless this connection has had it, then acts on it: the
    /// room ended (the last audio, then close) or someone was removed (is it this listener?).
    #[allow(clippy::too_many_arguments)]
    async fn room_event(
        &mut self,
        snapshots: &mut watch::Receiver<Snapshot>,
        seen: &mut Seen,
        room: &LiveRoom,
        metrics: &Metrics,
        cursor: &mut Seq,
        batches: &watch::Receiver<Batch>,
        listener: ListenerId,
    ) -> Result<(), CloseReason> {
        let snap = self.latest_event(snapshots, seen).await?;
        if snap.state == RoomState::Ended {
            // Send whatever the room produced last, then say goodbye.
            let batch = batches.borrow().clone();
            let _ = self.deliver(&batch, room, metrics, cursor).await;
            return Err((close::NORMAL, "room ended"));
        }
        if snap.eject_rev != seen.eject_rev {
            let since = std::mem::replace(&mut seen.eject_rev, snap.eject_rev);
            if let Some(reason) = room.eject_check(listener, since) {
                return Err((close::REMOVED, reason));
            }
        }
        Ok(())
    }

    /// Sends a published batch: as is when the cursor is at its start, otherwise from the ring.
    async fn deliver(
        &mut self,
        batch: &Batch,
        room: &LiveRoom,
        metrics: &Metrics,
        cursor: &mut Seq,
    ) -> Result<(), CloseReason> {
        if batch.start == *cursor && batch.end > batch.start {
            self.send(Message::Binary(batch.bytes.clone())).await?;
            metrics.batches_sent.inc();
            metrics.frames_sent.add(batch.end.0 - batch.start.0);
            *cursor = batch.end;
            return Ok(());
        }
        self.catch_up(room, metrics, cursor, batch.end).await
    }

    /// Sends everything from `cursor` up to `edge` (the end of the latest published batch) out
    /// of the ring. Stopping at the published edge, not the ring's head, leaves the cursor where
    /// the next shared batch starts, so the listener is back on the zero-copy path.
    pub(crate) async fn catch_up(
        &mut self,
        room: &LiveRoom,
        metrics: &Metrics,
        cursor: &mut Seq,
        edge: Seq,
    ) -> Result<(), CloseReason> {
        if *cursor > edge {
            // A resume position from the future: wait at the live edge.
            *cursor = edge;
        }
        while *cursor < edge {
            let (read, msg) = {
                let ring = room.ring();
                let read = ring.read(*cursor, (edge.0 - cursor.0).min(MAX_CATCH_UP_FRAMES));
                let msg = ring.message(read.from, read.to);
                (read, msg)
            };
            if read.skipped > 0 {
                metrics.skips.inc();
                metrics.skipped_frames.add(edge.0 - cursor.0);
                *cursor = edge;
                return Ok(());
            }
            let Some(msg) = msg else {
                *cursor = edge;
                return Ok(());
            };
            *cursor = read.to;
            self.send(Message::Binary(msg)).await?;
            metrics.batches_sent.inc();
            metrics.frames_sent.add(read.len());
        }
        Ok(())
    }

    /// Says goodbye (within a second).
    pub(crate) async fn close(&mut self, (code, reason): CloseReason) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.socket.send(close::message(code, reason)),
        )
        .await;
    }
}
