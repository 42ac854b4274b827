//! The relay WebSocket: `GET /api/rooms/{id}/relay?from=N`, how a node of the cluster pulls a
//! room's program from this one (see `room::relay` for the pulling side and the messages).
//!
//! Only nodes sharing the signing secret may pull (a relay token in `Authorization`). The
//! connection is served like a listener that is never handed to a phase-group writer: from the
//! ring at `from` (or the live edge), then every published batch, every new room event and
//! every change of blocks and removals. It is not a listener: it takes no admission and is not
//! counted as one; the audience it reports once a second is added to the room's.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tribune_core::{unix_micros, ListenerId, Reactor, RoomState, Seq, TokenKind};

use crate::close;
use crate::error::ApiError;
use crate::http::extract::bearer;
use crate::metrics::Metrics;
use crate::net::limits::MessageRate;
use crate::node::state::AppState;
use crate::room::relay::{Down, Start, Up, REACTIONS_UP_MAX};
use crate::room::LiveRoom;
use crate::ws::listen::{CloseReason, Outbox, RETIRED};

/// Messages a second a pulling node may send (its audience once a second, and pings).
const UP_MESSAGES_PER_S: u32 = 5;
const UP_MESSAGE_BURST: u32 = 20;
/// Largest message a pulling node may send (a second's reactions, at most
/// `REACTIONS_UP_MAX` of about 30 bytes each).
const MAX_UP_MESSAGE: usize = 48 * 1024;
/// Largest audience one pulling node may claim (more is a lie, capped).
const MAX_AUDIENCE: u64 = 1 << 32;
/// A pulling node reports once a second; silent for this long, it is gone (its count goes).
const SILENT: std::time::Duration = std::time::Duration::from_secs(5);

/// Query of the relay endpoint.
#[derive(Deserialize)]
pub struct RelayQuery {
    /// The first program frame wanted (the pulling node's ring head after a break).
    from: Option<u64>,
}

/// Checks the relay token, then upgrades.
pub async fn relay(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RelayQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    let room_id = tribune_core::RoomId::parse(&id).ok_or(ApiError::RoomNotFound)?;
    let token = bearer(&headers).ok_or(ApiError::Unauthenticated("relay token"))?;
    app.keys()
        .verify_for(token, TokenKind::Relay, &room_id, unix_micros() / 1_000_000)?;
    // A node in the middle of a tree pulls the room itself first.
    let room = app.room_or_pull(&id).await?;
    if room.state().0 == RoomState::Ended {
        return Err(ApiError::RoomEnded);
    }
    let ws = ws
        .max_message_size(MAX_UP_MESSAGE)
        .max_frame_size(MAX_UP_MESSAGE);
    let from = q.from.map(Seq);
    Ok(ws.on_upgrade(move |socket| run(socket, app, room, from)))
}

