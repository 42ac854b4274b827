//! The report arithmetic (sans-IO): each second's counters, histograms and server sample become a
//! timeline point; at the end the run's totals become a [`CrowdReport`], printed as a table or
//! written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::flood::{self, FloodSummary};
use super::histogram::Histogram;
use super::plan::FloodPlan;
use super::sampler::ServerSample;
use super::stats::{Answers, Samples, Totals};
use tribune_client::Percentiles;

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the start (end of this second).
    pub t_s: f64,
    /// Open listen connections.
    pub connected: u64,
    /// Joins admitted per second over this interval.
    pub joins_per_s: f64,
    /// Joins failed so far.
    pub joins_failed: u64,
    /// Frames received per second over this interval.
    pub frames_per_s: f64,
    /// Frames lost so far.
    pub frames_lost: u64,
    /// Glass-to-ear latency of this interval's frames, ms.
    pub latency_ms: Percentiles,
    /// Join latency of this interval's admissions, ms (p99).
    pub join_p99_ms: f64,
    /// Join requests answered per second over this interval (any status).
    pub answers_per_s: f64,
    /// Time to the answer of this interval's join requests, ms (p99).
    pub answer_p99_ms: f64,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server resident memory, MiB.
    pub server_rss_mb: Option<f64>,
    /// Server threads' run-queue wait, percent of wall time (starved by other work when high).
    pub server_wait_pct: Option<f64>,
    /// Listeners as the server counts them (`/metrics`).
    pub server_listeners: Option<u64>,
    /// This crowd process's own CPU, percent of one core: near 100 % per thread it runs on, the
    /// instrument itself adds delay to what it measures.
    pub crowd_cpu_pct: Option<f64>,
}

/// What the reporter read at the end of one second.
#[derive(Debug)]
pub struct Reading {
    /// Seconds since the start.
    pub t_s: f64,
    /// Cumulative counts.
    pub totals: Totals,
    /// Open listen connections.
    pub connected: u64,
    /// Latency samples since the previous reading.
    pub samples: Samples,
    /// The server's sample.
    pub server: ServerSample,
    /// The crowd process's own CPU, percent of one core.
    pub crowd_cpu_pct: Option<f64>,
}

