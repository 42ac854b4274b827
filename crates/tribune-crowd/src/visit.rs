//! What every visit does whatever it listens to (a Tribune room or an Icecast mount): when it
//! leaves, and which connections it opens (sans-IO): a dropped connection is reopened after a
//! short jittered wait, a failed one after capped exponential backoff, and the scenario's planned
//! breaks (churn) are taken, all within the visit and a bounded number of attempts.

use std::time::Duration;

use tokio::time::Instant;

use super::join::backoff;
use super::plan::{PlanConfig, Visit};
use super::stats::{Count, Shard, Stats};

/// How long after the run's end the listeners who stayed to the end leave.
const LAST_SAMPLE_MARGIN: Duration = Duration::from_millis(200);
/// Most unplanned connection attempts in one visit (first connection, retries, reopenings after
/// a drop); each planned churn break adds one.
const MAX_CONNECTS: u32 = 64;

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The planned time came.
    OnTime,
    /// The server closed or the connection broke.
    Early,
}

/// When a visit leaves. Listeners who stay to the end leave just after the run's last sample,
/// so that sample counts them rather than racing their goodbyes; never after `hard_stop`.
pub fn leave_at(plan: &PlanConfig, visit: &Visit, start: Instant, hard_stop: Instant) -> Instant {
    if visit.leave >= plan.run {
        start + plan.run + LAST_SAMPLE_MARGIN
    } else {
        start + visit.leave
    }
    .min(hard_stop)
}

/// The connections of one visit.
#[derive(Debug)]
pub struct Reconnects<B> {
    start: Instant,
    leave: Instant,
    breaks: B,
    next_break: Option<(Duration, Duration)>,
    attempts_left: u32,
    retry: u32,
    /// A connection was opened at least once.
    pub connected: bool,
    /// Failed attempts before the first connection opened.
    pub failed_before_connected: u64,
}

/// The connections of `visit`, which leaves at `leave`.
pub fn reconnects(
    plan: &PlanConfig,
    visit: &Visit,
    start: Instant,
    leave: Instant,
) -> Reconnects<impl Iterator<Item = (Duration, Duration)>> {
    let planned = plan.breaks(visit).count() as u32;
    let mut breaks = plan.breaks(visit);
    let next_break = breaks.next();
    Reconnects {
        start,
        leave,
        breaks,
        next_break,
        attempts_left: MAX_CONNECTS.saturating_add(planned),
        retry: 0,
        connected: false,
        failed_before_connected: 0,
    }
}

impl<B: Iterator<Item = (Duration, Duration)>> Reconnects<B> {
    /// Until when the next connection should last (the next planned break or the visit's end),
    /// or None when the visit is over or out of attempts.
    pub fn next(&mut self, now: Instant) -> Option<Instant> {
        if self.attempts_left == 0 || now >= self.leave {
            return None;
        }
        self.attempts_left -= 1;
        Some(match self.next_break {
            Some((off, _)) if self.start + off > now => (self.start + off).min(self.leave),
            _ => self.leave,
        })
    }

    /// Records how a connection went (`Err`: it could not be opened, with a reason kind) and
    /// returns until when to wait before the next one; `unit` is a uniform number in [0, 1) for
    /// the jitter.
    pub fn ended(
        &mut self,
        result: Result<Ended, String>,
        now: Instant,
        unit: f64,
        shard: &Shard,
        stats: &Stats,
    ) -> Instant {
        match result {
            Ok(ended) => {
                self.connected = true;
                self.retry = 0;
                let mut at = now;
                if ended == Ended::Early {
                    shard.add(Count::Disconnects, 1);
                    at += backoff(0, None, unit);
                }
                // A planned break: stay away, then resume.
                if let Some((off, back)) = self.next_break {
                    if at >= self.start + off {
                        at = at.max(self.start + back);
                        self.next_break = self.breaks.next();
                    }
                }
                at.min(self.leave)
            }
            Err(kind) => {
                shard.add(Count::ConnectFailed, 1);
                stats.error(&kind);
                if !self.connected {
                    self.failed_before_connected += 1;
                }
                let wait = backoff(self.retry, None, unit);
                self.retry += 1;
                (now + wait).min(self.leave)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Cohort, FloodPlan, Scenario};

    fn plan(scenario: Scenario) -> PlanConfig {
        PlanConfig {
            scenario,
            listeners: 1,
            ramp_per_s: 1.0,
            run: Duration::from_secs(10),
            stay: Duration::from_secs(5),
            churn_every: Duration::from_secs(4),
            churn_gap: Duration::from_secs(1),
            flood: FloodPlan::default(),
        }
    }

    fn visit() -> Visit {
        Visit {
            slot: 0,
            index: 0,
            arrive: Duration::ZERO,
            leave: Duration::from_secs(10),
            cohort: Cohort::Established,
        }
    }

    #[test]
    fn churn_breaks_are_taken_and_failures_back_off() {
        let start = Instant::now();
        let stats = Stats::default();
        let shard = stats.shard(0);
        let p = plan(Scenario::Churn);
        let leave = leave_at(&p, &visit(), start, start + Duration::from_secs(60));
        assert_eq!(leave, start + Duration::from_millis(10_200));
        let mut r = reconnects(&p, &visit(), start, leave);
        // First break at 4 × (0.5 + spread(0)) = 2 s, back at 3 s; the next at 6 s.
        assert_eq!(r.next(start), Some(start + Duration::from_secs(2)));
        let t = start + Duration::from_secs(2);
        let back = r.ended(Ok(Ended::OnTime), t, 0.5, shard, &stats);
        assert_eq!(back, start + Duration::from_secs(3));
        assert_eq!(r.next(back), Some(start + Duration::from_secs(6)));
        // A failed reopening waits 0.5 × 200 ms, then 0.5 × 400 ms; counted.
        let t = start + Duration::from_secs(4);
        let w1 = r.ended(Err("refused".into()), t, 0.5, shard, &stats);
        assert_eq!(w1 - t, Duration::from_millis(100));
        let w2 = r.ended(Err("refused".into()), t, 0.5, shard, &stats);
        assert_eq!(w2 - t, Duration::from_millis(200));
        assert_eq!(r.failed_before_connected, 0, "it had connected before");
        assert_eq!(stats.errors().get("refused"), Some(&2));
        // A drop near the end: the wait never passes the visit's end, and then it is over.
        let late = leave - Duration::from_millis(10);
        assert_eq!(r.ended(Ok(Ended::Early), late, 0.9, shard, &stats), leave);
        assert_eq!(r.next(leave), None);
        assert_eq!(stats.totals().disconnects, 1);
    }

    #[test]
    fn attempts_are_bounded() {
        let start = Instant::now();
        let stats = Stats::default();
        let shard = stats.shard(0);
        let p = plan(Scenario::Flash);
        let mut r = reconnects(&p, &visit(), start, start + Duration::from_secs(3600));
        let mut n = 0;
        while r.next(start).is_some() {
            r.ended(Err("x".into()), start, 0.0, shard, &stats);
            n += 1;
        }
        assert_eq!(n, MAX_CONNECTS);
        assert!(!r.connected);
        assert_eq!(r.failed_before_connected, u64::from(MAX_CONNECTS));
    }
}
