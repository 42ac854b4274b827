//! The Icecast comparison mode of `tribune crowd`: the same crowd (plan, source spreading,
//! counters, report, server sampling) listening to a plain HTTP stream — an Icecast mount
//! carrying Ogg Opus — instead of joining a Tribune room, so both servers are measured by one
//! instrument.
//!
//! Each virtual listener sends `GET /mount` from its own 127.x.y.z address and reads the Ogg
//! stream into a fixed buffer, parsing pages incrementally ([`ogg`]) and accounting for them
//! ([`tally`]). What the report's figures mean in this mode:
//!
//! * `join_ms`: from the visit's first connection attempt to the stream's response head (200).
//!   `joins_failed`: visits that never got one; every failed attempt is `connect_failed`.
//! * `frames_received`: Opus packets (20 ms each from ffmpeg) in new audio pages;
//!   `frames_lost`: gaps in the Ogg page sequence number, times the packets of the page after
//!   the gap; `frames_stale`: packets of pages replayed after a reconnect; `frames_backlog`:
//!   packets of the burst on connect (or from while away), not timed.
//! * `latency_ms`: lateness against the stream clock, not glass-to-ear (an HTTP stream carries
//!   no capture time): for each page, arrival − (anchor + granule / 48 000 s), the anchor being
//!   the earliest any page arrived for its granule. It shows the server falling behind, not
//!   the source's constant delay.
//! * `skips`: page sequence gaps plus stalls (no byte for more than 1 s); stalls are also
//!   listed under `errors` as `icecast: stall`. A connection silent for 10 s is dropped and
//!   reopened (`disconnects`); reopened connections are `resumes` (no `from=SEQ`: Icecast
//!   starts again at the live edge, and what was missed counts as lost).
//! * Server figures only with `--server-pid` (Icecast has no `/metrics`).

pub mod ogg;
pub mod tally;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::join::Jitter;
use super::net::{self, Target};
use super::plan::{PlanConfig, Visit};
use super::report::{CrowdReport, TimelinePoint};
use super::sampler::Sampler;
use super::stats::{Count, Shard, Stats};
use super::visit::{leave_at, reconnects, Ended};
use super::{drive, CrowdError, RunClock};
use ogg::OggReader;
use tally::{check_head, head_end, PageEvent, StreamTally};
use tribune_client::unix_micros;

/// Read buffer per listener (also the most a response head may take).
pub const READ_BUFFER: usize = 4096;
/// Time allowed for one TCP connect plus the response head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte for this long is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(1);
/// No byte for this long drops the connection (it is reopened).
const DEAD_AFTER: Duration = Duration::from_secs(10);
/// File descriptors kept free beyond one per listener (the probe, the sampler, stdio).
const FD_MARGIN: u64 = 64;

/// An Icecast crowd run.
#[derive(Debug, Clone)]
pub struct IcecastConfig {
    /// The stream (`http://127.0.0.1:8000/tribune.opus`).
    pub url: String,
    /// Who arrives when.
    pub plan: PlanConfig,
    /// Sample this process's CPU and memory from /proc (the server, on this machine); without
    /// it the report has no server figures.
    pub server_pid: Option<u32>,
    /// Allow a target outside 127.0.0.0/8.
    pub allow_remote: bool,
    /// Time after the run's end for listeners to leave before they are dropped.
    pub grace: Duration,
}

/// What every visit shares.
struct Ctx {
    target: Target,
    /// The request, the same for every connection.
    request: Vec<u8>,
    plan: PlanConfig,
    start: Instant,
    hard_stop: Instant,
    stats: Arc<Stats>,
}

/// The `GET` request for a stream URL.
pub fn stream_request(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("127.0.0.1");
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: tribune-crowd\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n"
    )
}

