//! LL-HLS glass-to-ear latency with ffmpeg as the player, on one host clock.
//!
//! ```text
//! cargo run --release -p tribune-client --example hls_latency -- \
//!     --server http://127.0.0.1:8080 [--hls-base http://127.0.0.1:8081] [--seconds 60] \
//!     [--live-start-index -1] [--paced] [--warm 10]
//! ```
//!
//! 1. Creates a room and speaks into it (the crate's `speak`, as `tribune speak` does): a 100 ms
//!    tone burst every 500 ms, each burst at one of 20 frequencies in turn (400, 520, … 2680 Hz),
//!    so a burst is known by its frequency within a 10 s cycle.
//! 2. A WebSocket listener decodes the program and notes, for each burst, the capture timestamp
//!    the program frame carries (the speaker's wall clock when it sent the burst's first frame):
//!    the "glass" time.
//! 3. ffmpeg plays `{hls-base}/hls/{room}/live.m3u8` (`-live_start_index N`, with `-re` when
//!    `--paced`) and writes raw 48 kHz PCM to a pipe flushed per packet; a reader notes the wall
//!    clock when each burst's onset comes out of the pipe: the "ear" time. Its frequency names
//!    the burst.
//! 4. Latency = ear − glass, over the bursts heard after `--warm` seconds of ffmpeg output (the
//!    start-up catch-up is left out); one JSON line.
//!
//! Without `--paced`, ffmpeg decodes whatever it has downloaded at once, so the figure is when the
//! audio is available to a player (a real player cannot play earlier). With `--paced` (`-re`)
//! ffmpeg reads at the native rate from where it started, like a player playing in real time.
//! Loopback only; ffmpeg must be on PATH; every phase is bounded.

use std::io::Read;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{unix_micros, Api, AudioSource, Percentiles, SpeakOptions};
use tribune_media::analysis::{dominant_frequency, rms};
use tribune_media::{wire, Decoder};

const RATE: u32 = 48_000;
/// Bursts per cycle; each has its own frequency.
const CLASSES: usize = 20;
const SLOT_MS: usize = 500;
const BURST_MS: usize = 100;
const BASE_HZ: f32 = 400.0;
const STEP_HZ: f32 = 120.0;
/// A 20 ms program frame (or 5 ms block of ffmpeg output) at least this loud (RMS, full scale
/// 1.0; a burst is about 0.26) is "tone".
const LOUD_RMS: f32 = 0.06;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    server: String,
    hls_base: Option<String>,
    seconds: f64,
    live_start_index: i32,
    paced: bool,
    warm: f64,
}

const USAGE: &str = "usage: hls_latency --server http://127.0.0.1:PORT [--hls-base URL] \
[--seconds S] [--live-start-index N] [--paced] [--warm S]";