/// Percentiles of a histogram of microseconds, in milliseconds (rounded to µs).
pub fn percentiles_ms(h: &Histogram) -> Percentiles {
    Percentiles {
        p50: ms(h.percentile(50.0)),
        p99: ms(h.percentile(99.0)),
        max: ms(h.max()),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// What listeners got from one node of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    /// Listen connections opened to it (first connections and resumes).
    pub connections: u64,
    /// Frames received from it.
    pub frames: u64,
    /// Frames missing right before a frame it sent.
    pub lost: u64,
    /// Glass-to-ear latency of its live frames, ms.
    pub latency_ms: Percentiles,
}

/// What the whole run measured (the `--json` file).
#[derive(Debug, Clone, Serialize)]
pub struct CrowdReport {
    /// What listeners got from each node they listened on (by address; one entry for a lone
    /// node, one per edge in a cluster).
    pub nodes: BTreeMap<String, NodeReport>,
    /// `flash`, `steady` or `churn`.
    pub scenario: String,
    /// Listeners asked for (N).
    pub listeners: u32,
    /// Arrivals per second during the ramp.
    pub ramp_per_s: f64,
    /// Length of the run, seconds.
    pub seconds: f64,
    /// Visits scheduled (N for flash and churn; more for steady, which refills places).
    pub visits: u64,
    /// Visits that opened a listen connection.
    pub listeners_connected: u64,
    /// Most listen connections open at once (sampled each second).
    pub peak_connected: u64,
    /// Listen connections open at the last sample.
    pub connected_at_end: u64,
    /// Joins admitted.
    pub joins_ok: u64,
    /// Joins that ended without admission.
    pub joins_failed: u64,
    /// Join retries after `429`/`503` or transport errors.
    pub join_retries: u64,
    /// Join answers that queued (`202`).
    pub joins_queued: u64,
    /// Join latency (first request to admission), ms.
    pub join_ms: Percentiles,
    /// Time to the answer of each join request (first asks, queue polls, retries), ms.
    pub answer_ms: Percentiles,
    /// How the server answered the join requests.
    pub join_answers: Answers,
    /// Glass-to-ear latency of every live frame received, ms.
    pub latency_ms: Percentiles,
    /// Frames received.
    pub frames_received: u64,
    /// Frames missing (sequence gaps, across reconnects too).
    pub frames_lost: u64,
    /// Gaps (a skip to the live edge is one).
    pub skips: u64,
    /// Visits that lost at least one frame.
    pub listeners_with_loss: u64,
    /// Frames replayed from the ring after a resume (not in the latency figures).
    pub frames_backlog: u64,
    /// Duplicate or old frames.
    pub frames_stale: u64,
    /// Connections that ended before the listener meant to leave.
    pub disconnects: u64,
    /// Connections re-opened with `from=SEQ`.
    pub resumes: u64,
    /// Listen connections that could not be opened.
    pub connect_failed: u64,
    /// Audio bytes received.
    pub bytes_received: u64,
    /// Frames received by the established listeners (all of them but a flood's joins).
    pub established_frames: u64,
    /// Frames the established listeners missed.
    pub established_lost: u64,
    /// `flood`: what the flood did.
    pub flood: Option<FloodSummary>,
    /// Server CPU, percent of one core: mean over the samples after the ramp (all samples if the
    /// run ended before the ramp did).
    pub server_cpu_pct: Option<f64>,
    /// Highest one-second server CPU sample.
    pub server_cpu_pct_max: Option<f64>,
    /// `server_cpu_pct` per 1 000 open connections over the same samples.
    pub server_cpu_pct_per_1000: Option<f64>,
    /// Largest server resident memory sampled, MiB.
    pub server_rss_mb: Option<f64>,
    /// Server run-queue wait over the same samples as `server_cpu_pct`, percent of wall time:
    /// when high, the server was starved by other work and its figures are not its own limits.
    pub server_wait_pct: Option<f64>,
    /// The crowd process's own CPU over the same samples as `server_cpu_pct`, percent of one core.
    pub crowd_cpu_pct: Option<f64>,
    /// Error kinds and counts.
    pub errors: BTreeMap<String, u64>,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
}

/// Fixed facts of a run for the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// Scenario name.
    pub scenario: String,
    /// N.
    pub listeners: u32,
    /// Ramp rate.
    pub ramp_per_s: f64,
    /// Run length, seconds.
    pub seconds: f64,
    /// Visits scheduled.
    pub visits: u64,
    /// When the ramp's last arrival is scheduled, seconds.
    pub ramp_end_s: f64,
    /// `flood`: the flood's plan.
    pub flood: Option<FloodPlan>,
}

/// Folds the per-second readings into the timeline and the run's totals.
#[derive(Debug, Default)]
pub struct Accumulator {
    prev: Totals,
    prev_t: f64,
    latency: Histogram,
    join: Histogram,
    answer: Histogram,
    timeline: Vec<TimelinePoint>,
    last: Totals,
}

