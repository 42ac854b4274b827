//! Live audio helpers of the binary's tests: a speaker at 440 Hz over the speak WebSocket, a
//! listener that decodes what it hears, and a small JSON API client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tribune_media::analysis::{dominant_frequency, rms};
use tribune_media::{wire, Decoder, Encoder, ToneGenerator, FRAME_SAMPLES};

/// A speaker sending a 440 Hz tone in real time until `stop` (or its socket closes).
pub async fn speaker(url: String, stop: Arc<AtomicBool>) {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("speak");
    let (mut tx, mut rx) = ws.split();
    // What the stage sends back is read and dropped, so the socket never backs up.
    tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let mut enc = Encoder::new(32_000).unwrap();
    let mut tone = ToneGenerator::new(440.0, 0.4);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let packet = enc.encode_vec(&tone.next_frame()).unwrap();
        let msg = wire::single_frame_message(seq, tribune_core::unix_micros(), &packet);
        if tx.send(Message::Binary(msg)).await.is_err() {
            return;
        }
        seq += 1;
    }
}

/// What a listener heard: decoded audio and the sequence numbers it came with.
#[derive(Default)]
pub struct Heard {
    /// Decoded audio.
    pub pcm: Vec<i16>,
    /// Sequence numbers, in the order they came.
    pub seqs: Vec<u64>,
    /// The close code the server sent, if it closed the connection.
    pub closed: Option<u16>,
    /// Glass-to-ear delay of each frame (arrival minus capture, same clock), µs.
    pub delays_us: Vec<u64>,
}

/// Listens on `url` until `stop` or the connection drops; appends to `heard`.
pub async fn listener(url: String, heard: Arc<Mutex<Heard>>, stop: Arc<AtomicBool>) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("listen");
    let mut dec = Decoder::new().unwrap();
    let mut pcm = [0i16; FRAME_SAMPLES * 6];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Ok(Some(Ok(Message::Binary(data)))) => {
                let mut h = heard.lock().unwrap();
                for r in wire::parse_message(&data).unwrap() {
                    let n = dec.decode(r.payload, &mut pcm).unwrap_or(0);
                    h.pcm.extend_from_slice(&pcm[..n]);
                    h.seqs.push(r.seq);
                    h.delays_us
                        .push(tribune_core::unix_micros().saturating_sub(r.capture_us));
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                heard.lock().unwrap().closed = Some(frame.map_or(1005, |f| f.code.into()));
                return;
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            _ => return,
        }
    }
}

/// Seconds of tone (frames louder than -26 dBFS) in `pcm`.
pub fn tone_seconds(pcm: &[i16]) -> f64 {
    pcm.chunks(960).filter(|f| rms(f) > 0.05).count() as f64 * 0.020
}

/// The dominant frequency of the loud part of `pcm`.
pub fn tone_hz(pcm: &[i16]) -> f32 {
    let loud: Vec<i16> = pcm
        .chunks(960)
        .filter(|f| rms(f) > 0.05)
        .flatten()
        .copied()
        .collect();
    assert!(loud.len() >= 48_000, "{} samples of tone", loud.len());
    dominant_frequency(&loud[..48_000], 48_000).unwrap()
}

/// Waits (at most `secs`) until `ok`.
pub async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON API client of one node.
pub struct Api {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `http://host:port`.
    pub base: String,
}

impl Api {
    /// `METHOD path` with an optional bearer and JSON body: (status, JSON answer).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// Decodes `input` (a file or URL) to 48 kHz mono with ffmpeg.
pub fn ffmpeg_decode(input: &str) -> Vec<i16> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "error", "-i", input])
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg is required (scripts/test-all.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}
