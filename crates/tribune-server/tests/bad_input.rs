//! Bad input gets a status and a message, and never disturbs the room or other listeners.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tribune_media::wire;

async fn status_and_error(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body names a message: {body}"
    );
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn unknown_rooms_and_paths_are_404() {
    let server = common::start().await;
    let http = reqwest::Client::new();
    let base = server.url();
    for (method, path) in [
        ("GET", "/api/rooms/abcdefghij"),
        ("GET", "/api/rooms/not-a-room"),
        ("POST", "/api/rooms/abcdefghij/join"),
        ("POST", "/api/rooms/abcdefghij/end"),
        ("GET", "/api/rooms/..%2F..%2Fetc"),
        ("GET", "/no/such/path"),
    ] {
        let req = if method == "GET" {
            http.get(format!("{base}{path}"))
        } else {
            http.post(format!("{base}{path}"))
        };
        let (status, _) = status_and_error(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    // A WebSocket handshake to an unknown room is refused with 404 too.
    let err = tokio_tungstenite::connect_async(format!(
        "ws://{}/api/rooms/abcdefghij/listen?ticket=x",
        server.addr
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_or_bad_tokens_are_401_or_403() {
    let server = common::start().await;
    let base = server.url();
    let http = reqwest::Client::new();
    let (room, host) = common::create_room(&base).await;
    let (other_room, other_host) = common::create_room(&base).await;
    let (_, speaker) = common::mint(&base, &room, &host, "speaker").await;
    let (_, ticket, _) = common::join(&base, &room).await;
    let mut forged = host.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let end = format!("{base}/api/rooms/{room}/end");
    let cases: [(Option<&str>, StatusCode); 6] = [
        (None, StatusCode::UNAUTHORIZED),
        (Some("garbage"), StatusCode::FORBIDDEN),
        (Some(&forged), StatusCode::FORBIDDEN),
        (Some(&other_host), StatusCode::FORBIDDEN),
        (Some(&ticket), StatusCode::FORBIDDEN),
        (Some(&speaker), StatusCode::FORBIDDEN),
    ];
    for (token, want) in cases {
        let mut req = http.post(&end);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let (status, _) = status_and_error(req.send().await.unwrap()).await;
        assert_eq!(status, want, "end with {token:?}");
    }
    // The room is untouched by all of that.
    let info: Value = http
        .get(format!("{base}/api/rooms/{room}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["state"], "live");

    // Speak and listen handshakes check credentials before upgrading.
    let ws = |path: String| {
        let addr = server.addr;
        async move {
            tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string()
        }
    };
    assert!(ws(format!("/api/rooms/{room}/speak")).await.contains("401"));
    assert!(ws(format!("/api/rooms/{room}/speak?token=nope"))
        .await
        .contains("403"));
    assert!(
        ws(format!("/api/rooms/{room}/speak?token={ticket}"))
            .await
            .contains("403"),
        "a listen ticket cannot speak"
    );
    assert!(ws(format!("/api/rooms/{other_room}/speak?token={host}"))
        .await
        .contains("403"));
    assert!(ws(format!("/api/rooms/{room}/listen"))
        .await
        .contains("401"));
    assert!(ws(format!("/api/rooms/{room}/listen?ticket=x.y"))
        .await
        .contains("403"));
    assert!(
        ws(format!("/api/rooms/{other_room}/listen?ticket={ticket}"))
            .await
            .contains("403")
    );
    assert!(
        ws(format!("/api/rooms/{room}/listen?ticket={host}"))
            .await
            .contains("403"),
        "a stage token is not a ticket"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_400_and_oversized_body_413() {
    let server = common::start().await;
    let base = server.url();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{base}{path}"))
            .bearer_auth(common::API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for body in [
        &b"{\"title\": "[..],
        b"[]",
        b"{\"title\": 5}",
        b"{}",
        b"{\"title\":\"\"}",
        b"{\"title\":\"x\",\"extra\":1}",
    ] {
        let (status, code) =
            status_and_error(post("/api/rooms", body.to_vec()).await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
        assert_eq!(code, "bad_request");
    }
    let huge = serde_json::to_vec(&json!({"title": "x".repeat(100_000)})).unwrap();
    let (status, code) = status_and_error(post("/api/rooms", huge).await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let (room, _) = common::create_room(&base).await;
    let (status, _) = status_and_error(
        post(&format!("/api/rooms/{room}/join"), b"{not json".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = status_and_error(
        post(&format!("/api/rooms/{room}/join"), vec![b' '; 50_000])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(common::metric(&base, "joins_admitted_total").await, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_speaker_messages_close_only_that_speaker() {
    let server = common::start().await;
    let (room, host) = common::create_room(&server.url()).await;
    let mut listener = common::open_listener(&server, &room).await;
    let (before, _) = common::count_frames(&mut listener, Duration::from_millis(200)).await;
    assert!(before > 0);
    let garbage: Vec<(Message, &str)> = vec![
        (
            Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()),
            "bad audio message",
        ),
        (
            Message::Binary(wire::single_frame_message(1, 2, b"this is not opus at all")),
            "not a 20 ms Opus packet",
        ),
        (
            Message::Binary(wire::single_frame_message(1, 2, &[0xff; 3])),
            "not a 20 ms Opus packet",
        ),
        (
            Message::Text("{\"type\":\"explode\"}".into()),
            "malformed control message",
        ),
        (
            Message::Text("not json".into()),
            "malformed control message",
        ),
    ];
    for (msg, want) in garbage {
        let mut speaker = common::open_speaker(&server, &room, &host).await;
        speaker.send(msg).await.unwrap();
        let (code, reason) = common::expect_close(&mut speaker).await;
        assert_eq!(code, 1007, "{reason}");
        assert!(reason.contains(want), "{reason:?} should say {want:?}");
    }
    // The listener kept receiving a contiguous stream throughout.
    let (after, gaps) = common::count_frames(&mut listener, Duration::from_millis(500)).await;
    assert!(after >= 20, "still live: {after} frames");
    assert_eq!(gaps, 0);
    assert!(common::metric(&server.url(), "bad_input_closes_total").await >= 5);
    assert_eq!(common::metric(&server.url(), "listeners").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listener_messages_close_only_that_listener() {
    let server = common::start().await;
    let (room, _) = common::create_room(&server.url()).await;
    let mut good = common::open_listener(&server, &room).await;
    for (msg, want_code) in [
        (Message::Binary(vec![1, 2, 3].into()), 1003),
        (Message::Text("{{{{".into()), 1007),
    ] {
        let mut bad = common::open_listener(&server, &room).await;
        bad.send(msg).await.unwrap();
        let (code, _) = common::expect_close(&mut bad).await;
        assert_eq!(code, want_code);
    }
    // A WebSocket protocol violation (an unmasked client frame with a reserved opcode) drops
    // that connection without a panic.
    let (_, _, listen_url) = common::join(&server.url(), &room).await;
    let path = listen_url
        .split_once(&server.addr.to_string())
        .unwrap()
        .1
        .to_owned();
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    raw.write_all(handshake.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = raw.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    raw.write_all(&[0x8b, 0x05, b'h', b'e', b'l', b'l', b'o', 0xff, 0xff])
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true), "the server drops the connection");
    let (frames, gaps) = common::count_frames(&mut good, Duration::from_millis(500)).await;
    assert!(
        frames >= 20 && gaps == 0,
        "good listener unaffected: {frames} frames, {gaps} gaps"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        common::metric(&server.url(), "listeners").await,
        1,
        "no leaked listener"
    );
    server.shutdown().await.unwrap();
}
