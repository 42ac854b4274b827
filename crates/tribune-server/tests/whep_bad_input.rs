//! WHEP bad input, as an attacker would send it straight to the endpoint: every refusal has its
//! status and a JSON message with CORS; a removed speaker's token is refused and its open
//! session closed; WebRTC listeners past their cap get `503` with `Retry-After`; sessions that
//! never connect, and repeated offers, hold nothing for long.

mod common;

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tribune_server::ServerConfig;

/// A browser-like playback offer: the WHIP test offer, receiving.
fn offer() -> String {
    common::WHIP_OFFER.replace("a=sendonly", "a=recvonly")
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

/// Status and message of a refusal (which must carry CORS and a message).
async fn refusal(resp: reqwest::Response) -> (StatusCode, String) {
    let status = resp.status();
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("*")
    );
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.is_empty(), "error body names a message: {body}");
    (status, message)
}

async fn stage_sessions(base: &str) -> u64 {
    common::metric(base, "whep_sessions{kind=\"stage\"}").await
}

async fn listener_sessions(base: &str) -> u64 {
    common::metric(base, "whep_sessions{kind=\"listener\"}").await
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn refusals_have_statuses_and_reasons() {
    let server = common::start().await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whep");
    let sdp = "application/sdp";
    let (other_room, other_host) = common::create_room(&base).await;
    let (_, other_ticket, _) = common::join(&base, &other_room).await;
    let video = offer()
        .replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 96",
        )
        .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000");
    let pcmu = offer()
        .replace(" 111 0\r\n", " 0\r\n")
        .replace("a=rtpmap:111 opus/48000/2\r\n", "");
    // (what, credential, content type, body, status, the message says)
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
            "no token",
            None,
            sdp,
            offer(),
            StatusCode::UNAUTHORIZED,
            "missing",
        ),
        (
            "forged token",
            Some("not.a.token"),
            sdp,
            offer(),
            StatusCode::FORBIDDEN,
            "token",
        ),
        (
            "other room's stage token",
            Some(&other_host),
            sdp,
            offer(),
            StatusCode::FORBIDDEN,
            "another room",
        ),
        (
            "other room's ticket",
            Some(&other_ticket),
            sdp,
            offer(),
            StatusCode::FORBIDDEN,
            "another room",
        ),
        (
            "malformed SDP",
            Some(&host),
            sdp,
            "v=0 junk".into(),
            StatusCode::BAD_REQUEST,
            "malformed SDP",
        ),
        (
            "empty",
            Some(&host),
            sdp,
            String::new(),
            StatusCode::BAD_REQUEST,
            "empty SDP",
        ),
        (
            "sendonly",
            Some(&host),
            sdp,
            common::WHIP_OFFER.into(),
            StatusCode::BAD_REQUEST,
            "not received",
        ),
        (
            "inactive",
            Some(&host),
            sdp,
            offer().replace("a=recvonly", "a=inactive"),
            StatusCode::BAD_REQUEST,
            "not received",
        ),
        (
            "video only",
            Some(&host),
            sdp,
            video,
            StatusCode::BAD_REQUEST,
            "no audio",
        ),
        (
            "no Opus",
            Some(&host),
            sdp,
            pcmu,
            StatusCode::BAD_REQUEST,
            "no Opus",
        ),
        (
            "not SDP",
            Some(&host),
            "text/plain",
            offer(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/sdp",
        ),
        (
            "not UTF-8",
            Some(&host),
            sdp,
            String::from_utf8_lossy(&[0xff, 0xfe]).into_owned(),
            StatusCode::BAD_REQUEST,
            "SDP",
        ),
    ];
    let n = cases.len() as u64;
    for (what, token, ctype, body, want, says) in cases {
        let (status, message) = refusal(post(&http, &url, token, ctype, &body).await).await;
        assert_eq!(status, want, "{what}: {message}");
        assert!(
            message.contains(says),
            "{what}: {message:?} should say {says:?}"
        );
    }
    let huge = format!("{}{}", offer(), "a=x-pad:0123456789abcdef\r\n".repeat(4000));
    let resp = post(&http, &url, Some(&host), sdp, &huge).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = post(
        &http,
        &format!("{base}/api/rooms/nosuchroom1/whep"),
        Some(&host),
        sdp,
        &offer(),
    )
    .await;
    assert_eq!(refusal(resp).await.0, StatusCode::NOT_FOUND);
    // Nothing was opened, nothing counted as a listener.
    assert_eq!(common::metric(&base, "whep_sessions_total").await, 0);
    assert_eq!(common::metric(&base, "listeners").await, 0);
    assert!(common::metric(&base, "whep_refused_total").await > n);
    // A room that ended: 410.
    http.post(format!("{base}/api/rooms/{room}/end"))
        .bearer_auth(&host)
        .send()
        .await
        .unwrap();
    let (status, _) = refusal(post(&http, &url, Some(&host), sdp, &offer()).await).await;
    assert_eq!(status, StatusCode::GONE);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_removed_speakers_session_is_closed_and_its_token_refused() {
    let server = common::start().await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whep");
    let (pid, token) = common::mint(&base, &room, &host, "speaker").await;
    let resp = post(&http, &url, Some(&token), "application/sdp", &offer()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["content-type"], "application/sdp");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let answer = resp.text().await.unwrap();
    assert!(
        answer.contains("a=sendonly") && answer.contains("opus/48000"),
        "{answer}"
    );
    assert_eq!(stage_sessions(&base).await, 1);
    // Someone else's credential cannot end it; an unknown session is 404.
    let (_, ticket, _) = common::join(&base, &room).await;
    let resp = http
        .delete(format!("{base}{location}"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = http
        .delete(format!("{url}/0123456789abcdef0123456789abcdef"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A second offer with the same token replaces the first (one stage session each).
    let resp = post(&http, &url, Some(&token), "application/sdp", &offer()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for("replaced", async || stage_sessions(&base).await == 1).await;
    let resp = http
        .delete(format!("{base}{location}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "the first session is gone"
    );
    // The moderator removes the speaker: the open session closes, the token is refused.
    let (s, v) = common::post(
        &base,
        &format!("/api/rooms/{room}/participants/{pid}/remove"),
        &host,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    wait_for("closed on removal", async || {
        stage_sessions(&base).await == 0
    })
    .await;
    let (status, message) =
        refusal(post(&http, &url, Some(&token), "application/sdp", &offer()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{message}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn webrtc_listeners_past_their_cap_are_told_to_retry() {
    let config = ServerConfig {
        max_webrtc_listeners: 2,
        ..ServerConfig::default()
    };
    let server = common::start_with(config).await;
    let http = Client::new();
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whep");
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(common::join(&base, &room).await.1);
    }
    let mut locations = Vec::new();
    for t in &tickets[..2] {
        let resp = post(&http, &url, Some(t), "application/sdp", &offer()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        locations.push(resp.headers()["location"].to_str().unwrap().to_owned());
    }
    // Counted as listeners of the node, like every listener.
    assert_eq!(common::metric(&base, "listeners").await, 2);
    let resp = post(&http, &url, Some(&tickets[2]), "application/sdp", &offer()).await;
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let (status, message) = refusal(resp).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert!(
        message.contains("WebRTC listeners") && message.contains("WebSocket"),
        "{message}"
    );
    // The same ticket again replaces its own session instead of taking a third place.
    let resp = post(&http, &url, Some(&tickets[0]), "application/sdp", &offer()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for("the older session of the ticket closes", async || {
        listener_sessions(&base).await == 2
    })
    .await;
    assert_eq!(common::metric(&base, "listeners").await, 2);
    // One leaves: the third gets in.
    let resp = http
        .delete(format!("{base}{}", locations[1]))
        .bearer_auth(&tickets[1])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(listener_sessions(&base).await, 1);
    let resp = post(&http, &url, Some(&tickets[2]), "application/sdp", &offer()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(common::metric(&base, "listeners").await, 2);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn options_and_patch_follow_whep_and_unconnected_sessions_expire() {
    let mut config = ServerConfig::default();
    config.abuse.whip_connect_timeout = Duration::from_millis(500);
    let server = common::start_with(config).await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whep");
    let pre = http
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), StatusCode::NO_CONTENT);
    assert!(pre.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    // Offers that never run ICE (half-open): each is dropped after the connect timeout.
    for _ in 0..5 {
        let resp = post(&http, &url, Some(&host), "application/sdp", &offer()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let patch = http
            .patch(format!("{base}{location}"))
            .bearer_auth(&host)
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let (_, ticket, _) = common::join(&base, &room).await;
    let resp = post(&http, &url, Some(&ticket), "application/sdp", &offer()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    wait_for("unconnected sessions expire", async || {
        stage_sessions(&base).await + listener_sessions(&base).await == 0
    })
    .await;
    assert_eq!(common::metric(&base, "listeners").await, 0);
    assert!(common::metric(&base, "whip_connect_timeouts_total").await >= 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtc_listener_removed_right_after_its_answer_is_closed() {
    let server = common::start().await;
    let http = Client::new();
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let url = format!("{base}/api/rooms/{room}/whep");
    for _ in 0..5 {
        let (lid, ticket, _) = common::join(&base, &room).await;
        let resp = post(&http, &url, Some(&ticket), "application/sdp", &offer()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        // Straight after the answer, before the session's task may have started: it counts.
        let (s, v) = common::post(
            &base,
            &format!("/api/rooms/{room}/listeners/{lid}/remove"),
            &host,
            json!({}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        wait_for("closed on removal", async || {
            listener_sessions(&base).await == 0
        })
        .await;
    }
    server.shutdown().await.unwrap();
}
