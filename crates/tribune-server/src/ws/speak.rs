//! The speaker WebSocket: `GET /api/rooms/{id}/speak` with a stage token.
//!
//! The client sends binary messages in the same wire format listeners receive (records of
//! sequence number, capture time and one 20 ms Opus packet), and JSON control messages
//! (`{"type":"mute","muted":true}`). It receives its mix-minus (the stage without its own
//! voice) in the same records, one frame per message as soon as it is mixed. Anything malformed closes this connection with a reason;
//! the room and everyone else carry on. A seat's frames beyond real time are dropped from its
//! own share; a socket sending messages far faster than audio needs is closed (1008).

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tribune_core::{unix_micros, Claims, ParticipantId, Role, RoomState};
use tribune_media::wire;

use crate::close;
use crate::error::ApiError;
use crate::http::extract::bearer;
use crate::metrics::Metrics;
use crate::net::limits::MessageRate;
use crate::node::state::AppState;
use crate::room::{LiveRoom, Seat};

/// Read buffer of a speaker WebSocket: speakers stream audio, and there are few of them.
const SPEAK_READ_BUFFER: usize = 4 * 1024;
/// Longest the speak loop waits for the socket to take one frame of return audio: past it the
/// frame is skipped (the speaker's own audio and controls are read in the meantime).
const STAGE_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);
/// Return frames skipped in a row (2 s of audio) after which a client that does not read them
/// is closed.
const MAX_STAGE_SKIPS: u32 = 20;

/// Query of the speak endpoint (for clients that cannot set headers, such as browsers).
#[derive(Deserialize)]
pub struct SpeakQuery {
    token: Option<String>,
}

/// Verifies the stage token, then upgrades to the speaker WebSocket.
pub async fn speak(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SpeakQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    let room = app.room(&id)?;
    let token = bearer(&headers).or(q.token.as_deref());
    let mut claims = app.verify_stage(token, &room.id, Role::can_speak)?;
    // Tokens are stateless: the roster says whether this participant is still on stage (not
    // moved to the audience, removed or blocked), and with which role now.
    claims.role = room.admit_speaker(&claims)?;
    let cfg = app.config();
    let ws = ws
        .read_buffer_size(SPEAK_READ_BUFFER)
        .max_message_size(cfg.max_ws_message_bytes)
        .max_frame_size(cfg.max_ws_message_bytes);
    Ok(ws.on_upgrade(move |socket| run(socket, app, room, claims)))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Mute { muted: bool },
}

async fn run(mut socket: WebSocket, app: AppState, room: Arc<LiveRoom>, claims: Claims) {
    let _conn = app.connections().track();
    let metrics = app.metrics().clone();
    let participant = ParticipantId(claims.sub);
    let Some(mut seat) = room
        .take_seat(participant, claims.role, metrics.clone())
        .await
    else {
        let _ = socket
            .send(close::message(close::NORMAL, "room ended"))
            .await;
        return;
    };
    let slot = seat.slot;
    let limits = &app.config().abuse;
    let mut rate = MessageRate::new(limits.speaker_messages_per_s, limits.speaker_message_burst);
    let mut ear = room.stage_ear(Some(participant)).await;
    let hello = json!({
        "type": "speaking", "room": room.id, "slot": slot, "role": claims.role,
        "hears": "mix-minus",
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut shutdown = app.shutdown();
    let mut snapshots = room.subscribe_snapshots();
    let mut skips = 0u32;
    let reason = loop {
        let msg = tokio::select! {
            biased;
            _ = shutdown.changed() => break (close::RESTART, "server restarting; reconnect".to_owned()),
            removal = seat.removed() => break (removal.code, removal.reason),
            changed = snapshots.changed() => {
                if changed.is_err() || snapshots.borrow_and_update().state == RoomState::Ended {
                    break (close::NORMAL, "room ended".to_owned());
                }
                continue;
            }
            tick = ear.next() => {
                let Some((tick, missed)) = tick else {
                    break (close::NORMAL, "room ended".to_owned());
                };
                metrics.stage.frames_skipped.add(missed);
                let heard = tick.heard_by(ear.who());
                // Capture time 0 says the frame holds nobody's speech (nothing to time).
                let capture_us = heard.arrived_us.map_or(0, |_| heard.capture_us);
                let msg = wire::single_frame_message(tick.seq, capture_us, heard.payload);
                // A client slow to read its return audio loses frames, not its own audio: a
                // send that cannot finish soon is dropped (a frame that did reach the socket's
                // buffer still goes out whole with the next write).
                match tokio::time::timeout(STAGE_SEND_TIMEOUT, socket.send(Message::Binary(msg))).await {
                    Ok(Ok(())) => skips = 0,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        skips += 1;
                        metrics.stage.frames_skipped.inc();
                        if skips >= MAX_STAGE_SKIPS {
                            break (close::POLICY, "not reading the stage audio".to_owned());
                        }
                        continue;
                    }
                }
                metrics.stage.frames_sent.inc();
                if let Some(arrived) = heard.arrived_us {
                    metrics.stage.delay.observe_us(unix_micros().saturating_sub(arrived));
                }
                continue;
            }
            msg = socket.recv() => msg,
        };
        if matches!(msg, Some(Ok(Message::Binary(_) | Message::Text(_)))) && !rate.allow() {
            metrics.message_rate_closes.inc();
            break (
                close::POLICY,
                "too many messages: send at most one audio message per 20 ms frame".to_owned(),
            );
        }
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
            Some(Ok(Message::Binary(data))) => {
                if let Err(reason) = ingest(&mut seat, &data, &metrics) {
                    metrics.bad_input_closes.inc();
                    break (close::INVALID, reason);
                }
            }
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<Control>(&text) {
                Ok(Control::Mute { muted }) => {
                    // Through the roster, so a moderator's mute is not lifted from here and
                    // every seat of this participant follows.
                    if let Err(e) = room.set_self_muted(participant, muted) {
                        let msg = json!({"type": "error", "message": e.to_string()});
                        let _ = socket.send(Message::Text(msg.to_string().into())).await;
                    }
                }
                Err(e) => {
                    metrics.bad_input_closes.inc();
                    break (close::INVALID, format!("malformed control message: {e}"));
                }
            },
            Some(Ok(_)) => {}
        }
    };
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        socket.send(close::message(reason.0, &reason.1)),
    )
    .await;
}

/// Checks a whole message before queueing any of it, so a bad record never half-enters the mix.
fn ingest(seat: &mut Seat, data: &bytes::Bytes, metrics: &Metrics) -> Result<(), String> {
    let records = wire::parse_message(data).map_err(|e| format!("bad audio message: {e}"))?;
    for r in records.clone() {
        tribune_media::validate_packet(r.payload)
            .map_err(|e| format!("not a 20 ms Opus packet: {e}"))?;
    }
    for r in records {
        // Dropped frames are counted by the seat (over its rate, or the mixer behind).
        seat.offer(
            r.seq,
            r.capture_us,
            None,
            data.slice_ref(r.payload),
            metrics,
        );
    }
    Ok(())
}
