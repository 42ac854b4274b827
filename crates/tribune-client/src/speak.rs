//! Speaking: encode 20 ms frames from a tone or a file and publish them over the speak
//! WebSocket, paced in real time.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tribune_media::{wire, Decoder, Encoder, ToneGenerator, FRAME_SAMPLES};

use crate::api::{Api, ClientError};
use crate::listen::SeqTracker;
use crate::stats::Percentiles;
use crate::unix_micros;

/// Longest gap in the stage audio filled with concealment in what was heard (1 s); beyond
/// it, the gap is skipped.
const MAX_CONCEALED_FRAMES: u64 = 50;

/// Where the spoken audio comes from.
pub enum AudioSource {
    /// A sine tone at this frequency (Hz).
    Tone(f32),
    /// Mono 48 kHz PCM, optionally repeated forever.
    Pcm {
        /// The samples.
        samples: Vec<i16>,
        /// Start again at the end.
        looped: bool,
    },
}

impl AudioSource {
    /// Reads a WAV or Ogg Opus file (by content, not name) as mono 48 kHz PCM.
    pub fn from_file_bytes(bytes: &[u8], looped: bool) -> Result<AudioSource, ClientError> {
        let samples = if bytes.starts_with(b"OggS") {
            tribune_media::decode_ogg_to_pcm(bytes)
                .map_err(|e| ClientError::Media(e.to_string()))?
        } else if bytes.starts_with(b"RIFF") {
            tribune_media::read_wav(bytes)
                .map_err(|e| ClientError::Media(e.to_string()))?
                .to_mono_48k()
        } else {
            return Err(ClientError::Media(
                "unrecognised file: expected WAV (RIFF) or Ogg Opus (OggS)".into(),
            ));
        };
        if samples.is_empty() {
            return Err(ClientError::Media("file holds no audio".into()));
        }
        Ok(AudioSource::Pcm { samples, looped })
    }
}

/// Frames of PCM from an `AudioSource`.
struct Frames {
    source: AudioSource,
    tone: Option<ToneGenerator>,
    pos: usize,
}

impl Frames {
    fn new(source: AudioSource) -> Frames {
        let tone = match &source {
            AudioSource::Tone(hz) => Some(ToneGenerator::new(*hz, 0.5)),
            AudioSource::Pcm { .. } => None,
        };
        Frames {
            source,
            tone,
            pos: 0,
        }
    }

    fn next(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> bool {
        if let Some(tone) = &mut self.tone {
            *out = tone.next_frame();
            return true;
        }
        let AudioSource::Pcm { samples, looped } = &self.source else {
            return false;
        };
        if !*looped && self.pos >= samples.len() {
            return false;
        }
        for s in out.iter_mut() {
            if self.pos >= samples.len() {
                if !*looped {
                    // Pad the last frame with silence.
                    *s = 0;
                    continue;
                }
                self.pos = 0;
            }
            *s = samples[self.pos];
            self.pos += 1;
        }
        true
    }
}

/// How to speak.
pub struct SpeakOptions {
    /// Room id.
    pub room: String,
    /// Stage token (host, co-host or speaker).
    pub token: String,
    /// What to say.
    pub source: AudioSource,
    /// Stop after this long (files that are not looped stop at their end anyway).
    pub duration: Option<Duration>,
    /// Opus bitrate of the published frames.
    pub bitrate_bps: u32,
    /// Decode what the stage sends back (this speaker's mix-minus) into the report.
    pub hear: bool,
}

/// What a speak session did, and what it heard of the stage.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SpeakReport {
    /// Frames published.
    pub frames_sent: u64,
    /// Stage frames received (this speaker's mix-minus).
    pub frames_heard: u64,
    /// Stage frames missing between received ones.
    pub frames_heard_lost: u64,
    /// Receive latency of stage frames holding others' speech: their capture to its arrival
    /// here, milliseconds.
    pub hear_latency_ms: Percentiles,
    /// The stage audio decoded (mono 48 kHz), when `hear` was asked for.
    #[serde(skip)]
    pub heard: Vec<i16>,
}

