//! Stage requests (and joins) that reach a node that does not run the room. An edge relays a
//! room's program and mirrors its roster; the stage, moderation, recording and the room's end
//! belong to the room's origin. A request an edge's handlers refuse as misdirected (`421`) is
//! sent on to the node the edge pulls the room from (its `--upstream`, or the room's origin as
//! the registry names it); an origin sharing rooms sends on a join or stage request for a room
//! another origin runs (the registry names it, looked up at most once per room per 2 s). That
//! node's answer is the client's: a host's page or a listener's hand raise works through any
//! node.
//!
//! The client's address travels with it, vouched for by a relay token for that room (signed
//! with the cluster's secret): the origin's per-address limits count the client, not the edge,
//! so one listener cannot use up what every listener on its edge shares. The header is ignored
//! without a valid token, so a client cannot claim another address.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tribune_core::{unix_micros, RoomId, TokenKind};

use crate::error::ApiError;
use crate::net::limits::JoinLimiter;
use crate::node::state::AppState;

/// The client's address, on a request one cluster node forwards to another.
pub const CLIENT_HEADER: &str = "x-tribune-client";
/// The relay token vouching for [`CLIENT_HEADER`].
pub const RELAY_HEADER: &str = "x-tribune-relay";
/// How many nodes a request has been sent on through (a tree of edges forwards it once per
/// tier); past [`MAX_HOPS`] it is refused, so nodes misconfigured into a loop stop at once.
pub const HOPS_HEADER: &str = "x-tribune-hops";
/// Most forwards of one request.
const MAX_HOPS: u32 = 8;
/// Longest wait for the node upstream to answer a forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer passed back (stage answers are small JSON).
const MAX_ANSWER: usize = 1 << 20;
/// Most requests being sent on at once (past that: `503`, so a flood costs the upstream little).
const MAX_IN_FLIGHT: usize = 64;
/// Headers of the client's request sent on.
const SENT_ON: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
/// Headers of an answer that belong to one connection, not passed back.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];
/// The routes under `/api/rooms/{id}/` whose requests may be sent on: the stage's (what a
/// room's origin decides, with small JSON answers), and joins (an origin asked for a room that
/// another origin runs). Publishing, playing, listening, recordings' files and anything else
/// are not.
const STAGE: [&str; 11] = [
    "join",
    "end",
    "speakers",
    "stage",
    "requests",
    "invites",
    "participants",
    "listeners",
    "blocks",
    "recording",
    "clips",
];

/// The room a `/api/rooms/{id}/…` path names.
fn room_of(path: &str) -> Option<RoomId> {
    let rest = path.strip_prefix("/api/rooms/")?;
    RoomId::parse(rest.split('/').next()?)
}

/// The room of a stage request that may be sent on: a path of the stage's routes, each part
/// plain (letters, digits, `-`, `_`: no dot segment or escape a URL library would rewrite into
/// another path), `recording` and `clips` without a file.
fn stage_room(path: &str) -> Option<RoomId> {
    let room = room_of(path)?;
    let tail: Vec<&str> = path
        .strip_prefix("/api/rooms/")?
        .split('/')
        .skip(1)
        .collect();
    let plain = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let first = *tail.first()?;
    let whole = matches!(first, "recording" | "clips");
    let ok = STAGE.contains(&first) && tail.iter().all(plain) && !(whole && tail.len() > 1);
    ok.then_some(room)
}

