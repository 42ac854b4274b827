//! Attack probes behind docs/BENCHMARKS.md §7: what one hostile client can do to a node.
//!
//! ```text
//! cargo run --release -p tribune-client --example attack -- --server URL flood \
//!     [--seconds 8] [--batch 1000] [--rate 90]
//! cargo run --release -p tribune-client --example attack -- --server URL ticket [--sockets 300]
//! ```
//!
//! * `flood`: a room whose host speaks a 440 Hz tone while a second participant of the room
//!   floods the speak socket with batches of tiny valid Opus frames (`--batch` records per
//!   message, `--rate` messages a second: 90 000 frames a second by default, 1 800 times real
//!   time). A listener decodes the program; the report gives the share of the flood window in
//!   which the host's tone was heard, and (on nodes that report them) the host's and the
//!   attacker's dropped frames from the moderation view.
//! * `ticket`: one join, then `--sockets` listen WebSockets opened with its one ticket; the
//!   report gives how many the node kept open and its listener count.
//!
//! Rooms are created with the operator key in `TRIBUNE_API_KEY`, if set. Only loopback servers
//! are accepted, and every phase is bounded in time: the tool always stops by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{unix_micros, Api, AudioSource, ListenOptions, SpeakOptions};
use tribune_media::analysis::rms;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    server: String,
    scenario: String,
    seconds: u64,
    batch: usize,
    rate: u32,
    sockets: usize,
}