/// Decodes the stage audio a speaker receives and times it.
struct Ear {
    decoder: Option<Decoder>,
    tracker: SeqTracker,
    latencies: Vec<f64>,
    heard: Vec<i16>,
}

impl Ear {
    fn new(decode: bool) -> Result<Ear, ClientError> {
        let decoder = if decode {
            Some(Decoder::new().map_err(|e| ClientError::Media(e.to_string()))?)
        } else {
            None
        };
        Ok(Ear {
            decoder,
            tracker: SeqTracker::default(),
            latencies: Vec::new(),
            heard: Vec::new(),
        })
    }

    fn message(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let now = unix_micros();
        let records = wire::parse_message(data)
            .map_err(|e| ClientError::Protocol(format!("bad stage audio: {e}")))?;
        let mut pcm = [0i16; FRAME_SAMPLES * 6];
        for r in records {
            let Some(gap) = self.tracker.observe(r.seq) else {
                continue;
            };
            // Capture time 0: the frame holds nobody's speech (nothing to time).
            if r.capture_us != 0 {
                self.latencies
                    .push(now.saturating_sub(r.capture_us) as f64 / 1000.0);
            }
            let Some(dec) = self.decoder.as_mut() else {
                continue;
            };
            for _ in 0..gap.min(MAX_CONCEALED_FRAMES) {
                if let Ok(n) = dec.conceal(&mut pcm) {
                    self.heard.extend_from_slice(&pcm[..n]);
                }
            }
            match dec.decode(r.payload, &mut pcm) {
                Ok(n) => self.heard.extend_from_slice(&pcm[..n]),
                Err(_) => {
                    if let Ok(n) = dec.conceal(&mut pcm) {
                        self.heard.extend_from_slice(&pcm[..n]);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, report: &mut SpeakReport) {
        report.frames_heard = self.tracker.received;
        report.frames_heard_lost = self.tracker.lost;
        report.hear_latency_ms = Percentiles::of(&mut self.latencies);
        report.heard = self.heard;
    }
}

/// Publishes audio until the source or the duration ends, or the server closes.
pub async fn speak(api: &Api, opts: SpeakOptions) -> Result<SpeakReport, ClientError> {
    let url = api.ws_url(&format!("/api/rooms/{}/speak", opts.room))?;
    let mut req = url.as_str().into_client_request()?;
    let auth = format!("Bearer {}", opts.token)
        .parse()
        .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
    req.headers_mut().insert("authorization", auth);
    // Real-time frames: each write goes out at once (no Nagle).
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    let (mut tx, mut rx) = ws.split();
    let mut encoder =
        Encoder::new(opts.bitrate_bps).map_err(|e| ClientError::Media(e.to_string()))?;
    let mut frames = Frames::new(opts.source);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut packet = [0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // A duration is a count of frames, not a wall-clock deadline: a task late for its last
    // tick still sends the whole duration (the ticks catch up in a burst).
    let budget = opts.duration.map(|d| d.as_millis() / 20);
    let mut report = SpeakReport::default();
    let mut ear = Ear::new(opts.hear)?;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    ear.finish(&mut report);
                    return if reason.starts_with("1000") { Ok(report) } else {
                        Err(ClientError::Protocol(format!("server closed: {reason}")))
                    };
                }
                Some(Ok(Message::Binary(data))) => {
                    ear.message(&data)?;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    ear.finish(&mut report);
                    return Ok(report);
                }
            },
        }
        if budget.is_some_and(|b| u128::from(report.frames_sent) >= b) || !frames.next(&mut pcm) {
            break;
        }
        let len = encoder
            .encode(&pcm, &mut packet)
            .map_err(|e| ClientError::Media(e.to_string()))?;
        let msg = wire::single_frame_message(report.frames_sent, unix_micros(), &packet[..len]);
        tx.send(Message::Binary(msg)).await?;
        report.frames_sent += 1;
    }
    let _ = tx.send(Message::Close(None)).await;
    ear.finish(&mut report);
    Ok(report)
}