fn parse_opts() -> Result<Opts, AnyError> {
    let mut o = Opts {
        server: "http://127.0.0.1:8080".into(),
        hls_base: None,
        seconds: 60.0,
        live_start_index: -1,
        paced: false,
        warm: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--server" => o.server = val()?,
            "--hls-base" => o.hls_base = Some(val()?),
            "--seconds" => o.seconds = val()?.parse()?,
            "--live-start-index" => o.live_start_index = val()?.parse()?,
            "--paced" => o.paced = true,
            "--warm" => o.warm = val()?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    for u in std::iter::once(&o.server).chain(o.hls_base.iter()) {
        check_loopback(u)?;
    }
    if !(5.0..=900.0).contains(&o.seconds) || !(0.0..=120.0).contains(&o.warm) {
        return Err("--seconds must be 5..=900 and --warm 0..=120".into());
    }
    Ok(o)
}

/// Refuses any URL whose host is not a loopback IP (or localhost).
fn check_loopback(u: &str) -> Result<(), AnyError> {
    let url = url::Url::parse(u)?;
    let ok = url.scheme() == "http"
        && match url.host_str() {
            Some("localhost") => true,
            Some(h) => h
                .trim_matches(['[', ']'])
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
    if ok {
        Ok(())
    } else {
        Err(format!("{u}: only http:// on loopback").into())
    }
}

fn class_hz(class: usize) -> f32 {
    BASE_HZ + STEP_HZ * class as f32
}

/// The burst class of a measured frequency, if it is near one.
fn class_of(hz: f32) -> Option<usize> {
    let k = ((hz - BASE_HZ) / STEP_HZ).round();
    if !(0.0..CLASSES as f32).contains(&k) {
        return None;
    }
    let k = k as usize;
    ((hz - class_hz(k)).abs() <= STEP_HZ / 3.0).then_some(k)
}

/// One cycle of the speaker's signal: CLASSES slots, each a burst then silence.
fn bursts() -> Vec<i16> {
    let slot = RATE as usize * SLOT_MS / 1000;
    let burst = RATE as usize * BURST_MS / 1000;
    let mut pcm = vec![0i16; slot * CLASSES];
    for k in 0..CLASSES {
        let w = 2.0 * std::f32::consts::PI * class_hz(k) / RATE as f32;
        for i in 0..burst {
            pcm[k * slot + i] = (12_000.0 * (w * i as f32).sin()) as i16;
        }
    }
    pcm
}

/// The program over a WebSocket: (class, capture µs) of every burst onset.
async fn glass_times(listen_url: String, until: Instant) -> Result<Vec<(usize, u64)>, AnyError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(listen_url).await?;
    let mut decoder = Decoder::new()?;
    let mut pcm = vec![0i16; tribune_media::opus::MAX_PACKET_SAMPLES];
    let mut out = Vec::new();
    let mut was_loud = true; // ignore a burst already under way when we join
                             // The onset frame's capture time and the samples gathered to name the burst.
    let mut pending: Option<(u64, Vec<i16>)> = None;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until.into(), ws.next()).await {
        let Message::Binary(b) = msg? else { continue };
        for r in wire::parse_message(&b)? {
            let n = decoder.decode(r.payload, &mut pcm)?;
            let frame = &pcm[..n];
            let loud = rms(frame) >= LOUD_RMS;
            if let Some((capture, mut acc)) = pending.take() {
                acc.extend_from_slice(frame);
                if acc.len() >= 3 * n {
                    if let Some(k) = dominant_frequency(&acc, RATE).and_then(class_of) {
                        out.push((k, capture));
                    }
                } else {
                    pending = Some((capture, acc));
                }
            } else if loud && !was_loud {
                pending = Some((r.capture_us, frame.to_vec()));
            }
            was_loud = loud;
        }
    }
    Ok(out)
}

