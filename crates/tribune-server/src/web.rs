//! The browser app (`web/`), embedded in the binary: lobby `/`, listener page `/r/{id}`, host
//! console `/host/{id}`, and their assets under `/web/`.
//!
//! The listener page loads hls.js (its LL-HLS fallback) from the URL in its
//! `<meta name="tribune-hlsjs">`: a pinned CDN build with its SRI hash. Operators who self-host
//! hls.js set `TRIBUNE_HLSJS_URL` (and `TRIBUNE_HLSJS_INTEGRITY`, its `sha384-…` hash, or none)
//! in the node's environment, and the page is served with that tag rewritten.

use std::sync::OnceLock;

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
    asset!("js/admission.js", "text/javascript; charset=utf-8"),
    asset!("js/api.js", "text/javascript; charset=utf-8"),
    asset!("js/backoff.js", "text/javascript; charset=utf-8"),
    asset!("js/hls-player.js", "text/javascript; charset=utf-8"),
    asset!("js/host.js", "text/javascript; charset=utf-8"),
    asset!("js/listen.js", "text/javascript; charset=utf-8"),
    asset!("js/lobby.js", "text/javascript; charset=utf-8"),
    asset!("js/player.js", "text/javascript; charset=utf-8"),
    asset!("js/pow.js", "text/javascript; charset=utf-8"),
    asset!("js/pow-worker.js", "text/javascript; charset=utf-8"),
    asset!("js/stage-view.js", "text/javascript; charset=utf-8"),
    asset!("js/transport.js", "text/javascript; charset=utf-8"),
    asset!("js/whip.js", "text/javascript; charset=utf-8"),
    asset!("js/wire.js", "text/javascript; charset=utf-8"),
    asset!("js/worklet.js", "text/javascript; charset=utf-8"),
];

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound.into_response();
    };
    let body = if asset.path == "room.html" {
        room_html()
    } else {
        asset.body
    };
    // A content hash as ETag: browsers revalidate cheaply and always get the running version.
    let etag = format!("\"{:016x}\"", fnv1a(body.as_bytes()));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut resp = body.into_response();
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

/// room.html as this node serves it: with the operator's hls.js source, if one is set.
fn room_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        let url = std::env::var("TRIBUNE_HLSJS_URL").ok();
        let integrity = std::env::var("TRIBUNE_HLSJS_INTEGRITY").ok();
        with_hlsjs_source(
            room_asset(),
            url.as_deref().filter(|u| !u.is_empty()),
            integrity.as_deref(),
        )
    })
}

fn room_asset() -> &'static str {
    ASSETS
        .iter()
        .find(|a| a.path == "room.html")
        .map(|a| a.body)
        .unwrap_or_default()
}

const HLSJS_META: &str = "<meta name=\"tribune-hlsjs\"";

/// `html` with its hls.js `<meta>` pointing at `url` (integrity `integrity`, or none: a
/// self-hosted copy is the operator's own), or unchanged when `url` is `None`.
fn with_hlsjs_source(html: &str, url: Option<&str>, integrity: Option<&str>) -> String {
    let (Some(url), Some(start)) = (url, html.find(HLSJS_META)) else {
        return html.to_owned();
    };
    let Some(len) = html[start..].find('>') else {
        return html.to_owned();
    };
    let tag = format!(
        "{HLSJS_META} content=\"{}\" data-integrity=\"{}\">",
        attr_escape(url),
        attr_escape(integrity.unwrap_or_default())
    );
    format!("{}{tag}{}", &html[..start], &html[start + len + 1..])
}

/// Escapes text for a double-quoted HTML attribute.
fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
    fn room_page_pins_hlsjs_and_an_operator_can_replace_it() {
        let html = room_asset();
        let pinned = "<meta name=\"tribune-hlsjs\" content=\"https://cdn.jsdelivr.net/npm/hls.js@";
        assert_eq!(html.matches(pinned).count(), 1);
        assert!(html.contains("data-integrity=\"sha384-"));
        assert_eq!(with_hlsjs_source(html, None, Some("sha384-x")), html);

        let mine = with_hlsjs_source(html, Some("/static/hls.min.js?v=1&a=\"b\""), None);
        assert!(mine.contains(
            "<meta name=\"tribune-hlsjs\" content=\"/static/hls.min.js?v=1&amp;a=&quot;b&quot;\" data-integrity=\"\">"
        ));
        assert!(!mine.contains("jsdelivr"));
        // Only the tag changed.
        let cut = html.find(HLSJS_META).unwrap();
        assert_eq!(&mine[..cut], &html[..cut]);
        assert!(mine.ends_with(&html[html[cut..].find('>').unwrap() + cut + 1..]));

        let hashed =
            with_hlsjs_source(html, Some("https://cdn.example/hls.js"), Some("sha384-abc"));
        assert!(hashed
            .contains("content=\"https://cdn.example/hls.js\" data-integrity=\"sha384-abc\">"));
    }

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
