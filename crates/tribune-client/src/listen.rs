//! Listening: receive the program track over the listen WebSocket, count what arrived and what
//! was lost (from sequence numbers), measure glass-to-ear latency (capture timestamp vs arrival,
//! same host clock), and decode to PCM. Reconnects and resumes where it left off when the server
//! asks it to (close codes 1012 and 4000).

use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tribune_core::{RoomEvent, RoomState};
use tribune_media::{wire, Decoder, FRAME_SAMPLES};

use crate::api::{Api, ClientError};
use crate::stats::Percentiles;
use crate::unix_micros;

/// How to listen.
pub struct ListenOptions {
    /// Room id.
    pub room: String,
    /// Stop after this long (or when the room ends).
    pub duration: Duration,
    /// Decode the audio into `ListenReport::pcm`.
    pub decode: bool,
    /// Keep the received Opus packets in `ListenReport::packets` (for writing Ogg Opus).
    pub keep_packets: bool,
}

/// What a listener experienced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListenReport {
    /// Audio frames received.
    pub frames_received: u64,
    /// Frames missing between received ones (sequence-number gaps, including across reconnects).
    pub frames_lost: u64,
    /// Glass-to-ear latency of received frames, milliseconds.
    pub latency_ms: Percentiles,
    /// Times the connection was re-established.
    pub reconnects: u32,
    /// Room-state events received.
    pub events: u64,
    /// The room's state as its last event told.
    pub room_state: Option<RoomState>,
    /// The room's listener count as its last event told.
    pub room_listeners: Option<u64>,
    /// How the last connection ended.
    pub closed: Option<String>,
    /// First and last sequence numbers received.
    pub first_seq: Option<u64>,
    /// Last sequence number received.
    pub last_seq: Option<u64>,
    /// Decoded audio (mono 48 kHz), when asked for.
    #[serde(skip)]
    pub pcm: Vec<i16>,
    /// Received Opus packets in order, when asked for.
    #[serde(skip)]
    pub packets: Vec<Vec<u8>>,
}

/// Counts loss across messages and connections from sequence numbers alone.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    next: Option<u64>,
    /// Frames received.
    pub received: u64,
    /// Frames skipped over.
    pub lost: u64,
    /// Duplicates or frames from the past (ignored).
    pub stale: u64,
}

impl SeqTracker {
    /// Records one frame; returns how many frames were missing right before it, or None when the
    /// frame is stale (already received or older).
    pub fn observe(&mut self, seq: u64) -> Option<u64> {
        let gap = match self.next {
            Some(next) if seq < next => {
                self.stale += 1;
                return None;
            }
            Some(next) => seq - next,
            None => 0,
        };
        self.lost += gap;
        self.received += 1;
        self.next = Some(seq + 1);
        Some(gap)
    }

    /// The next sequence number expected (to resume from).
    pub fn next(&self) -> Option<u64> {
        self.next
    }
}