impl Accumulator {
    /// Adds one second's reading and returns its timeline point.
    pub fn tick(&mut self, r: Reading) -> &TimelinePoint {
        let Reading {
            t_s,
            totals,
            connected,
            samples,
            server,
            crowd_cpu_pct,
        } = r;
        let dt = t_s - self.prev_t;
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                round2(now.saturating_sub(before) as f64 / dt)
            } else {
                0.0
            }
        };
        let point = TimelinePoint {
            t_s: round2(t_s),
            connected,
            joins_per_s: rate(totals.joins_ok, self.prev.joins_ok),
            joins_failed: totals.joins_failed,
            frames_per_s: rate(totals.frames, self.prev.frames),
            frames_lost: totals.lost,
            latency_ms: percentiles_ms(&samples.latency),
            join_p99_ms: ms(samples.join.percentile(99.0)),
            answers_per_s: rate(totals.answers.answered(), self.prev.answers.answered()),
            answer_p99_ms: ms(samples.answer.percentile(99.0)),
            server_cpu_pct: server.cpu_pct.map(round2),
            server_rss_mb: server.rss_mb.map(round2),
            server_wait_pct: server.wait_pct.map(round2),
            server_listeners: server.listeners,
            crowd_cpu_pct: crowd_cpu_pct.map(round2),
        };
        self.merge(&samples);
        self.prev = totals;
        self.last = totals;
        self.prev_t = t_s;
        self.timeline.push(point);
        self.timeline.last().expect("just pushed")
    }

    /// Takes in what arrived after the last tick (listeners leaving at the end add their
    /// samples, and the per-visit counts they keep until then), without a timeline point.
    pub fn settle(&mut self, totals: Totals, samples: Samples) {
        self.merge(&samples);
        self.last = totals;
    }

    fn merge(&mut self, s: &Samples) {
        self.latency.merge(&s.latency);
        self.join.merge(&s.join);
        self.answer.merge(&s.answer);
    }

    /// The report of the run.
    pub fn finish(
        self,
        info: RunInfo,
        errors: BTreeMap<String, u64>,
        nodes: BTreeMap<String, (u64, u64, u64, Histogram)>,
    ) -> CrowdReport {
        let nodes = nodes
            .into_iter()
            .map(|(addr, (connections, frames, lost, latency))| {
                let r = NodeReport {
                    connections,
                    frames,
                    lost,
                    latency_ms: percentiles_ms(&latency),
                };
                (addr, r)
            })
            .collect();
        let t = self.last;
        // CPU while the crowd is in: samples after the ramp has ended (and the first second after
        // it, which still holds ramp work); all samples if there are none.
        let after_ramp: Vec<&TimelinePoint> = self
            .timeline
            .iter()
            .filter(|p| p.t_s >= info.ramp_end_s + 1.0 && p.server_cpu_pct.is_some())
            .collect();
        let window: Vec<&TimelinePoint> = if after_ramp.is_empty() {
            self.timeline
                .iter()
                .filter(|p| p.server_cpu_pct.is_some())
                .collect()
        } else {
            after_ramp
        };
        let cpu_mean = (!window.is_empty()).then(|| {
            window.iter().filter_map(|p| p.server_cpu_pct).sum::<f64>() / window.len() as f64
        });
        let mean_of = |f: fn(&TimelinePoint) -> Option<f64>| {
            let v: Vec<f64> = window.iter().filter_map(|p| f(p)).collect();
            (!v.is_empty()).then(|| round2(v.iter().sum::<f64>() / v.len() as f64))
        };
        let crowd_cpu = mean_of(|p| p.crowd_cpu_pct);
        let server_wait = mean_of(|p| p.server_wait_pct);
        let conn_mean =
            window.iter().map(|p| p.connected as f64).sum::<f64>() / (window.len().max(1)) as f64;
        let per_1000 = cpu_mean
            .filter(|_| conn_mean >= 1.0)
            .map(|c| round2(c / (conn_mean / 1000.0)));
        let max_of = |f: fn(&TimelinePoint) -> Option<f64>| {
            self.timeline
                .iter()
                .filter_map(f)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let flood = info
            .flood
            .map(|plan| flood::summary(&plan, &self.timeline, &t, &self.answer));
        CrowdReport {
            nodes,
            scenario: info.scenario,
            listeners: info.listeners,
            ramp_per_s: info.ramp_per_s,
            seconds: info.seconds,
            visits: info.visits,
            listeners_connected: t.listeners_connected,
            peak_connected: self.timeline.iter().map(|p| p.connected).max().unwrap_or(0),
            connected_at_end: self.timeline.last().map_or(0, |p| p.connected),
            joins_ok: t.joins_ok,
            joins_failed: t.joins_failed,
            join_retries: t.join_retries,
            joins_queued: t.joins_queued,
            join_ms: percentiles_ms(&self.join),
            answer_ms: percentiles_ms(&self.answer),
            join_answers: t.answers,
            latency_ms: percentiles_ms(&self.latency),
            frames_received: t.frames,
            frames_lost: t.lost,
            skips: t.skips,
            listeners_with_loss: t.listeners_with_loss,
            frames_backlog: t.backlog,
            frames_stale: t.stale,
            disconnects: t.disconnects,
            resumes: t.resumes,
            connect_failed: t.connect_failed,
            bytes_received: t.bytes,
            established_frames: t.established_frames,
            established_lost: t.established_lost,
            flood,
            server_cpu_pct: cpu_mean.map(round2),
            server_cpu_pct_max: max_of(|p| p.server_cpu_pct),
            server_cpu_pct_per_1000: per_1000,
            server_rss_mb: max_of(|p| p.server_rss_mb),
            server_wait_pct: server_wait,
            crowd_cpu_pct: crowd_cpu,
            errors,
            timeline: self.timeline,
        }
    }
}

