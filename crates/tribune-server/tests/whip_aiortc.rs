//! A real, non-browser WebRTC stack (Python aiortc) publishes a 440 Hz tone over WHIP into a
//! room on a loopback node; a WebSocket listener hears 440 Hz with no lost frame, and after the
//! publisher DELETEs its session the room has no speaker left.
//!
//! Needs `python3` with aiortc and numpy (`scripts/test-all.sh` installs them from
//! tests/whip/requirements.txt; `TRIBUNE_PYTHON` picks another interpreter). Without them the
//! test is skipped with a loud message, except under CI (`CI` set), where it fails.

mod common;

use std::time::Duration;

use common::aiortc::{publish, python};
use serde_json::Value;
use tribune_client::{Api, ListenOptions};
use tribune_media::analysis::{band_energy_ratio, dominant_frequency};

async fn speakers(base: &str, room: &str) -> u64 {
    let v: Value = reqwest::get(format!("{base}/api/rooms/{room}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["speakers"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_a_tone_that_listeners_hear() {
    let Some(py) = python() else { return };
    let server = common::start().await;
    let base = server.url();
    let api = Api::new(&base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("whip").await.unwrap();
    let url = format!("{base}/api/rooms/{}/whip", room.id);
    let args = ["--tone", "440", "--seconds", "5"]
        .map(String::from)
        .to_vec();
    let publisher = publish(py, url, room.host_token.clone(), args);

    // Wait until the session is up and media flows, then let the jitter buffer fill.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while common::metric(&base, "whip_frames_total").await < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WHIP media arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(speakers(&base, &room.id).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = tribune_client::listen(
        &api,
        ListenOptions {
            room: room.id.clone(),
            duration: Duration::from_secs(3),
            decode: true,
            keep_packets: false,
        },
    )
    .await
    .unwrap();
    println!(
        "WHIP → listener: {} frames, lost {}, server-arrival-to-ear p50 {:.1} ms p99 {:.1} ms",
        report.frames_received, report.frames_lost, report.latency_ms.p50, report.latency_ms.p99
    );
    assert_eq!(report.frames_lost, 0);
    assert!(
        (140..=160).contains(&report.frames_received),
        "3 s of frames: {}",
        report.frames_received
    );
    // Skip the first 0.3 s (listener prefill and codec start-up).
    let pcm = &report.pcm[14_400..];
    let hz = dominant_frequency(pcm, 48_000).expect("not silent");
    assert!((hz - 440.0).abs() <= 10.0, "dominant frequency {hz} Hz");
    let share = band_energy_ratio(pcm, 48_000, 440.0, 15.0);
    assert!(share > 0.8, "440 Hz holds only {share:.2} of the energy");

    let published = publisher.await.unwrap();
    assert!(published.ok, "publisher failed: {}", published.stderr);
    let done = published.done();
    let session = &done["sessions"][0];
    assert_eq!(session["status"], 201);
    assert_eq!(session["connected"], true);
    assert_eq!(session["delete_status"], 204);
    // DELETE returns once the seat has left the mix.
    assert_eq!(speakers(&base, &room.id).await, 0);
    assert_eq!(common::metric(&base, "whip_sessions").await, 0);
    let sent = session["frames_sent"].as_u64().unwrap();
    let got = common::metric(&base, "whip_frames_total").await;
    assert!(
        sent >= 245 && got <= sent && got + 3 >= sent,
        "frames sent {sent}, accepted {got}"
    );
    assert_eq!(common::metric(&base, "whip_frames_invalid_total").await, 0);
    // Only what was in flight after the DELETE may have found no session.
    let dropped = common::metric(&base, "udp_dropped_total").await;
    assert!(dropped <= 10, "{dropped} datagrams dropped");
    server.shutdown().await.unwrap();
}

/// Benchmark (run by bench/whip-latency.sh): true glass-to-ear latency from an aiortc WHIP
/// publisher to a WebSocket listener. The publisher beeps every 300 ms and reports when it
/// produced each beep's first frame; the listener decodes the program and notes when each beep's
/// first frame arrives. Both clocks are this host's. Also reports the server-side part
/// (`capture_us` is set when the frame reaches the node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run bench/whip-latency.sh"]
async fn whip_latency_bench() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let Some(py) = python() else { return };
    let secs: u64 = std::env::var("TRIBUNE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let server = common::start().await;
    let base = server.url();
    let api = Api::new(&base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("whip latency").await.unwrap();
    let ticket = api.join(&room.id).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(ticket.listen_url.clone())
        .await
        .unwrap();
    let url = format!("{base}/api/rooms/{}/whip", room.id);
    let args = vec![
        "--tone".into(),
        "880".into(),
        "--seconds".into(),
        secs.to_string(),
        "--bursts".into(),
        "--period-ms".into(),
        "300".into(),
    ];
    let publisher = publish(py, url, room.host_token.clone(), args);
    let mut decoder = tribune_media::Decoder::new().unwrap();
    let mut pcm = vec![0i16; 960 * 6];
    let mut onsets: Vec<u64> = Vec::new();
    let mut server_part: Vec<f64> = Vec::new();
    let mut quiet = true;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs + 15);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, ws.next()).await {
        if publisher.is_finished() {
            break;
        }
        let Message::Binary(data) = msg else { continue };
        let now = tribune_client::unix_micros();
        for r in tribune_media::wire::parse_message(&data).unwrap() {
            let n = decoder.decode(r.payload, &mut pcm).unwrap_or(0);
            let level = tribune_media::analysis::rms(&pcm[..n]);
            if quiet && level > 0.05 {
                onsets.push(now);
                server_part.push(now.saturating_sub(r.capture_us) as f64 / 1000.0);
            }
            quiet = level < 0.01;
        }
    }
    let published = publisher.await.unwrap();
    assert!(published.ok, "publisher failed: {}", published.stderr);
    let glass: Vec<u64> = published
        .lines
        .iter()
        .filter(|l| l["event"] == "burst")
        .filter_map(|l| l["unix_us"].as_u64())
        .collect();
    // Each heard onset belongs to the latest beep produced before it (beeps are 300 ms apart).
    let mut latencies: Vec<f64> = onsets
        .iter()
        .filter_map(|&ear| {
            let g = glass.iter().rev().find(|&&g| g <= ear)?;
            let ms = (ear - g) as f64 / 1000.0;
            (ms < 300.0).then_some(ms)
        })
        .collect();
    let glass_to_ear = tribune_client::Percentiles::of(&mut latencies);
    let server_only = tribune_client::Percentiles::of(&mut server_part);
    println!(
        "WHIP glass-to-ear over {} beeps ({} produced, {} heard): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        glass.len(),
        onsets.len(),
        glass_to_ear.p50,
        glass_to_ear.p99,
        glass_to_ear.max
    );
    println!(
        "  of which node arrival → listener: p50 {:.1} ms, p99 {:.1} ms",
        server_only.p50, server_only.p99
    );
    assert!(latencies.len() * 10 >= glass.len() * 9, "most beeps heard");
    server.shutdown().await.unwrap();
}
