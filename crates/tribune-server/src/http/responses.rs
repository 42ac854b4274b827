//! Response headers shared by the media routes (LL-HLS, replays): CORS, caching, ETags.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::error::ApiError;

/// `Cache-Control` of live playlists.
pub const PLAYLIST_CACHE: &str = "max-age=1";
/// `Cache-Control` of the init segment, segments and parts.
pub const MEDIA_CACHE: &str = "public, max-age=31536000, immutable";

/// Adds `Access-Control-Allow-Origin: *`.
pub(crate) fn cors(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

pub(crate) fn error(e: ApiError) -> Response {
    cors(e.into_response())
}

pub(crate) fn unavailable(message: &str) -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": "unavailable", "message": message})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    cors(r)
}

/// A 200 (or 304 when `If-None-Match` matches) with the HLS headers.
pub(crate) fn ok(
    request: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    etag: String,
    body: Bytes,
) -> Response {
    let etag = format!("\"{etag}\"");
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    cors(r)
}
