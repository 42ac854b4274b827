//! The relay endpoint and edges, used the way an attacker (or a broken node) would: no token,
//! a listener's ticket, another room's token, junk, floods, silence; an edge asked for rooms
//! that do not exist or whose upstream is gone; an edge letting a room go.

mod common;

use std::time::{Duration, Instant};

use common::{create_room, expect_close, join, metric, start_with, try_ws, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tribune_core::{unix_micros, Claims, Keyring, Role, RoomId, TokenKind};
use tribune_server::config::{ClusterConfig, NodeRole};
use tribune_server::{RunningServer, ServerConfig};

const SECRET: &[u8] = b"relay-test-secret-0123456789";

fn keys() -> Keyring {
    Keyring::new("k1", SECRET.to_vec())
}

async fn origin() -> RunningServer {
    start_with(ServerConfig {
        keys: keys(),
        cluster: ClusterConfig {
            role: NodeRole::Origin,
            ..ClusterConfig::default()
        },
        ..ServerConfig::default()
    })
    .await
}

async fn edge(upstream: &str, grace: Duration) -> RunningServer {
    start_with(ServerConfig {
        keys: keys(),
        cluster: ClusterConfig {
            role: NodeRole::Edge,
            upstream: Some(upstream.to_owned()),
            pull_grace: grace,
            pull_timeout: Duration::from_secs(1),
            ..ClusterConfig::default()
        },
        ..ServerConfig::default()
    })
    .await
}

fn relay_token(room: &str, keys: &Keyring, exp: u64) -> String {
    keys.sign(&Claims {
        kid: String::new(),
        kind: TokenKind::Relay,
        room: RoomId::parse(room).unwrap(),
        role: Role::Listener,
        sub: 0,
        exp,
    })
}

fn later() -> u64 {
    unix_micros() / 1_000_000 + 60
}

/// Opens the relay WebSocket of `room` with `bearer`: the socket, or the refusal's status.
async fn relay(
    server: &RunningServer,
    room: &str,
    bearer: Option<&str>,
    query: &str,
) -> Result<Ws, u16> {
    let url = format!("ws://{}/api/rooms/{room}/relay{query}", server.addr);
    let mut req = url.into_client_request().unwrap();
    if let Some(b) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {b}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The first text message: the hello.
async fn hello(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(_))) => {}
            other => panic!("no hello: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_endpoint_refuses_anyone_but_a_node_and_closes_on_junk() {
    let o = origin().await;
    let base = o.url();
    let (room, host) = create_room(&base).await;
    let (other, _) = create_room(&base).await;

    // Credentials: none, a listener's ticket, a stage token, another room's, a stranger's
    // key, an expired one; then a room that does not exist and a malformed resume point.
    assert_eq!(relay(&o, &room, None, "").await.err(), Some(401));
    let (_, ticket, _) = join(&base, &room).await;
    assert_eq!(relay(&o, &room, Some(&ticket), "").await.err(), Some(403));
    assert_eq!(relay(&o, &room, Some(&host), "").await.err(), Some(403));
    let other_token = relay_token(&other, &keys(), later());
    assert_eq!(
        relay(&o, &room, Some(&other_token), "").await.err(),
        Some(403)
    );
    let stranger = Keyring::new("k1", b"another-secret-0123456789".to_vec());
    let forged = relay_token(&room, &stranger, later());
    assert_eq!(relay(&o, &room, Some(&forged), "").await.err(), Some(403));
    let expired = relay_token(&room, &keys(), unix_micros() / 1_000_000 - 1);
    assert_eq!(relay(&o, &room, Some(&expired), "").await.err(), Some(403));
    let missing = "abcdefghjk";
    let token = relay_token(missing, &keys(), later());
    assert_eq!(relay(&o, missing, Some(&token), "").await.err(), Some(404));
    let token = relay_token(&room, &keys(), later());
    assert_eq!(
        relay(&o, &room, Some(&token), "?from=x").await.err(),
        Some(400)
    );

    // A node's token: the hello, then junk of every kind closes it with its reason.
    let mut ws = relay(&o, &room, Some(&token), "").await.unwrap();
    let h = hello(&mut ws).await;
    assert_eq!(h["type"], "hello");
    assert_eq!(h["info"]["id"], room.as_str());
    ws.send(Message::Binary(vec![1u8, 1, 0].into()))
        .await
        .unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1003);

    let mut ws = relay(&o, &room, Some(&token), "").await.unwrap();
    hello(&mut ws).await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(expect_close(&mut ws).await.0, 1007);

    let mut ws = relay(&o, &room, Some(&token), "").await.unwrap();
    hello(&mut ws).await;
    for _ in 0..40 {
        let up = r#"{"type":"audience","listeners":1}"#;
        if ws.send(Message::Text(up.into())).await.is_err() {
            break;
        }
    }
    assert_eq!(expect_close(&mut ws).await.0, 1008);

    let mut ws = relay(&o, &room, Some(&token), "").await.unwrap();
    hello(&mut ws).await;
    let big = format!(
        r#"{{"type":"audience","listeners":1,"pad":"{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let _ = ws.send(Message::Text(big.into())).await;
    // Dropped at once (tungstenite stops reading past the limit: no close frame, or 1009).
    let code = expect_close(&mut ws).await.0;
    assert!(code == 0 || code == 1009, "{code}");

    // A claimed audience counts (capped), and goes when the node goes silent: closed for
    // resuming after 5 s without a report.
    let mut ws = relay(&o, &room, Some(&token), "").await.unwrap();
    hello(&mut ws).await;
    let up = format!(r#"{{"type":"audience","listeners":{}}}"#, u64::MAX);
    ws.send(Message::Text(up.into())).await.unwrap();
    // The 5 s run from the report.
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(3);
    while listeners(&base, &room).await != 1 << 32 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = expect_close_within(&mut ws, Duration::from_secs(8)).await;
    assert_eq!(code, 4000);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Every relay connection is gone: none is left counted.
    common::wait_metric(&base, "relays_out", 0, Duration::from_secs(3)).await;
    assert_eq!(listeners(&base, &room).await, 0);
}

/// The listeners the room API counts.
async fn listeners(base: &str, room: &str) -> u64 {
    let url = format!("{base}/api/rooms/{room}");
    let (_, info) = common::call(reqwest::Method::GET, &url, None, None).await;
    info["listeners"].as_u64().unwrap_or(u64::MAX)
}

async fn expect_close_within(ws: &mut Ws, within: Duration) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => return (f.code.into(), f.reason.to_string()),
            Ok(Some(Ok(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_refuses_what_it_cannot_pull_and_lets_rooms_go() {
    let o = origin().await;
    let (room, host) = create_room(&o.url()).await;
    let e = edge(&o.url(), Duration::from_secs(1)).await;
    let get = |path: String| {
        let url = format!("{}{path}", e.url());
        async move { common::call(reqwest::Method::GET, &url, None, None).await }
    };

    // A room the origin does not have: 404, asked upstream once (then remembered a moment).
    assert_eq!(get("/api/rooms/abcdefghjk".into()).await.0, 404);
    assert_eq!(get("/hls/abcdefghjk/live.m3u8".into()).await.0, 404);
    assert_eq!(metric(&e.url(), "rooms_pulled").await, 0);
    // A listen with a ticket the edge cannot verify pulls nothing.
    let forged = format!("ws://{}/api/rooms/{room}/listen?ticket=x.y", e.addr);
    assert_eq!(try_ws(&forged).await.err(), Some(403));
    assert_eq!(metric(&o.url(), "relays_out").await, 0);

    // Looking at the room pulls it; with nobody listening it is let go after the grace.
    let (code, info) = get(format!("/api/rooms/{room}")).await;
    assert_eq!(code, 200, "{info}");
    assert_eq!(info["id"], room.as_str());
    assert_eq!(metric(&e.url(), "rooms_pulled").await, 1);
    assert_eq!(metric(&o.url(), "relays_out").await, 1);
    common::wait_metric(&e.url(), "rooms_pulled", 0, Duration::from_secs(5)).await;
    common::wait_metric(&o.url(), "relays_out", 0, Duration::from_secs(5)).await;
    // Asked again, it is pulled again.
    assert_eq!(get(format!("/api/rooms/{room}")).await.0, 200);
    assert_eq!(metric(&e.url(), "rooms_pulled").await, 1);

    // Stage actions are the origin's. A token the edge can check itself and refuses is
    // refused there; a request it accepts is sent on, and the origin's answer is the client's.
    let (code, _) = common::call(
        reqwest::Method::POST,
        &format!("{}/api/rooms/{room}/end", e.url()),
        Some("x"),
        None,
    )
    .await;
    assert!(code == 401 || code == 403, "{code}");
    assert_eq!(metric(&e.url(), "forwarded_total").await, 0);
    let http = reqwest::Client::new();
    // Mints a speaker through the edge: `POST /api/rooms/{room}/speakers` with `hops`.
    let mint = |room: String, token: String, hops: Option<&'static str>| {
        let mut req = http
            .post(format!("{}/api/rooms/{room}/speakers", e.url()))
            .bearer_auth(token)
            .json(&serde_json::json!({}));
        if let Some(h) = hops {
            req = req.header("x-tribune-hops", h);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(mint(room.clone(), host.clone(), None).await, 201);
    assert_eq!(metric(&e.url(), "forwarded_total").await, 1);
    // Too big: refused here, never sent on.
    let big = http
        .post(format!("{}/api/rooms/{room}/speakers", e.url()))
        .bearer_auth(&host)
        .body(vec![b'{'; 32 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    // Sent on too many times (a loop of misconfigured nodes): refused, not sent on again.
    assert_eq!(mint(room.clone(), host.clone(), Some("8")).await, 508);
    // Junk in the hop count is no count.
    assert_eq!(mint(room.clone(), host.clone(), Some("many")).await, 201);
    assert_eq!(metric(&e.url(), "forwarded_total").await, 2);
    // A room nobody listens to on this edge: found upstream and sent on all the same.
    let (quiet, quiet_host) = create_room(&o.url()).await;
    assert_eq!(mint(quiet, quiet_host.clone(), None).await, 201);
    assert_eq!(metric(&e.url(), "forwarded_total").await, 3);
    // One the upstream does not have either: 404, not sent on.
    assert_eq!(mint("abcdefghjk".into(), quiet_host, None).await, 404);
    assert_eq!(metric(&e.url(), "forwarded_total").await, 3);
    // A path that names a room and then climbs out of it (sent raw: a client library would
    // rewrite it): not a stage route, never sent on, so the edge cannot be made to fetch
    // another route of its upstream (its metrics here).
    let (climb, _) = create_room(&o.url()).await;
    let (code, answer) =
        common::raw_get(e.addr, &format!("/api/rooms/{climb}/end/../../../metrics")).await;
    assert_ne!(code, 200, "{answer}");
    assert!(!answer.contains("tribune_rooms_pulled"), "{answer}");
    let (code, _) =
        common::raw_get(e.addr, &format!("/api/rooms/{climb}/requests/%2e%2e/me")).await;
    assert_ne!(code, 200);
    assert_eq!(metric(&e.url(), "forwarded_total").await, 3);

    // The origin goes away: the room the edge holds stays; a room it has not pulled is
    // answered 503 with Retry-After, in about the pull timeout, never hung.
    let (fresh, _) = create_room(&o.url()).await;
    o.shutdown().await.unwrap();
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/rooms/{fresh}/join", e.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A stage request for the room it holds: the origin does not answer, so 503 (with
    // Retry-After) within the forward's deadline, counted.
    let started = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/rooms/{room}/end", e.url()))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(metric(&e.url(), "forward_errors_total").await, 1);
}
