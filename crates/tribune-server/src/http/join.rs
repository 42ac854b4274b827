//! `POST /api/rooms/{id}/join`: admission of a listener.
//!
//! Body (all optional): `{"ticket": T}` to resume with a listen ticket (never queued),
//! `{"queue_ticket": Q}` to come back from the waiting room, `{"pow": {"challenge", "nonce"}}`
//! with a solved proof of work when the node asks for one.
//!
//! Answers: `200 {ticket, listener_id, listen_url, hls_url, expires_at, seq}`;
//! `202 {queue_ticket, position, eta_s}` with `Retry-After` (call again with the queue ticket);
//! `401 {error: "proof_of_work_required", challenge, bits}` under attack; `403` for a forged,
//! expired, other-room or other-key ticket or a wrong or replayed proof; `429` with
//! `Retry-After` when the client's address or subnet joins too fast; `404`, `410`, `503`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tribune_core::admission::{Decision, PowChallenge, PowError, QueueTicket};
use tribune_core::{unix_micros, Claims, ListenerId, Role, RoomState, TokenKind};

use crate::error::ApiError;
use crate::http::extract::optional_json;
use crate::net::limits::{JoinLimiter, Peer, RateLimited};
use crate::node::state::AppState;
use crate::room::LiveRoom;

/// Body of a join.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// A listen ticket to resume with.
    #[serde(default)]
    ticket: Option<String>,
    /// A queue ticket from an earlier `202`.
    #[serde(default)]
    queue_ticket: Option<String>,
    /// A solved proof of work.
    #[serde(default)]
    pow: Option<PowSolution>,
}

/// A solved challenge.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowSolution {
    challenge: String,
    nonce: u64,
}

fn now_s() -> u64 {
    unix_micros() / 1_000_000
}