/// Runs the crowd against a stream; `on_tick` sees each second's point as it is made.
pub async fn run(
    cfg: IcecastConfig,
    on_tick: impl FnMut(&TimelinePoint),
) -> Result<CrowdReport, CrowdError> {
    let visits = cfg.plan.visits()?;
    let target = net::target(&cfg.url, cfg.allow_remote)
        .await
        .map_err(|e| match e {
            CrowdError::Config(m) => CrowdError::Config(m.replacen("--server", "--icecast", 1)),
            e => e,
        })?;
    let url = target.base.clone();
    let limit = net::raise_fd_limit()?;
    let need = u64::from(cfg.plan.listeners) + FD_MARGIN;
    if limit < need {
        return Err(CrowdError::Config(format!(
            "the open-file limit is {limit}; {} listeners need about {need}: lower --listeners \
             or raise the hard limit",
            cfg.plan.listeners
        )));
    }
    let request = stream_request(&url).into_bytes();
    probe(&target, &request).await?;
    let sampler = cfg.server_pid.map(|pid| Sampler::Proc {
        pid,
        last: None,
        last_wait: None,
    });
    let clock = RunClock::now(cfg.plan.run, cfg.grace);
    let stats = Arc::new(Stats::default());
    let ctx = Arc::new(Ctx {
        target,
        request,
        plan: cfg.plan,
        start: clock.start,
        hard_stop: clock.hard_stop,
        stats: stats.clone(),
    });
    Ok(drive(
        clock,
        &cfg.plan,
        visits,
        move |v| run_visit(ctx.clone(), v),
        stats,
        sampler,
        on_tick,
    )
    .await)
}

/// Fails early and clearly when the stream cannot be opened.
async fn probe(target: &Target, request: &[u8]) -> Result<(), CrowdError> {
    let url = &target.base;
    let mut buf = [0u8; READ_BUFFER];
    let opened = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        open_stream(&mut s, request, &mut buf).await.map(|_| ())
    })
    .await;
    match opened {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CrowdError::Server(format!("{url}: {e}"))),
        Err(_) => Err(CrowdError::Server(format!("{url}: no answer in 5 s"))),
    }
}

/// Sends the request and reads the response head into `buf`; returns the range of stream bytes
/// already read past the head.
async fn open_stream(
    s: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8],
) -> Result<(usize, usize), String> {
    s.write_all(request)
        .await
        .map_err(|e| format!("icecast: request: {}", e.kind()))?;
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            return Err(format!(
                "icecast: response head longer than {} bytes",
                buf.len()
            ));
        }
        let n = s
            .read(&mut buf[filled..])
            .await
            .map_err(|e| format!("icecast: response: {}", e.kind()))?;
        if n == 0 {
            return Err("icecast: closed before answering".into());
        }
        filled += n;
        if let Some(end) = head_end(&buf[..filled]) {
            check_head(&buf[..end]).map_err(|e| format!("icecast: {e}"))?;
            return Ok((end, filled));
        }
    }
}

/// One listener's visit: connections until it leaves, reopened after a drop or a churn break.
async fn run_visit(ctx: Arc<Ctx>, visit: Visit) {
    let shard = ctx.stats.shard(visit.index);
    let leave = leave_at(&ctx.plan, &visit, ctx.start, ctx.hard_stop);
    let mut jitter = Jitter::new(u64::from(visit.index));
    let mut buf = vec![0u8; READ_BUFFER];
    let mut tally = StreamTally::default();
    let mut stalls = 0u64;
    let first_try = Instant::now();
    let mut conns = reconnects(&ctx.plan, &visit, ctx.start, leave);
    while let Some(until) = conns.next(Instant::now()) {
        let first = (!conns.connected).then_some(first_try);
        let conn = Conn {
            ctx: &ctx,
            index: visit.index,
            shard,
            until,
        };
        let ended = conn.run(&mut buf, &mut tally, &mut stalls, first).await;
        let wait = conns.ended(ended, Instant::now(), jitter.unit(), shard, &ctx.stats);
        tokio::time::sleep_until(wait).await;
    }
    let (joined, failed_before_join) = (conns.connected, conns.failed_before_connected);
    if joined {
        shard.add(Count::JoinRetries, failed_before_join);
    } else {
        shard.add(Count::JoinsFailed, 1);
        shard.add(Count::JoinRetries, failed_before_join.saturating_sub(1));
    }
    if tally.lost > 0 {
        shard.add(Count::ListenersWithLoss, 1);
    }
    if tally.restarts > 0 {
        ctx.stats.error("icecast: stream restarted (new serial)");
    }
    shard.add(Count::Skips, tally.gaps + stalls);
    shard.add(Count::Stale, tally.stale);
    shard.add(Count::Backlog, tally.backlog);
    shard.add(Count::VisitsDone, 1);
}

/// One stream connection of one listener, read until `until`.
struct Conn<'a> {
    ctx: &'a Ctx,
    index: u32,
    shard: &'a Shard,
    until: Instant,
}