/// The live progress line of one second.
pub fn progress_line(p: &TimelinePoint) -> String {
    let mut s = format!(
        "[{:>6.1}s] connected {:>6}  joins/s {:>7.1}  p99 {:>7.1} ms  lost {}",
        p.t_s, p.connected, p.joins_per_s, p.latency_ms.p99, p.frames_lost
    );
    if p.joins_failed > 0 {
        let _ = write!(s, "  joins failed {}", p.joins_failed);
    }
    if let Some(c) = p.server_cpu_pct {
        let _ = write!(s, "  server {c:.1}% cpu");
    }
    if let Some(m) = p.server_rss_mb {
        let _ = write!(s, " {m:.1} MiB");
    }
    if let Some(w) = p.server_wait_pct {
        let _ = write!(s, " wait {w:.0}%");
    }
    if let Some(c) = p.crowd_cpu_pct {
        let _ = write!(s, "  crowd {c:.0}% cpu");
    }
    s
}

/// The final report as a human table.
pub fn table(r: &CrowdReport) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_owned(), |v| format!("{v:.2}{unit}"));
    let pct = |p: &Percentiles| format!("p50 {:.1}  p99 {:.1}  max {:.1}", p.p50, p.p99, p.max);
    let rows: Vec<(&str, String)> = vec![
        (
            "scenario",
            format!(
                "{} — {} listeners, ramp {}/s, {} s",
                r.scenario, r.listeners, r.ramp_per_s, r.seconds
            ),
        ),
        (
            "listeners connected",
            format!(
                "{} of {} visits (peak {} open, {} at end)",
                r.listeners_connected, r.visits, r.peak_connected, r.connected_at_end
            ),
        ),
        (
            "joins",
            format!(
                "{} ok, {} failed, {} retries, {} queued",
                r.joins_ok, r.joins_failed, r.join_retries, r.joins_queued
            ),
        ),
        ("join ms", pct(&r.join_ms)),
        (
            "join answers",
            format!(
                "{} answered in ms p50 {:.1} p99 {:.1} max {:.1}: {} admitted, {} queued, \
                 {} challenged, {} busy, {} refused; {} unanswered",
                r.join_answers.answered(),
                r.answer_ms.p50,
                r.answer_ms.p99,
                r.answer_ms.max,
                r.join_answers.admitted,
                r.join_answers.queued,
                r.join_answers.challenged,
                r.join_answers.busy,
                r.join_answers.refused,
                r.join_answers.none
            ),
        ),
        ("glass-to-ear ms", pct(&r.latency_ms)),
        (
            "frames",
            format!(
                "{} received, {} lost ({} gaps, {} listeners with loss)",
                r.frames_received, r.frames_lost, r.skips, r.listeners_with_loss
            ),
        ),
        (
            "connections",
            format!(
                "{} disconnects, {} resumes ({} backlog frames), {} failed to open",
                r.disconnects, r.resumes, r.frames_backlog, r.connect_failed
            ),
        ),
        (
            "server cpu",
            format!(
                "{} of one core (max {}, {} per 1 000 listeners)",
                opt(r.server_cpu_pct, "%"),
                opt(r.server_cpu_pct_max, "%"),
                opt(r.server_cpu_pct_per_1000, "%")
            ),
        ),
        ("server rss", opt(r.server_rss_mb, " MiB")),
        (
            "server cpu wait",
            opt(r.server_wait_pct, "% (runnable, waiting for a CPU)"),
        ),
        ("crowd cpu", opt(r.crowd_cpu_pct, "% (this process)")),
    ];
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<20} {v}");
    }
    if let Some(f) = &r.flood {
        out.push_str(&flood::table(f));
    }
    // One line per node when listeners were spread over several (a cluster's edges).
    if r.nodes.len() > 1 {
        for (addr, n) in &r.nodes {
            let _ = writeln!(
                out,
                "{:<20} {} connections, {} frames, {} lost, glass-to-ear ms {}",
                format!("node {addr}"),
                n.connections,
                n.frames,
                n.lost,
                pct(&n.latency_ms)
            );
        }
    }
    for (e, n) in &r.errors {
        let _ = writeln!(out, "{:<20} {n} × {e}", "error");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values_us: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        for &v in values_us {
            h.record(v);
        }
        h
    }

    fn info() -> RunInfo {
        RunInfo {
            scenario: "flash".into(),
            listeners: 2000,
            ramp_per_s: 1000.0,
            seconds: 5.0,
            visits: 2000,
            ramp_end_s: 2.0,
            flood: None,
        }
    }

    #[test]
    fn ticks_make_rates_and_the_run_totals() {
        let mut acc = Accumulator::default();
        let sample = |cpu: f64| ServerSample {
            cpu_pct: Some(cpu),
            rss_mb: Some(10.0 + cpu),
            wait_pct: Some(cpu / 10.0),
            listeners: None,
        };
        let mut t = Totals {
            joins_ok: 1000,
            frames: 25_000,
            ..Totals::default()
        };
        let reading = |t_s, totals, connected, lat: &[u64], join: &[u64], cpu| Reading {
            t_s,
            totals,
            connected,
            samples: Samples {
                latency: hist(lat),
                join: hist(join),
                answer: hist(join),
            },
            server: sample(cpu),
            crowd_cpu_pct: Some(cpu / 2.0),
        };
        let p = acc
            .tick(reading(1.0, t, 1000, &[10_000, 20_000], &[3_000], 50.0))
            .clone();
        assert_eq!(
            (p.joins_per_s, p.frames_per_s, p.connected),
            (1000.0, 25_000.0, 1000)
        );
        // 10 000 µs lies in the bucket [9 984, 10 239]: its upper bound is reported.
        assert_eq!(p.latency_ms.p50, 10.239);
        assert_eq!(p.join_p99_ms, 3.0);
        // Over 2 s, 1 000 more joins (500/s), 2 frames lost.
        t.joins_ok = 2000;
        t.frames = 125_000;
        t.lost = 2;
        t.listeners_connected = 2000;
        let p = acc
            .tick(reading(3.0, t, 2000, &[30_000], &[], 20.0))
            .clone();
        assert_eq!(
            (p.joins_per_s, p.frames_per_s, p.frames_lost),
            (500.0, 50_000.0, 2)
        );
        acc.tick(reading(4.0, t, 2000, &[40_000], &[], 40.0));
        let r = acc.finish(info(), BTreeMap::new(), BTreeMap::new());
        assert_eq!((r.listeners_connected, r.peak_connected), (2000, 2000));
        assert_eq!((r.frames_received, r.frames_lost), (125_000, 2));
        // All four latencies: rank 2 of 4 is 20 ms, in the bucket [19 968, 20 479] µs; the max
        // is exact.
        assert_eq!((r.latency_ms.p50, r.latency_ms.max), (20.479, 40.0));
        // Server CPU after the ramp (t ≥ 3 s): mean of 20 and 40; 30 % for 2 000 listeners.
        assert_eq!(r.server_cpu_pct, Some(30.0));
        assert_eq!(r.server_cpu_pct_per_1000, Some(15.0));
        assert_eq!(r.server_cpu_pct_max, Some(50.0));
        assert_eq!(r.server_rss_mb, Some(60.0));
        assert_eq!(r.crowd_cpu_pct, Some(15.0));
        assert_eq!(r.server_wait_pct, Some(3.0));
        assert_eq!(r.timeline.len(), 3);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["join_ms"]["p50"], 3.0);
        assert_eq!(json["latency_ms"]["p99"], 40.0);
        assert_eq!(json["joins_failed"], 0);
    }

    #[test]
    fn no_samples_means_no_server_figures() {
        let mut acc = Accumulator::default();
        acc.tick(Reading {
            t_s: 1.0,
            totals: Totals::default(),
            connected: 0,
            samples: Samples::default(),
            server: ServerSample::default(),
            crowd_cpu_pct: None,
        });
        let r = acc.finish(info(), BTreeMap::new(), BTreeMap::new());
        assert_eq!((r.server_cpu_pct, r.server_rss_mb), (None, None));
        assert!(table(&r).contains("server cpu           - of one core"));
        let line = progress_line(&r.timeline[0]);
        assert!(line.starts_with("[   1.0s] connected      0"), "{line}");
    }
}
