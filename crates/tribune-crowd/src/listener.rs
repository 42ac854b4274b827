//! One virtual listener's visit: join, open the listen WebSocket from its own source address,
//! read the program until it leaves, and resume with `from=SEQ` after a disconnect or a planned
//! churn break. What it sees goes straight into the shared counters and histograms; the task
//! itself holds only its socket, a sequence tracker and a few numbers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tribune_media::wire;

use super::join::{join, Jitter, JoinAnswer};
use super::net::{connect_to, listen_addr, Target};
use super::plan::{Cohort, PlanConfig, Visit};
use super::stats::{Count, Shard, Stats};
use super::visit::{leave_at, reconnects, Ended};
use tribune_client::listen::SeqTracker;
use tribune_client::unix_micros;

/// Time allowed for one TCP connect plus WebSocket handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a goodbye (close frame) may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Read buffer per listen WebSocket: audio messages are a few hundred bytes, and this buffer is
/// most of what one idle connection costs the crowd process.
const READ_BUFFER: usize = 4096;

/// What one listener's frames say, sans-IO: loss from sequence numbers across gaps and
/// reconnects, and the latency of each frame unless it is backlog from before a resume.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    seq: SeqTracker,
    /// Frames captured before this time (µs since the epoch) are backlog sent on a resume.
    backlog_before_us: u64,
    /// Gaps seen (skips to the live edge or lost frames).
    pub skips: u64,
    /// Backlog frames received.
    pub backlog: u64,
}

/// What one received frame means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A new frame; `lost` frames were missing right before it; `latency_us` is its glass-to-ear
    /// latency, or None for backlog.
    New {
        /// Frames missing before this one.
        lost: u64,
        /// Arrival minus capture, µs.
        latency_us: Option<u64>,
    },
    /// Already received, or older than what was received.
    Stale,
}

impl Tally {
    /// Records a frame that arrived at `now_us`.
    pub fn frame(&mut self, seq: u64, capture_us: u64, now_us: u64) -> Frame {
        let Some(lost) = self.seq.observe(seq) else {
            return Frame::Stale;
        };
        if lost > 0 {
            self.skips += 1;
        }
        let latency_us = if capture_us < self.backlog_before_us {
            self.backlog += 1;
            None
        } else {
            Some(now_us.saturating_sub(capture_us))
        };
        Frame::New { lost, latency_us }
    }

    /// A new connection resumes at `now_us`: frames captured before then are backlog.
    pub fn resumed(&mut self, now_us: u64) {
        self.backlog_before_us = now_us;
    }

    /// Where to resume from.
    pub fn next_seq(&self) -> Option<u64> {
        self.seq.next()
    }

    /// Frames received and lost so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.seq.received, self.seq.lost)
    }

    /// Stale frames so far.
    pub fn stale(&self) -> u64 {
        self.seq.stale
    }
}

/// The listen URL for a connection, resuming from `from` when set.
pub fn listen_url(base: &url::Url, listen_url: &str, from: Option<u64>) -> Result<String, String> {
    let mut u = if listen_url.starts_with("ws://") || listen_url.starts_with("wss://") {
        url::Url::parse(listen_url).map_err(|e| format!("bad listen_url: {e}"))?
    } else {
        let mut u = base
            .join(listen_url)
            .map_err(|e| format!("bad listen_url: {e}"))?;
        u.set_scheme("ws")
            .map_err(|()| "cannot make a ws:// URL".to_owned())?;
        u
    };
    if let Some(seq) = from {
        // A ticket URL from the server never carries `from`; replace any earlier one anyway.
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .filter(|(k, _)| k != "from")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("from", &seq.to_string());
    }
    Ok(u.into())
}

/// What a visit shares with every other.
pub struct Ctx {
    /// The server.
    pub target: Target,
    /// `…/api/rooms/{id}/join` on the server.
    pub join_url: String,
    /// HTTP clients for joins (each bound to its own source address on loopback).
    pub join_clients: Vec<reqwest::Client>,
    /// The schedule (for churn breaks).
    pub plan: PlanConfig,
    /// The run's start.
    pub start: Instant,
    /// Nothing runs past this instant.
    pub hard_stop: Instant,
    /// Counters and histograms.
    pub stats: Arc<Stats>,
}

