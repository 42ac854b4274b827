//! A real node on loopback, two speakers (440 Hz and 660 Hz) and a listener: the listener hears
//! both tones, with no lost frame, sub-second glass-to-ear latency, and the metrics agree.

mod common;

use std::time::Duration;

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{Api, AudioSource, ListenOptions, SpeakOptions};
use tribune_media::analysis::{band_energy_ratio, peaks};

fn tone(api: &Api, room: &str, token: &str, hz: f32, secs: u64) -> tokio::task::JoinHandle<()> {
    let api = api.clone();
    let opts = SpeakOptions {
        room: room.to_owned(),
        token: token.to_owned(),
        source: AudioSource::Tone(hz),
        duration: Some(Duration::from_secs(secs)),
        bitrate_bps: 48_000,
        hear: false,
    };
    tokio::spawn(async move {
        tribune_client::speak(&api, opts).await.expect("speak");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_are_mixed_and_heard_live() {
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("two tones").await.unwrap();
    let speaker_token = api.add_speaker(&room.id, &room.host_token).await.unwrap();
    let a = tone(&api, &room.id, &room.host_token, 440.0, 7);
    let b = tone(&api, &room.id, &speaker_token, 660.0, 7);
    // Let both speakers' jitter buffers fill before listening.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let report = tribune_client::listen(
        &api,
        ListenOptions {
            room: room.id.clone(),
            duration: Duration::from_secs(4),
            decode: true,
            keep_packets: false,
        },
    )
    .await
    .unwrap();
    println!(
        "loopback glass-to-ear: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} frames",
        report.latency_ms.p50, report.latency_ms.p99, report.latency_ms.max, report.frames_received
    );
    // 4 s of 20 ms frames, give or take a batch at each end.
    assert!(
        (190..=210).contains(&report.frames_received),
        "frames received: {}",
        report.frames_received
    );
    assert_eq!(report.frames_lost, 0, "sequence numbers must be contiguous");
    let (first, last) = (report.first_seq.unwrap(), report.last_seq.unwrap());
    assert_eq!(last - first + 1, report.frames_received);
    assert!(report.latency_ms.p50 > 0.0);
    assert!(
        report.latency_ms.p99 < 1000.0,
        "sub-second: {:?}",
        report.latency_ms
    );

    // Skip the first half second (codec start-up) and analyse the rest.
    let pcm = &report.pcm[24_000..];
    let found = peaks(pcm, 48_000, 2);
    assert_eq!(found.len(), 2, "two tones: {found:?}");
    for hz in [440.0, 660.0] {
        assert!(
            found.iter().any(|f| (f - hz).abs() < 5.0),
            "{hz} Hz missing from {found:?}"
        );
        let share = band_energy_ratio(pcm, 48_000, hz, 15.0);
        assert!(share > 0.25, "{hz} Hz holds only {share:.2} of the energy");
    }

    assert_eq!(common::metric(&server.url(), "speakers").await, 2);
    assert_eq!(
        common::metric(&server.url(), "joins_admitted_total").await,
        1
    );
    assert!(common::metric(&server.url(), "frames_sent_total").await >= report.frames_received);
    // At the live edge, the phase group's writer sends the audio (the listener's task does
    // not wake for it): all but the first catch-up and a few writes after room events.
    let writes = common::metric(&server.url(), "batches_sent_total").await;
    let direct = common::metric(&server.url(), "direct_writes_total").await;
    assert!(
        direct * 10 >= writes * 9 && direct <= writes,
        "{direct} of {writes} writes direct"
    );
    assert_eq!(common::metric(&server.url(), "rooms_live").await, 1);
    a.await.unwrap();
    b.await.unwrap();
    // The gauges drop when the server's side of each socket has finished.
    for name in ["speakers", "listeners"] {
        common::wait_metric(&server.url(), name, 0, Duration::from_secs(5)).await;
    }
    server.shutdown().await.unwrap();
}

/// A room created with the operator key, scheduled an hour ahead when `scheduled`.
async fn room(base: &str, scheduled: bool) -> String {
    let mut body = serde_json::json!({"title": "counts"});
    if scheduled {
        body["scheduled_for"] = (tribune_core::unix_micros() / 1_000_000 + 3600).into();
    }
    let (status, v) = common::post(base, "/api/rooms", common::API_KEY, body).await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_counts_reach_listeners_at_the_live_edge_through_their_group_writer() {
    let server = common::start().await;
    let base = server.url();
    // A live room (events ride ahead of the audio) and a scheduled one (no audio: events go
    // out on their own).
    for scheduled in [false, true] {
        let room = room(&base, scheduled).await;
        let mut a = common::open_listener(&server, &room).await;
        let mut b = common::open_listener(&server, &room).await;
        for ws in [&mut a, &mut b] {
            common::wait_event(ws, |v| v["listeners"] == 2).await;
            // Settled at the live edge: the group writer holds the socket.
            let (frames, gaps) = common::count_frames(ws, Duration::from_millis(400)).await;
            assert_eq!(gaps, 0);
            assert!(scheduled || frames > 5, "live audio: {frames}");
        }
        let mut c = common::open_listener(&server, &room).await;
        for ws in [&mut a, &mut b, &mut c] {
            common::wait_event(ws, |v| v["listeners"] == 3).await;
        }
        // The audio goes on with no gap after the event.
        let (frames, gaps) = common::count_frames(&mut a, Duration::from_millis(300)).await;
        assert_eq!(gaps, 0);
        assert!(
            scheduled || frames > 5,
            "live audio after the event: {frames}"
        );
        // Only the two settled listeners remain for the next count: their writers send it.
        let before = common::metric(&base, "direct_events_total").await;
        drop(c);
        for ws in [&mut a, &mut b] {
            common::wait_event(ws, |v| v["listeners"] == 2).await;
        }
        let after = common::metric(&base, "direct_events_total").await;
        assert!(
            after >= before + 2,
            "scheduled {scheduled}: both listeners had the count from their writer \
             ({before} -> {after})"
        );
        // A client's ping is answered (a write the listener's task makes while its reading),
        // and the listener is served on: audio, then the next count.
        a.send(Message::Ping(vec![7u8; 4].into())).await.unwrap();
        let (frames, gaps) = common::count_frames(&mut a, Duration::from_millis(600)).await;
        assert_eq!(gaps, 0);
        assert!(
            scheduled || frames > 15,
            "live audio after a ping: {frames}"
        );
        let _d = common::open_listener(&server, &room).await;
        common::wait_event(&mut a, |v| v["listeners"] == 3).await;
        let (frames, _) = common::count_frames(&mut a, Duration::from_millis(300)).await;
        assert!(
            scheduled || frames > 5,
            "live audio after the ping's count: {frames}"
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_the_room_closes_listeners_with_a_reason() {
    let server = common::start().await;
    let (room, host) = common::create_room(&server.url()).await;
    let mut ws = common::open_listener(&server, &room).await;
    let (frames, _) = common::count_frames(&mut ws, Duration::from_millis(300)).await;
    assert!(frames > 5, "silence frames flow in a live room: {frames}");
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let ended = api.end_room(&room, &host).await.unwrap();
    assert_eq!(ended["state"], "ended");
    let (code, reason) = common::expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1000, "room ended"));
    // An ended room refuses new listeners.
    let err = api.join(&room).await.unwrap_err();
    assert!(err.to_string().contains("410"), "{err}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_listeners_to_reconnect() {
    let server = common::start().await;
    let (room, _) = common::create_room(&server.url()).await;
    let mut ws = common::open_listener(&server, &room).await;
    let (frames, _) = common::count_frames(&mut ws, Duration::from_millis(200)).await;
    assert!(frames > 0);
    let stopping = tokio::spawn(server.shutdown());
    let (code, reason) = common::expect_close(&mut ws).await;
    assert_eq!(code, 1012);
    assert!(reason.contains("reconnect"), "{reason}");
    drop(ws);
    tokio::time::timeout(Duration::from_secs(6), stopping)
        .await
        .expect("shutdown completes")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_listener_continues_from_its_cursor() {
    let server = common::start().await;
    let (room, _) = common::create_room(&server.url()).await;
    let (_, _, url) = common::join(&server.url(), &room).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.clone()).await.unwrap();
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await
    {
        if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
            last = tribune_media::wire::parse_message(&b)
                .unwrap()
                .last()
                .unwrap()
                .seq;
        }
    }
    drop(ws);
    // Away for half a second, then resume with the same ticket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}&from={}", last + 1))
        .await
        .unwrap();
    let mut first_after = None;
    let (frames, gaps) = {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let mut next: Option<u64> = None;
        let (mut n, mut g) = (0, 0);
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await
        {
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
                for r in tribune_media::wire::parse_message(&b).unwrap() {
                    first_after.get_or_insert(r.seq);
                    if let Some(x) = next {
                        g += r.seq - x;
                    }
                    next = Some(r.seq + 1);
                    n += 1;
                }
            }
        }
        (n, g)
    };
    assert_eq!(
        first_after,
        Some(last + 1),
        "resume starts exactly at the cursor"
    );
    assert!(frames >= 25, "the missed half second is replayed: {frames}");
    assert_eq!(gaps, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_show_who_is_speaking() {
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("events").await.unwrap();
    let mut ws = common::open_listener(&server, &room.id).await;
    let first = common::next_event(&mut ws).await;
    assert_eq!(first["state"], "live");
    assert_eq!(first["speakers"].as_array().unwrap().len(), 0);
    let speaker = tone(&api, &room.id, &room.host_token, 300.0, 2);
    let speaking = common::wait_event(&mut ws, |e| e["speakers"][0]["speaking"] == true).await;
    assert_eq!(speaking["speakers"].as_array().unwrap().len(), 1);
    assert_eq!(speaking["listeners"], 1);
    speaker.await.unwrap();
    let gone = common::wait_event(&mut ws, |e| e["speakers"].as_array().unwrap().is_empty()).await;
    assert_eq!(gone["state"], "live");
    server.shutdown().await.unwrap();
}

/// A node aiming at 100 listener writes a second, between 20 and 200 ms a write.
async fn start_with_a_budget_of_100_writes() -> tribune_server::RunningServer {
    common::start_with(tribune_server::ServerConfig {
        batch_interval: Duration::from_millis(20),
        batch_interval_max: Duration::from_millis(200),
        batch_writes_per_s: 100,
        ..Default::default()
    })
    .await
}

/// Whether at least 80 % of the messages carry `n` frames. A stall on a loaded machine may make
/// the group writer hand a listener back for one catch-up message of another size; a wrong
/// interval makes every message the wrong size.
fn mostly(sizes: &[usize], n: usize) -> bool {
    sizes.iter().filter(|&&m| m == n).count() * 5 >= sizes.len() * 4
}

/// Frames per audio message over `window`, skipping the first message (the prefill).
async fn frames_per_message(ws: &mut common::Ws, window: Duration) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + window;
    let mut sizes = Vec::new();
    while let Ok(Some(Ok(m))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(ws)).await
    {
        if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
            sizes.push(tribune_media::wire::parse_message(&b).unwrap().count());
        }
    }
    sizes.split_off(1.min(sizes.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_interval_grows_with_the_audience() {
    // A budget of 100 writes a second: one listener is written every 20 ms, ten every 100 ms.
    let server = start_with_a_budget_of_100_writes().await;
    let (room, _) = common::create_room(&server.url()).await;
    let mut first = common::open_listener(&server, &room).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let one = frames_per_message(&mut first, Duration::from_millis(400)).await;
    assert!(one.len() >= 10, "{one:?}");
    assert!(mostly(&one, 1), "{one:?}");
    assert_eq!(common::metric(&server.url(), "batch_interval_ms").await, 20);
    let mut others = Vec::new();
    for _ in 0..9 {
        others.push(common::open_listener(&server, &room).await);
    }
    // Drain what queued meanwhile, then measure.
    let _ = frames_per_message(&mut first, Duration::from_millis(150)).await;
    let ten = frames_per_message(&mut first, Duration::from_millis(1000)).await;
    assert_eq!(
        common::metric(&server.url(), "batch_interval_ms").await,
        100
    );
    // Five frames a message, about ten messages a second (the window's edges may cut one).
    assert!((7..=11).contains(&ten.len()), "{ten:?}");
    assert!(mostly(&ten, 5), "{ten:?}");
    drop(others);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_written_in_staggered_phases() {
    // Ten listeners at 100 ms a write (a budget of 100 writes a second): their batches start on
    // five different frame phases, so each 20 ms tick writes to two of them, not all ten every
    // fifth tick.
    let server = start_with_a_budget_of_100_writes().await;
    let (room, _) = common::create_room(&server.url()).await;
    let mut ws = Vec::new();
    for _ in 0..10 {
        ws.push(common::open_listener(&server, &room).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut phases = std::collections::BTreeSet::new();
    for w in &mut ws {
        // Drain what queued, then read one fresh batch.
        let _ = frames_per_message(w, Duration::from_millis(50)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout_at(deadline, futures_util::StreamExt::next(w)).await
        {
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
                let recs: Vec<_> = tribune_media::wire::parse_message(&b).unwrap().collect();
                if recs.len() == 5 {
                    phases.insert(recs[0].seq % 5);
                    break;
                }
            }
        }
    }
    assert_eq!(phases.len(), 5, "batch start phases {phases:?}");
    server.shutdown().await.unwrap();
}
