//! Helpers shared by the server's integration tests: a real node on a loopback port, real HTTP
//! and WebSocket clients.
#![allow(dead_code)]

pub mod aiortc;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tribune_server::{RunningServer, Server, ServerConfig};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Starts a node on an ephemeral loopback port.
pub async fn start() -> RunningServer {
    start_with(ServerConfig::default()).await
}

/// The operator key test nodes take (unless a test sets its own, or opens rooms to all).
pub const API_KEY: &str = "test-operator-key-0123456789";

/// Starts a node with these settings on an ephemeral loopback port.
pub async fn start_with(mut config: ServerConfig) -> RunningServer {
    config.listen = "127.0.0.1:0".parse().unwrap();
    if config.rooms.api_keys.is_empty() && !config.rooms.open {
        config.rooms.api_keys.push(API_KEY.to_owned());
    }
    Server::bind(config).await.expect("bind").spawn()
}

/// A room created over HTTP with the operator key: (id, host token).
pub async fn create_room(base: &str) -> (String, String) {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/api/rooms"))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"title": "test room"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["host_token"].as_str().unwrap().to_owned(),
    )
}

/// Joins and opens a listen WebSocket.
pub async fn open_listener(server: &RunningServer, room: &str) -> Ws {
    let (_, _, url) = join(&server.url(), room).await;
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

/// Opens a speak WebSocket with a stage token.
pub async fn open_speaker(server: &RunningServer, room: &str, token: &str) -> Ws {
    let url = format!("ws://{}/api/rooms/{room}/speak?token={token}", server.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

/// Waits for the server's close frame, skipping other messages: (code, reason).
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("server closes within 5 s");
        match msg {
            Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (0, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return (0, e.to_string()),
        }
    }
}

/// Counts audio frames arriving on a listener during `window`, checking they are contiguous.
pub async fn count_frames(ws: &mut Ws, window: Duration) -> (u64, u64) {
    let deadline = tokio::time::Instant::now() + window;
    let (mut received, mut gaps) = (0u64, 0u64);
    let mut next: Option<u64> = None;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if let Message::Binary(b) = msg {
            for r in tribune_media::wire::parse_message(&b).expect("well-formed batch") {
                if let Some(n) = next {
                    gaps += r.seq.saturating_sub(n);
                }
                next = Some(r.seq + 1);
                received += 1;
            }
        }
    }
    (received, gaps)
}

/// Reads one metric's value from `/metrics`.
pub async fn metric(base: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("tribune_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// Waits up to `within` until the metric `name` reads `want` (a gauge another task updates);
/// fails with the last reading.
#[allow(dead_code)]
pub async fn wait_metric(base: &str, name: &str, want: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = metric(base, name).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next JSON event on a listener (audio is skipped).
pub async fn next_event(ws: &mut Ws) -> Value {
    wait_event(ws, |_| true).await
}

/// Waits up to 5 s for a JSON event matching `pred`.
pub async fn wait_event(ws: &mut Ws, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("event within 5 s")
            .expect("connection open")
            .expect("no error");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).expect("events are JSON");
            if pred(&v) {
                return v;
            }
        }
    }
}

// ---- Roles and moderation (tests/moderation.rs, tests/permissions.rs) ----

/// One HTTP call with an optional bearer credential and JSON body: (status, JSON answer).
pub async fn call(
    method: reqwest::Method,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("HTTP answer");
    let status = resp.status().as_u16();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, v)
}

/// `POST {base}{path}` with a bearer credential and a JSON body.
pub async fn post(base: &str, path: &str, bearer: &str, body: Value) -> (u16, Value) {
    call(
        reqwest::Method::POST,
        &format!("{base}{path}"),
        Some(bearer),
        Some(body),
    )
    .await
}

/// A listener's admission: (listener id as text, ticket, listen URL).
pub async fn join(base: &str, room: &str) -> (String, String, String) {
    let (status, v) = call(
        reqwest::Method::POST,
        &format!("{base}/api/rooms/{room}/join"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    (
        v["listener_id"].as_u64().unwrap().to_string(),
        v["ticket"].as_str().unwrap().to_owned(),
        v["listen_url"].as_str().unwrap().to_owned(),
    )
}

/// A stage token minted by a moderator: (participant id as text, token).
pub async fn mint(base: &str, room: &str, by: &str, role: &str) -> (String, String) {
    let (status, v) = post(
        base,
        &format!("/api/rooms/{room}/speakers"),
        by,
        serde_json::json!({ "role": role }),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    (
        v["participant_id"].as_u64().unwrap().to_string(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// The host's participant id, read from the moderation view.
pub async fn host_id(base: &str, room: &str, host: &str) -> String {
    let (status, v) = call(
        reqwest::Method::GET,
        &format!("{base}/api/rooms/{room}/stage"),
        Some(host),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let host = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "host")
        .expect("a host on stage");
    host["id"].as_str().unwrap().to_owned()
}

/// Opens a WebSocket, answering the HTTP status of a refused handshake as `Err(status)`.
pub async fn try_ws(url: &str) -> Result<Ws, u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("websocket {url}: {e}"),
    }
}

/// The participant with this id in a room event's `participants`, if present.
pub fn participant<'a>(event: &'a Value, id: &str) -> Option<&'a Value> {
    event["participants"]
        .as_array()?
        .iter()
        .find(|p| p["id"].as_str() == Some(id))
}

/// Whether ffmpeg can run: it is required (scripts/test-all.sh installs it), so a missing
/// ffmpeg fails the test unless `TRIBUNE_SKIP_FFMPEG=1`.
pub fn ffmpeg_available() -> bool {
    let found = std::process::Command::new("ffmpeg")
        .arg("-version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("TRIBUNE_SKIP_FFMPEG").as_deref() == Ok("1") {
        eprintln!("SKIPPED: ffmpeg not found and TRIBUNE_SKIP_FFMPEG=1");
        return false;
    }
    panic!("ffmpeg is required (apt-get install ffmpeg), or set TRIBUNE_SKIP_FFMPEG=1");
}

/// Decodes `input` (a URL or a file) with ffmpeg to 48 kHz mono samples.
pub async fn ffmpeg_decode(input: &str) -> Vec<i16> {
    let input = input.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "error", "-i", &input])
            .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
            .output()
            .expect("run ffmpeg")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Sends one raw HTTP/1.1 GET (no client-side path normalization): (status, whole response).
pub async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// The status of a raw GET of `path`.
pub async fn raw_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    raw_get(addr, path).await.0
}

/// A browser-like audio-only offer (Chrome's shape, trimmed): valid SDP with Opus, sendonly.
pub const WHIP_OFFER: &str = "v=0\r\n\
o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Ahb3\r\n\
a=ice-pwd:b2mVw0Yp4o5Ha8IXStq29zsm\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ssrc:1001 cname:test\r\n";