/// Runs one visit to its end. Every wait is bounded by the visit's end and the hard stop.
pub async fn run_visit(ctx: Arc<Ctx>, visit: Visit) {
    let shard = ctx.stats.shard(visit.index);
    let leave = leave_at(&ctx.plan, &visit, ctx.start, ctx.hard_stop);
    let mut jitter = Jitter::new(u64::from(visit.index));

    let t0 = Instant::now();
    let client = &ctx.join_clients[visit.index as usize % ctx.join_clients.len()];
    let mut on_answer = |a: Option<&JoinAnswer>, took: Duration| {
        let which = match a {
            None => Count::Unanswered,
            Some(JoinAnswer::Admitted { .. }) => Count::AnsweredAdmitted,
            Some(JoinAnswer::Queued { .. }) => Count::AnsweredQueued,
            Some(JoinAnswer::Challenge { .. }) => Count::AnsweredChallenged,
            Some(JoinAnswer::Busy { .. }) => Count::AnsweredBusy,
            Some(JoinAnswer::Refused { .. }) => Count::AnsweredRefused,
        };
        shard.add(which, 1);
        if a.is_some() {
            shard.answer.record(took.as_micros() as u64);
        }
    };
    let joined = join(client, &ctx.join_url, leave, &mut jitter, &mut on_answer).await;
    shard.add(Count::JoinRetries, u64::from(joined.retries));
    shard.add(Count::JoinsQueued, u64::from(joined.queued));
    let urls = match joined.result {
        Ok(u) => {
            shard.add(Count::JoinsOk, 1);
            shard.join.record(t0.elapsed().as_micros() as u64);
            u
        }
        Err(reason) => {
            shard.add(Count::JoinsFailed, 1);
            ctx.stats.error(&format!("join: {reason}"));
            shard.add(Count::VisitsDone, 1);
            return;
        }
    };

    let mut tally = Tally::default();
    let mut conns = reconnects(&ctx.plan, &visit, ctx.start, leave);
    // The node the join chose, then its alternates: a connection that drops or cannot be made
    // moves on to the next (its node may be gone), resuming where it was.
    let mut at = 0usize;
    while let Some(until) = conns.next(Instant::now()) {
        let resuming = conns.connected;
        let url = &urls[at % urls.len()];
        let ended = connection(&ctx, &visit, shard, url, &mut tally, until, resuming).await;
        if !matches!(ended, Ok(Ended::OnTime)) {
            at += 1;
        }
        let wait = conns.ended(ended, Instant::now(), jitter.unit(), shard, &ctx.stats);
        tokio::time::sleep_until(wait).await;
    }
    let (_, lost) = tally.counts();
    if lost > 0 {
        shard.add(Count::ListenersWithLoss, 1);
    }
    shard.add(Count::Skips, tally.skips);
    shard.add(Count::Stale, tally.stale());
    shard.add(Count::Backlog, tally.backlog);
    shard.add(Count::VisitsDone, 1);
}

