//! A node comes back as it was after `kill -9`: a live room (a speaker at 440 Hz, a listener, a
//! co-host, a blocked listener, recording on) and a scheduled room are listed again with their
//! ids and states; the tokens and tickets issued before still work with the roles the roster
//! gives; the block still refuses; the listener resumes with its ticket and hears the speaker
//! who re-published; the replay plays across the restart; the host's token ends the room.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live::{ffmpeg_decode, listener, speaker, tone_hz, tone_seconds, wait_for, Api, Heard};
use common::{free_addr, run_json, serve, API_KEY};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_room_comes_back_as_it_was() {
    let data = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let mut node = serve(addr, data.path());
    let mut api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base: format!("http://{addr}"),
    };

    // Before: a live room with a co-host, two listeners (one blocked), a speaker and a
    // listener at 440 Hz, recording on; and a room scheduled an hour ahead.
    let room = run_json(&[
        "room", "create", "--server", &api.base, "--title", "before", "--json",
    ]);
    let id = room["id"].as_str().unwrap().to_owned();
    let host = room["host_token"].as_str().unwrap().to_owned();
    let at = tribune_core::unix_micros() / 1_000_000 + 3600;
    let (code, later) = api
        .call(
            "POST",
            "/api/rooms",
            Some(API_KEY),
            json!({"title": "later", "scheduled_for": at}),
        )
        .await;
    assert_eq!(code, 201, "{later}");
    let later_id = later["id"].as_str().unwrap().to_owned();
    let (code, co) = api
        .call(
            "POST",
            &format!("/api/rooms/{id}/speakers"),
            Some(&host),
            json!({"role": "co_host", "name": "Co"}),
        )
        .await;
    assert_eq!(code, 201, "{co}");
    let co_host = co["token"].as_str().unwrap().to_owned();
    let join = |api: &Api| {
        let path = format!("/api/rooms/{id}/join");
        let (http, base) = (api.http.clone(), api.base.clone());
        async move {
            let resp = http.post(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    let blocked = join(&api).await;
    let kept = join(&api).await;
    let (code, answer) = api
        .call(
            "POST",
            &format!(
                "/api/rooms/{id}/listeners/{}/remove",
                blocked["listener_id"]
            ),
            Some(&co_host),
            json!({"block": true}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");

    let stop = Arc::new(AtomicBool::new(false));
    let speak_url =
        |addr: std::net::SocketAddr| format!("ws://{addr}/api/rooms/{id}/speak?token={host}");
    let listen_url = |addr: std::net::SocketAddr, from: Option<u64>| {
        let path = format!(
            "/api/rooms/{id}/listen?ticket={}",
            kept["ticket"].as_str().unwrap()
        );
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        format!("ws://{addr}{path}{from}")
    };
    tokio::spawn(speaker(speak_url(addr), stop.clone()));
    let before = Arc::new(Mutex::new(Heard::default()));
    tokio::spawn(listener(
        listen_url(addr, None),
        before.clone(),
        stop.clone(),
    ));
    wait_for("3 s of tone before the kill", 20, || {
        tone_seconds(&before.lock().unwrap().pcm) >= 3.0
    })
    .await;
    // Until the recording holds some of it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let recorded_before = loop {
        let (_, status) = api
            .call(
                "GET",
                &format!("/api/rooms/{id}/recording"),
                None,
                Value::Null,
            )
            .await;
        if status["duration_s"].as_f64().unwrap_or(0.0) >= 2.0 {
            break status["duration_s"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "never recorded: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // SIGKILL: no shutdown code runs.
    node.0.kill().unwrap();
    node.0.wait().unwrap();
    drop(node);
    stop.store(true, Ordering::Relaxed);
    let last_seq = *before.lock().unwrap().seqs.last().unwrap();
    let hz = tone_hz(&before.lock().unwrap().pcm);
    assert!((hz - 440.0).abs() <= 10.0, "{hz} Hz before the kill");
    {
        let b = before.lock().unwrap();
        println!(
            "before the kill: {} frames heard, {:.2} s of tone, {recorded_before} s recorded",
            b.seqs.len(),
            tone_seconds(&b.pcm)
        );
    }

    // After: the same data directory (on another port).
    let addr = free_addr();
    let _node = serve(addr, data.path());
    api.base = format!("http://{addr}");

    let (code, list) = api.call("GET", "/api/rooms", None, Value::Null).await;
    assert_eq!(code, 200);
    let state_of = |rid: &str| {
        list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rid)
            .map(|r| r["state"].clone())
    };
    assert_eq!(state_of(&id), Some(json!("live")), "{list}");
    assert_eq!(state_of(&later_id), Some(json!("scheduled")), "{list}");

    // The block still refuses that listener's ticket.
    let (code, answer) = api
        .call(
            "POST",
            &format!("/api/rooms/{id}/join"),
            None,
            json!({"ticket": blocked["ticket"]}),
        )
        .await;
    assert_eq!(code, 403, "{answer}");
    let refused = format!(
        "ws://{addr}/api/rooms/{id}/listen?ticket={}",
        blocked["ticket"].as_str().unwrap()
    );
    match tokio_tungstenite::connect_async(refused).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("a blocked ticket connected: {:?}", other.map(|_| ())),
    }
    // The co-host's token still acts as a co-host: it may mint a speaker token, which a
    // speaker's may not.
    let (code, minted) = api
        .call(
            "POST",
            &format!("/api/rooms/{id}/speakers"),
            Some(&co_host),
            json!({}),
        )
        .await;
    assert_eq!(code, 201, "{minted}");
    let (code, refused) = api
        .call(
            "POST",
            &format!("/api/rooms/{id}/speakers"),
            minted["token"].as_str(),
            json!({}),
        )
        .await;
    assert_eq!(code, 403, "{refused}");
    let (_, stage) = api
        .call(
            "GET",
            &format!("/api/rooms/{id}/stage"),
            Some(&host),
            Value::Null,
        )
        .await;
    let roles: Vec<&str> = stage["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["role"].as_str())
        .collect();
    assert!(
        roles.contains(&"host") && roles.contains(&"co_host"),
        "{stage}"
    );

    // The speaker publishes again; the listener resumes with its ticket where it left off.
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(speak_url(addr), stop.clone()));
    let after = Arc::new(Mutex::new(Heard::default()));
    tokio::spawn(listener(
        listen_url(addr, Some(last_seq + 1)),
        after.clone(),
        stop.clone(),
    ));
    wait_for("3 s of tone after the restart", 20, || {
        tone_seconds(&after.lock().unwrap().pcm) >= 3.0
    })
    .await;
    let first_after = after.lock().unwrap().seqs[0];
    println!(
        "after the restart: frames from {first_after} (last before {last_seq}), {} heard",
        after.lock().unwrap().seqs.len()
    );
    assert!(
        first_after > last_seq,
        "numbers go on: {first_after} after {last_seq}"
    );
    assert!((tone_hz(&after.lock().unwrap().pcm) - 440.0).abs() <= 10.0);
    stop.store(true, Ordering::Relaxed);
    // Until the recording holds audio from after the restart too.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = api
            .call(
                "GET",
                &format!("/api/rooms/{id}/recording"),
                None,
                Value::Null,
            )
            .await;
        if status["duration_s"].as_f64().unwrap_or(0.0) >= recorded_before + 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not recording after the restart: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The host's token ends the room; its replay plays across the restart.
    let (code, ended) = api
        .call(
            "POST",
            &format!("/api/rooms/{id}/end"),
            Some(&host),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = api
            .call(
                "GET",
                &format!("/api/rooms/{id}/recording"),
                None,
                Value::Null,
            )
            .await;
        if status["ended"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "recording never ended: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let playlist = api
        .http
        .get(format!("{}/hls/{id}/replay.m3u8", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(playlist.contains("#EXT-X-DISCONTINUITY\n"), "{playlist}");
    let replay = ffmpeg_decode(&format!("{}/hls/{id}/replay.m3u8", api.base));
    let heard_s = tone_seconds(&replay);
    assert!(
        heard_s >= recorded_before + 2.0,
        "the replay holds {heard_s} s of tone, {recorded_before} s before the kill"
    );
    assert!((tone_hz(&replay) - 440.0).abs() <= 10.0);
    // After the restart part: its last seconds are tone too.
    let tail = &replay[replay.len().saturating_sub(48_000 * 3)..];
    assert!(
        tone_seconds(tail) >= 1.0,
        "the replay's end holds {} s of tone",
        tone_seconds(tail)
    );
}