/// `POST /api/rooms/{id}/join`.
pub async fn join(
    State(app): State<AppState>,
    Extension(limiter): Extension<std::sync::Arc<JoinLimiter>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Before the body is parsed or a credential checked: a flood from one address or subnet
    // costs a map lookup each.
    if let Some(peer) = peer {
        let client = limiter.client_ip(peer.ip(), &headers);
        if let Err(limited) = limiter.check(client) {
            app.metrics().joins_rate_limited.inc();
            return rate_limited(limited);
        }
    }
    let result = match body {
        Ok(body) => match app.room_or_pull(&id).await {
            Ok(room) => decide(&app, &room, &headers, &body).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(ApiError::from(e)),
    };
    let m = app.metrics();
    match result {
        Ok(r) => {
            match r.status() {
                StatusCode::OK => m.joins_admitted.inc(),
                StatusCode::ACCEPTED => m.joins_queued.inc(),
                _ => m.joins_refused.inc(),
            }
            r
        }
        Err(e) => {
            m.joins_refused.inc();
            e.into_response()
        }
    }
}

async fn decide(
    app: &AppState,
    room: &LiveRoom,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if *app.shutdown().borrow() {
        return Err(ApiError::Unavailable);
    }
    let req: Join = optional_json(body)?;
    if room.info().state == RoomState::Ended {
        return Err(ApiError::RoomEnded);
    }
    let now = now_s();
    let admission = app.admission();
    let cluster = app.cluster();
    // This node's own gate counts the cluster's listeners when it has a cluster (it decides
    // for the cluster while the shared gate is away), its own connections otherwise.
    let listeners = cluster.map_or_else(|| app.counters().listeners(), |c| c.listeners_estimate());
    // Every credential is checked before any counter moves: a refused request changes nothing.
    let (decision, listener, shared) = if let Some(t) = &req.ticket {
        let claims = app.keys().verify_for(t, TokenKind::Listen, &room.id, now)?;
        // A blocked listener is refused here, not only when it connects.
        room.admit_listener(ListenerId(claims.sub))?;
        (admission.resume(), Some(ListenerId(claims.sub)), None)
    } else if let Some(q) = &req.queue_ticket {
        let q = QueueTicket::verify(app.keys(), q, &room.id, now)?;
        // A number from the cluster's line goes back to it; this node's own, to its own. A
        // cluster number this node's gate decides (the shared one away) is a fresh join here:
        // as a number it would mean someone else's place.
        match (cluster, q.cluster) {
            (Some(c), Some(epoch)) => match c.admit(Some((q.queue, epoch)), app.metrics()).await {
                Some((d, epoch)) => (d, None, Some(epoch)),
                None => (admission.join(listeners), None, None),
            },
            (_, Some(_)) => (admission.join(listeners), None, None),
            (_, None) => (admission.rejoin(listeners, q.queue), None, None),
        }
    } else {
        match &req.pow {
            Some(p) => {
                let redeemed = admission.guard().lock().redeem(
                    app.keys(),
                    &room.id,
                    &p.challenge,
                    p.nonce,
                    now,
                );
                match redeemed {
                    Ok(_) => app.metrics().pow_accepted.inc(),
                    Err(PowError::Busy) => {
                        return Err(ApiError::Full {
                            message: "the node is checking too many proofs of work; try again"
                                .into(),
                            retry_after_s: 2,
                        })
                    }
                    Err(e) => {
                        app.metrics().pow_refused.inc();
                        return Err(ApiError::Forbidden(e.to_string()));
                    }
                }
            }
            None => {
                let bits = admission.difficulty_for_unproven(now);
                if bits > 0 {
                    return Ok(challenge(app, room, bits, now));
                }
            }
        }
        match cluster {
            Some(c) => match c.admit(None, app.metrics()).await {
                Some((d, epoch)) => (d, None, Some(epoch)),
                None => (admission.join(listeners), None, None),
            },
            None => (admission.join(listeners), None, None),
        }
    };
    Ok(match decision {
        Decision::Admit => admitted(
            app,
            room,
            headers,
            listener.unwrap_or_else(ListenerId::random),
        ),
        Decision::Queue {
            number,
            position,
            eta_s,
        } => queued(app, room, (number, shared), position, eta_s, now),
    })
}

/// `429` with the API's error body and `Retry-After` in whole seconds (at least 1).
fn rate_limited(limited: RateLimited) -> Response {
    let who = match limited {
        RateLimited::Client(_) => "this address",
        RateLimited::Subnet(_) => "this address's network",
    };
    let retry = limited.wait().as_secs_f64().ceil().max(1.0) as u64;
    let mut r =
        ApiError::TooManyRequests(format!("too many joins from {who}; retry after {retry} s"))
            .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    r
}

/// `401` with a fresh challenge.
fn challenge(app: &AppState, room: &LiveRoom, bits: u8, now: u64) -> Response {
    let ttl = app.admission().config().pow_challenge_ttl.as_secs();
    let c = PowChallenge::issue(app.keys(), &room.id, bits, now + ttl);
    app.metrics().pow_challenges.inc();
    let body = json!({
        "error": "proof_of_work_required",
        "message": format!(
            "the node is under attack: find a nonce whose SHA-256 of \"challenge:nonce\" starts \
             with {bits} zero bits, and join again with {{\"pow\": {{\"challenge\", \"nonce\"}}}}"
        ),
        "challenge": c,
        "bits": bits,
    });
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn queued(
    app: &AppState,
    room: &LiveRoom,
    (number, shared): (u64, Option<u64>),
    position: u64,
    eta_s: u64,
    now: u64,
) -> Response {
    let ttl = app.admission().config().queue_ticket_ttl.as_secs();
    let ticket = QueueTicket::issue_in(app.keys(), &room.id, number, shared, now + ttl);
    // Come back within the seat hold; sooner when the turn may be close.
    let retry = app.admission().config().gate.retry_after_s(position, eta_s);
    let body = json!({
        "queue_ticket": ticket,
        "position": position,
        "eta_s": eta_s,
        "retry_after_s": retry,
    });
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry));
    r
}

fn admitted(
    app: &AppState,
    room: &LiveRoom,
    headers: &HeaderMap,
    listener: ListenerId,
) -> Response {
    let exp = now_s() + app.config().ticket_ttl.as_secs();
    let ticket = app.keys().sign(&Claims {
        kid: String::new(),
        kind: TokenKind::Listen,
        room: room.id.clone(),
        role: Role::Listener,
        sub: listener.0,
        exp,
    });
    let path = format!("/api/rooms/{}/listen?ticket={}", room.id, ticket);
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    // In a cluster: the least-loaded edge, and the others to move to if it goes away.
    let urls: Vec<String> = app
        .cluster()
        .map(|c| c.listen_bases())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|b| ws_base(&b).map(|w| format!("{w}{path}")))
        .collect();
    let mut bases = urls.into_iter();
    let listen_url = match (bases.next(), host) {
        (Some(url), _) => url,
        (None, Some(host)) => format!("ws://{host}{path}"),
        (None, None) => path,
    };
    let alternates: Vec<String> = bases.collect();
    let hls_path = format!("/hls/{}/live.m3u8", room.id);
    let hls_url = match host {
        Some(host) => format!("http://{host}{hls_path}"),
        None => hls_path,
    };
    Json(json!({
        "ticket": ticket,
        "listener_id": listener.0,
        "listen_url": listen_url,
        "alternates": alternates,
        "hls_url": hls_url,
        "expires_at": exp,
        "seq": room.head().0,
    }))
    .into_response()
}

/// `ws://host:port` for a node's `http://host:port` (`wss://` for `https://`).
fn ws_base(base: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("http://") {
        Some(format!("ws://{rest}"))
    } else {
        base.strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
    }
}
