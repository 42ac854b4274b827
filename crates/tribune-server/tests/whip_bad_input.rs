//! WHIP bad input: every refusal has its status and a JSON message; junk sent to the WebRTC UDP
//! port is dropped and counted exactly; and the node still opens and ends sessions afterwards.

mod common;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;
use tokio::net::UdpSocket;

use common::WHIP_OFFER as OFFER;

fn video_only() -> String {
    OFFER
        .replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
        )
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000")
        .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "")
}

fn pcmu_only() -> String {
    OFFER
        .replace(" 111 0\r\n", " 0\r\n")
        .replace("a=rtpmap:111 opus/48000/2\r\n", "")
        .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
}

async fn post(
    http: &Client,
    url: &str,
    token: Option<&str>,
    ctype: &str,
    body: &str,
) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", ctype)
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Status, error code and message of a refusal (which must carry CORS and a message).
async fn refusal(resp: reqwest::Response) -> (StatusCode, String, String) {
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*"),
        "errors carry CORS so browsers can read them"
    );
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "error body names a message: {body}");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        message,
    )
}

#[tokio::test]
async fn bad_offers_and_credentials_are_refused_with_reasons() {
    let server = common::start().await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whip");
    let sdp = "application/sdp";

    // (what, token, content type, body, status, the message says)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        &'a str,
        String,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed SDP",
            Some(&host),
            sdp,
            "this is not sdp".into(),
            StatusCode::BAD_REQUEST,
            "malformed SDP",
        ),
        (
            "empty body",
            Some(&host),
            sdp,
            String::new(),
            StatusCode::BAD_REQUEST,
            "empty SDP",
        ),
        (
            "video only",
            Some(&host),
            sdp,
            video_only(),
            StatusCode::BAD_REQUEST,
            "no audio",
        ),
        (
            "no Opus",
            Some(&host),
            sdp,
            pcmu_only(),
            StatusCode::BAD_REQUEST,
            "no Opus",
        ),
        (
            "recvonly",
            Some(&host),
            sdp,
            OFFER.replace("a=sendonly", "a=recvonly"),
            StatusCode::BAD_REQUEST,
            "not sent",
        ),
        (
            "missing token",
            None,
            sdp,
            OFFER.into(),
            StatusCode::UNAUTHORIZED,
            "missing",
        ),
        (
            "bad token",
            Some("not.a.token"),
            sdp,
            OFFER.into(),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "wrong content type",
            Some(&host),
            "application/json",
            OFFER.into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/sdp",
        ),
    ];
    for (what, token, ctype, body, want, says) in cases {
        let (status, code, message) = refusal(post(&http, &url, token, ctype, &body).await).await;
        assert_eq!(status, want, "{what}: {code} {message}");
        assert!(
            message.contains(says),
            "{what}: message {message:?} should say {says:?}"
        );
    }
    // A token for another room is refused too.
    let (_, other_host) = common::create_room(&base).await;
    let (status, _, _) = refusal(post(&http, &url, Some(&other_host), sdp, OFFER).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Unknown room.
    let resp = post(
        &http,
        &format!("{base}/api/rooms/abcdefghij/whip"),
        Some(&host),
        sdp,
        OFFER,
    )
    .await;
    assert_eq!(refusal(resp).await.0, StatusCode::NOT_FOUND);
    // Too large an offer.
    let huge = format!("{OFFER}{}", "a=x-pad:0123456789abcdef\r\n".repeat(4000));
    let resp = post(&http, &url, Some(&host), sdp, &huge).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing was seated by any of that.
    assert_eq!(common::metric(&base, "whip_sessions_total").await, 0);
    assert_eq!(common::metric(&base, "speakers").await, 0);
    assert_eq!(common::metric(&base, "whip_refused_total").await, 11);

    // An ended room: 410.
    http.post(format!("{base}/api/rooms/{room}/end"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    let (status, code, _) = refusal(post(&http, &url, Some(&host), sdp, OFFER).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::GONE, "room_ended"));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn options_patch_and_delete_follow_whip() {
    let server = common::start().await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whip");

    let pre = http
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allow_headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(allow_headers.contains("Authorization") && allow_headers.contains("Content-Type"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(h["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("Location"));
    assert_eq!(h["accept-post"], "application/sdp");

    // A valid offer opens a session (no client ever connects to it).
    let resp = post(&http, &url, Some(&host), "application/sdp", OFFER).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "application/sdp");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("/api/rooms/{room}/whip/")),
        "{location}"
    );
    assert!(resp.headers().contains_key("etag"));
    let answer = resp.text().await.unwrap();
    assert!(answer.starts_with("v=0"), "{answer}");
    assert!(answer.contains("a=ice-lite"), "ICE-lite answerer: {answer}");
    assert!(answer.contains("opus/48000"), "{answer}");
    assert!(answer.contains("a=recvonly"), "{answer}");
    let udp_port = server.udp_addr.port();
    assert!(
        answer.contains(&format!("127.0.0.1 {udp_port} typ host")),
        "the answer carries our host candidate: {answer}"
    );
    assert_eq!(common::metric(&base, "whip_sessions").await, 1);
    let room_json: Value = reqwest::get(format!("{base}/api/rooms/{room}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(room_json["speakers"], 1);

    let session = format!("{base}{location}");
    let patch = http
        .patch(&session)
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::METHOD_NOT_ALLOWED);
    let opts = http
        .request(reqwest::Method::OPTIONS, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(opts.status(), StatusCode::NO_CONTENT);

    // DELETE needs the credential; another participant's token is refused.
    assert_eq!(
        http.delete(&session).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let speaker: Value = http
        .post(format!("{base}/api/rooms/{room}/speakers"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other = speaker["token"].as_str().unwrap();
    assert_eq!(
        http.delete(&session)
            .bearer_auth(other)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let gone = http
        .delete(&session)
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(common::metric(&base, "whip_sessions").await, 0);
    let room_json: Value = reqwest::get(format!("{base}/api/rooms/{room}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        room_json["speakers"], 0,
        "DELETE returns once the seat has left"
    );
    let again = http
        .delete(&session)
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(again).await.0, StatusCode::NOT_FOUND);
    let unknown = format!("{base}/api/rooms/{room}/whip/00000000000000000000000000000000");
    let resp = http
        .delete(&unknown)
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    server.shutdown().await.unwrap();
}

/// A well-formed STUN binding request whose USERNAME names `ufrag` as ours.
fn stun_binding(username: &str) -> Vec<u8> {
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&attrs);
    m
}

/// Junk of every kind, each from an address no session knows.
pub fn junk_datagrams() -> Vec<Vec<u8>> {
    // Deterministic "random" bytes (xorshift), starting with a byte no protocol uses.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = vec![0x42u8];
    for _ in 0..299 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        random.push(x as u8);
    }
    let mut dtls = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16];
    dtls.extend_from_slice(&[1; 16]);
    let mut rtp = vec![0x80, 111, 0, 7, 0, 0, 0x03, 0xc0, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[0xfc; 40]);
    vec![
        random,
        vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12],
        stun_binding("nosuchufrag:peer"),
        dtls,
        rtp,
        Vec::new(),
    ]
}

#[tokio::test]
async fn junk_datagrams_are_dropped_and_counted() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let http = Client::new();
    // A live session exists, so routing has something to miss.
    let url = format!("{base}/api/rooms/{room}/whip");
    let resp = post(&http, &url, Some(&host), "application/sdp", OFFER).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();

    let before_seen = common::metric(&base, "udp_datagrams_total").await;
    let before = common::metric(&base, "udp_dropped_total").await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let junk = junk_datagrams();
    for d in &junk {
        sock.send_to(d, server.udp_addr).await.unwrap();
    }
    let sent = junk.len() as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while common::metric(&base, "udp_datagrams_total").await < before_seen + sent {
        assert!(tokio::time::Instant::now() < deadline, "datagrams not seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        common::metric(&base, "udp_datagrams_total").await,
        before_seen + sent
    );
    assert_eq!(
        common::metric(&base, "udp_dropped_total").await,
        before + sent
    );

    // The session and the node carry on: the session is still there and ends cleanly, and a
    // new one can be opened.
    assert_eq!(common::metric(&base, "whip_sessions").await, 1);
    let del = http
        .delete(format!("{base}{location}"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let resp = post(&http, &url, Some(&host), "application/sdp", OFFER).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sessions_end_with_the_room_and_on_shutdown() {
    let server = common::start().await;
    let base = server.url();
    let http = Client::new();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whip");
    assert_eq!(
        post(&http, &url, Some(&host), "application/sdp", OFFER)
            .await
            .status(),
        StatusCode::CREATED
    );
    http.post(format!("{base}/api/rooms/{room}/end"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while common::metric(&base, "whip_sessions").await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "session outlived its room"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shutdown waits for open sessions and ends them.
    let (room2, host2) = common::create_room(&base).await;
    let url2 = format!("{base}/api/rooms/{room2}/whip");
    assert_eq!(
        post(&http, &url2, Some(&host2), "application/sdp", OFFER)
            .await
            .status(),
        StatusCode::CREATED
    );
    let state = server.state.clone();
    tokio::time::timeout(Duration::from_secs(4), server.shutdown())
        .await
        .expect("shutdown ends WHIP sessions promptly")
        .unwrap();
    assert_eq!(state.metrics().whip_sessions.get(), 0);
}

async fn wait_sessions(base: &str, want: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while common::metric(base, "whip_sessions").await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "whip_sessions never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn moderation_removal_and_idle_timeout_end_sessions() {
    let config = tribune_server::ServerConfig {
        whip_idle_timeout: Duration::from_millis(1500),
        ..Default::default()
    };
    let server = common::start_with(config).await;
    let base = server.url();
    let http = Client::new();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whip");
    let speaker: Value = http
        .post(format!("{base}/api/rooms/{room}/speakers"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = speaker["token"].as_str().unwrap();
    let pid = speaker["participant_id"].as_u64().unwrap();
    let resp = post(&http, &url, Some(token), "application/sdp", OFFER).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    wait_sessions(&base, 1, Duration::from_secs(1)).await;
    let live = server.state.room(&room).unwrap();
    assert_eq!(
        live.remove_participant(tribune_core::ParticipantId(pid), "off stage"),
        1
    );
    wait_sessions(&base, 0, Duration::from_secs(2)).await;
    assert_eq!(live.speaker_count(), 0);
    let del = http
        .delete(format!("{base}{location}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::NOT_FOUND, "the session is gone");

    // A session nobody connects to closes after the idle timeout.
    let started = std::time::Instant::now();
    let resp = post(&http, &url, Some(&host), "application/sdp", OFFER).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_sessions(&base, 1, Duration::from_secs(1)).await;
    wait_sessions(&base, 0, Duration::from_secs(4)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "idle timeout after {took:?}"
    );
    assert_eq!(live.speaker_count(), 0);
    server.shutdown().await.unwrap();
}
