//! The WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) HTTP resources:
//!
//! - `POST /api/rooms/{id}/whip` — `Content-Type: application/sdp` offer with
//!   `Authorization: Bearer <stage token>` → `201 Created`, the SDP answer, `Location` and `ETag`.
//! - `DELETE /api/rooms/{id}/whip/{session}` — same bearer credential → `204`; `404` if unknown.
//! - `PATCH` on a session → `405`: the answer already carries our host candidate (ICE lite), so
//!   trickle ICE and ICE restarts are not offered.
//! - `POST /api/rooms/{id}/whep` — an SDP offer that receives Opus, with a stage token (plays
//!   that participant's mix-minus) or a listener ticket (plays the program) → `201`, the answer,
//!   `Location`; `DELETE /api/rooms/{id}/whep/{session}` ends it.
//! - `OPTIONS` on all → `204` with CORS headers for browsers.
//!
//! Every answer, errors included, carries `Access-Control-Allow-Origin: *` so a page on another
//! origin can read it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tribune_core::{unix_micros, Claims, Role, RoomState, TokenKind};

use super::session::Opened;
use super::WhipHub;
use crate::error::ApiError;
use crate::http::extract::bearer;
use crate::node::state::AppState;
use crate::room::LiveRoom;

/// Methods of the endpoint and the session resources.
const ALLOW_METHODS: &str = "POST, DELETE, PATCH, OPTIONS";

/// Adds the CORS headers every WHIP answer carries.
fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Accept-Post, Allow"),
    );
    resp
}

fn error(e: ApiError) -> Response {
    cors(e.into_response())
}

/// Whether the request says its body is SDP (`application/sdp`, parameters allowed).
fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
}

/// `POST /api/rooms/{id}/whip`: answers an SDP offer and starts publishing into the room.
pub async fn publish(
    State(app): State<AppState>,
    Path(id): Path<String>,
    hub: Option<Extension<WhipHub>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match publish_inner(&app, &id, hub, &headers, body).await {
        Ok(r) => cors(r),
        Err(e) => {
            app.metrics().whip_refused.inc();
            error(e)
        }
    }
}

async fn publish_inner(
    app: &AppState,
    id: &str,
    hub: Option<Extension<WhipHub>>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    let Some(Extension(hub)) = hub else {
        return Err(ApiError::Full {
            message: "WebRTC ingest is not running on this node".into(),
            retry_after_s: 60,
        });
    };
    let room = app.room(id)?;
    let claims = app.verify_stage(bearer(headers), &room.id, Role::can_speak)?;
    if room.info().state == RoomState::Ended {
        return Err(ApiError::RoomEnded);
    }
    let text = offer_text(headers, body, "WHIP")?;
    let opened = hub.open_session(app, room.clone(), &claims, &text).await?;
    Ok(created(
        &format!("/api/rooms/{}/whip/{}", room.id, opened.id),
        opened,
    ))
}

/// `201 Created` with the SDP answer, the session's `Location` and `ETag`.
fn created(location: &str, opened: Opened) -> Response {
    let mut resp = (StatusCode::CREATED, opened.answer).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", opened.id)) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// `DELETE /api/rooms/{id}/whip/{session}`: ends the session (`204`), `404` if unknown. Takes
/// the stage token of the session's participant, or of a host or co-host of the room.
pub async fn end(
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    hub: Option<Extension<WhipHub>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Some(Extension(hub)) = hub else {
            return Err(ApiError::NotFound);
        };
        let room = app.room(&id)?;
        let claims = app.verify_stage(bearer(&headers), &room.id, |_| true)?;
        let owner = hub
            .session_participant(&room.id, &session)
            .ok_or(ApiError::NotFound)?;
        if owner.0 != claims.sub && !claims.role.can_moderate() {
            return Err(ApiError::Forbidden(
                "this WHIP session belongs to another participant".to_owned(),
            ));
        }
        hub.stop_session(&room.id, &session)
            .await
            .ok_or(ApiError::NotFound)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    match result {
        Ok(r) => cors(r),
        Err(e) => error(e),
    }
}

/// `PATCH` on a session: `405`. Our answer carries the only candidate (ICE lite), so neither
/// trickle ICE nor an ICE restart is offered (RFC 9725 §4.3.1 allows either to be absent).
pub async fn patch() -> Response {
    let body = json!({
        "error": "method_not_allowed",
        "message": "trickle ICE and ICE restarts are not supported: the answer carries the \
                    server's only candidate; start a new session instead",
    });
    let mut resp = (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    cors(resp)
}

/// `OPTIONS` (CORS preflight and WHIP discovery): `204` with what may be sent.
pub async fn preflight() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    cors(resp)
}

/// Reads an offer body: `415` unless it says `application/sdp`, `400` unless it is UTF-8, `413`
/// past the size limit.
fn offer_text(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<String, ApiError> {
    if !is_sdp(headers) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a {what} offer must be sent as Content-Type: application/sdp"
        )));
    }
    String::from_utf8(body?.to_vec())
        .map_err(|_| ApiError::BadRequest("the SDP offer is not UTF-8 text".to_owned()))
}

