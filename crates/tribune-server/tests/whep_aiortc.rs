//! WHEP playback with a WebRTC stack not written here (Python aiortc) on both sides: two aiortc
//! WHIP publishers (440 and 660 Hz) on stage; an aiortc WHEP player holding the 440 publisher's
//! stage token hears 660 and not 440 (its mix-minus); one holding a listener ticket hears both
//! (the program). Needs python3 with aiortc (see `common::aiortc`).

mod common;

use std::time::Duration;

use common::aiortc::{play, publish, python};
use tribune_client::Api;
use tribune_media::analysis::band_energy_ratio;

/// `f`'s energy over `g`'s in `pcm`, dB.
fn db(pcm: &[i16], f: f32, g: f32) -> f32 {
    let ef = band_energy_ratio(pcm, 48_000, f, 25.0).max(1e-12);
    let eg = band_energy_ratio(pcm, 48_000, g, 25.0).max(1e-12);
    10.0 * (ef / eg).log10()
}

fn read_wav(path: &std::path::Path) -> Vec<i16> {
    let w = tribune_media::read_wav(&std::fs::read(path).expect("player wrote its WAV"))
        .expect("a WAV");
    assert_eq!((w.sample_rate, w.channels), (48_000, 1));
    w.samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_players_hear_the_mix_minus_and_the_program() {
    let Some(py) = python() else { return };
    let server = common::start().await;
    let base = server.url();
    let api = Api::new(&base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let room = api.create_room("whep").await.unwrap();
    let guest = api.add_speaker(&room.id, &room.host_token).await.unwrap();
    let whip = format!("{base}/api/rooms/{}/whip", room.id);
    let whep = format!("{base}/api/rooms/{}/whep", room.id);
    let tone = |hz: &str| ["--tone", hz, "--seconds", "9"].map(String::from).to_vec();
    let host_pub = publish(
        py.clone(),
        whip.clone(),
        room.host_token.clone(),
        tone("440"),
    );
    let guest_pub = publish(py.clone(), whip, guest.clone(), tone("660"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while common::metric(&base, "whip_frames_total").await < 100 {
        assert!(tokio::time::Instant::now() < deadline, "no WHIP media");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let stage_wav = dir.path().join("stage.wav");
    let program_wav = dir.path().join("program.wav");
    let listen = |path: &std::path::Path| {
        ["--seconds", "3", "--wav", path.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    let ticket = api.join(&room.id).await.unwrap().ticket;
    let stage = play(
        py.clone(),
        whep.clone(),
        room.host_token.clone(),
        listen(&stage_wav),
    );
    let program = play(py, whep, ticket, listen(&program_wav));
    // While both play: one stage session, one WebRTC listener (counted as a listener too).
    // Each player holds its session for 3 s once up; Python's start-up varies, so poll.
    for name in [
        "whep_sessions{kind=\"stage\"}",
        "whep_sessions{kind=\"listener\"}",
        "listeners",
    ] {
        common::wait_metric(&base, name, 1, Duration::from_secs(15)).await;
    }
    let (stage, program) = (stage.await.unwrap(), program.await.unwrap());
    for p in [&stage, &program] {
        assert!(p.ok, "player failed: {:?}\n{}", p.lines, p.stderr);
        let s = &p.done()["sessions"][0];
        assert_eq!(s["status"], 201);
        assert_eq!(s["delete_status"], 204);
        assert!(s["frames"].as_u64().unwrap() > 120, "{s}");
    }
    // Skip the first half second (jitter buffers, codec start-up).
    let heard = read_wav(&stage_wav);
    let tail = &heard[24_000..];
    assert!(band_energy_ratio(tail, 48_000, 660.0, 25.0) > 0.5);
    let down = db(tail, 660.0, 440.0);
    assert!(
        down >= 30.0,
        "the host hears itself only {down:.1} dB under 660 Hz"
    );
    let heard = read_wav(&program_wav);
    let tail = &heard[24_000..];
    for hz in [440.0, 660.0] {
        let share = band_energy_ratio(tail, 48_000, hz, 25.0);
        assert!(share > 0.25, "the program holds {hz} Hz at {share:.2}");
    }
    // DELETE ended both sessions.
    for name in [
        "whep_sessions{kind=\"stage\"}",
        "whep_sessions{kind=\"listener\"}",
    ] {
        common::wait_metric(&base, name, 0, Duration::from_secs(2)).await;
    }
    assert!(common::metric(&base, "stage_delay_seconds_count").await > 100);
    for p in [host_pub.await.unwrap(), guest_pub.await.unwrap()] {
        assert!(p.ok, "publisher failed: {}", p.stderr);
    }
    server.shutdown().await.unwrap();
}