fn parse_opts() -> Result<Opts, AnyError> {
    let mut o = Opts {
        server: String::new(),
        scenario: String::new(),
        seconds: 8,
        batch: 1000,
        rate: 90,
        sockets: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--server" => o.server = val()?,
            "--seconds" => o.seconds = val()?.parse()?,
            "--batch" => o.batch = val()?.parse()?,
            "--rate" => o.rate = val()?.parse()?,
            "--sockets" => o.sockets = val()?.parse()?,
            "flood" | "ticket" => o.scenario = a,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let host = url::Url::parse(&o.server)?
        .host_str()
        .unwrap_or_default()
        .to_owned();
    if !host.starts_with("127.") && host != "localhost" {
        return Err("only loopback servers (127.0.0.0/8) are attacked".into());
    }
    if !(4..=120).contains(&o.seconds) || !(1..=5000).contains(&o.batch) {
        return Err("--seconds 4..120, --batch 1..5000".into());
    }
    if !(1..=1000).contains(&o.rate) || !(1..=5000).contains(&o.sockets) {
        return Err("--rate 1..1000, --sockets 1..5000".into());
    }
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), AnyError> {
    let o = parse_opts()?;
    let api = Api::new(&o.server)?.with_api_key(std::env::var("TRIBUNE_API_KEY").ok());
    let report = match o.scenario.as_str() {
        "flood" => tokio::time::timeout(Duration::from_secs(o.seconds + 30), flood(&api, &o))
            .await
            .map_err(|_| "the flood run overran")??,
        "ticket" => tokio::time::timeout(Duration::from_secs(60), ticket(&api, &o))
            .await
            .map_err(|_| "the ticket run overran")??,
        _ => return Err("say flood or ticket".into()),
    };
    println!("{report}");
    Ok(())
}

/// `GET path` as JSON (Null when it fails).
async fn get_json(api: &Api, path: &str, bearer: Option<&str>) -> Value {
    let Ok(url) = api.base().join(path) else {
        return Value::Null;
    };
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn flood(api: &Api, o: &Opts) -> Result<Value, AnyError> {
    let room = api.create_room("attack: speaker flood").await?;
    let attacker = api.add_speaker(&room.id, &room.host_token).await?;
    let secs = o.seconds;
    let listening = {
        let (api, id) = (api.clone(), room.id.clone());
        tokio::spawn(async move {
            tribune_client::listen(
                &api,
                ListenOptions {
                    room: id,
                    duration: Duration::from_secs(secs + 2),
                    decode: true,
                    keep_packets: false,
                },
            )
            .await
        })
    };
    let listen_start = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let speaking = {
        let (api, id, token) = (api.clone(), room.id.clone(), room.host_token.clone());
        tokio::spawn(async move {
            tribune_client::speak(
                &api,
                SpeakOptions {
                    room: id,
                    token,
                    source: AudioSource::Tone(440.0),
                    duration: Some(Duration::from_secs(secs)),
                    bitrate_bps: 48_000,
                    hear: false,
                },
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The flood: tiny valid Opus frames (digital silence), `batch` per message.
    let tiny = tribune_media::Encoder::new(16_000)?.encode_vec(&[0i16; 960])?;
    let url = api.ws_url(&format!("/api/rooms/{}/speak?token={attacker}", room.id))?;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let flood_start = listen_start.elapsed();
    let flood_for = Duration::from_secs(secs - 2);
    let every = Duration::from_secs(1) / o.rate;
    let (mut messages, mut frames, mut seq) = (0u64, 0u64, 0u64);
    let mut closed = None;
    let began = Instant::now();
    while began.elapsed() < flood_for {
        let records: Vec<bytes::Bytes> = (0..o.batch)
            .map(|_| {
                seq += 1;
                tribune_media::wire::record(seq, unix_micros(), &tiny)
            })
            .collect();
        let msg = tribune_media::wire::message(records.iter().map(|r| r.as_ref()));
        if let Err(e) = ws.send(Message::Binary(msg)).await {
            closed = Some(e.to_string());
            break;
        }
        messages += 1;
        frames += o.batch as u64;
        tokio::time::sleep_until((began + every * messages as u32).into()).await;
    }
    let flood_end = listen_start.elapsed();
    let stage = get_json(
        api,
        &format!("/api/rooms/{}/stage", room.id),
        Some(&room.host_token),
    )
    .await;
    let _ = ws.close(None).await;
    let metric = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("tribune_{name} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let metrics = match api.base().join("/metrics") {
        Ok(u) => match reqwest::get(u).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    };
    let spoken = speaking.await??;
    let heard = listening.await??;
    // The share of the flood window (minus its edges) in which the tone was loud in the program.
    let frame_at = |t: Duration| (t.as_millis() / 20) as usize;
    let (from, to) = (
        frame_at(flood_start + Duration::from_millis(500)),
        frame_at(flood_end.saturating_sub(Duration::from_millis(500))),
    );
    let frames_pcm: Vec<&[i16]> = heard.pcm.chunks(960).collect();
    let window = frames_pcm
        .get(from..to.min(frames_pcm.len()))
        .unwrap_or(&[]);
    let loud = window.iter().filter(|f| rms(f) > 0.05).count();
    let by_role = |role: &str| {
        stage["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["role"] == role))
            .map(|p| json!({"frames_in": p["frames_in"], "frames_dropped": p["frames_dropped"]}))
            .unwrap_or(Value::Null)
    };
    Ok(json!({
        "scenario": "flood",
        "flood_messages": messages,
        "flood_frames_sent": frames,
        "flood_closed": closed,
        "host_frames_sent": spoken.frames_sent,
        "window_frames": window.len(),
        "host_heard_pct": if window.is_empty() { 0.0 } else { 100.0 * loud as f64 / window.len() as f64 },
        "listener_frames_lost": heard.frames_lost,
        "listener_p99_ms": heard.latency_ms.p99,
        "server_ingress_dropped": metric(&metrics, "ingress_dropped_total"),
        "server_ingress_over_rate": metric(&metrics, "ingress_over_rate_total"),
        "server_host": by_role("host"),
        "server_attacker": by_role("speaker"),
    }))
}

async fn ticket(api: &Api, o: &Opts) -> Result<Value, AnyError> {
    let room = api.create_room("attack: one ticket").await?;
    let admitted = api.join(&room.id).await?;
    let open = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let mut opened = 0u64;
    for _ in 0..o.sockets {
        let Ok((ws, _)) = tokio_tungstenite::connect_async(admitted.listen_url.as_str()).await
        else {
            continue;
        };
        opened += 1;
        open.fetch_add(1, Ordering::Relaxed);
        let open = open.clone();
        readers.push(tokio::spawn(async move {
            let (_tx, mut rx) = ws.split();
            // Read until the node closes this socket (or the run ends).
            while let Some(Ok(m)) = rx.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_open = open.load(Ordering::Relaxed);
    let metrics = reqwest::get(api.base().join("/metrics")?)
        .await?
        .text()
        .await?;
    let listeners = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tribune_listeners "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    for r in readers {
        r.abort();
    }
    Ok(json!({
        "scenario": "ticket",
        "sockets_tried": o.sockets,
        "sockets_upgraded": opened,
        "sockets_open_after_2s": still_open,
        "server_listeners": listeners,
    }))
}