/// Any credential of this room (stage token or listen ticket): `401` without one, `403` for a
/// forged or another room's.
fn room_claims(app: &AppState, room: &LiveRoom, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let token = bearer(headers).ok_or(ApiError::Unauthenticated("bearer token"))?;
    let claims = app.keys().verify(token, unix_micros() / 1_000_000)?;
    if claims.room != room.id {
        return Err(ApiError::Forbidden(
            "this credential is for another room".to_owned(),
        ));
    }
    Ok(claims)
}

/// The credential a WHEP request carries: a stage token of a participant still on stage, or a
/// listener ticket of this room (`401` without one, `403` for another room's or a removed one).
fn player_claims(app: &AppState, room: &LiveRoom, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let claims = room_claims(app, room, headers)?;
    if claims.kind == TokenKind::Stage {
        // Tokens are stateless: the roster says whether its holder is still on stage.
        room.admit_speaker(&claims)?;
    }
    Ok(claims)
}

/// `POST /api/rooms/{id}/whep`: answers a playback offer.
pub async fn play(
    State(app): State<AppState>,
    Path(id): Path<String>,
    hub: Option<Extension<WhipHub>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        if *app.shutdown().borrow() {
            return Err(ApiError::Unavailable);
        }
        let Some(Extension(hub)) = hub else {
            return Err(ApiError::Full {
                message: "WebRTC is not running on this node".into(),
                retry_after_s: 60,
            });
        };
        let room = app.room(&id)?;
        let claims = player_claims(&app, &room, &headers)?;
        if room.info().state == RoomState::Ended {
            return Err(ApiError::RoomEnded);
        }
        let text = offer_text(&headers, body, "WHEP")?;
        let opened = hub.open_player(&app, room.clone(), &claims, &text).await?;
        Ok(created(
            &format!("/api/rooms/{}/whep/{}", room.id, opened.id),
            opened,
        ))
    }
    .await;
    match result {
        Ok(r) => cors(r),
        Err(e) => {
            app.metrics().stage.whep_refused.inc();
            error(e)
        }
    }
}

/// `DELETE /api/rooms/{id}/whep/{session}`: ends a playback session (`204`), `404` if unknown.
/// Takes the credential the session was opened with (or a host's or co-host's stage token).
pub async fn stop_play(
    State(app): State<AppState>,
    Path((id, session)): Path<(String, String)>,
    hub: Option<Extension<WhipHub>>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Some(Extension(hub)) = hub else {
            return Err(ApiError::NotFound);
        };
        let room = app.room(&id)?;
        let claims = room_claims(&app, &room, &headers)?;
        let player = hub
            .player_of(&room.id, &session)
            .ok_or(ApiError::NotFound)?;
        let moderator = claims.kind == TokenKind::Stage && claims.role.can_moderate();
        if player.subject() != claims.sub && !moderator {
            return Err(ApiError::Forbidden(
                "this WHEP session belongs to someone else".to_owned(),
            ));
        }
        hub.stop_player(&room.id, &session)
            .await
            .ok_or(ApiError::NotFound)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    match result {
        Ok(r) => cors(r),
        Err(e) => error(e),
    }
}
