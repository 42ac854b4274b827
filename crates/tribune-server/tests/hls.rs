//! LL-HLS of a live room on a real node over loopback: ffmpeg plays the live playlist and hears
//! the speaker's tone; blocking reloads wait for the next part; malformed, unknown and
//! traversal requests are refused; the caching and CORS headers; the join answer's `hls_url`.
//!
//! ffmpeg is required (scripts/test-all.sh installs it); without it the ffmpeg test fails unless
//! `TRIBUNE_SKIP_FFMPEG=1`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_client::{Api, AudioSource, SpeakOptions};
use tribune_server::RunningServer;

/// A node with a room whose host speaks a 440 Hz tone for `secs`: (node, room id, speaker).
async fn tone_room(secs: u64) -> (RunningServer, String, tokio::task::JoinHandle<()>) {
    let (server, room, _, speaker) = tone_room_with_host(secs).await;
    (server, room, speaker)
}

/// Like `tone_room`, with the host token.
async fn tone_room_with_host(
    secs: u64,
) -> (RunningServer, String, String, tokio::task::JoinHandle<()>) {
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("hls").await.unwrap();
    let host = room.host_token.clone();
    let opts = SpeakOptions {
        room: room.id.clone(),
        token: room.host_token.clone(),
        source: AudioSource::Tone(440.0),
        duration: Some(Duration::from_secs(secs)),
        bitrate_bps: 48_000,
        hear: false,
    };
    let speaker = tokio::spawn(async move {
        tribune_client::speak(&api, opts).await.expect("speak");
    });
    (server, room.id, host, speaker)
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::Client::new().get(url).send().await.unwrap()
}