impl Conn<'_> {
    /// Opens the stream and reads it. `first` is when the visit first tried, if this connection
    /// would be its first (then it counts as the join). `Err` is a failure to open (its kind).
    async fn run(
        &self,
        buf: &mut [u8],
        tally: &mut StreamTally,
        stalls: &mut u64,
        first: Option<Instant>,
    ) -> Result<Ended, String> {
        let (ctx, shard) = (self.ctx, self.shard);
        let open = async {
            let mut s = net::connect(&ctx.target, self.index)
                .await
                .map_err(|e| format!("connect: {}", e.kind()))?;
            let range = open_stream(&mut s, &ctx.request, buf).await?;
            Ok::<_, String>((s, range))
        };
        let deadline = (Instant::now() + CONNECT_TIMEOUT).min(self.until);
        let (mut s, (from, to)) = match tokio::time::timeout_at(deadline, open).await {
            Ok(Ok(v)) => v,
            Ok(Err(kind)) => return Err(kind),
            Err(_) => return Err("icecast: connect timed out".into()),
        };
        match first {
            Some(t0) => {
                shard.add(Count::JoinsOk, 1);
                shard.add(Count::ListenersConnected, 1);
                shard.join.record(t0.elapsed().as_micros() as u64);
            }
            None => shard.add(Count::Resumes, 1),
        }
        tally.resumed(unix_micros());
        shard.connected(1);
        let mut reader = OggReader::default();
        let mut ended = self.pages(&mut reader, tally, &buf[from..to]);
        let mut last_byte = Instant::now();
        let mut stalled = false;
        while ended.is_none() {
            let now = Instant::now();
            if now >= self.until {
                ended = Some(Ended::OnTime);
                break;
            }
            let wait = (now + STALL_AFTER).min(self.until);
            match tokio::time::timeout_at(wait, s.read(buf)).await {
                Err(_) => {
                    let silent = last_byte.elapsed();
                    if silent >= STALL_AFTER && !stalled {
                        stalled = true;
                        *stalls += 1;
                        ctx.stats.error("icecast: stall (no byte for 1 s)");
                    }
                    if silent >= DEAD_AFTER {
                        ctx.stats.error("icecast: silent for 10 s, reconnecting");
                        ended = Some(Ended::Early);
                    }
                }
                Ok(Ok(0)) | Ok(Err(_)) => ended = Some(Ended::Early),
                Ok(Ok(n)) => {
                    last_byte = Instant::now();
                    stalled = false;
                    ended = self.pages(&mut reader, tally, &buf[..n]);
                }
            }
        }
        shard.connected(-1);
        if reader.resyncs > 0 {
            ctx.stats
                .error("icecast: lost the Ogg capture pattern (resynchronised)");
        }
        Ok(ended.unwrap_or(Ended::Early))
    }

    /// Accounts for the pages in `bytes`; `Some(Early)` when the stream is not Ogg.
    fn pages(
        &self,
        reader: &mut OggReader,
        tally: &mut StreamTally,
        bytes: &[u8],
    ) -> Option<Ended> {
        let now_us = unix_micros();
        let shard = self.shard;
        shard.add(Count::Bytes, bytes.len() as u64);
        let mut input = bytes;
        let (mut frames, mut lost) = (0u64, 0u64);
        let mut ended = None;
        // Each page consumes at least its 27-byte header: bounded by the input's length.
        for _ in 0..=bytes.len() {
            match reader.next_page(&mut input) {
                Ok(Some(p)) => {
                    if let PageEvent::Audio {
                        frames: f,
                        lost_frames,
                        lateness_us,
                        ..
                    } = tally.page(&p, now_us)
                    {
                        frames += f;
                        lost += lost_frames;
                        if let Some(us) = lateness_us {
                            shard.latency.record(us);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.ctx.stats.error(&format!("icecast: {e}"));
                    ended = Some(Ended::Early);
                    break;
                }
            }
        }
        shard.add(Count::Frames, frames);
        shard.add(Count::Lost, lost);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_mount_and_host() {
        let u = url::Url::parse("http://127.0.0.1:18000/tribune.opus?x=1").unwrap();
        let r = stream_request(&u);
        assert!(r.starts_with("GET /tribune.opus?x=1 HTTP/1.0\r\nHost: 127.0.0.1:18000\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }
}