/// One listen connection, read until `until`. `Err` is a failure to connect (a reason kind).
async fn connection(
    ctx: &Ctx,
    visit: &Visit,
    shard: &Shard,
    ticket_url: &str,
    tally: &mut Tally,
    until: Instant,
    resuming: bool,
) -> Result<Ended, String> {
    let url = listen_url(&ctx.target.base, ticket_url, tally.next_seq())?;
    let addr = listen_addr(&ctx.target, &url)?;
    let open = async {
        let stream = connect_to(&ctx.target, addr, visit.index)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let cfg = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(cfg))
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    format!("listen: {}", r.status().as_u16())
                }
                _ => "listen: handshake failed".to_owned(),
            })
    };
    let deadline = (Instant::now() + CONNECT_TIMEOUT).min(until);
    let mut ws = match tokio::time::timeout_at(deadline, open).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(kind)) => return Err(kind),
        Err(_) => return Err("listen: connect timed out".into()),
    };
    let node = ctx.stats.node(&addr.to_string());
    node.connections.fetch_add(1, Ordering::Relaxed);
    if resuming {
        shard.add(Count::Resumes, 1);
        tally.resumed(unix_micros());
    } else {
        shard.add(Count::ListenersConnected, 1);
    }
    shard.connected(1);
    let ended = loop {
        let msg = match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => break Ended::OnTime,
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_))) | Ok(None) => break Ended::Early,
        };
        match msg {
            Message::Binary(data) => {
                let now = unix_micros();
                let Ok(records) = wire::parse_message(&data) else {
                    ctx.stats.error("listen: bad audio message");
                    break Ended::Early;
                };
                let (mut new, mut lost) = (0u64, 0u64);
                for r in records {
                    if let Frame::New {
                        lost: l,
                        latency_us,
                    } = tally.frame(r.seq, r.capture_us, now)
                    {
                        new += 1;
                        lost += l;
                        if let Some(us) = latency_us {
                            shard.latency.record(us);
                            node.latency.record(us);
                        }
                    }
                }
                shard.add(Count::Frames, new);
                shard.add(Count::Lost, lost);
                node.frames.fetch_add(new, Ordering::Relaxed);
                node.lost.fetch_add(lost, Ordering::Relaxed);
                if visit.cohort == Cohort::Established {
                    shard.add(Count::EstablishedFrames, new);
                    shard.add(Count::EstablishedLost, lost);
                }
                shard.add(Count::Bytes, data.len() as u64);
            }
            Message::Close(_) => break Ended::Early,
            _ => {}
        }
    };
    shard.connected(-1);
    if matches!(ended, Ended::OnTime) {
        // Say goodbye, but never wait long for the server's answer.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = ws.send(Message::Close(None)).await;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_counted_across_a_gap_and_a_resume() {
        let mut t = Tally::default();
        // 10, 11 arrive; 12–14 are missing; 15 arrives 40 ms after capture.
        assert_eq!(
            t.frame(10, 1_000, 21_000),
            Frame::New {
                lost: 0,
                latency_us: Some(20_000)
            }
        );
        t.frame(11, 2_000, 22_000);
        assert_eq!(
            t.frame(15, 5_000, 45_000),
            Frame::New {
                lost: 3,
                latency_us: Some(40_000)
            }
        );
        assert_eq!(t.next_seq(), Some(16));
        // A reconnect resumes from 16 at t = 1 s; the server replays 16–17 (captured while away:
        // backlog, no latency) then live 18; 17 again is stale; then 20 after another gap of 1.
        t.resumed(1_000_000);
        assert_eq!(
            t.frame(16, 900_000, 1_010_000),
            Frame::New {
                lost: 0,
                latency_us: None
            }
        );
        t.frame(17, 950_000, 1_010_000);
        assert_eq!(t.frame(17, 950_000, 1_010_000), Frame::Stale);
        assert_eq!(
            t.frame(18, 1_005_000, 1_030_000),
            Frame::New {
                lost: 0,
                latency_us: Some(25_000)
            }
        );
        t.frame(20, 1_045_000, 1_050_000);
        assert_eq!(t.counts(), (7, 4));
        assert_eq!((t.skips, t.backlog, t.stale()), (2, 2, 1));
        // A resume that skipped to the live edge shows up as one gap.
        t.resumed(2_000_000);
        assert_eq!(
            t.frame(100, 2_010_000, 2_030_000),
            Frame::New {
                lost: 79,
                latency_us: Some(20_000)
            }
        );
        assert_eq!((t.counts(), t.skips), ((8, 83), 3));
    }

    #[test]
    fn listen_urls_resume_with_from() {
        let base = url::Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            listen_url(&base, "/api/rooms/r/listen?ticket=T", None).unwrap(),
            "ws://127.0.0.1:8080/api/rooms/r/listen?ticket=T"
        );
        assert_eq!(
            listen_url(
                &base,
                "ws://h:1/api/rooms/r/listen?ticket=T&from=3",
                Some(42)
            )
            .unwrap(),
            "ws://h:1/api/rooms/r/listen?ticket=T&from=42"
        );
    }
}
