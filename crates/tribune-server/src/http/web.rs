//! The browser app (`web/`), embedded in the binary: lobby `/`, listener page `/r/{id}`, host
//! console `/host/{id}`, and their assets under `/web/`.
//!
//! The listener page loads hls.js (its LL-HLS fallback) from the URL in its
//! `<meta name="tribune-hlsjs">`: a pinned CDN build with its SRI hash. Operators who self-host
//! hls.js set `TRIBUNE_HLSJS_URL` (and `TRIBUNE_HLSJS_INTEGRITY`, its `sha384-…` hash, or none)
//! in the node's environment, and the page is served with that tag rewritten.
//!
//! Every page is sent with a Content-Security-Policy (scripts, styles, connections and media
//! from this origin only, plus hls.js's origin; no inline code, no framing), `X-Frame-Options:
//! DENY`, `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`.

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::node::state::AppState;

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
            body: include_str!(concat!("../../../../web/", $path)),
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
    asset!("js/whep.js", "text/javascript; charset=utf-8"),
    asset!("js/wire.js", "text/javascript; charset=utf-8"),
    asset!("js/worklet.js", "text/javascript; charset=utf-8"),
];

fn serve(path: &str, headers: &HeaderMap) -> Response {
    serve_in(path, headers, &[])
}

/// `serve`, for a page that may also connect to the nodes at `nodes` (`ws://host:port`: the
/// cluster's edges its listeners are sent to).
fn serve_in(path: &str, headers: &HeaderMap, nodes: &[String]) -> Response {
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
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path.ends_with(".html") {
        let policy = match nodes {
            [] => page_policy().to_owned(),
            _ => page_policy().replacen(
                "connect-src 'self'",
                &format!("connect-src 'self' {}", nodes.join(" ")),
                1,
            ),
        };
        if let Ok(v) = HeaderValue::from_str(&policy) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
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

/// The pages' Content-Security-Policy, with the origin hls.js is loaded from.
fn page_policy() -> &'static str {
    static POLICY: OnceLock<String> = OnceLock::new();
    POLICY.get_or_init(|| {
        let hlsjs = hlsjs_url(
            room_asset(),
            std::env::var("TRIBUNE_HLSJS_URL").ok().as_deref(),
        );
        content_security_policy(hlsjs.as_deref().and_then(origin_of))
    })
}

/// The policy for pages that may load one script from `script_origin` besides their own.
fn content_security_policy(script_origin: Option<&str>) -> String {
    let extra = script_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'{extra}; style-src 'self'; img-src 'self' data:; \
         media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// hls.js's URL: the operator's, or the one pinned in the page.
fn hlsjs_url(html: &str, operator: Option<&str>) -> Option<String> {
    if let Some(u) = operator.filter(|u| !u.is_empty()) {
        return Some(u.to_owned());
    }
    let start = html.find(HLSJS_META)?;
    let tag = &html[start..start + html[start..].find('>')?];
    let content = tag.split("content=\"").nth(1)?;
    Some(content[..content.find('"')?].to_owned())
}

/// The WebSocket origin (`ws://host:port`, `wss://` for https) of a node's base URL, if it is
/// one (only characters an origin may hold).
fn ws_origin(base: &str) -> Option<String> {
    let origin = origin_of(base)?;
    Some(match origin.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}"),
        None => format!("ws://{}", origin.strip_prefix("http://")?),
    })
}

/// `scheme://host[:port]` of an absolute http(s) URL; `None` for a relative one (same origin).
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &url[..url.len() - rest.len() + host_len];
    // Only characters an origin can have: nothing may end the directive early.
    origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:/[]".contains(&b))
        .then_some(origin)
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
pub async fn room_page(
    State(app): State<AppState>,
    Path(_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    // In a cluster the page listens on the edges the join names.
    let nodes: Vec<String> = app
        .cluster()
        .map(|c| c.node_urls())
        .unwrap_or_default()
        .iter()
        .filter_map(|u| ws_origin(u))
        .collect();
    serve_in("room.html", &headers, &nodes)
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
    fn pages_allow_only_their_origin_and_hlsjs() {
        let pinned = hlsjs_url(room_asset(), None).unwrap();
        assert_eq!(origin_of(&pinned), Some("https://cdn.jsdelivr.net"));
        assert_eq!(
            hlsjs_url(room_asset(), Some("http://127.0.0.1:9/hls.js")).as_deref(),
            Some("http://127.0.0.1:9/hls.js")
        );
        assert_eq!(origin_of("/static/hls.js"), None);
        assert_eq!(
            origin_of("https://cdn.example:8443"),
            Some("https://cdn.example:8443")
        );
        assert_eq!(origin_of("https://evil; script-src *"), None);
        let csp = content_security_policy(Some("https://cdn.jsdelivr.net"));
        assert!(
            csp.contains("script-src 'self' https://cdn.jsdelivr.net;"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "no inline code: {csp}");
        // No page carries inline script or style attributes the policy would block.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".html")) {
            assert!(!a.body.contains(" style="), "{}", a.path);
            assert!(!a.body.contains("<style"), "{}", a.path);
            for tag in a.body.split("<script").skip(1) {
                assert!(
                    tag.trim_start().starts_with("type=\"module\" src="),
                    "{}",
                    a.path
                );
            }
        }
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