/// On an edge or an origin sharing rooms: runs the request here, and sends it on to the node
/// that runs the room if this one does not.
pub async fn misdirected_upstream(
    State(app): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let room = match stage_room(req.uri().path()) {
        // An edge decides joins itself (its join limiter runs before any body is read).
        _ if app.pulls_rooms() && req.uri().path().ends_with("/join") => {
            return next.run(req).await
        }
        Some(room) if app.sends_on() && !req.headers().contains_key(header::UPGRADE) => room,
        _ => return next.run(req).await,
    };
    let (parts, body) = req.into_parts();
    // Read once, so it can be sent again (the body deadline and size limit still apply).
    let body = match axum::body::to_bytes(body, app.config().max_body_bytes).await {
        Ok(b) => b,
        Err(e) if crate::error::is_body_timeout(&e) => {
            return (StatusCode::REQUEST_TIMEOUT, "request body too slow").into_response()
        }
        Err(e) if e.to_string().contains("length limit") => {
            return ApiError::TooLarge.into_response()
        }
        Err(_) => return ApiError::BadRequest("request body unreadable".into()).into_response(),
    };
    let carried = app.room(room.as_str()).is_ok();
    let here = next
        .run(Request::from_parts(parts.clone(), Body::from(body.clone())))
        .await;
    let send_on = match here.status() {
        StatusCode::MISDIRECTED_REQUEST => true,
        // A room this edge does not carry (nobody listens to it here): sent on if the upstream
        // has it, which pulling it finds out (rooms the upstream lacks are remembered a
        // moment, so a scan of made-up ids costs the upstream little).
        StatusCode::NOT_FOUND if !carried && app.pulls_rooms() => {
            app.room_or_pull(room.as_str()).await.is_ok()
        }
        // An origin asked about a room another origin runs: sent on to that one.
        StatusCode::NOT_FOUND if !carried => true,
        _ => false,
    };
    if !send_on {
        return here;
    }
    let hops: u32 = parts
        .headers
        .get(HOPS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if hops >= MAX_HOPS {
        return (
            StatusCode::LOOP_DETECTED,
            axum::Json(serde_json::json!({
                "error": "loop_detected",
                "message": "sent on through too many nodes: check the cluster's --upstream settings",
            })),
        )
            .into_response();
    }
    let Ok(_slot) = in_flight().try_acquire() else {
        app.metrics().forward_errors.inc();
        return ApiError::UpstreamUnavailable("too many stage requests being sent on".into())
            .into_response();
    };
    let Some(http) = http_client() else {
        return ApiError::Internal.into_response();
    };
    let upstream = match app.upstream_for(&room).await {
        Some(Ok(u)) => u,
        // No node runs the room: this node's own answer stands.
        Some(Err(crate::room::relay::PullError::NotFound)) | None => return here,
        // An origin that cannot ask the registry keeps its own answer (a room it does not run).
        Some(Err(_)) if !app.pulls_rooms() => return here,
        Some(Err(e)) => return ApiError::from(e).into_response(),
    };
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .map(|peer| match parts.extensions.get::<Arc<JoinLimiter>>() {
            Some(l) => l.client_ip(peer, &parts.headers),
            None => peer,
        });
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut out = http
        .request(
            parts.method.clone(),
            format!("{}{path}", upstream.http_base()),
        )
        .header(RELAY_HEADER, upstream.relay_token(&room))
        .header(HOPS_HEADER, hops + 1)
        .body(body);
    for name in SENT_ON {
        if let Some(v) = parts.headers.get(&name) {
            out = out.header(name, v.clone());
        }
    }
    if let Some(ip) = client {
        out = out.header(CLIENT_HEADER, ip.to_string());
    }
    app.metrics().forwarded.inc();
    match answer(out).await {
        Ok(r) => r,
        Err(why) => {
            app.metrics().forward_errors.inc();
            tracing::warn!(room = %room, "stage request not forwarded upstream: {why}");
            ApiError::UpstreamUnavailable(format!("the room's origin did not answer: {why}"))
                .into_response()
        }
    }
}

/// Sends `out` and turns the answer into this node's response (bounded in time and size).
async fn answer(out: reqwest::RequestBuilder) -> Result<Response, String> {
    let mut got = out.send().await.map_err(|e| e.to_string())?;
    let status = StatusCode::from_u16(got.status().as_u16()).map_err(|e| e.to_string())?;
    // Besides the usual ones, the headers the answer's `Connection` names are its connection's.
    let named: Vec<String> = got
        .headers()
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut headers = HeaderMap::new();
    for (name, v) in got.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(name, v);
        }
    }
    let mut body = Vec::new();
    while let Some(chunk) = got.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err("answer too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, body).into_response())
}

