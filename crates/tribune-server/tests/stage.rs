//! The stage as its participants hear it: three speakers on a real node, each receiving its
//! mix-minus over the speak WebSocket. Each hears the other two tones and not its own; a muted
//! speaker still hears; the metrics count the encodes and time the stage path.

mod common;

use std::time::Duration;

use tribune_client::{Api, AudioSource, SpeakOptions, SpeakReport};
use tribune_media::analysis::band_energy_ratio;

fn speaker(
    api: &Api,
    room: &str,
    token: &str,
    hz: f32,
    secs: f64,
) -> tokio::task::JoinHandle<SpeakReport> {
    let api = api.clone();
    let opts = SpeakOptions {
        room: room.to_owned(),
        token: token.to_owned(),
        source: AudioSource::Tone(hz),
        duration: Some(Duration::from_secs_f64(secs)),
        bitrate_bps: 48_000,
        hear: true,
    };
    tokio::spawn(async move { tribune_client::speak(&api, opts).await.expect("speak") })
}

/// `f`'s energy over `g`'s in `pcm`, dB.
fn db(pcm: &[i16], f: f32, g: f32) -> f32 {
    let ef = band_energy_ratio(pcm, 48_000, f, 25.0).max(1e-12);
    let eg = band_energy_ratio(pcm, 48_000, g, 25.0).max(1e-12);
    10.0 * (ef / eg).log10()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_speaker_hears_the_others_and_not_itself() {
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("a conversation").await.unwrap();
    let b_token = api.add_speaker(&room.id, &room.host_token).await.unwrap();
    let c_token = api.add_speaker(&room.id, &room.host_token).await.unwrap();
    let tones = [440.0, 660.0, 550.0];
    let a = speaker(&api, &room.id, &room.host_token, tones[0], 4.0);
    let b = speaker(&api, &room.id, &b_token, tones[1], 4.0);
    let c = speaker(&api, &room.id, &c_token, tones[2], 4.0);
    let reports = [a.await.unwrap(), b.await.unwrap(), c.await.unwrap()];
    for (i, report) in reports.iter().enumerate() {
        let own = tones[i];
        // Everyone speaks from the first 0.3 s to the end: judge the middle 2.5 s.
        assert!(report.frames_heard > 150, "speaker {own}: {report:?}");
        let pcm = &report.heard[48_000 / 2..48_000 * 3];
        for &other in tones.iter().filter(|&&t| t != own) {
            assert!(
                band_energy_ratio(pcm, 48_000, other, 25.0) > 0.2,
                "speaker {own} does not hear {other}"
            );
            let down = db(pcm, other, own);
            assert!(
                down >= 30.0,
                "speaker {own} hears itself only {down:.1} dB under {other}"
            );
        }
        // Conversational: the others' capture to arrival here.
        assert!(
            report.hear_latency_ms.p50 > 0.0 && report.hear_latency_ms.p50 < 150.0,
            "{report:?}"
        );
    }
    let base = server.url();
    let encodes = common::metric(&base, "mix_minus_encodes_total").await;
    // Three feeds a tick for most of 4 s (minus start-up and the staggered ends).
    assert!(encodes > 3 * 150, "{encodes}");
    assert!(common::metric(&base, "stage_delay_seconds_count").await > 300);
    assert!(common::metric(&base, "stage_frames_sent_total").await > 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_speaker_still_hears_the_stage() {
    let server = common::start().await;
    let api = Api::new(&server.url())
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("muted").await.unwrap();
    let guest = api.add_speaker(&room.id, &room.host_token).await.unwrap();
    let host = speaker(&api, &room.id, &room.host_token, 440.0, 3.0);
    // The guest connects muted: a raw socket that says so first, then speaks 660 Hz.
    let mut ws = common::open_speaker(&server, &room.id, &guest).await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Text(r#"{"type":"mute","muted":true}"#.into()))
        .await
        .unwrap();
    let mut enc = tribune_media::Encoder::new(48_000).unwrap();
    let mut tone = tribune_media::ToneGenerator::new(660.0, 0.5);
    let mut dec = tribune_media::Decoder::new().unwrap();
    let mut heard = Vec::new();
    let mut pcm = [0i16; 5760];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 0u64;
    let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            _ = tick.tick() => {
                let packet = enc.encode_vec(&tone.next_frame()).unwrap();
                let now = tribune_core::unix_micros();
                let msg = tribune_media::wire::single_frame_message(seq, now, &packet);
                seq += 1;
                ws.send(Message::Binary(msg)).await.unwrap();
            }
            msg = ws.next() => {
                if let Some(Ok(Message::Binary(data))) = msg {
                    for r in tribune_media::wire::parse_message(&data).unwrap() {
                        let n = dec.decode(r.payload, &mut pcm).unwrap();
                        heard.extend_from_slice(&pcm[..n]);
                    }
                }
            }
        }
    }
    let host = host.await.unwrap();
    // The muted guest hears the host.
    let tail = &heard[heard.len().saturating_sub(48_000)..];
    assert!(band_energy_ratio(tail, 48_000, 440.0, 25.0) > 0.5);
    // The host hears nothing of the muted guest.
    let host_tail = &host.heard[48_000 / 2..48_000 * 2];
    assert!(band_energy_ratio(host_tail, 48_000, 660.0, 25.0) < 0.01);
}