/// The live playlist once it lists at least `segments` complete segments.
async fn playlist_with_segments(base: &str, room: &str, segments: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(&format!("{base}/hls/{room}/live.m3u8")).await;
        if r.status() == 200 {
            let text = r.text().await.unwrap();
            if text.matches("#EXTINF:").count() >= segments {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "the playlist never filled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `(msn, index)` of the `EXT-X-PRELOAD-HINT` part.
fn preload_hint(playlist: &str) -> (u64, u32) {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))
        .unwrap_or_else(|| panic!("no preload hint in {playlist}"));
    let uri = line.split("URI=\"part/").nth(1).unwrap();
    let name = uri.split(".m4s").next().unwrap();
    let (msn, index) = name.split_once('.').unwrap();
    (msn.parse().unwrap(), index.parse().unwrap())
}

/// The URI of every `EXT-X-PART` of the playlist.
fn part_uris(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| l.starts_with("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1))
        .filter_map(|u| u.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_live_playlist_and_hears_the_tone() {
    if !common::ffmpeg_available() {
        return;
    }
    let (server, room, speaker) = tone_room(20).await;
    // ffmpeg starts 3 segments from the live end; wait until they are there.
    playlist_with_segments(&server.url(), &room, 3).await;
    let url = format!("{}/hls/{room}/live.m3u8", server.url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-v", "error", "-i", &url])
            .args(["-t", "4", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
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
    let samples: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    // 4 s requested; allow for the decoder's pre-skip and rounding.
    assert!(
        samples.len() >= 48_000 * 39 / 10,
        "decoded {} samples",
        samples.len()
    );
    let middle = &samples[48_000..48_000 * 3];
    let hz = tribune_media::analysis::dominant_frequency(middle, 48_000).expect("a tone");
    assert!((hz - 440.0).abs() <= 10.0, "dominant frequency {hz} Hz");
    let rms =
        (middle.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
    assert!(rms > 1000.0, "audible: rms {rms}");
    assert!(common::metric(&server.url(), "hls_playlist_requests_total").await >= 2);
    assert!(common::metric(&server.url(), "hls_media_requests_total").await >= 4);
    speaker.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_waits_for_the_next_part() {
    let (server, room, speaker) = tone_room(10).await;
    let base = format!("{}/hls/{room}/live.m3u8", server.url());
    let first = playlist_with_segments(&server.url(), &room, 0).await;
    // Block on the hinted part: answered as soon as it is published...
    let (msn, index) = preload_hint(&first);
    let r = get(&format!("{base}?_HLS_msn={msn}&_HLS_part={index}")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(part_uris(&text).contains(&format!("part/{msn}.{index}.m4s")));
    // ... so the next hinted part is a whole part target (200 ms) away.
    let (msn, index) = preload_hint(&text);
    let hinted_from = text;
    let started = Instant::now();
    let r = get(&format!("{base}?_HLS_msn={msn}&_HLS_part={index}")).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");
    let text = r.text().await.unwrap();
    // Held until the part was published (it was not in the playlist the hint came from), and
    // no longer than a part or two. No lower bound: a client slow between the two requests
    // may find the part nearly done.
    assert!(waited <= Duration::from_secs(1), "waited {waited:?}");
    let uri = format!("part/{msn}.{index}.m4s");
    assert!(
        !part_uris(&hinted_from).contains(&uri),
        "{uri} was already listed"
    );
    assert!(part_uris(&text).contains(&uri), "{uri} not in {text}");
    // The part it names is there, and its bytes are a CMAF fragment (moof first).
    let part = get(&format!("{}/hls/{room}/{uri}", server.url())).await;
    assert_eq!(part.status(), 200);
    let bytes = part.bytes().await.unwrap();
    assert_eq!(&bytes[4..8], b"moof");
    // A request for the part after the hint is held too, then answered.
    let (msn, index) = preload_hint(&text);
    let next = format!("{}/hls/{room}/part/{msn}.{index}.m4s", server.url());
    let started = Instant::now();
    let r = get(&next).await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() <= Duration::from_secs(1));
    assert!(common::metric(&server.url(), "hls_blocking_waits_total").await >= 2);
    speaker.abort();
    server.shutdown().await.unwrap();
}

async fn assert_json_error(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_unknown_requests_are_refused() {
    let (server, room, speaker) = tone_room(6).await;
    let base = server.url();
    let text = playlist_with_segments(&base, &room, 0).await;
    let live = format!("{base}/hls/{room}/live.m3u8");
    for query in [
        "_HLS_msn=abc",
        "_HLS_part=1",
        "_HLS_msn=1&_HLS_msn=2",
        "_HLS_msn=99999999",
        "_HLS_msn=99999999&_HLS_part=0",
    ] {
        let v = assert_json_error(get(&format!("{live}?{query}")).await, 400).await;
        assert_eq!(v["error"], "bad_request", "{query}");
    }
    let v = assert_json_error(get(&format!("{base}/hls/nosuchroom/live.m3u8")).await, 404).await;
    assert_eq!(v["error"], "room_not_found");
    assert_json_error(get(&format!("{base}/hls/nosuchroom/init.mp4")).await, 404).await;
    let (msn, _) = preload_hint(&text);
    for path in [
        "part/abc.m4s".to_string(),
        format!("part/{msn}.50.m4s"),
        format!("part/{}.0.m4s", msn + 1000),
        format!("seg/{}.m4s", msn + 1000),
        format!("seg/0{msn}.m4s"),
        "seg/x.m4s".to_string(),
        "init.mp4/".to_string(),
        "..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        assert_json_error(get(&format!("{base}/hls/{room}/{path}")).await, 404).await;
    }
    for path in [
        format!("/hls/{room}/seg/../x"),
        format!("/hls/{room}/../../etc/passwd"),
        format!("/hls/{room}/..%2F..%2Fetc%2Fpasswd"),
        format!("/hls/{room}/seg/..%2F..%2Finit.mp4"),
    ] {
        assert_eq!(common::raw_status(server.addr, &path).await, 404, "{path}");
    }
    speaker.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_cache_media_forever_and_playlists_briefly() {
    let (server, room, speaker) = tone_room(8).await;
    let base = server.url();
    let text = playlist_with_segments(&base, &room, 1).await;
    let r = get(&format!("{base}/hls/{room}/live.m3u8")).await;
    assert_eq!(r.headers()["cache-control"], "max-age=1");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers().contains_key("etag"));
    let uris = part_uris(&text);
    let segment = text
        .lines()
        .find(|l| l.starts_with("seg/"))
        .expect("a complete segment")
        .to_owned();
    for path in ["init.mp4", uris[0].as_str(), segment.as_str()] {
        let r = get(&format!("{base}/hls/{room}/{path}")).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "audio/mp4");
        assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(h["access-control-allow-origin"], "*");
        let etag = h["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert!(!r.bytes().await.unwrap().is_empty());
        // Revalidation answers 304 without a body.
        let r = reqwest::Client::new()
            .get(format!("{base}/hls/{room}/{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    }
    let init = get(&format!("{base}/hls/{room}/init.mp4")).await;
    assert_eq!(&init.bytes().await.unwrap()[4..8], b"ftyp");
    speaker.abort();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_answer_has_a_working_hls_url_and_the_ended_room_keeps_its_playlist() {
    let (server, room, host, speaker) = tone_room_with_host(4).await;
    let base = server.url();
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/api/rooms/{room}/join"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = v["hls_url"].as_str().expect("hls_url").to_owned();
    assert_eq!(url, format!("http://{}/hls/{room}/live.m3u8", server.addr));
    let text = playlist_with_segments(&base, &room, 0).await;
    let r = get(&url).await;
    assert_eq!(r.status(), 200);
    let text2 = r.text().await.unwrap();
    assert!(text2.starts_with("#EXTM3U\n"), "{text2}");
    assert!(text2.contains("#EXT-X-MAP:URI=\"init.mp4\""), "{text2}");
    assert!(!text2.contains("#EXT-X-ENDLIST"));
    // End the room: the playlist stays, with ENDLIST, and a blocking request for a part that
    // will never come is answered at once.
    let (status, _) = common::post(
        &base,
        &format!("/api/rooms/{room}/end"),
        &host,
        serde_json::json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (msn, index) = preload_hint(&text);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        let r = get(&format!("{url}?_HLS_msn={msn}&_HLS_part={}", index + 5)).await;
        assert_eq!(r.status(), 200);
        let ended = r.text().await.unwrap();
        if ended.contains("#EXT-X-ENDLIST") {
            assert!(started.elapsed() < Duration::from_secs(1));
            assert!(!ended.contains("#EXT-X-PRELOAD-HINT"), "{ended}");
            break;
        }
        assert!(Instant::now() < deadline, "no ENDLIST after the end");
    }
    speaker.abort();
    server.shutdown().await.unwrap();
}