/// ffmpeg's output: (class, wall µs when the onset left the pipe) of every burst heard, and
/// ffmpeg's stderr. Runs until `until`, then stops ffmpeg.
fn ear_times(
    url: &str,
    live_start_index: i32,
    paced: bool,
    until: Instant,
) -> Result<(Vec<(usize, u64)>, String), AnyError> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-v", "error"]);
    if paced {
        cmd.arg("-re");
    }
    cmd.args([
        "-live_start_index",
        &live_start_index.to_string(),
        "-i",
        url,
    ])
    .args([
        "-f",
        "s16le",
        "-ac",
        "1",
        "-ar",
        "48000",
        "-flush_packets",
        "1",
    ])
    .arg("pipe:1")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().ok_or("no ffmpeg stdout")?;
    let stderr = child.stderr.take().ok_or("no ffmpeg stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    // Stop ffmpeg at `until` from another thread, which ends the reads below.
    let pid = child.id();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    });

    const BLOCK: usize = 240; // 5 ms
    let quiet_needed = 20; // 100 ms of quiet before an onset
    let mut samples: Vec<i16> = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut scanned = 0usize; // samples already classified loud/quiet
    let mut quiet = 0usize;
    let mut onsets: Vec<(usize, u64)> = Vec::new(); // (sample index, wall µs)
    let mut buf = [0u8; 8192];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = unix_micros();
        carry.extend_from_slice(&buf[..n]);
        let whole = carry.len() / 2 * 2;
        samples.extend(
            carry[..whole]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        carry.drain(..whole);
        while scanned + BLOCK <= samples.len() {
            let loud = rms(&samples[scanned..scanned + BLOCK]) >= LOUD_RMS;
            if loud && quiet >= quiet_needed {
                onsets.push((scanned, now));
            }
            quiet = if loud { 0 } else { quiet + 1 };
            scanned += BLOCK;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = stopper.join();
    let stderr = err_reader.join().unwrap_or_default();
    // Name each burst by the frequency of 60 ms from 10 ms after its onset.
    let heard = onsets
        .into_iter()
        .filter_map(|(at, wall)| {
            let a = at + 480;
            let window = samples.get(a..a + 2_880)?;
            Some((dominant_frequency(window, RATE).and_then(class_of)?, wall))
        })
        .collect();
    Ok((heard, stderr))
}

async fn run(o: Opts) -> Result<serde_json::Value, AnyError> {
    // The node's operator key, if it needs one.
    let api = Api::new(&o.server)?.with_api_key(std::env::var("TRIBUNE_API_KEY").ok());
    let room = api.create_room("hls latency").await?;
    let total = Duration::from_secs_f64(o.seconds + 40.0);
    let speak = tribune_client::speak(
        &api,
        SpeakOptions {
            room: room.id.clone(),
            token: room.host_token.clone(),
            source: AudioSource::Pcm {
                samples: bursts(),
                looped: true,
            },
            duration: Some(total),
            bitrate_bps: 48_000,
            hear: false,
        },
    );
    let join = api.join(&room.id).await?;
    let start = Instant::now();
    // ffmpeg needs complete segments to start from: wait for them (2 s each).
    let lead = Duration::from_secs(2 + 2 * u64::from(o.live_start_index.unsigned_abs().max(1)));
    let ear_until = start + lead + Duration::from_secs_f64(o.seconds);
    let glass_until = ear_until + Duration::from_secs(1);
    let url = format!(
        "{}/hls/{}/live.m3u8",
        o.hls_base.as_deref().unwrap_or(&o.server),
        room.id
    );
    let (index, paced) = (o.live_start_index, o.paced);
    let ear = async move {
        tokio::time::sleep(lead).await;
        tokio::task::spawn_blocking(move || ear_times(&url, index, paced, ear_until)).await
    };
    let (speak_r, glass, ear) = tokio::join!(
        tokio::time::timeout(total, speak),
        glass_times(join.listen_url, glass_until),
        ear
    );
    // The speaker runs past the window on purpose; its timeout is expected.
    if let Ok(Err(e)) = speak_r {
        return Err(format!("speaker: {e}").into());
    }
    let glass = glass?;
    let (heard, ffmpeg_err) = ear??;
    let warm_us = (o.warm * 1e6) as u64;
    let first_out = heard.first().map(|h| h.1).unwrap_or(0);
    let mut lat = Vec::new();
    let mut unmatched = 0;
    for &(k, wall) in heard.iter().filter(|h| h.1 >= first_out + warm_us) {
        // The latest burst of that frequency captured before it was heard: within one cycle.
        let m = glass
            .iter()
            .filter(|g| g.0 == k && g.1 < wall)
            .map(|g| g.1)
            .max();
        match m {
            Some(c) if wall - c < (CLASSES * SLOT_MS * 1000) as u64 => {
                lat.push((wall - c) as f64 / 1000.0)
            }
            _ => unmatched += 1,
        }
    }
    let counted = lat.len();
    let mean = lat.iter().sum::<f64>() / counted.max(1) as f64;
    let min = lat.iter().copied().fold(f64::INFINITY, f64::min);
    let p = Percentiles::of(&mut lat);
    Ok(json!({
        "hls_url": format!("{}/hls/{}/live.m3u8", o.hls_base.as_deref().unwrap_or(&o.server), room.id),
        "live_start_index": o.live_start_index,
        "paced": o.paced,
        "bursts_sent_seen_on_websocket": glass.len(),
        "bursts_heard_from_ffmpeg": heard.len(),
        "bursts_counted_after_warm": counted,
        "unmatched": unmatched,
        "latency_ms": {
            "p50": round1(p.p50), "p99": round1(p.p99), "max": round1(p.max),
            "min": if counted > 0 { round1(min) } else { 0.0 }, "mean": round1(mean),
        },
        "ffmpeg_stderr": ffmpeg_err.lines().take(5).collect::<Vec<_>>(),
    }))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let limit = Duration::from_secs_f64(opts.seconds + 120.0);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("hls_latency: overall time limit reached, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(opts)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("hls_latency: {e}");
            std::process::exit(1);
        }
    }
}
