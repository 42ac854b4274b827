//! A room's own participants and listeners as attackers: a speaker flooding the mix, one stage
//! token opening many seats, a flood of hand raises, clip requests that burn the quota, and a
//! listener socket sending text as fast as it can. Real node, real sockets.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use futures_util::SinkExt;
use reqwest::{Client, Method};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{Api, AudioSource, SpeakOptions};
use tribune_server::ServerConfig;

/// The moderation view of a room (host token).
async fn stage(base: &str, room: &str, host: &str) -> Value {
    let (status, v) = common::call(
        Method::GET,
        &format!("{base}/api/rooms/{room}/stage"),
        Some(host),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A participant of the moderation view, by id.
fn member<'a>(view: &'a Value, id: &str) -> &'a Value {
    view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("{id} not on stage: {view}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_speaker_cannot_push_out_the_hosts_frames() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let host_id = common::host_id(&base, &room, &host).await;
    let (attacker_id, attacker) = common::mint(&base, &room, &host, "speaker").await;
    // The host talks: 6 s of a tone, 50 frames a second (the flood takes 3 s of it).
    let api = Api::new(&base).unwrap();
    let talking = {
        let (api, room, host) = (api.clone(), room.clone(), host.clone());
        tokio::spawn(async move {
            tribune_client::speak(
                &api,
                SpeakOptions {
                    room,
                    token: host,
                    source: AudioSource::Tone(440.0),
                    duration: Some(Duration::from_secs(6)),
                    bitrate_bps: 48_000,
                    hear: false,
                },
            )
            .await
            .unwrap()
        })
    };
    // The attacker sends batches of 200 tiny (valid) Opus frames, 25 a second: 5 000 frames a
    // second, a hundred times real time, for 3 s.
    let mut enc = tribune_media::Encoder::new(16_000).unwrap();
    let tiny = enc.encode_vec(&[0i16; 960]).unwrap();
    let mut ws = common::open_speaker(&server, &room, &attacker).await;
    let mut seq = 0u64;
    for _ in 0..75 {
        let records: Vec<Vec<u8>> = (0..200)
            .map(|_| {
                seq += 1;
                tribune_media::wire::record(seq, tribune_core::unix_micros(), &tiny).to_vec()
            })
            .collect();
        let msg = tribune_media::wire::message(records.iter().map(Vec::as_slice));
        ws.send(Message::Binary(msg)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // The node counts what it has read; poll (while the host still talks) until the whole
    // flood and 3 s of the host are in, or 3 s have passed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let view = loop {
        let view = stage(&base, &room, &host).await;
        let counted = |id: &str| member(&view, id)["frames_in"].as_u64().unwrap_or(0);
        let done = counted(&attacker_id) >= 15_000 && counted(&host_id) >= 150;
        if done || tokio::time::Instant::now() >= deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let report = talking.await.unwrap();
    let flood = member(&view, &attacker_id);
    assert_eq!(flood["frames_in"], 15_000, "{flood}");
    assert!(
        flood["frames_dropped"].as_u64().unwrap() > 14_000,
        "the flood is dropped from its own share: {flood}"
    );
    let mine = member(&view, &host_id);
    assert!(mine["frames_in"].as_u64().unwrap() >= 150, "{mine}");
    assert_eq!(mine["frames_dropped"], 0, "the host loses no frame: {mine}");
    assert_eq!(report.frames_sent, 300);
    // Nothing was dropped for a full queue: the flood never reached it.
    assert_eq!(common::metric(&base, "ingress_dropped_total").await, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stage_token_holds_one_seat() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let mut listener = common::open_listener(&server, &room).await;
    let mut seats = Vec::new();
    for _ in 0..20 {
        seats.push(common::open_speaker(&server, &room, &host).await);
    }
    let _last = seats.pop().unwrap();
    for mut ws in seats {
        let (code, reason) = common::expect_close(&mut ws).await;
        assert_eq!(code, 4002, "{reason}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while common::metric(&base, "speakers").await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "seats were not replaced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every listener's room event lists one seat, not twenty, and stays small.
    let event = common::wait_event(&mut listener, |e| {
        e["speakers"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;
    assert!(event.to_string().len() < 1024, "{event}");
    assert_eq!(common::metric(&base, "seats_replaced_total").await, 19);
    server.shutdown().await.unwrap();
}

/// A join from loopback address `from`: (listener id, ticket).
async fn join_from(base: &str, room: &str, from: IpAddr) -> (String, String) {
    let http = Client::builder().local_address(from).build().unwrap();
    let v: Value = http
        .post(format!("{base}/api/rooms/{room}/join"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["listener_id"].as_u64().unwrap().to_string(),
        v["ticket"].as_str().unwrap().to_owned(),
    )
}

/// `POST …/requests` with `ticket` from `from`: the status.
async fn raise_hand(base: &str, room: &str, ticket: &str, from: IpAddr) -> u16 {
    Client::builder()
        .local_address(from)
        .build()
        .unwrap()
        .post(format!("{base}/api/rooms/{room}/requests"))
        .bearer_auth(ticket)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_hand_raises_cannot_lock_out_real_listeners() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let attacker = IpAddr::from([127, 0, 0, 1]);
    // 100 free tickets from one address, each asking to speak.
    let mut answers = Vec::new();
    for _ in 0..100 {
        let (_, ticket) = join_from(&base, &room, attacker).await;
        answers.push(raise_hand(&base, &room, &ticket, attacker).await);
    }
    let accepted = answers.iter().filter(|&&s| s == 202).count();
    assert_eq!(
        accepted, 3,
        "a burst of three, then the address's rate: {answers:?}"
    );
    assert!(answers.iter().all(|&s| s == 202 || s == 429));
    // A real listener elsewhere is heard.
    let real = IpAddr::from([127, 0, 0, 2]);
    let (lid, ticket) = join_from(&base, &room, real).await;
    assert_eq!(raise_hand(&base, &room, &ticket, real).await, 202);
    // Declined, it cannot ask again: not with its ticket, not with a fresh one.
    let (status, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/requests/{lid}/decline"),
        &host,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(raise_hand(&base, &room, &ticket, real).await, 403);
    let (_, fresh) = join_from(&base, &room, real).await;
    assert_eq!(raise_hand(&base, &room, &fresh, real).await, 403);
    // Nor can a blocked listener, rejoining.
    let other = IpAddr::from([127, 0, 0, 3]);
    let (lid, ticket) = join_from(&base, &room, other).await;
    assert_eq!(raise_hand(&base, &room, &ticket, other).await, 202);
    let (status, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/listeners/{lid}/remove"),
        &host,
        json!({"block": true}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, fresh) = join_from(&base, &room, other).await;
    assert_eq!(raise_hand(&base, &room, &fresh, other).await, 403);
    assert!(common::metric(&base, "hand_raises_limited_total").await >= 98);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_clip_requests_use_no_quota_and_blocked_tickets_make_no_clips() {
    let data = tempfile::tempdir().unwrap();
    let server = common::start_with(ServerConfig {
        data_dir: Some(data.path().to_path_buf()),
        ..ServerConfig::default()
    })
    .await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (lid, ticket, _) = common::join(&base, &room).await;
    tribune_client::speak(
        &Api::new(&base).unwrap(),
        SpeakOptions {
            room: room.clone(),
            token: host.clone(),
            source: AudioSource::Tone(440.0),
            duration: Some(Duration::from_secs(3)),
            bitrate_bps: 48_000,
            hear: false,
        },
    )
    .await
    .unwrap();
    let recorded = format!("{base}/api/rooms/{room}/recording");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while common::call(Method::GET, &recorded, None, None).await.1["segments"] == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clips = format!("/api/rooms/{room}/clips");
    // More bad requests than the room has clips: none of them counts.
    for _ in 0..510 {
        let (status, _) = common::post(
            &base,
            &clips,
            &ticket,
            json!({"start_s": 5000.0, "end_s": 5001.0}),
        )
        .await;
        assert_eq!(status, 400);
    }
    let (status, v) = common::post(
        &base,
        &clips,
        &ticket,
        json!({"start_s": 0.0, "end_s": 1.0}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    // A blocked listener's ticket makes no more clips.
    let (status, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/listeners/{lid}/remove"),
        &host,
        json!({"block": true}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = common::post(
        &base,
        &clips,
        &ticket,
        json!({"start_s": 0.0, "end_s": 1.0}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(common::metric(&base, "clips_created_total").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_flooding_text_is_closed_and_others_hear_on() {
    let server = common::start().await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let mut victim = common::open_listener(&server, &room).await;
    let mut attacker = common::open_listener(&server, &room).await;
    let flood = async {
        for _ in 0..500 {
            let msg = Message::Text(r#"{"type":"reaction","kind":"clap"}"#.into());
            if attacker.send(msg).await.is_err() {
                break;
            }
        }
        common::expect_close(&mut attacker).await
    };
    let (closed, (frames, gaps)) = tokio::join!(
        flood,
        common::count_frames(&mut victim, Duration::from_secs(2))
    );
    assert_eq!(closed.0, 1008, "{}", closed.1);
    assert!(frames >= 80, "the other listener heard on: {frames}");
    assert_eq!(gaps, 0);
    assert_eq!(common::metric(&base, "message_rate_closes_total").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_cannot_make_the_room_look_late() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let mut listener = common::open_listener(&server, &room).await;
    // A speaker claiming its frames were captured in 1970, in real time for 2 s.
    let mut ws = common::open_speaker(&server, &room, &host).await;
    let mut tone = tribune_media::ToneGenerator::new(440.0, 0.5);
    let mut enc = tribune_media::Encoder::new(32_000).unwrap();
    let sending = tokio::spawn(async move {
        for seq in 0..100u64 {
            let packet = enc.encode_vec(&tone.next_frame()).unwrap();
            let msg = tribune_media::wire::single_frame_message(seq, 1, &packet);
            ws.send(Message::Binary(msg)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ws
    });
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    let mut worst = 0u64;
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut listener)).await
    {
        if let Message::Binary(b) = m {
            let now = tribune_core::unix_micros();
            for r in tribune_media::wire::parse_message(&b).unwrap() {
                worst = worst.max(now.saturating_sub(r.capture_us));
            }
        }
    }
    drop(sending.await.unwrap());
    assert!(worst < 1_500_000, "the program looked {worst} µs late");
    server.shutdown().await.unwrap();
}
