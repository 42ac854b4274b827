//! A node against one anonymous script: room creation, idle rooms, tickets, WHIP slots, slow
//! bodies and the smaller holes (cross-site writes, titles, schedules, page headers, WHIP
//! errors, a flood of `/metrics`). Each test drives a real node over real loopback sockets the
//! way an attacker would, and asserts what the node must hold. The stage's own attacks are in
//! `hostile_stage.rs`.

mod common;

use std::net::IpAddr;
use std::time::Duration;

// `OFFER` never completes ICE here: nobody answers the node's checks.
use common::{API_KEY, WHIP_OFFER as OFFER};
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tribune_server::config::{AbuseLimits, RoomPolicy};
use tribune_server::ServerConfig;

/// `POST {base}/api/rooms` with an optional key, from `from` (a loopback address): status,
/// answer, `Retry-After`.
async fn create(
    base: &str,
    key: Option<&str>,
    from: IpAddr,
    body: Value,
) -> (u16, Value, Option<u64>) {
    let http = Client::builder().local_address(from).build().unwrap();
    let mut req = http.post(format!("{base}/api/rooms")).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, resp.json().await.unwrap_or(Value::Null), retry)
}

fn lo(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Waits (at most 10 s) until `metric` reads `want`.
async fn wait_metric(base: &str, metric: &str, want: u64) {
    common::wait_metric(base, metric, want, Duration::from_secs(10)).await
}

#[tokio::test]
async fn only_operators_create_rooms() {
    let server = common::start().await;
    let base = server.url();
    let title = json!({"title": "mine"});
    let (status, v, _) = create(&base, None, lo(1), title.clone()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("unauthenticated"))
    );
    assert!(v["message"].as_str().unwrap().contains("API key"), "{v}");
    let (status, _, _) = create(&base, Some("guessed-key-guessed-key"), lo(1), title.clone()).await;
    assert_eq!(status, 403);
    let (status, v, _) = create(&base, Some(API_KEY), lo(1), title).await;
    assert_eq!(status, 201, "{v}");
    assert!(v["host_token"].is_string());
    assert_eq!(common::metric(&base, "rooms_refused_total").await, 2);
    assert_eq!(common::metric(&base, "rooms_created_total").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn open_rooms_are_bounded_per_address_and_per_node() {
    let server = common::start_with(ServerConfig {
        rooms: RoomPolicy {
            api_keys: vec![API_KEY.into()],
            open: true,
            max_rooms: 3,
            open_rooms_per_ip: 2,
            ..RoomPolicy::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let title = json!({"title": "community"});
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let (status, v, _) = create(&base, None, lo(1), title.clone()).await;
        assert_eq!(status, 201, "{v}");
        hosts.push((
            v["id"].as_str().unwrap().to_owned(),
            v["host_token"].clone(),
        ));
    }
    // A third from the same address: its share is used up.
    let (status, v, retry) = create(&base, None, lo(1), title.clone()).await;
    assert_eq!(status, 429, "{v}");
    assert!(retry.is_some_and(|s| s >= 1));
    // Another address may; then the node is full, for operators too.
    let (status, _, _) = create(&base, None, lo(2), title.clone()).await;
    assert_eq!(status, 201);
    let (status, v, retry) = create(&base, Some(API_KEY), lo(3), title.clone()).await;
    assert_eq!((status, v["error"].as_str()), (503, Some("full")));
    assert!(v["message"].as_str().unwrap().contains("3 rooms"), "{v}");
    assert!(retry.is_some_and(|s| s >= 1));
    // An ended room no longer counts.
    let (id, host) = &hosts[0];
    let (status, _) = common::post(
        &base,
        &format!("/api/rooms/{id}/end"),
        host.as_str().unwrap(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = create(&base, Some(API_KEY), lo(3), title).await;
    assert_eq!(status, 201);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_costs_nothing_until_someone_speaks_or_listens() {
    let data = tempfile::tempdir().unwrap();
    let server = common::start_with(ServerConfig {
        data_dir: Some(data.path().to_path_buf()),
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Nobody speaks or listens: no frame made, nothing encoded, nothing recorded.
    assert_eq!(common::metric(&base, "program_frames_total").await, 0);
    assert_eq!(common::metric(&base, "mixer_ticks_total").await, 0);
    let rec = common::call(
        Method::GET,
        &format!("{base}/api/rooms/{room}/recording"),
        None,
        None,
    )
    .await
    .1;
    assert_eq!(rec["segments"], 0, "{rec}");
    // A listener hears the room's silence at once, still without an encoder at work.
    let mut ws = common::open_listener(&server, &room).await;
    let (frames, _) = common::count_frames(&mut ws, Duration::from_millis(600)).await;
    assert!(frames >= 15, "silence flows to a listener: {frames}");
    assert_eq!(common::metric(&base, "mixer_ticks_total").await, 0);
    // Someone speaks: now the mixer works, and what was said is recorded.
    let api = tribune_client::Api::new(&base).unwrap();
    tribune_client::speak(
        &api,
        tribune_client::SpeakOptions {
            room: room.clone(),
            token: host,
            source: tribune_client::AudioSource::Tone(440.0),
            duration: Some(Duration::from_secs(1)),
            bitrate_bps: 48_000,
            hear: false,
        },
    )
    .await
    .unwrap();
    assert!(common::metric(&base, "mixer_ticks_total").await >= 40);
    drop(ws);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_end_by_themselves_and_leave_memory() {
    let data = tempfile::tempdir().unwrap();
    let server = common::start_with(ServerConfig {
        data_dir: Some(data.path().to_path_buf()),
        rooms: RoomPolicy {
            idle_end: Duration::from_secs(1),
            ended_keep: Duration::from_millis(300),
            ..RoomPolicy::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (quiet, _) = common::create_room(&base).await;
    let (spoken, host) = common::create_room(&base).await;
    let mut ws = common::open_listener(&server, &quiet).await;
    // A host that came and went: the idle clock starts when it leaves.
    let mut speaker = common::open_speaker(&server, &spoken, &host).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, v) = common::call(
        Method::GET,
        &format!("{base}/api/rooms/{spoken}"),
        None,
        None,
    )
    .await;
    assert_eq!(v["state"], "live", "a room with its host connected stays");
    futures_util::SinkExt::close(&mut speaker).await.unwrap();
    // The listener of the room nobody spoke in is told it ended.
    let (code, reason) = common::expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1000, "room ended"));
    wait_metric(&base, "rooms_idle_ended_total", 2).await;
    // Both are let go from memory; their recordings still describe them.
    wait_metric(&base, "rooms", 0).await;
    let (status, v) = common::call(
        Method::GET,
        &format!("{base}/api/rooms/{quiet}"),
        None,
        None,
    )
    .await;
    assert_eq!((status, v["state"].as_str()), (200, Some("ended")), "{v}");
    let (status, _) = common::call(
        Method::POST,
        &format!("{base}/api/rooms/{spoken}/join"),
        None,
        None,
    )
    .await;
    assert!(matches!(status, 404 | 410), "{status}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_is_one_listener() {
    use tribune_core::admission::GateConfig;
    use tribune_server::admission::AdmissionConfig;
    let server = common::start_with(ServerConfig {
        admission: AdmissionConfig {
            gate: GateConfig {
                max_listeners: 3,
                ..GateConfig::default()
            },
            ..AdmissionConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let (_, _, url) = common::join(&base, &room).await;
    // One admission, 30 sockets: each replaces the one before.
    let mut sockets = Vec::new();
    for _ in 0..30 {
        sockets.push(common::try_ws(&url).await.expect("upgraded"));
    }
    let last = sockets.pop().unwrap();
    for mut ws in sockets {
        let (code, reason) = common::expect_close(&mut ws).await;
        assert_eq!(code, 4002, "{reason}");
    }
    wait_metric(&base, "listeners", 1).await;
    assert_eq!(common::metric(&base, "listeners_replaced_total").await, 29);
    // The node counted one listener: two more newcomers get in, the next one waits in line.
    for _ in 0..2 {
        common::join(&base, &room).await;
    }
    let (status, v) = common::call(
        Method::POST,
        &format!("{base}/api/rooms/{room}/join"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 202, "{v}");
    drop(last);
    server.shutdown().await.unwrap();
}

async fn offer(base: &str, room: &str, token: &str, sdp: &str) -> (u16, Value) {
    let resp = Client::new()
        .post(format!("{base}/api/rooms/{room}/whip"))
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_cannot_hold_the_nodes_whip_slots() {
    let server = common::start_with(ServerConfig {
        whip_max_sessions: 4,
        abuse: AbuseLimits {
            whip_connect_timeout: Duration::from_secs(2),
            ..AbuseLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (mine, my_host) = common::create_room(&base).await;
    let (theirs, their_host) = common::create_room(&base).await;
    // 40 offers with one token: each replaces the last, so one session at most remains.
    for _ in 0..40 {
        assert_eq!(offer(&base, &mine, &my_host, OFFER).await.0, 201);
    }
    wait_metric(&base, "whip_sessions", 1).await;
    // Another room's host publishes as usual.
    assert_eq!(offer(&base, &theirs, &their_host, OFFER).await.0, 201);
    // Neither ever completes ICE: both are dropped after the connect timeout.
    wait_metric(&base, "whip_sessions", 0).await;
    assert!(common::metric(&base, "whip_connect_timeouts_total").await >= 2);
    // At the node's cap, the answer says so (not "shutting down").
    for _ in 0..3 {
        let (_, token) = common::mint(&base, &mine, &my_host, "speaker").await;
        assert_eq!(offer(&base, &mine, &token, OFFER).await.0, 201);
    }
    assert_eq!(offer(&base, &mine, &my_host, OFFER).await.0, 201);
    let (status, v) = offer(&base, &theirs, &their_host, OFFER).await;
    assert_eq!((status, v["error"].as_str()), (503, Some("full")), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("WebRTC sessions"),
        "{v}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickled_body_gets_408_and_its_connection_closes() {
    let server = common::start_with(ServerConfig {
        abuse: AbuseLimits {
            body_timeout: Duration::from_secs(1),
            ..AbuseLimits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let head = format!(
        "POST /api/rooms/{room}/join HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"",
        server.addr
    );
    let mut stalled = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        stalled.push(s);
    }
    // One more trickles a byte every 200 ms: a deadline on the whole body, not per byte.
    let mut trickle = TcpStream::connect(server.addr).await.unwrap();
    trickle.write_all(head.as_bytes()).await.unwrap();
    let trickler = tokio::spawn(async move {
        let mut answer = Vec::new();
        for _ in 0..40 {
            if trickle.write_all(b" ").await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(200), trickle.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    });
    // Meanwhile the node answers everyone else.
    let started = std::time::Instant::now();
    let (status, _) = common::call(Method::GET, &format!("{base}/healthz"), None, None).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_millis(900));
    for mut s in stalled {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
            .await
            .expect("answered and closed within 5 s")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let text = trickler.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 408"), "trickled body: {text}");
    assert!(common::metric(&base, "body_timeouts_total").await >= 51);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cross_site_writes_are_refused() {
    let server = common::start().await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let join = format!("{base}/api/rooms/{room}/join");
    let http = Client::new();
    // A page elsewhere posting a "simple" request (no preflight) on a visitor's behalf.
    let resp = http
        .post(&join)
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .post(&join)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .post(format!("{base}/api/rooms"))
        .header("origin", "null")
        .bearer_auth(API_KEY)
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The node's own pages, and clients that are not browsers, are not affected.
    let resp = http
        .post(&join)
        .header("origin", base.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(common::metric(&base, "joins_admitted_total").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn titles_and_schedules_are_checked() {
    let server = common::start().await;
    let base = server.url();
    for title in [
        "nul\0here",
        "two\nlines",
        "bidi \u{202E}txt.exe",
        "  ",
        "\u{2066}x",
    ] {
        let (status, v, _) = create(&base, Some(API_KEY), lo(1), json!({"title": title})).await;
        assert_eq!(status, 400, "{title:?}: {v}");
    }
    let (status, v, _) = create(
        &base,
        Some(API_KEY),
        lo(1),
        json!({"title": "far", "scheduled_for": u64::MAX}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let soon = tribune_core::unix_micros() / 1_000_000 + 3600;
    let (status, v, _) = create(
        &base,
        Some(API_KEY),
        lo(1),
        json!({"title": "  Town hall  ", "scheduled_for": soon}),
    )
    .await;
    assert_eq!(
        (status, v["state"].as_str()),
        (201, Some("scheduled")),
        "{v}"
    );
    assert_eq!(v["title"], "Town hall");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn pages_carry_security_headers() {
    let server = common::start().await;
    let base = server.url();
    for path in ["/", "/r/abcdefghij", "/host/abcdefghij"] {
        let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn whip_parse_errors_show_no_addresses() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let broken = OFFER.replacen("v=0", "v=x", 1);
    let (status, v) = offer(&base, &room, &host, &broken).await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(message.starts_with("malformed SDP offer"), "{message}");
    // No run of 8 or more digits, no 0x…: nothing that could be an address in the process.
    let digits = message
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(digits < 8 && !message.contains("0x"), "{message}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_takes_reads_only_and_a_flood_of_them_costs_listeners_nothing() {
    let server = common::start().await;
    let base = server.url();
    let url = format!("{base}/metrics");
    let (room, _) = common::create_room(&base).await;
    let mut ws = common::open_listener(&server, &room).await;
    let (frames, _) = common::count_frames(&mut ws, Duration::from_millis(300)).await;
    assert!(frames > 0, "the room plays");
    {
        let http = Client::new();
        // Writes are refused by method.
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let r = http
                .request(method.clone(), &url)
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 405, "{method}");
        }
        // One that claims 100 MB is answered at once, without waiting for the body.
        let mut raw = TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(2), raw.read(&mut answer))
            .await
            .expect("answered within 2 s")
            .unwrap();
        let head = String::from_utf8_lossy(&answer[..n]);
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        // A long query string is ignored: the same page.
        let r = http
            .get(format!("{url}?{}", "a=b&".repeat(1_000)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("tribune_listeners 1"), "{text}");
    }
    let open_before = common::metric(&base, "connections_open").await;

    // 16 keep-alive clients ask as fast as they can for 2 s while the listener listens.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let flood: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let http = Client::new();
                let mut answered = 0u64;
                while tokio::time::Instant::now() < until {
                    let r = http.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    assert!(!r.bytes().await.unwrap().is_empty());
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let (frames, gaps) = common::count_frames(&mut ws, Duration::from_secs(2)).await;
    let mut answered = 0;
    for f in flood {
        answered += f.await.unwrap();
    }
    println!("{answered} /metrics answers in 2 s; the listener had {frames} frames, {gaps} lost");
    assert!(answered >= 100, "{answered} answers");
    assert_eq!(gaps, 0, "the listener lost frames to the flood");
    // 100 frames are due in 2 s; a few may arrive just after the window.
    assert!(frames >= 90, "the listener had {frames} frames in 2 s");
    // The flood's connections are all closed with their clients: none is left held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = common::metric(&base, "connections_open").await;
        if open <= open_before {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections open, {open_before} before the flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();
}