async fn run(mut socket: WebSocket, app: AppState, room: Arc<LiveRoom>, from: Option<Seq>) {
    let _conn = app.connections().track();
    let metrics = app.metrics().clone();
    let downstream = room.downstream(metrics.clone());
    let mut batches = room.subscribe_batches().batches;
    let mut snapshots = room.subscribe_snapshots();
    let mut control = room.subscribe_control();
    let mut shutdown = app.shutdown();
    let mut rate = MessageRate::new(UP_MESSAGES_PER_S, UP_MESSAGE_BURST);
    let latest = batches.borrow_and_update().clone();
    let snap = snapshots.borrow_and_update().clone();
    let mut eject_rev = control.borrow_and_update().eject_rev;
    let mut roster_rev = room.roster.lock().rev();
    let head = room.head();
    let tail = room.ring().tail();
    let listing = room.hls().listing_start();
    // A resume goes on where it broke; a new pull, or one whose break outlasted the ring,
    // starts where the LL-HLS listing does, so the puller lists the same segments.
    let cursor = match from {
        Some(f) if f >= tail => f.min(head),
        _ => listing
            .map(|(first, _)| Seq(first))
            .filter(|s| (tail..=head).contains(s))
            .unwrap_or(head),
    };
    let hello = Down::Hello {
        info: room.info(),
        head: cursor.0,
        event: snap.text.as_str().to_owned(),
        roster: room.roster.lock().to_record(),
        discontinuity_sequence: listing.map_or(0, |(_, d)| d),
    };
    let mut out = Outbox {
        socket: &mut socket,
        send_timeout: app.config().send_timeout,
    };
    if send_json(&mut out, &hello).await.is_err() {
        return;
    }
    // Counted in before this look: a pulled room let go after it tells this connection.
    if room.is_retired() {
        out.close(RETIRED).await;
        return;
    }
    let mut cursor = cursor;
    let mut starts_from = cursor.0;
    let mut heard_at = tokio::time::Instant::now();
    let mut step = forward(
        &mut out,
        &room,
        &metrics,
        &mut cursor,
        &mut starts_from,
        latest.end,
    )
    .await;
    loop {
        if let Err(reason) = step {
            out.close(reason).await;
            return;
        }
        step = tokio::select! {
            biased;
            _ = shutdown.changed() => Err((close::RESTART, "server restarting; reconnect")),
            _ = tokio::time::sleep_until(heard_at + SILENT) => {
                Err((close::RESUME, "no audience report; reconnect"))
            }
            changed = batches.changed() => match changed {
                Ok(()) => {
                    let end = batches.borrow_and_update().end;
                    forward(&mut out, &room, &metrics, &mut cursor, &mut starts_from, end).await
                }
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            changed = control.changed() => match changed {
                Ok(()) if control.borrow_and_update().retired => Err(RETIRED),
                Ok(()) => roster(&mut out, &room, &mut eject_rev, &mut roster_rev).await,
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            changed = snapshots.changed() => match changed {
                Ok(()) => {
                    let snap = snapshots.borrow_and_update().clone();
                    // Changes that remove nobody (an unblock, who is on stage) go too.
                    let mut sent = roster(&mut out, &room, &mut eject_rev, &mut roster_rev).await;
                    if sent.is_ok() {
                        sent = send_json(&mut out, &Down::Event { event: snap.text.as_str().to_owned() }).await;
                    }
                    match (sent, snap.state) {
                        (Ok(()), RoomState::Ended) => {
                            // The last audio, then goodbye.
                            let end = batches.borrow().end;
                            let _ = forward(&mut out, &room, &metrics, &mut cursor, &mut starts_from, end).await;
                            Err((close::NORMAL, "room ended"))
                        }
                        (sent, _) => sent,
                    }
                }
                Err(_) => Err((close::NORMAL, "room closed")),
            },
            msg = out.socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Binary(_) | Message::Text(_))) if !rate.allow() => {
                    metrics.message_rate_closes.inc();
                    Err((close::POLICY, "too many messages"))
                }
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<Up>(&t) {
                    Ok(Up::Audience { listeners }) => {
                        heard_at = tokio::time::Instant::now();
                        downstream.report(listeners.min(MAX_AUDIENCE));
                        Ok(())
                    }
                    Ok(Up::Reactions { items }) => {
                        // Each counted as its listener's own, within this room's limits.
                        for (l, kind) in items.into_iter().take(REACTIONS_UP_MAX) {
                            let _ = room.react(Reactor::Listener(ListenerId(l)), kind, &metrics);
                        }
                        Ok(())
                    }
                    Err(_) => {
                        metrics.bad_input_closes.inc();
                        Err((close::INVALID, "not a relay message"))
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    metrics.bad_input_closes.inc();
                    Err((close::UNSUPPORTED, "relays do not send binary messages"))
                }
                Some(Ok(_)) => Ok(()),
            },
        };
    }
}

/// Sends the program from `cursor` up to `end`, preceded by where its segments begin (the
/// starts from `starts_from` on that `end` covers).
async fn forward(
    out: &mut Outbox<'_>,
    room: &LiveRoom,
    metrics: &Metrics,
    cursor: &mut Seq,
    starts_from: &mut u64,
    end: Seq,
) -> Result<(), CloseReason> {
    let starts: Vec<Start> = room
        .hls()
        .starts_from(*starts_from)
        .into_iter()
        .filter(|s| s.first_seq < end.0)
        .map(Into::into)
        .collect();
    if let Some(last) = starts.last() {
        *starts_from = last.first_seq + 1;
        send_json(out, &Down::Segments { starts }).await?;
    }
    out.catch_up(room, metrics, cursor, end).await
}

/// Sends the roster if it moved since it was last sent, with who was removed since.
async fn roster(
    out: &mut Outbox<'_>,
    room: &LiveRoom,
    eject_rev: &mut u64,
    roster_rev: &mut u64,
) -> Result<(), CloseReason> {
    let message = {
        let roster = room.roster.lock();
        if roster.rev() == *roster_rev && roster.eject_rev() == *eject_rev {
            return Ok(());
        }
        let since = std::mem::replace(eject_rev, roster.eject_rev());
        *roster_rev = roster.rev();
        Down::Roster {
            roster: roster.to_record(),
            kicked: roster.kicked_since(since),
        }
    };
    send_json(out, &message).await
}

async fn send_json(out: &mut Outbox<'_>, message: &Down) -> Result<(), CloseReason> {
    let text = serde_json::to_string(message).unwrap_or_default();
    out.send(Message::Text(text.into())).await
}
