//! The `tribune` binary end to end, as an operator and a listener would use it: real processes
//! talking over loopback.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_addr, run_json, tribune, wait_listening, Proc};
use serde_json::Value;

use tribune_media::analysis::{band_energy_ratio, dominant_frequency, peaks, rms};

fn read_wav(path: &std::path::Path) -> Vec<i16> {
    let w = tribune_media::read_wav(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!((w.sample_rate, w.channels), (48_000, 1));
    w.samples
}

#[test]
fn serve_room_speak_listen_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let mut server = Proc(
        tribune(&["serve", "--listen", &addr.to_string()])
            .spawn()
            .unwrap(),
    );
    wait_listening(addr);

    let room = run_json(&[
        "room", "create", "--server", &url, "--title", "cli test", "--json",
    ]);
    let (id, token) = (
        room["id"].as_str().unwrap(),
        room["host_token"].as_str().unwrap(),
    );

    // One speaker reads a WAV file of a 440 Hz tone, the other speaks a 660 Hz tone.
    let wav_path = dir.path().join("a440.wav");
    let mut gen = tribune_media::ToneGenerator::new(440.0, 0.5);
    let mut pcm = vec![0i16; 48_000 * 6];
    gen.fill(&mut pcm);
    std::fs::write(&wav_path, tribune_media::wav_bytes(48_000, 1, &pcm)).unwrap();
    // A participant holds one publishing seat: the second speaker is a participant of its own.
    let (status, minted) = common::post_json_as(
        addr,
        &format!("/api/rooms/{id}/speakers"),
        Some(token),
        "{}",
    );
    assert_eq!(status, 201, "{minted}");
    let guest = minted["token"].as_str().unwrap().to_owned();
    let speak = |token: &str, extra: &[&str]| {
        let mut args = vec![
            "speak",
            "--server",
            &url,
            "--room",
            id,
            "--token",
            token,
            "--seconds",
            "5",
        ];
        args.extend_from_slice(extra);
        Proc(tribune(&args).spawn().unwrap())
    };
    let _a = speak(token, &["--file", wav_path.to_str().unwrap()]);
    let _b = speak(&guest, &["--tone", "660"]);
    std::thread::sleep(Duration::from_millis(800));

    let out = dir.path().join("heard.wav");
    let report = run_json(&[
        "listen",
        "--server",
        &url,
        "--room",
        id,
        "--seconds",
        "3",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let received = report["frames_received"].as_u64().unwrap();
    assert!((140..=160).contains(&received), "{report}");
    assert_eq!(report["frames_lost"], 0, "{report}");
    let p99 = report["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 1000.0, "{report}");
    let heard = read_wav(&out);
    assert_eq!(heard.len() as u64, received * 960);
    let tail = &heard[24_000..];
    let found = peaks(tail, 48_000, 2);
    for hz in [440.0, 660.0] {
        assert!(
            found.iter().any(|f| (f - hz).abs() < 5.0),
            "{hz} not in {found:?}"
        );
        assert!(band_energy_ratio(tail, 48_000, hz, 15.0) > 0.25);
    }

    // SIGTERM: a clean, prompt exit.
    let pid = server.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn speak_hear_writes_the_others_and_not_itself() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let _server = Proc(
        tribune(&["serve", "--listen", &addr.to_string()])
            .spawn()
            .unwrap(),
    );
    wait_listening(addr);
    let room = run_json(&[
        "room", "create", "--server", &url, "--title", "hear", "--json",
    ]);
    let id = room["id"].as_str().unwrap();
    let host = room["host_token"].as_str().unwrap();
    let mut tokens = vec![host.to_owned()];
    for _ in 0..2 {
        let (status, minted) =
            common::post_json_as(addr, &format!("/api/rooms/{id}/speakers"), Some(host), "{}");
        assert_eq!(status, 201, "{minted}");
        tokens.push(minted["token"].as_str().unwrap().to_owned());
    }
    let speak = |token: &str, hz: &str| {
        Proc(
            tribune(&[
                "speak",
                "--server",
                &url,
                "--room",
                id,
                "--token",
                token,
                "--tone",
                hz,
                "--seconds",
                "5",
            ])
            .spawn()
            .unwrap(),
        )
    };
    let _a = speak(&tokens[0], "440");
    let _b = speak(&tokens[1], "660");
    let out = dir.path().join("heard.wav");
    let report = run_json(&[
        "speak",
        "--server",
        &url,
        "--room",
        id,
        "--token",
        &tokens[2],
        "--tone",
        "550",
        "--seconds",
        "4",
        "--hear",
        out.to_str().unwrap(),
        "--json",
    ]);
    let heard_frames = report["frames_heard"].as_u64().unwrap();
    assert!(heard_frames > 180, "{report}");
    let p50 = report["hear_latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 150.0, "{report}");
    let heard = read_wav(&out);
    assert_eq!(
        heard.len() as u64,
        heard_frames * 960,
        "no gaps to conceal on loopback"
    );
    let tail = &heard[48_000..48_000 * 3];
    for hz in [440.0, 660.0] {
        assert!(
            band_energy_ratio(tail, 48_000, hz, 25.0) > 0.3,
            "{hz} Hz not heard"
        );
    }
    let own = band_energy_ratio(tail, 48_000, 550.0, 25.0);
    let other = band_energy_ratio(tail, 48_000, 440.0, 25.0);
    let down = 10.0 * (other / own.max(1e-12)).log10();
    assert!(down >= 30.0, "550 Hz only {down:.1} dB under 440 Hz");
}

#[test]
fn demo_speaks_and_tells_how_to_listen() {
    let addr = free_addr();
    let mut demo = Proc(
        tribune(&["demo", "--listen", &addr.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let mut room = None;
    let mut listen_cmd = None;
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    for line in lines.by_ref().take(12) {
        if let Some(rest) = line.strip_prefix("room ") {
            room = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("listen --server") {
            listen_cmd = Some(line.clone());
            break;
        }
    }
    // Keep reading, so the demo's later lines never meet a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let room = room.expect("demo prints the room");
    assert!(listen_cmd.unwrap().contains(&room));
    std::thread::sleep(Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo.wav");
    let url = format!("http://{addr}");
    let report = run_json(&[
        "listen",
        "--server",
        &url,
        "--room",
        &room,
        "--seconds",
        "4",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(report["frames_lost"], 0, "{report}");
    assert!(
        report["frames_received"].as_u64().unwrap() >= 190,
        "{report}"
    );
    let heard = read_wav(&out);
    // The same room recorded as Ogg Opus decodes to audio too.
    let ogg = dir.path().join("demo.ogg");
    let report = run_json(&[
        "listen",
        "--server",
        &url,
        "--room",
        &room,
        "--seconds",
        "2",
        "--json",
        "--out",
        ogg.to_str().unwrap(),
    ]);
    let pcm = tribune_media::decode_ogg_to_pcm(&std::fs::read(&ogg).unwrap()).unwrap();
    let frames = report["frames_received"].as_u64().unwrap();
    assert!(frames >= 90, "{report}");
    assert!(
        (pcm.len() as i64 - frames as i64 * 960).abs() <= 960,
        "{} samples for {frames} frames",
        pcm.len()
    );
    assert!(rms(&pcm) > 0.02);
    // Speech: clearly audible, and not a pure tone (a voice's energy is spread over many bins).
    assert!(
        rms(&heard) > 0.02,
        "demo speaker is audible: rms {}",
        rms(&heard)
    );
    let f0 = dominant_frequency(&heard, 48_000).unwrap();
    assert!(
        band_energy_ratio(&heard, 48_000, f0, 15.0) < 0.5,
        "speech, not a tone"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let out = tribune(&["speak", "--room", "x", "--token", "t"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--file"));
    let out = tribune(&[
        "listen",
        "--server",
        "http://127.0.0.1:9",
        "--room",
        "abcdefghij",
        "--seconds",
        "1",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    let out = tribune(&["serve", "--batch-ms", "5"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch-ms"));
}

#[test]
fn crowd_reports_json_and_a_chart_and_refuses_remote_targets() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let url = format!("http://{addr}");
    let server = Proc(
        tribune(&["serve", "--listen", &addr.to_string()])
            .spawn()
            .unwrap(),
    );
    wait_listening(addr);
    let room = run_json(&[
        "room", "create", "--server", &url, "--title", "crowd", "--json",
    ]);
    let id = room["id"].as_str().unwrap();
    let (json_path, svg_path) = (dir.path().join("crowd.json"), dir.path().join("crowd.svg"));
    let pid = server.0.id().to_string();
    let out = tribune(&[
        "crowd",
        "--server",
        &url,
        "--room",
        id,
        "--listeners",
        "50",
        "--ramp",
        "100",
        "--seconds",
        "2",
        "--server-pid",
        &pid,
        "--json",
        json_path.to_str().unwrap(),
        "--chart",
        svg_path.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A progress line per second on stderr, the table on stdout.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("] connected").count(), 2, "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("listeners connected  50 of 50"));
    // The contract's fields (ARCHITECTURE §3).
    let r: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(r["listeners_connected"], 50);
    assert_eq!(r["joins_failed"], 0);
    assert_eq!(r["frames_lost"], 0);
    for key in ["p50", "p99"] {
        assert!(r["join_ms"][key].as_f64().unwrap() > 0.0);
    }
    for key in ["p50", "p99", "max"] {
        assert!(r["latency_ms"][key].as_f64().unwrap() > 0.0);
    }
    assert!(r["server_cpu_pct"].as_f64().is_some());
    assert!(r["server_rss_mb"].as_f64().unwrap() > 1.0);
    assert_eq!(r["timeline"].as_array().unwrap().len(), 2);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));

    let out = tribune(&[
        "crowd",
        "--server",
        "http://192.0.2.1:80",
        "--room",
        id,
        "--listeners",
        "1",
        "--seconds",
        "1",
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[test]
fn serve_reads_a_config_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let file = dir.path().join("tribune.toml");
    // The file says: listen here, hold no listener at all (every join waits in line), and a
    // batch interval the command line overrides.
    std::fs::write(
        &file,
        format!("listen = \"{addr}\"\nmax_listeners = 0\nbatch_ms = 5\nno_data = true\n"),
    )
    .unwrap();
    let _server = Proc(
        tribune(&[
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--batch-ms",
            "40",
        ])
        .spawn()
        .unwrap(),
    );
    // batch_ms = 5 would be refused at start; the flag's 40 is what counts.
    wait_listening(addr);
    let url = format!("http://{addr}");
    let room = run_json(&[
        "room", "create", "--server", &url, "--title", "cfg", "--json",
    ]);
    let id = room["id"].as_str().unwrap();
    let (code, v) = common::post_json(addr, &format!("/api/rooms/{id}/join"), "{}");
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["position"], 1);
    // A misspelt key is an error naming the file, not a silent default.
    std::fs::write(&file, "max_listener = 5\n").unwrap();
    let out = tribune(&["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tribune.toml") && err.contains("max_listener"),
        "{err}"
    );
}