/// The HTTP client forwarded requests go out on (kept connections, no redirects, no proxy
/// from the environment: relay tokens go to the upstream and nowhere else).
fn http_client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(FORWARD_TIMEOUT)
                .connect_timeout(FORWARD_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .map_err(|e| tracing::error!("no HTTP client for stage requests: {e}"))
                .ok()
        })
        .as_ref()
}

/// The requests being sent on now.
fn in_flight() -> &'static tokio::sync::Semaphore {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_IN_FLIGHT);
    &SLOTS
}

/// On any node: a request forwarded by another node of the cluster counts as its client's
/// (the address in [`CLIENT_HEADER`], when [`RELAY_HEADER`] holds a valid relay token for the
/// room in the path). Both headers are taken out either way.
pub async fn forwarded_client(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let claimed = req.headers_mut().remove(CLIENT_HEADER);
    let token = req.headers_mut().remove(RELAY_HEADER);
    if let (Some(claimed), Some(token)) = (claimed, token) {
        let vouched = room_of(req.uri().path()).is_some_and(|room| {
            token.to_str().is_ok_and(|t| {
                app.keys()
                    .verify_for(t, TokenKind::Relay, &room, unix_micros() / 1_000_000)
                    .is_ok()
            })
        });
        let ip = claimed.to_str().ok().and_then(|s| s.parse::<IpAddr>().ok());
        if let (true, Some(ip)) = (vouched, ip) {
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 0)));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::{room_of, stage_room};

    #[test]
    fn only_the_stage_routes_are_sent_on() {
        let sent = |p: &str| stage_room(p).is_some();
        assert!(sent("/api/rooms/abcdefghjk/end"));
        assert!(sent("/api/rooms/abcdefghjk/requests/me"));
        assert!(sent("/api/rooms/abcdefghjk/participants/1234/mute"));
        assert!(sent("/api/rooms/abcdefghjk/recording"));
        assert!(sent("/api/rooms/abcdefghjk/clips"));
        assert!(sent("/api/rooms/abcdefghjk/join"));
        // Not the stage: listening, publishing, playing, files.
        for p in [
            "/api/rooms/abcdefghjk/listen",
            "/api/rooms/abcdefghjk/speak",
            "/api/rooms/abcdefghjk/whip",
            "/api/rooms/abcdefghjk/whep",
            "/api/rooms/abcdefghjk/recording.m4a",
            "/api/rooms/abcdefghjk/clips/a.m4a",
            "/api/rooms/abcdefghjk/recording/x",
            "/api/rooms/abcdefghjk",
            "/api/rooms",
            "/metrics",
        ] {
            assert!(!sent(p), "{p}");
        }
        // No path a URL library would rewrite into another one.
        for p in [
            "/api/rooms/abcdefghjk/end/../../../metrics",
            "/api/rooms/abcdefghjk/requests/%2e%2e/x",
            "/api/rooms/abcdefghjk/requests/./me",
            "/api/rooms/abcdefghjk/requests//me",
            "/api/rooms/abcdefghjk/end/",
        ] {
            assert!(!sent(p), "{p}");
        }
    }

    #[test]
    fn only_room_paths_name_a_room() {
        assert_eq!(
            room_of("/api/rooms/abcdefghjk/requests").map(|r| r.to_string()),
            Some("abcdefghjk".into())
        );
        assert!(room_of("/api/rooms").is_none());
        assert!(room_of("/api/rooms/").is_none());
        assert!(room_of("/api/rooms/not-a-room/end").is_none());
        assert!(room_of("/hls/abcdefghjk/live.m3u8").is_none());
    }
}
