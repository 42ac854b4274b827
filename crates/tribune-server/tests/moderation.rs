//! Roles and moderation end to end on a real node: request → accept → speak; moving to the
//! audience and removing close connections with 4001 and revoke stage tokens; a moderator's mute
//! takes a tone out of the program; stage limits; blocks; and every change is an event on the
//! listeners' WebSocket. (Reactions: tests/reactions.rs.)

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{Api, AudioSource, ListenOptions, SpeakOptions};
use tribune_core::StageLimits;
use tribune_media::analysis::{band_energy_ratio, rms};
use tribune_server::ServerConfig;

fn tone(base: &str, room: &str, token: &str, hz: f32, secs: u64) -> tokio::task::JoinHandle<()> {
    let api = Api::new(base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let opts = SpeakOptions {
        room: room.to_owned(),
        token: token.to_owned(),
        source: AudioSource::Tone(hz),
        duration: Some(Duration::from_secs(secs)),
        bitrate_bps: 48_000,
        hear: false,
    };
    tokio::spawn(async move {
        // A speaker taken off stage ends with an error; that is part of some tests.
        let _ = tribune_client::speak(&api, opts).await;
    })
}

/// Decoded program audio heard by a fresh listener over `secs`, without its first 100 ms.
async fn hear(base: &str, room: &str, millis: u64) -> Vec<i16> {
    let api = Api::new(base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let opts = ListenOptions {
        room: room.to_owned(),
        duration: Duration::from_millis(millis),
        decode: true,
        keep_packets: false,
    };
    let report = tribune_client::listen(&api, opts).await.unwrap();
    report.pcm[4_800.min(report.pcm.len())..].to_vec()
}

async fn get(base: &str, path: &str, cred: &str) -> (u16, Value) {
    common::call(Method::GET, &format!("{base}{path}"), Some(cred), None).await
}

fn speak_url(server: &tribune_server::RunningServer, room: &str, token: &str) -> String {
    format!("ws://{}/api/rooms/{room}/speak?token={token}", server.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_accept_then_speak_with_the_new_token() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (lid, ticket, url) = common::join(&base, &room).await;
    let mut ws = common::try_ws(&url).await.unwrap();

    let (s, v) = common::post(
        &base,
        &format!("/api/rooms/{room}/requests"),
        &ticket,
        json!({"name": "Ada"}),
    )
    .await;
    assert_eq!(
        (s, v.clone()),
        (202, json!({"state": "pending", "position": 1}))
    );
    // The public event counts pending requests (refreshed with the periodic event).
    common::wait_event(&mut ws, |e| e["requests"] == 1).await;
    let (s, v) = get(&base, &format!("/api/rooms/{room}/requests/me"), &ticket).await;
    assert_eq!((s, v), (200, json!({"state": "pending", "position": 1})));
    // Moderators see who asks.
    let (s, v) = get(&base, &format!("/api/rooms/{room}/stage"), &host).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["requests"],
        json!([{"listener_id": lid, "name": "Ada", "position": 1}])
    );

    let (s, v) = common::post(
        &base,
        &format!("/api/rooms/{room}/requests/{lid}/accept"),
        &host,
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["participant_id"],
        lid.as_str(),
        "a listener comes on stage under its own id"
    );
    let e = common::wait_event(&mut ws, |e| common::participant(e, &lid).is_some()).await;
    assert_eq!(e["requests"], 0);
    let p = common::participant(&e, &lid).unwrap();
    assert_eq!(
        (p["role"].as_str(), p["name"].as_str()),
        (Some("speaker"), Some("Ada"))
    );
    assert_eq!(p["connected"], false);

    let (s, v) = get(&base, &format!("/api/rooms/{room}/requests/me"), &ticket).await;
    assert_eq!(
        (s, v["state"].as_str(), v["role"].as_str()),
        (200, Some("accepted"), Some("speaker"))
    );
    let token = v["token"].as_str().unwrap().to_owned();
    let speaker = tone(&base, &room, &token, 440.0, 4);
    let e = common::wait_event(&mut ws, |e| {
        common::participant(e, &lid).is_some_and(|p| p["connected"] == true)
    })
    .await;
    assert_eq!(e["speakers"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let pcm = hear(&base, &room, 1_500).await;
    let share = band_energy_ratio(&pcm, 48_000, 440.0, 15.0);
    assert!(
        share > 0.5,
        "the accepted listener is heard: 440 Hz holds {share:.2}"
    );
    speaker.await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_or_removed_speakers_are_closed_and_their_tokens_refused() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;

    // Moved to the audience.
    let (pid, token) = common::mint(&base, &room, &host, "speaker").await;
    let mut sp = common::open_speaker(&server, &room, &token).await;
    common::wait_event(&mut sp, |e| e["type"] == "speaking").await;
    let (s, v) = common::post(
        &base,
        &format!("/api/rooms/{room}/participants/{pid}/demote"),
        &host,
        json!({}),
    )
    .await;
    assert_eq!((s, v["closed"].as_u64()), (200, Some(1)), "{v}");
    let (code, reason) = common::expect_close(&mut sp).await;
    assert_eq!(
        (code, reason.as_str()),
        (4001, "moved to the audience by a moderator")
    );
    assert_eq!(
        common::try_ws(&speak_url(&server, &room, &token))
            .await
            .err(),
        Some(403)
    );
    let (s, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/participants/{pid}/mute"),
        &token,
        json!({"muted": true}),
    )
    .await;
    assert_eq!(s, 403, "the old token acts no more");

    // Removed.
    let (pid, token) = common::mint(&base, &room, &host, "speaker").await;
    let mut sp = common::open_speaker(&server, &room, &token).await;
    common::wait_event(&mut sp, |e| e["type"] == "speaking").await;
    let (s, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/participants/{pid}/remove"),
        &host,
        json!({}),
    )
    .await;
    assert_eq!(s, 200);
    let (code, reason) = common::expect_close(&mut sp).await;
    assert_eq!((code, reason.as_str()), (4001, "removed by a moderator"));
    assert_eq!(
        common::try_ws(&speak_url(&server, &room, &token))
            .await
            .err(),
        Some(403)
    );

    // Removed and blocked, having come from the audience: both connections close for good.
    let (lid, ticket, url) = common::join(&base, &room).await;
    let mut ls = common::try_ws(&url).await.unwrap();
    common::post(
        &base,
        &format!("/api/rooms/{room}/requests"),
        &ticket,
        json!({}),
    )
    .await;
    common::post(
        &base,
        &format!("/api/rooms/{room}/requests/{lid}/accept"),
        &host,
        json!({}),
    )
    .await;
    let (_, v) = get(&base, &format!("/api/rooms/{room}/requests/me"), &ticket).await;
    let token = v["token"].as_str().unwrap().to_owned();
    let mut sp = common::open_speaker(&server, &room, &token).await;
    common::wait_event(&mut sp, |e| e["type"] == "speaking").await;
    let (s, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/participants/{lid}/remove"),
        &host,
        json!({"block": true}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        common::expect_close(&mut sp).await,
        (4001, "blocked by a moderator".to_owned())
    );
    assert_eq!(
        common::expect_close(&mut ls).await,
        (4001, "blocked by a moderator".to_owned())
    );
    assert_eq!(
        common::try_ws(&speak_url(&server, &room, &token))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(common::try_ws(&url).await.err(), Some(403));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_mute_takes_the_tone_out_of_the_program_until_unmuted() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (pid, token) = common::mint(&base, &room, &host, "speaker").await;
    let speaker = tone(&base, &room, &token, 440.0, 9);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mute_path = format!("/api/rooms/{room}/participants/{pid}/mute");

    let pcm = hear(&base, &room, 1_200).await;
    let before = band_energy_ratio(&pcm, 48_000, 440.0, 15.0);
    assert!(
        before > 0.5 && rms(&pcm) > 0.05,
        "tone heard: share {before:.2}, rms {:.3}",
        rms(&pcm)
    );

    let (s, v) = common::post(&base, &mute_path, &host, json!({"muted": true})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (
            v["participant"]["muted"].as_bool(),
            v["participant"]["muted_by_moderator"].as_bool()
        ),
        (Some(true), Some(true))
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pcm = hear(&base, &room, 1_200).await;
    println!(
        "440 Hz share {before:.2} before the mute; rms {:.4} while muted",
        rms(&pcm)
    );
    assert!(
        rms(&pcm) < 0.005,
        "muted: the program is silent (rms {:.4})",
        rms(&pcm)
    );
    // The speaker cannot lift a moderator's mute.
    let (s, v) = common::post(&base, &mute_path, &token, json!({"muted": false})).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (403, Some("muted by a moderator"))
    );

    let (s, _) = common::post(&base, &mute_path, &host, json!({"muted": false})).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pcm = hear(&base, &room, 1_200).await;
    let after = band_energy_ratio(&pcm, 48_000, 440.0, 15.0);
    assert!(
        after > 0.5 && rms(&pcm) > 0.05,
        "unmuted: tone back (share {after:.2})"
    );
    speaker.await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_limits_refuse_the_eleventh_speaker_and_the_third_cohost() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let speakers = format!("/api/rooms/{room}/speakers");
    let mut first = String::new();
    for i in 0..10 {
        let (pid, _) = common::mint(&base, &room, &host, "speaker").await;
        if i == 0 {
            first = pid;
        }
    }
    let (s, v) = common::post(&base, &speakers, &host, json!({})).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")));
    assert_eq!(v["message"], "the stage already has 10 speakers, the limit");
    common::mint(&base, &room, &host, "co_host").await;
    common::mint(&base, &room, &host, "co_host").await;
    let (s, v) = common::post(&base, &speakers, &host, json!({"role": "co_host"})).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (409, Some("the stage already has 2 co-hosts, the limit"))
    );

    // A request accepted on a full stage stays pending, and goes through once a seat frees.
    let (lid, ticket, _) = common::join(&base, &room).await;
    common::post(
        &base,
        &format!("/api/rooms/{room}/requests"),
        &ticket,
        json!({}),
    )
    .await;
    let accept = format!("/api/rooms/{room}/requests/{lid}/accept");
    assert_eq!(common::post(&base, &accept, &host, json!({})).await.0, 409);
    let (_, v) = get(&base, &format!("/api/rooms/{room}/requests/me"), &ticket).await;
    assert_eq!(v["state"], "pending");
    let demote = format!("/api/rooms/{room}/participants/{first}/demote");
    assert_eq!(common::post(&base, &demote, &host, json!({})).await.0, 200);
    assert_eq!(common::post(&base, &accept, &host, json!({})).await.0, 200);
    server.shutdown().await.unwrap();

    // The limits come from the node's configuration.
    let config = ServerConfig {
        stage_limits: StageLimits {
            max_speakers: 1,
            max_cohosts: 0,
            ..StageLimits::default()
        },
        ..ServerConfig::default()
    };
    let server = common::start_with(config).await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let speakers = format!("/api/rooms/{room}/speakers");
    assert_eq!(
        common::post(&base, &speakers, &host, json!({})).await.0,
        201
    );
    assert_eq!(
        common::post(&base, &speakers, &host, json!({})).await.0,
        409
    );
    assert_eq!(
        common::post(&base, &speakers, &host, json!({"role": "co_host"}))
            .await
            .0,
        409
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_listener_is_closed_and_its_ticket_refused_until_unblocked() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (lid, ticket, url) = common::join(&base, &room).await;
    let mut ws = common::try_ws(&url).await.unwrap();
    let mut other = common::open_listener(&server, &room).await;
    let remove = format!("/api/rooms/{room}/listeners/{lid}/remove");

    let (s, v) = common::post(&base, &remove, &host, json!({"block": true})).await;
    assert_eq!((s, v["blocked"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(
        common::expect_close(&mut ws).await,
        (4001, "blocked by a moderator".to_owned())
    );
    assert_eq!(common::try_ws(&url).await.err(), Some(403));
    let requests = format!("/api/rooms/{room}/requests");
    assert_eq!(
        common::post(&base, &requests, &ticket, json!({})).await.0,
        403
    );
    let reactions = format!("/api/rooms/{room}/reactions");
    assert_eq!(
        common::post(&base, &reactions, &ticket, json!({"kind": "clap"}))
            .await
            .0,
        403
    );
    let (_, v) = get(&base, &format!("/api/rooms/{room}/stage"), &host).await;
    assert_eq!(v["blocked"]["listeners"], json!([lid]));
    // Everyone else keeps listening.
    let (frames, gaps) = common::count_frames(&mut other, Duration::from_millis(500)).await;
    assert!(frames > 10 && gaps == 0, "{frames} frames, {gaps} lost");

    let unblock = format!("{base}/api/rooms/{room}/blocks/{lid}");
    let (s, _) = common::call(Method::DELETE, &unblock, Some(&host), None).await;
    assert_eq!(s, 200);
    let (s, _) = common::call(Method::DELETE, &unblock, Some(&host), None).await;
    assert_eq!(s, 404, "not blocked any more");
    let mut ws = common::try_ws(&url).await.expect("the ticket works again");

    // Removed without a block: the connection closes, but the ticket still works. The kick
    // comes straight after the handshake, before the connection's task may have started: it
    // still counts.
    let (s, _) = common::post(&base, &remove, &host, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        common::expect_close(&mut ws).await,
        (4001, "removed by a moderator".to_owned())
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ws = common::try_ws(&url).await.expect("a kick is not a ban");
    let (frames, _) = common::count_frames(&mut ws, Duration::from_millis(300)).await;
    assert!(frames > 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_moderation_change_is_an_event() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (_, _, url) = common::join(&base, &room).await;
    let mut ws = common::try_ws(&url).await.unwrap();
    let rev = std::cell::Cell::new(common::next_event(&mut ws).await["rev"].as_u64().unwrap());
    let r = |p: &str| format!("/api/rooms/{room}{p}");
    // Each change's event carries a later roster revision.
    let seen = |e: Value| {
        let now = e["rev"].as_u64().unwrap();
        assert!(
            now > rev.get(),
            "revision moves on: {now} after {}",
            rev.get()
        );
        rev.set(now);
        e
    };
    let newer = |e: &Value| e["rev"].as_u64() > Some(rev.get());

    let (s, v) = common::post(&base, &r("/speakers"), &host, json!({"name": "Bo"})).await;
    assert_eq!(s, 201);
    let pid = v["participant_id"].as_u64().unwrap().to_string();
    let token = v["token"].as_str().unwrap().to_owned();
    let e = seen(common::wait_event(&mut ws, |e| common::participant(e, &pid).is_some()).await);
    assert_eq!(
        common::participant(&e, &pid).unwrap(),
        &json!({"id": pid, "role": "speaker", "name": "Bo", "muted": false,
                "muted_by_moderator": false, "connected": false, "speaking": false})
    );
    let has = |id: &str, key: &'static str, val: Value| {
        let id = id.to_owned();
        move |e: &Value| common::participant(e, &id).is_some_and(|p| p[key] == val)
    };

    let mut sp = common::open_speaker(&server, &room, &token).await;
    common::wait_event(&mut ws, has(&pid, "connected", json!(true))).await;
    // A speaker mutes itself over its socket, unmutes over HTTP.
    sp.send(Message::Text(r#"{"type":"mute","muted":true}"#.into()))
        .await
        .unwrap();
    let e = seen(common::wait_event(&mut ws, has(&pid, "muted", json!(true))).await);
    assert_eq!(
        common::participant(&e, &pid).unwrap()["muted_by_moderator"],
        false
    );
    let mute = r(&format!("/participants/{pid}/mute"));
    assert_eq!(
        common::post(&base, &mute, &token, json!({"muted": false}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, has(&pid, "muted", json!(false))).await);
    // The host mutes and unmutes.
    assert_eq!(
        common::post(&base, &mute, &host, json!({"muted": true}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, has(&pid, "muted_by_moderator", json!(true))).await);
    assert_eq!(
        common::post(&base, &mute, &host, json!({"muted": false}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, has(&pid, "muted", json!(false))).await);

    // Promotion: the same token now carries co-host powers; demotion takes them back.
    let role = r(&format!("/participants/{pid}/role"));
    assert_eq!(
        common::post(&base, &role, &host, json!({"role": "co_host"}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, has(&pid, "role", json!("co_host"))).await);
    assert_eq!(
        common::post(&base, &r("/speakers"), &token, json!({}))
            .await
            .0,
        201
    );
    let e = seen(common::wait_event(&mut ws, newer).await);
    assert_eq!(e["participants"].as_array().unwrap().len(), 3);
    assert_eq!(
        common::post(&base, &role, &host, json!({"role": "speaker"}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, has(&pid, "role", json!("speaker"))).await);
    assert_eq!(
        common::post(&base, &r("/speakers"), &token, json!({}))
            .await
            .0,
        403
    );

    // Invitations.
    let (lid, ticket, _) = common::join(&base, &room).await;
    let (s, _) = common::post(&base, &r("/invites"), &host, json!({"listener_id": lid})).await;
    assert_eq!(s, 201);
    let e = seen(common::wait_event(&mut ws, |e| e["invited"] == json!([lid])).await);
    assert_eq!(e["invited"], json!([lid]));
    let (_, v) = get(&base, &r("/requests/me"), &ticket).await;
    assert_eq!(v["state"], "invited");
    let cancel = format!("{base}{}", r(&format!("/invites/{lid}")));
    assert_eq!(
        common::call(Method::DELETE, &cancel, Some(&host), None)
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, |e| e["invited"] == json!([])).await);

    // A request, declined.
    assert_eq!(
        common::post(&base, &r("/requests"), &ticket, json!({}))
            .await
            .0,
        202
    );
    seen(common::wait_event(&mut ws, |e| e["requests"] == 1).await);
    let decline = r(&format!("/requests/{lid}/decline"));
    assert_eq!(common::post(&base, &decline, &host, json!({})).await.0, 200);
    seen(common::wait_event(&mut ws, |e| e["requests"] == 0).await);
    let (_, v) = get(&base, &r("/requests/me"), &ticket).await;
    assert_eq!(v["state"], "declined");

    // Moved to the audience.
    assert_eq!(
        common::post(
            &base,
            &r(&format!("/participants/{pid}/demote")),
            &host,
            json!({})
        )
        .await
        .0,
        200
    );
    seen(common::wait_event(&mut ws, |e| common::participant(e, &pid).is_none()).await);
    assert_eq!(common::expect_close(&mut sp).await.0, 4001);

    // A block and an unblock.
    let block = r(&format!("/listeners/{lid}/remove"));
    assert_eq!(
        common::post(&base, &block, &host, json!({"block": true}))
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, newer).await);
    let unblock = format!("{base}{}", r(&format!("/blocks/{lid}")));
    assert_eq!(
        common::call(Method::DELETE, &unblock, Some(&host), None)
            .await
            .0,
        200
    );
    seen(common::wait_event(&mut ws, newer).await);

    assert_eq!(
        common::post(&base, &r("/end"), &host, json!({})).await.0,
        200
    );
    common::wait_event(&mut ws, |e| e["state"] == "ended").await;
    server.shutdown().await.unwrap();
}
