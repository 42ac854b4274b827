//! HTTP handlers of recordings:
//! - `GET /hls/{id}/replay.m3u8`: the replay (EVENT while the room is live, VOD after);
//!   its `init.mp4` and `seg/{msn}.m4s` are the live URLs, served from disk once the live
//!   window has moved on ([`recorded_media`]).
//! - `GET /api/rooms/{id}/recording`: whether it records, how much, where to get it.
//! - `POST /api/rooms/{id}/recording` `{"enabled": bool}`: the host turns recording on or off.
//! - `GET /api/rooms/{id}/recording.m4a`: the whole recording as one file.
//! - `POST /api/rooms/{id}/clips` `{"start_s", "end_s"}` (any token of the room): a clip of at
//!   most 60 s; `GET /api/rooms/{id}/clips/{clip}.m4a` serves it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tribune_core::permissions::Action;
use tribune_core::{unix_micros, RoomId};
use tribune_media::hls::{Resource, MEDIA_CONTENT_TYPE, PLAYLIST_CONTENT_TYPE};
use tribune_media::record::ClipError;

use crate::error::ApiError;
use crate::http::extract::bearer;
use crate::http::moderation;
use crate::http::responses::{cors, ok, MEDIA_CACHE, PLAYLIST_CACHE};
use crate::node::state::AppState;
use crate::recording::clips::{self, ClipId, MakeClipError};
use crate::recording::{store, Recording, Snapshot};

/// `Cache-Control` of a finished (VOD) replay playlist: it no longer changes, but retention
/// may delete it, so not forever.
const VOD_PLAYLIST_CACHE: &str = "public, max-age=3600";
/// `Content-Type` of downloads and clips.
const M4A_CONTENT_TYPE: &str = "audio/mp4";

fn recording_of(app: &AppState, id: &str) -> Result<(RoomId, Arc<Recording>), ApiError> {
    let room = RoomId::parse(id).ok_or(ApiError::RoomNotFound)?;
    let rec = app
        .recordings()
        .get(&room)
        .ok_or_else(|| ApiError::NotFoundMsg("this room has no recording".into()))?;
    Ok((room, rec))
}

/// `GET /hls/{id}/replay.m3u8`.
pub async fn replay_playlist(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (_, rec) = match recording_of(&app, &id) {
        Ok(r) => r,
        Err(e) => return cors(e.into_response()),
    };
    let snap = rec.snapshot();
    let text = match snap.playlist() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("replay playlist not rendered: {e}");
            return cors(ApiError::Internal.into_response());
        }
    };
    let (cache, etag) = if snap.ended() {
        (VOD_PLAYLIST_CACHE, format!("v{}", snap.entries.len()))
    } else {
        (PLAYLIST_CACHE, format!("e{}", snap.entries.len()))
    };
    ok(
        &headers,
        PLAYLIST_CONTENT_TYPE,
        cache,
        etag,
        Bytes::from(text),
    )
}

/// The recorded copy of an init segment or segment of room `id`, when there is one.
pub async fn recorded_media(
    app: &AppState,
    id: &str,
    resource: Resource,
    headers: &HeaderMap,
) -> Option<Response> {
    let (_, rec) = recording_of(app, id).ok()?;
    let (bytes, etag) = match resource {
        Resource::Init => (app.recordings().init().clone(), "init".to_string()),
        Resource::Segment(msn) => {
            // Only segments the index lists: a number is never turned into a path otherwise.
            let listed = rec.lists(msn);
            if !listed {
                return None;
            }
            let bytes = tokio::fs::read(store::segment_path(rec.dir(), msn))
                .await
                .ok()?;
            (Bytes::from(bytes), format!("s{msn}"))
        }
        Resource::Part { .. } => return None,
    };
    Some(ok(headers, MEDIA_CONTENT_TYPE, MEDIA_CACHE, etag, bytes))
}

fn status_json(id: &RoomId, snap: &Snapshot) -> Value {
    json!({
        "room": id,
        "enabled": snap.meta.enabled,
        "ended": snap.ended(),
        "segments": snap.entries.len(),
        "duration_s": snap.duration_ms() as f64 / 1000.0,
        "replay_url": format!("/hls/{id}/replay.m3u8"),
        "download_url": format!("/api/rooms/{id}/recording.m4a"),
    })
}

/// `GET /api/rooms/{id}/recording`.
pub async fn status(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (room, rec) = recording_of(&app, &id)?;
    Ok(Json(status_json(&room, &rec.snapshot())))
}

/// Body of `POST /api/rooms/{id}/recording`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRecording {
    enabled: bool,
}

/// `POST /api/rooms/{id}/recording`: the host turns recording on or off.
pub async fn set(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SetRecording>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let live = app.room(&id)?;
    moderation::authorize(&app, &live, &headers, Action::SetRecording)?;
    let Json(req) = body?;
    let (room, rec) = recording_of(&app, &id)?;
    if !rec.set_enabled(req.enabled) {
        return Err(ApiError::RoomEnded);
    }
    live.set_recording_on(req.enabled);
    live.save().await?;
    Ok(Json(status_json(&room, &rec.snapshot())))
}

