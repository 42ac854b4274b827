//! Recordings on a real node over loopback: the replay (EVENT while live, VOD after) and the
//! `.m4a` download decoded by ffmpeg hold the spoken tone for as long as it was spoken; clips;
//! the host's switch; retention; and requests that try to reach other files.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_client::{Api, AudioSource, SpeakOptions};
use tribune_media::analysis::{dominant_frequency, rms};
use tribune_server::{RunningServer, ServerConfig};

/// A recording node: (node, its data directory).
async fn recording_node(retention: Option<Duration>) -> (RunningServer, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let server = common::start_with(ServerConfig {
        data_dir: Some(data.path().to_path_buf()),
        recording_retention: retention,
        ..ServerConfig::default()
    })
    .await;
    (server, data)
}

/// Speaks a 440 Hz tone for `secs` in `room` with `token` (returns when done).
async fn speak_tone(base: &str, room: &str, token: &str, secs: u64) {
    let api = Api::new(base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let opts = SpeakOptions {
        room: room.to_owned(),
        token: token.to_owned(),
        source: AudioSource::Tone(440.0),
        duration: Some(Duration::from_secs(secs)),
        bitrate_bps: 48_000,
        hear: false,
    };
    let report = tribune_client::speak(&api, opts).await.expect("speak");
    assert_eq!(report.frames_sent, secs * 50);
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

async fn status(base: &str, room: &str) -> Value {
    let r = get(&format!("{base}/api/rooms/{room}/recording")).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Waits (bounded) until the recording status satisfies `pred`.
async fn wait_status(base: &str, room: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(base, room).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "recording never got there: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Number of 20 ms frames of `samples` loud enough to be the tone (silence decodes near 0).
fn tone_frames(samples: &[i16]) -> usize {
    samples.chunks(960).filter(|f| rms(f) > 0.05).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_download_and_clips_hold_what_was_spoken() {
    if !common::ffmpeg_available() {
        return;
    }
    let (server, data) = recording_node(None).await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    // A listener's ticket, to cut a clip with later.
    let (_, ticket, _) = common::join(&base, &room).await;
    let spoken_s = 6;
    speak_tone(&base, &room, &host, spoken_s).await;
    // Let the tone's last frames reach a completed segment (the room records only while
    // someone is on stage: the segment is completed when the speaker leaves).
    let live = wait_status(&base, &room, |s| {
        s["duration_s"].as_f64() >= Some(spoken_s as f64)
    })
    .await;
    assert_eq!(live["ended"], false);
    assert_eq!(live["enabled"], true);

    // While live: an EVENT playlist, no end.
    let r = get(&format!("{base}/hls/{room}/replay.m3u8")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "max-age=1");
    let text = r.text().await.unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{text}");
    assert!(!text.contains("#EXT-X-ENDLIST"));

    let (code, _) = common::post(&base, &format!("/api/rooms/{room}/end"), &host, json!({})).await;
    assert_eq!(code, 200);
    let done = wait_status(&base, &room, |s| s["ended"] == true).await;
    let recorded_s = done["duration_s"].as_f64().unwrap();

    // After: VOD with its end, and every listed segment on disk.
    let text = get(&format!("{base}/hls/{room}/replay.m3u8"))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{text}");
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
    let listed = text.lines().filter(|l| l.starts_with("seg/")).count();
    assert_eq!(listed as u64, done["segments"].as_u64().unwrap());
    let seg_dir = data.path().join("recordings").join(&room).join("seg");
    assert_eq!(std::fs::read_dir(&seg_dir).unwrap().count(), listed);

    // ffmpeg plays the replay: as long as recorded, the tone for as long as it was spoken.
    let replay = common::ffmpeg_decode(&format!("{base}/hls/{room}/replay.m3u8")).await;
    let replay_s = replay.len() as f64 / 48_000.0;
    assert!(
        (replay_s - recorded_s).abs() <= recorded_s * 0.02,
        "replay {replay_s} s, recorded {recorded_s} s"
    );
    let tone_s = tone_frames(&replay) as f64 * 0.020;
    assert!(
        (tone_s - spoken_s as f64).abs() <= spoken_s as f64 * 0.02,
        "tone lasts {tone_s} s in the replay, {spoken_s} s spoken"
    );
    let first_tone = replay.chunks(960).position(|f| rms(f) > 0.05).unwrap();
    let middle = &replay[(first_tone + 50) * 960..(first_tone + 150) * 960];
    let hz = dominant_frequency(middle, 48_000).unwrap();
    assert!((hz - 440.0).abs() <= 10.0, "replay tone {hz} Hz");

    // The download: one file of the announced length, the same audio.
    let r = get(&format!("{base}/api/rooms/{room}/recording.m4a")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mp4");
    let announced: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let file = r.bytes().await.unwrap();
    assert_eq!(file.len(), announced);
    let m4a = data.path().join("download.m4a");
    std::fs::write(&m4a, &file).unwrap();
    let downloaded = common::ffmpeg_decode(m4a.to_str().unwrap()).await;
    let diff = downloaded.len().abs_diff(replay.len());
    assert!(
        diff <= 960 * 2,
        "download {} vs replay {}",
        downloaded.len(),
        replay.len()
    );
    assert_eq!(tone_frames(&downloaded), tone_frames(&replay));

    // A clip of 2.5 s from inside the tone, cut by a listener.
    let start_s = first_tone as f64 * 0.020 + 1.0;
    let body = json!({"start_s": start_s, "end_s": start_s + 2.5});
    let (code, clip) =
        common::post(&base, &format!("/api/rooms/{room}/clips"), &ticket, body).await;
    assert_eq!(code, 201, "{clip}");
    assert_eq!(clip["duration_s"], 2.5);
    let url = format!("{base}{}", clip["url"].as_str().unwrap());
    let r = get(&url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let clip_audio = common::ffmpeg_decode(&url).await;
    let clip_s = clip_audio.len() as f64 / 48_000.0;
    assert!((clip_s - 2.5).abs() <= 0.05, "clip lasts {clip_s} s");
    let hz = dominant_frequency(&clip_audio[4_800..], 48_000).unwrap();
    assert!((hz - 440.0).abs() <= 10.0, "clip tone {hz} Hz");
    assert!(tone_frames(&clip_audio) >= 120, "the clip is the tone");

    // Clips that cannot be: too long, beyond the recording, no token, another room's token.
    let clips = format!("/api/rooms/{room}/clips");
    for (body, want) in [
        (json!({"start_s": 0.0, "end_s": 61.0}), 400),
        (json!({"start_s": 1.0, "end_s": 1.0}), 400),
        (json!({"start_s": -1.0, "end_s": 2.0}), 400),
        (json!({"start_s": 0.0, "end_s": recorded_s + 1.0}), 400),
        (json!({"start": 0.0}), 400),
    ] {
        let (code, v) = common::post(&base, &clips, &host, body.clone()).await;
        assert_eq!(code, want, "{body}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (code, _) = common::call(
        reqwest::Method::POST,
        &format!("{base}{clips}"),
        None,
        Some(json!({"start_s": 0.0, "end_s": 1.0})),
    )
    .await;
    assert_eq!(code, 401);
    let (other, other_host) = common::create_room(&base).await;
    let (code, _) = common::post(
        &base,
        &clips,
        &other_host,
        json!({"start_s": 0.0, "end_s": 1.0}),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(common::metric(&base, "clips_created_total").await, 1);
    drop(other);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_switches_recording_off_and_on() {
    let (server, _data) = recording_node(None).await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let path = format!("/api/rooms/{room}/recording");
    // A room records only while someone is on stage: the host talks throughout.
    let talking = {
        let (base, room, host) = (base.clone(), room.clone(), host.clone());
        tokio::spawn(async move { speak_tone(&base, &room, &host, 20).await })
    };
    wait_status(&base, &room, |s| s["segments"].as_u64() >= Some(1)).await;

    // Only the host may switch it.
    let (_, ticket, _) = common::join(&base, &room).await;
    let (code, _) = common::post(&base, &path, &ticket, json!({"enabled": false})).await;
    assert_eq!(code, 403);
    let (code, _) = common::post(&base, &path, &host, json!({"on": false})).await;
    assert_eq!(code, 400);

    let (code, v) = common::post(&base, &path, &host, json!({"enabled": false})).await;
    assert_eq!((code, &v["enabled"]), (200, &json!(false)), "{v}");
    let off_at = status(&base, &room).await["segments"].as_u64().unwrap();
    // 5 s off: segments are cut but not recorded.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        status(&base, &room).await["segments"].as_u64().unwrap(),
        off_at
    );
    assert!(common::metric(&base, "recording_segments_skipped_total").await >= 2);

    let (code, v) = common::post(&base, &path, &host, json!({"enabled": true})).await;
    assert_eq!((code, &v["enabled"]), (200, &json!(true)));
    wait_status(&base, &room, |s| s["segments"].as_u64() >= Some(off_at + 1)).await;
    // The hole is marked, so players do not expect the timeline to run on.
    let text = get(&format!("{base}/hls/{room}/replay.m3u8"))
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("#EXT-X-DISCONTINUITY"), "{text}");

    // Created with recording off: nothing recorded.
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/api/rooms"))
        .bearer_auth(common::API_KEY)
        .json(&json!({"title": "off the record", "record": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let quiet = r["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let s = status(&base, quiet).await;
    assert_eq!(
        (s["enabled"].clone(), s["segments"].clone()),
        (json!(false), json!(0))
    );
    talking.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_ended_recordings_only() {
    let (server, data) = recording_node(Some(Duration::from_secs(1))).await;
    let base = server.url();
    let (ended, host) = common::create_room(&base).await;
    let (live, _) = common::create_room(&base).await;
    speak_tone(&base, &ended, &host, 3).await;
    wait_status(&base, &ended, |s| s["segments"].as_u64() >= Some(1)).await;
    common::post(&base, &format!("/api/rooms/{ended}/end"), &host, json!({})).await;
    let dir = data.path().join("recordings").join(&ended);
    let deadline = Instant::now() + Duration::from_secs(10);
    while dir.exists() {
        assert!(Instant::now() < deadline, "retention never deleted {dir:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get(&format!("{base}/hls/{ended}/replay.m3u8"))
            .await
            .status(),
        404
    );
    // The live room's recording stays, however old.
    assert!(data.path().join("recordings").join(&live).exists());
    assert_eq!(
        get(&format!("{base}/hls/{live}/replay.m3u8"))
            .await
            .status(),
        200
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_paths_cannot_reach_other_files() {
    let (server, data) = recording_node(None).await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    speak_tone(&base, &room, &host, 3).await;
    wait_status(&base, &room, |s| s["segments"].as_u64() >= Some(1)).await;
    let (_, clip) = common::post(
        &base,
        &format!("/api/rooms/{room}/clips"),
        &host,
        json!({"start_s": 0.0, "end_s": 1.0}),
    )
    .await;
    assert!(clip["url"].is_string(), "{clip}");
    // A file outside the recordings that a traversal would aim at.
    std::fs::write(data.path().join("secret.txt"), "do not serve").unwrap();
    for path in [
        format!("/hls/{room}/seg/../meta.json"),
        format!("/hls/{room}/seg/..%2Fmeta.json"),
        format!("/hls/{room}/seg/%2e%2e%2f%2e%2e%2fsecret.txt"),
        format!("/hls/{room}/..%2F..%2Fsecret.txt"),
        format!("/hls/{room}/seg/00.m4s"),
        format!("/hls/{room}/seg/99999.m4s"),
        format!("/hls/{room}/index.txt"),
        format!("/hls/{room}/meta.json"),
        "/hls/..%2F..%2Fsecret.txt/replay.m3u8".to_string(),
        "/hls/../recordings/replay.m3u8".to_string(),
        format!("/api/rooms/{room}/clips/..%2F..%2Fmeta.json"),
        format!("/api/rooms/{room}/clips/../index.txt"),
        format!("/api/rooms/{room}/clips/%2e%2e%2findex.txt"),
        format!("/api/rooms/{room}/clips/0123456789abcdef.m4a"),
        "/api/rooms/..%2F..%2Fsecret.txt/recording.m4a".to_string(),
        "/api/rooms/aaaaaaaaaa/recording.m4a".to_string(),
        "/api/rooms/aaaaaaaaaa/clips/0123456789abcdef.m4a".to_string(),
    ] {
        let (code, text) = common::raw_get(server.addr, &path).await;
        assert_eq!(code, 404, "{path}");
        assert!(
            !text.contains("do not serve") && !text.contains("\"title\""),
            "{path}"
        );
    }
    server.shutdown().await.unwrap();
}
