//! The browser app (`web/`), embedded in the binary: lobby `/`, listener page `/r/{id}`, host
//! console `/host/{id}`, and their assets under `/web/`.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// An embedded file: path under `web/`, content type, bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $ct:literal) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_str!(concat!("../../../web/", $path)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("room.html", "text/html; charset=utf-8"),
    asset!("host.html", "text/html; charset=utf-8"),
    asset!("css/app.css", "text/css; charset=utf-8"),
    asset!("js/api.js", "text/javascript; charset=utf-8"),
    asset!("js/backoff.js", "text/javascript; charset=utf-8"),
    asset!("js/host.js", "text/javascript; charset=utf-8"),
    asset!("js/listen.js", "text/javascript; charset=utf-8"),
    asset!("js/lobby.js", "text/javascript; charset=utf-8"),
    asset!("js/player.js", "text/javascript; charset=utf-8"),
    asset!("js/stage-view.js", "text/javascript; charset=utf-8"),
    asset!("js/whip.js", "text/javascript; charset=utf-8"),
    asset!("js/wire.js", "text/javascript; charset=utf-8"),
    asset!("js/worklet.js", "text/javascript; charset=utf-8"),
];

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound.into_response();
    };
    // A content hash as ETag: browsers revalidate cheaply and always get the running version.
    let etag = format!("\"{:016x}\"", fnv1a(asset.body.as_bytes()));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut resp = asset.body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `GET /`: the lobby.
pub async fn lobby(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /r/{id}`: the listener page.
pub async fn room_page(Path(_id): Path<String>, headers: HeaderMap) -> Response {
    serve("room.html", &headers)
}

/// `GET /host/{id}`: the host console.
pub async fn host_page(Path(_id): Path<String>, headers: HeaderMap) -> Response {
    serve("host.html", &headers)
}

/// `GET /web/{*path}`: scripts and styles.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_typed_by_extension() {
        for (i, a) in ASSETS.iter().enumerate() {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert!(
                ASSETS[i + 1..].iter().all(|b| b.path != a.path),
                "{}",
                a.path
            );
            let ext = a.path.rsplit('.').next().unwrap();
            let want = match ext {
                "html" => "text/html",
                "css" => "text/css",
                "js" => "text/javascript",
                other => panic!("unexpected asset type {other}"),
            };
            assert!(a.content_type.starts_with(want), "{}", a.path);
        }
        // Every script a page or module imports is embedded.
        for a in ASSETS {
            for import in a.body.split("from './").skip(1) {
                let name = import.split('\'').next().unwrap();
                let path = format!("js/{name}");
                assert!(
                    ASSETS.iter().any(|b| b.path == path),
                    "{} imports missing {path}",
                    a.path
                );
            }
        }
    }
}
