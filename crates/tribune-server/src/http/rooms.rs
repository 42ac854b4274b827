//! HTTP handlers of the room API (`/api/rooms…`), health and metrics.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;
use tribune_core::{unix_micros, Action, ParticipantId, Role, RoomInfo, RoomState};

use crate::error::ApiError;
use crate::http::extract::{bearer, optional_json};
use crate::http::moderation;
use crate::net::limits::{JoinLimiter, Peer};
use crate::node::state::AppState;
use crate::room::LiveRoom;

fn now_s() -> u64 {
    unix_micros() / 1_000_000
}

/// How far ahead a room may be scheduled (a year).
const MAX_SCHEDULE_AHEAD_S: u64 = 366 * 86_400;

/// The public description of a room.
fn room_json(room: &LiveRoom) -> Value {
    let info = room.info();
    json!({
        "id": info.id,
        "title": info.title,
        "state": info.state,
        "created_at": info.created_at,
        "scheduled_for": info.scheduled_for,
        "started_at": info.started_at,
        "ended_at": info.ended_at,
        "listeners": room.audience(),
        "speakers": room.speaker_count(),
        "seq": room.head().0,
    })
}

/// Body of `POST /api/rooms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    title: String,
    #[serde(default)]
    scheduled_for: Option<u64>,
    /// Whether the program is recorded from the start (default: yes, when the node records).
    #[serde(default = "yes")]
    record: bool,
}

fn yes() -> bool {
    true
}

/// `POST /api/rooms`: creates a room; answers its id and the host's token. Needs an operator
/// key unless the node has open rooms (see `creation`).
pub async fn create_room(
    State(app): State<AppState>,
    Extension(limiter): Extension<Arc<JoinLimiter>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    body: Result<Json<CreateRoom>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    // The credential before the body: an anonymous flood costs a header check each.
    let client = peer.map_or(IpAddr::from([127, 0, 0, 1]), |p| {
        limiter.client_ip(p.ip(), &headers)
    });
    let creator = app
        .creation()
        .identify(bearer(&headers), client)
        .inspect_err(|_| app.metrics().rooms_refused.inc())?;
    let Json(req) = body?;
    let title = tribune_core::room::clean_title(&req.title)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let now = now_s();
    if let Some(at) = req.scheduled_for {
        if at > now + MAX_SCHEDULE_AHEAD_S {
            return Err(ApiError::BadRequest(format!(
                "scheduled_for must be a Unix time (seconds) at most {} days ahead",
                MAX_SCHEDULE_AHEAD_S / 86_400
            )));
        }
    }
    let id = tribune_core::RoomId::random();
    let info = RoomInfo::new(id.clone(), title, now, req.scheduled_for);
    let room = app.create_room(info, req.record, creator)?;
    let host = ParticipantId::random();
    room.change(|r| r.add(host, Role::Host, None, None))?;
    if let Err(e) = room.save().await {
        // Nobody gets its host token: the room must not linger (nor count against a cap).
        app.discard(&room).await;
        return Err(e);
    }
    let host_token = app.stage_token(&room.id, Role::Host, host);
    tracing::info!(room = %id, "room created");
    let mut body = room_json(&room);
    body["host_token"] = json!(host_token);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /api/rooms`: live and scheduled rooms (the lobby).
pub async fn list_rooms(State(app): State<AppState>) -> Json<Value> {
    let rooms: Vec<Value> = app
        .rooms()
        .iter()
        .filter(|r| r.info().state != RoomState::Ended)
        .map(|r| room_json(r))
        .collect();
    Json(json!({ "rooms": rooms }))
}

/// `GET /api/rooms/{id}`. A room that ended a while ago is no longer held in memory; if it was
/// recorded, its recording still describes it (state `ended`, with its replay).
pub async fn get_room(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match app.room_or_pull(&id).await {
        Ok(room) => Ok(Json(room_json(&room))),
        Err(e) => {
            let rec = tribune_core::RoomId::parse(&id).and_then(|r| app.recordings().get(&r));
            let Some(rec) = rec else { return Err(e) };
            let meta = rec.snapshot().meta;
            Ok(Json(json!({
                "id": meta.room,
                "title": meta.title,
                "state": RoomState::Ended,
                "created_at": meta.created_at,
                "ended_at": meta.ended_at,
                "listeners": 0,
                "speakers": 0,
                "replay_url": format!("/hls/{}/replay.m3u8", meta.room),
            })))
        }
    }
}

/// `POST /api/rooms/{id}/end`: a host or co-host ends the room.
pub async fn end_room(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let room = app.room(&id)?;
    moderation::authorize(&app, &room, &headers, Action::EndRoom)?;
    room.end().await;
    room.save().await?;
    Ok(Json(room_json(&room)))
}

/// Body of `POST /api/rooms/{id}/speakers`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AddSpeaker {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/rooms/{id}/speakers`: a host or co-host mints a stage token for a new speaker.
pub async fn add_speaker(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body?;
    let room = app.room(&id)?;
    let by = moderation::authenticate(&app, &room, bearer(&headers))?;
    let req: AddSpeaker = optional_json(&body)?;
    let role = req.role.unwrap_or(Role::Speaker);
    let action = match role {
        Role::Speaker => Action::AddSpeaker,
        Role::CoHost => Action::AddCoHost,
        Role::Host | Role::Listener => {
            return Err(ApiError::Forbidden(format!(
                "a {:?} may not grant {:?}",
                by.role, role
            )))
        }
    };
    moderation::authorize(&app, &room, &headers, action)?;
    let name = req
        .name
        .as_deref()
        .map(tribune_core::stage::clean_name)
        .transpose()?;
    // On the roster first: the stage limits apply (409 when full).
    let who = ParticipantId::random();
    room.change(|r| r.add(who, role, name, None))?;
    if let Err(e) = room.save().await {
        // Nobody gets this token: the seat it took on stage goes back.
        let _ = room.change(|r| r.leave_stage(who));
        return Err(e);
    }
    app.metrics().moderation_actions.inc();
    let token = app.stage_token(&room.id, role, who);
    Ok((
        StatusCode::CREATED,
        Json(json!({"participant_id": who.0, "role": role, "token": token})),
    ))
}

/// `GET /healthz`.
pub async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    if *app.shutdown().borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    (StatusCode::OK, "ok\n")
}

/// `GET /metrics` (Prometheus text format): the node's figures, then each live room's.
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let mut text = app.metrics().render();
    let rooms: Vec<_> = app
        .rooms()
        .into_iter()
        .filter(|r| r.state().0 == RoomState::Live)
        .collect();
    crate::room::render_rooms(&mut text, &rooms);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