/// Listens until the duration passes or the room ends.
pub async fn listen(api: &Api, opts: ListenOptions) -> Result<ListenReport, ClientError> {
    let deadline = tokio::time::Instant::now() + opts.duration;
    let mut report = ListenReport::default();
    let mut tracker = SeqTracker::default();
    let mut latencies: Vec<f64> = Vec::new();
    let mut decoder = if opts.decode {
        Some(Decoder::new().map_err(|e| ClientError::Media(e.to_string()))?)
    } else {
        None
    };
    let mut pcm = [0i16; FRAME_SAMPLES * 6];
    let ticket = api
        .join_with(&opts.room, &crate::join::JoinPolicy::default(), |step| {
            tracing::info!(?step, "joining")
        })
        .await?;
    let mut backoff = Duration::from_millis(100);
    // The node the join chose, then its alternates: after a break the next one is tried, so a
    // node that went away costs one reconnect (the resume finds the frames on the next).
    let mut urls = vec![ticket.listen_url.clone()];
    urls.extend(ticket.alternates.iter().cloned());
    let mut at = 0usize;
    'connect: loop {
        let mut path = urls[at % urls.len()].clone();
        if let Some(next) = tracker.next() {
            path.push_str(&format!("&from={next}"));
        }
        let url = if path.starts_with("ws") {
            path
        } else {
            api.ws_url(&path)?.to_string()
        };
        let (mut ws, _) =
            match tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(url)).await {
                Err(_) => break 'connect,
                Ok(Ok(c)) => c,
                // Refused (a bad or blocked ticket, a room gone): no other node would differ.
                Ok(Err(tokio_tungstenite::tungstenite::Error::Http(r)))
                    if matches!(r.status().as_u16(), 401 | 403 | 404 | 410) =>
                {
                    return Err(tokio_tungstenite::tungstenite::Error::Http(r).into())
                }
                Ok(Err(e))
                    if report.reconnects == 0 && tracker.received == 0 && urls.len() == 1 =>
                {
                    return Err(e.into())
                }
                Ok(Err(_)) => {
                    at += 1;
                    tokio::time::sleep(backoff.min(deadline - tokio::time::Instant::now())).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    report.reconnects += 1;
                    continue;
                }
            };
        loop {
            let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => {
                    let _ = ws.close(None).await;
                    break 'connect;
                }
                Ok(None) => Message::Close(None),
                Ok(Some(Ok(m))) => m,
                Ok(Some(Err(e))) => {
                    report.closed = Some(format!("error: {e}"));
                    Message::Close(None)
                }
            };
            match msg {
                Message::Binary(data) => {
                    let now = unix_micros();
                    let records = wire::parse_message(&data)
                        .map_err(|e| ClientError::Protocol(format!("bad audio message: {e}")))?;
                    for r in records {
                        let Some(gap) = tracker.observe(r.seq) else {
                            continue;
                        };
                        latencies.push(now.saturating_sub(r.capture_us) as f64 / 1000.0);
                        report.first_seq.get_or_insert(r.seq);
                        report.last_seq = Some(r.seq);
                        if opts.keep_packets {
                            report.packets.push(r.payload.to_vec());
                        }
                        if let Some(dec) = decoder.as_mut() {
                            for _ in 0..gap.min(50) {
                                if let Ok(n) = dec.conceal(&mut pcm) {
                                    report.pcm.extend_from_slice(&pcm[..n]);
                                }
                            }
                            let n = dec.decode(r.payload, &mut pcm).unwrap_or(0);
                            report.pcm.extend_from_slice(&pcm[..n]);
                        }
                    }
                }
                Message::Text(text) => {
                    report.events += 1;
                    if let Some(e) = RoomEvent::parse(&text) {
                        report.room_state = Some(e.state);
                        report.room_listeners = Some(e.listeners);
                    }
                }
                Message::Close(frame) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    if let Some(f) = &frame {
                        report.closed = Some(format!("{} {}", u16::from(f.code), f.reason));
                    }
                    // 1012: the node restarts; 4000: we fell behind; no frame: connection lost.
                    if matches!(code, Some(1012) | Some(4000) | None)
                        && tokio::time::Instant::now() < deadline
                    {
                        // A node restarting or gone: the next one (if any) for the resume.
                        if code != Some(4000) {
                            at += 1;
                        }
                        tokio::time::sleep(backoff.min(deadline - tokio::time::Instant::now()))
                            .await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        report.reconnects += 1;
                        continue 'connect;
                    }
                    break 'connect;
                }
                _ => {}
            }
        }
    }
    report.frames_received = tracker.received;
    report.frames_lost = tracker.lost;
    report.latency_ms = Percentiles::of(&mut latencies);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_counts_gaps_and_ignores_stale() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(10), Some(0));
        assert_eq!(t.observe(11), Some(0));
        assert_eq!(t.observe(14), Some(2));
        assert_eq!(t.observe(12), None);
        assert_eq!(t.observe(14), None);
        assert_eq!(t.observe(15), Some(0));
        assert_eq!((t.received, t.lost, t.stale), (4, 2, 2));
        assert_eq!(t.next(), Some(16));
    }
}