/// `GET /api/rooms/{id}/recording.m4a`: init segment and every segment so far, streamed from
/// disk with its length announced.
pub async fn download(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (room, rec) = recording_of(&app, &id)?;
    let snap = rec.snapshot();
    let init = app.recordings().init().clone();
    let len = snap.m4a_len(init.len() as u64);
    let dir = rec.dir().to_path_buf();
    let files = futures_util::stream::iter(snap.entries.into_iter().map(move |e| {
        let path = store::segment_path(&dir, e.msn);
        async move {
            let bytes = tokio::fs::read(path).await?;
            if bytes.len() as u64 != e.bytes {
                // The announced length would be wrong: cut the response short instead.
                return Err(std::io::Error::other("segment changed size"));
            }
            Ok::<_, std::io::Error>(Bytes::from(bytes))
        }
    }))
    .then(|f| f);
    let body =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(init) }).chain(files);
    let mut r = Response::new(Body::from_stream(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(M4A_CONTENT_TYPE),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"tribune-{room}.m4a\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(cors(r))
}

/// Body of `POST /api/rooms/{id}/clips`: seconds on the replay's timeline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClip {
    start_s: f64,
    end_s: f64,
}

fn to_ms(s: f64, name: &str) -> Result<u64, ApiError> {
    if !s.is_finite() || !(0.0..=1e9).contains(&s) {
        return Err(ApiError::BadRequest(format!(
            "{name} must be a number of seconds from 0"
        )));
    }
    Ok((s * 1000.0).round() as u64)
}

/// `POST /api/rooms/{id}/clips`: anyone holding a token of the room (a listener's ticket, a
/// stage token) cuts a clip of at most 60 s. While the room is held by the node, the token is
/// checked against its roster too: a blocked listener's ticket, or the stage token of someone
/// taken off stage, is refused. Only clips made count against the room's quota.
pub async fn create_clip(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CreateClip>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (room, rec) = recording_of(&app, &id)?;
    let token = bearer(&headers).ok_or(ApiError::Unauthenticated("bearer token"))?;
    let claims = app.keys().verify(token, unix_micros() / 1_000_000)?;
    if claims.room != room {
        return Err(ApiError::Forbidden("a token of another room".into()));
    }
    if let Ok(live) = app.room(&id) {
        moderation::authenticate(&app, &live, Some(token))?;
    }
    let Json(req) = body?;
    let (start_ms, end_ms) = (to_ms(req.start_s, "start_s")?, to_ms(req.end_s, "end_s")?);
    if !rec.reserve_clip() {
        return Err(ApiError::Conflict(format!(
            "this room already has {} clips",
            clips::MAX_CLIPS_PER_ROOM
        )));
    }
    let clip = ClipId::random();
    let entries = rec.snapshot().entries;
    let dir = rec.dir().to_path_buf();
    let made = {
        let clip = clip.clone();
        tokio::task::spawn_blocking(move || clips::make(&dir, &entries, start_ms, end_ms, &clip))
            .await
            .map_err(|_| ApiError::Internal)?
    };
    if made.is_err() {
        rec.release_clip();
    }
    let duration_ms = match made {
        Ok(ms) => ms,
        Err(MakeClipError::Range(ClipError::Damaged(e))) => {
            tracing::error!(room = %room, "clip failed on a damaged recording: {e}");
            return Err(ApiError::Internal);
        }
        Err(MakeClipError::Range(e)) => return Err(ApiError::BadRequest(e.to_string())),
        Err(MakeClipError::Io(e)) => {
            tracing::error!(room = %room, "clip not written: {e}");
            return Err(ApiError::Internal);
        }
    };
    app.metrics().clips_created.inc();
    let url = format!("/api/rooms/{room}/clips/{}.m4a", clip.as_str());
    let body = json!({
        "id": clip.as_str(),
        "url": url,
        "start_s": start_ms as f64 / 1000.0,
        "end_s": end_ms as f64 / 1000.0,
        "duration_s": duration_ms as f64 / 1000.0,
    });
    let mut r = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(cors(r))
}

/// `GET /api/rooms/{id}/clips/{clip}.m4a`.
pub async fn get_clip(
    State(app): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, rec) = recording_of(&app, &id)?;
    let clip = ClipId::from_file_name(&file).ok_or(ApiError::NotFound)?;
    let bytes = tokio::fs::read(store::clip_path(rec.dir(), clip.as_str()))
        .await
        .map_err(|_| ApiError::NotFound)?;
    Ok(ok(
        &headers,
        M4A_CONTENT_TYPE,
        MEDIA_CACHE,
        format!("c{}", clip.as_str()),
        Bytes::from(bytes),
    ))
}
