//! The LL-HLS routes under `/hls/{id}/`.
//!
//! Routes:
//! - `GET /hls/{id}/live.m3u8[?_HLS_msn=M[&_HLS_part=P]]`: the live playlist, blocking reload.
//! - `GET /hls/{id}/init.mp4`, `GET /hls/{id}/seg/{msn}.m4s`, `GET /hls/{id}/part/{msn}.{i}.m4s`.
//!
//! Headers: playlists `Cache-Control: max-age=1` (blocking responses too: they are a snapshot
//! at least as new as asked for, so a shared cache may serve one for a second), media
//! `Cache-Control: public, max-age=31536000, immutable`; every response, errors included, has
//! `Access-Control-Allow-Origin: *`; 200s carry an ETag (the playlist generation, or the
//! resource's numbers: a URL never names other bytes while the room lives) and a matching
//! `If-None-Match` is answered 304.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use tribune_media::hls::{
    parse_blocking_query, Lookup, Resource, MEDIA_CONTENT_TYPE, PLAYLIST_CONTENT_TYPE,
};

use crate::error::ApiError;
use crate::http::recording::recorded_media;
use crate::http::responses::{error, ok, unavailable, MEDIA_CACHE, PLAYLIST_CACHE};
use crate::node::state::AppState;

/// `GET /hls/{id}/live.m3u8`.
pub async fn live_playlist(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    app.metrics().hls_playlist_requests.inc();
    let room = match app.room_or_pull(&id).await {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    let req = match parse_blocking_query(query.as_deref().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return error(ApiError::BadRequest(e.to_string())),
    };
    room.touch_hls();
    let hls = room.hls();
    // Counted when the answer is not there at once.
    if let Ok(None) = hls.ready_playlist(req.as_ref()) {
        app.metrics().hls_blocking_waits.inc();
    }
    match hls.playlist(req, app.shutdown()).await {
        Err(()) => error(ApiError::BadRequest(
            "_HLS_msn/_HLS_part too far in the future".into(),
        )),
        Ok(None) => unavailable("the playlist did not reach the requested part in time"),
        Ok(Some((generation, bytes))) => ok(
            &headers,
            PLAYLIST_CONTENT_TYPE,
            PLAYLIST_CACHE,
            format!("g{generation}"),
            bytes,
        ),
    }
}

/// `GET /hls/{id}/{*path}`: `init.mp4`, `seg/{msn}.m4s`, `part/{msn}.{index}.m4s`.
pub async fn media(
    State(app): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    app.metrics().hls_media_requests.inc();
    let Some(resource) = Resource::parse(&path) else {
        return error(ApiError::NotFound);
    };
    let room = match app.room_or_pull(&id).await {
        Ok(r) => r,
        // A room this node no longer runs (ended before a restart): its recording, if any.
        Err(e) => {
            return match recorded_media(&app, &id, resource, &headers).await {
                Some(r) => r,
                None => error(e),
            }
        }
    };
    room.touch_hls();
    match room.hls().resource(resource, app.shutdown()).await {
        Lookup::Ready(bytes) => {
            let etag = match resource {
                Resource::Init => "init".to_string(),
                Resource::Segment(msn) => format!("s{msn}"),
                Resource::Part { msn, index } => format!("p{msn}.{index}"),
            };
            ok(&headers, MEDIA_CONTENT_TYPE, MEDIA_CACHE, etag, bytes)
        }
        Lookup::Pending => unavailable("the part was not published in time"),
        // Out of the live window: the recorded copy (the same bytes).
        Lookup::NotFound => match recorded_media(&app, &id, resource, &headers).await {
            Some(r) => r,
            None => error(ApiError::NotFound),
        },
    }
}
