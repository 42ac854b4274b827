//! Speaking: encode 20 ms frames from a tone or a file and publish them over the speak
//! WebSocket, paced in real time.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tribune_media::{wire, Encoder, ToneGenerator, FRAME_SAMPLES};

use crate::api::{Api, ClientError};
use crate::unix_micros;

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
}

/// What a speak session did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SpeakReport {
    /// Frames published.
    pub frames_sent: u64,
}

/// Publishes audio until the source or the duration ends, or the server closes.
pub async fn speak(api: &Api, opts: SpeakOptions) -> Result<SpeakReport, ClientError> {
    let url = api.ws_url(&format!("/api/rooms/{}/speak", opts.room))?;
    let mut req = url.as_str().into_client_request()?;
    let auth = format!("Bearer {}", opts.token)
        .parse()
        .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
    req.headers_mut().insert("authorization", auth);
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    let (mut tx, mut rx) = ws.split();
    let mut encoder =
        Encoder::new(opts.bitrate_bps).map_err(|e| ClientError::Media(e.to_string()))?;
    let mut frames = Frames::new(opts.source);
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut packet = [0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let deadline = opts.duration.map(|d| tokio::time::Instant::now() + d);
    let mut report = SpeakReport::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            msg = rx.next() => match msg {
                Some(Ok(Message::Close(frame))) => {
                    let reason = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                    return if reason.starts_with("1000") { Ok(report) } else {
                        Err(ClientError::Protocol(format!("server closed: {reason}")))
                    };
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(report),
            },
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) || !frames.next(&mut pcm) {
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
    Ok(report)
}
