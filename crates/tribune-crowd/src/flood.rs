//! What a `flood` run proves (sans-IO): from the timeline and the totals, the admission rate the
//! node held during the flood, how fast every join request was answered, what the listeners
//! already in lost, and how many listeners the node held at most.

use std::fmt::Write as _;

use serde::Serialize;

use super::histogram::Histogram;
use super::plan::FloodPlan;
use super::report::TimelinePoint;
use super::stats::Totals;

/// The flood's figures (the `flood` object of the `--json` report).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FloodSummary {
    /// When the flood started, seconds from the run's start.
    pub start_s: f64,
    /// How long it lasted, seconds.
    pub seconds: f64,
    /// Joins per second the flood offered.
    pub offered_per_s: f64,
    /// Established listeners who left per second during the flood.
    pub leave_per_s: f64,
    /// Joins the flood scheduled.
    pub joins: u64,
    /// Listeners admitted during the flood (from the queue or directly).
    pub admitted: u64,
    /// `admitted` per second of flood.
    pub admitted_per_s: f64,
    /// Join requests answered per second during the flood (first asks and queue polls).
    pub answers_per_s: f64,
    /// Worst one-second p99 of the time to answer a join request during the flood, ms.
    pub answer_p99_ms_worst_second: f64,
    /// p99 of the time to answer a join request over the whole run, ms.
    pub answer_p99_ms: f64,
    /// Join requests that got no answer at all (connection failed or timed out).
    pub unanswered: u64,
    /// Frames the established listeners missed, percent of their frames.
    pub established_loss_pct: f64,
    /// Most listeners the server counted at once (`/metrics`), when it was read.
    pub server_listeners_max: Option<u64>,
    /// Most listen connections the crowd held open at once.
    pub peak_connected: u64,
}

/// The seconds of the timeline that fall in the flood: points whose second ends after its start
/// and no later than its end.
fn in_flood<'a>(
    plan: &FloodPlan,
    timeline: &'a [TimelinePoint],
) -> impl Iterator<Item = (f64, &'a TimelinePoint)> {
    let start = plan.start.as_secs_f64();
    let end = start + plan.length.as_secs_f64();
    let mut prev = 0.0;
    timeline.iter().filter_map(move |p| {
        let dt = p.t_s - prev;
        prev = p.t_s;
        (p.t_s > start && p.t_s <= end + 1e-9).then_some((dt, p))
    })
}

/// Sums the figures of a flood run.
pub fn summary(
    plan: &FloodPlan,
    timeline: &[TimelinePoint],
    totals: &Totals,
    answers: &Histogram,
) -> FloodSummary {
    let seconds = plan.length.as_secs_f64();
    let (mut admitted, mut answered, mut worst) = (0.0, 0.0, 0.0f64);
    for (dt, p) in in_flood(plan, timeline) {
        admitted += p.joins_per_s * dt;
        answered += p.answers_per_s * dt;
        worst = worst.max(p.answer_p99_ms);
    }
    let admitted = admitted.round() as u64;
    let frames = totals.established_frames + totals.established_lost;
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    FloodSummary {
        start_s: plan.start.as_secs_f64(),
        seconds,
        offered_per_s: plan.rate,
        leave_per_s: plan.leave_rate,
        joins: plan.joins(),
        admitted,
        admitted_per_s: round2(admitted as f64 / seconds),
        answers_per_s: round2(answered / seconds),
        answer_p99_ms_worst_second: worst,
        answer_p99_ms: answers.percentile(99.0) as f64 / 1000.0,
        unanswered: totals.answers.none,
        established_loss_pct: if frames == 0 {
            0.0
        } else {
            totals.established_lost as f64 * 100.0 / frames as f64
        },
        server_listeners_max: timeline.iter().filter_map(|p| p.server_listeners).max(),
        peak_connected: timeline.iter().map(|p| p.connected).max().unwrap_or(0),
    }
}

/// The flood's rows of the human table.
pub fn table(f: &FloodSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {} joins at {}/s for {} s from {} s, {} established leaving/s",
        "flood", f.joins, f.offered_per_s, f.seconds, f.start_s, f.leave_per_s
    );
    let _ = writeln!(
        out,
        "{:<20} {} ({:.2}/s); answers {:.1}/s, p99 {:.1} ms (worst second {:.1} ms), {} unanswered",
        "flood admitted",
        f.admitted,
        f.admitted_per_s,
        f.answers_per_s,
        f.answer_p99_ms,
        f.answer_p99_ms_worst_second,
        f.unanswered
    );
    let _ = writeln!(
        out,
        "{:<20} established loss {:.4}%, peak {} connected, server counted at most {}",
        "flood held",
        f.established_loss_pct,
        f.peak_connected,
        f.server_listeners_max
            .map_or("-".to_owned(), |n| n.to_string())
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tribune_client::Percentiles;

    fn point(t_s: f64, joins_per_s: f64, answers_per_s: f64, p99: f64, n: u64) -> TimelinePoint {
        TimelinePoint {
            t_s,
            connected: n,
            joins_per_s,
            joins_failed: 0,
            frames_per_s: 0.0,
            frames_lost: 0,
            latency_ms: Percentiles::default(),
            join_p99_ms: 0.0,
            answers_per_s,
            answer_p99_ms: p99,
            server_cpu_pct: None,
            server_rss_mb: None,
            server_wait_pct: None,
            server_listeners: Some(n + 1),
            crowd_cpu_pct: None,
        }
    }

    #[test]
    fn the_flood_window_is_summed() {
        let plan = FloodPlan {
            rate: 100.0,
            start: Duration::from_secs(2),
            length: Duration::from_secs(2),
            leave_rate: 20.0,
        };
        // Second 1–2 is the ramp (500 joins), 2–4 the flood, 4–5 after it.
        let timeline = vec![
            point(1.0, 500.0, 500.0, 5.0, 500),
            point(2.0, 0.0, 0.0, 0.0, 500),
            point(3.0, 9.0, 120.0, 40.0, 505),
            point(4.0, 11.0, 150.0, 80.0, 510),
            point(5.0, 10.0, 60.0, 900.0, 512),
        ];
        let totals = Totals {
            established_frames: 99_990,
            established_lost: 10,
            answers: super::super::stats::Answers {
                none: 2,
                ..Default::default()
            },
            ..Totals::default()
        };
        let mut answers = Histogram::default();
        answers.record(30_000);
        let f = summary(&plan, &timeline, &totals, &answers);
        assert_eq!((f.joins, f.admitted, f.admitted_per_s), (200, 20, 10.0));
        assert_eq!(
            (f.answers_per_s, f.answer_p99_ms_worst_second),
            (135.0, 80.0)
        );
        assert!((f.established_loss_pct - 0.01).abs() < 1e-12);
        assert_eq!((f.unanswered, f.peak_connected), (2, 512));
        assert_eq!(f.server_listeners_max, Some(513));
        assert!(table(&f).contains("established loss 0.0100%"));
    }
}
