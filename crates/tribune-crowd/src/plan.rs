//! The arrival schedule (sans-IO): when each virtual listener arrives, when it leaves, and when
//! it drops its connection and comes back. Computed up front from the scenario alone, so the
//! generator is an open model: arrivals follow this table whatever the server answers.

use std::time::Duration;

/// Most visits one run may schedule (bounds memory and run time whatever the flags).
pub const MAX_VISITS: usize = 2_000_000;

/// What the crowd does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Ramp to N listeners, hold them until the end.
    Flash,
    /// Ramp to N, then listeners leave and new ones arrive so that about N stay connected.
    Steady,
    /// Ramp to N; each listener drops its connection now and then and resumes where it left.
    Churn,
    /// Ramp to N (the node's capacity, say), then a flood of new joins at [`FloodPlan::rate`]
    /// while some of the established listeners leave: what admission control does under a
    /// join flood, told apart for the listeners already in and for the newcomers.
    Flood,
}

/// Which part of a crowd a visit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cohort {
    /// Arrived with the ramp: the listeners already in when a flood comes.
    #[default]
    Established,
    /// One of the flood's joins.
    Flood,
}

/// `Flood`: the join flood that follows the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FloodPlan {
    /// New joins per second during the flood.
    pub rate: f64,
    /// When the flood starts, from the run's start.
    pub start: Duration,
    /// How long it lasts.
    pub length: Duration,
    /// Established listeners who leave per second during the flood (the seats that free up for
    /// the queue), oldest first.
    pub leave_rate: f64,
}

impl FloodPlan {
    /// Joins the flood makes.
    pub fn joins(&self) -> u64 {
        (self.rate * self.length.as_secs_f64()).floor() as u64
    }

    /// Established listeners who leave during the flood.
    pub fn leavers(&self) -> u64 {
        (self.leave_rate * self.length.as_secs_f64()).floor() as u64
    }
}

/// The schedule's inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// Listeners to hold (N).
    pub listeners: u32,
    /// Arrivals per second during the ramp.
    pub ramp_per_s: f64,
    /// Length of the run.
    pub run: Duration,
    /// `Steady`: mean time a listener stays (each stays 0.5–1.5 times this).
    pub stay: Duration,
    /// `Churn`: time between a listener's connection drops.
    pub churn_every: Duration,
    /// `Churn`: how long a listener stays away before resuming.
    pub churn_gap: Duration,
    /// `Flood`: the flood after the ramp.
    pub flood: FloodPlan,
}

/// Why a schedule cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// A parameter is out of range.
    #[error("{0}")]
    Invalid(&'static str),
    /// The schedule would hold more than [`MAX_VISITS`] visits.
    #[error("the scenario schedules more than {MAX_VISITS} visits; lengthen --stay or shorten --seconds")]
    TooMany,
}

/// One listener's stay: it joins at `arrive` and leaves at `leave` (both from the run's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    /// Which of the N places this visit fills (a steady crowd refills a place when it empties).
    pub slot: u32,
    /// Sequence number of the visit in arrival order (0, 1, 2, …).
    pub index: u32,
    /// When it joins.
    pub arrive: Duration,
    /// When it leaves (at most the run's length).
    pub leave: Duration,
    /// Established listener or flood join.
    pub cohort: Cohort,
}

/// A deterministic spread in [0, 1) for slot/visit `k` (the golden-ratio sequence): departures
/// and connection drops are spread evenly instead of all firing at once, and every run of the
/// same flags has the same schedule.
pub fn spread(k: u64) -> f64 {
    const PHI_FRAC: f64 = 0.618_033_988_749_894_9;
    (k as f64 * PHI_FRAC).fract()
}

impl PlanConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.listeners == 0 {
            return Err(PlanError::Invalid("--listeners must be at least 1"));
        }
        if !(self.ramp_per_s.is_finite() && self.ramp_per_s > 0.0 && self.ramp_per_s <= 1e6) {
            return Err(PlanError::Invalid(
                "--ramp must be between 0 and 1 000 000 per second",
            ));
        }
        if self.run.is_zero() || self.run > Duration::from_secs(24 * 3600) {
            return Err(PlanError::Invalid("--seconds must be between 0 and 86 400"));
        }
        match self.scenario {
            Scenario::Steady if self.stay < Duration::from_millis(100) => {
                Err(PlanError::Invalid("--stay must be at least 0.1 s"))
            }
            Scenario::Churn if self.churn_gap >= self.churn_every => Err(PlanError::Invalid(
                "--churn-gap must be shorter than --churn-every",
            )),
            Scenario::Churn if self.churn_every < Duration::from_millis(100) => {
                Err(PlanError::Invalid("--churn-every must be at least 0.1 s"))
            }
            Scenario::Flood => self.validate_flood(),
            _ => Ok(()),
        }
    }

    fn validate_flood(&self) -> Result<(), PlanError> {
        let f = &self.flood;
        if !(f.rate.is_finite() && f.rate > 0.0 && f.rate <= 1e6) {
            return Err(PlanError::Invalid(
                "--flood-rate must be between 0 and 1 000 000 per second",
            ));
        }
        if !(f.leave_rate.is_finite() && (0.0..=1e6).contains(&f.leave_rate)) {
            return Err(PlanError::Invalid(
                "--leave-rate must be between 0 and 1 000 000 per second",
            ));
        }
        if f.length.is_zero() || f.start + f.length > self.run {
            return Err(PlanError::Invalid(
                "the flood (--flood-start + --flood-seconds) must end within --seconds",
            ));
        }
        if f.joins() + u64::from(self.listeners) > MAX_VISITS as u64 {
            return Err(PlanError::TooMany);
        }
        Ok(())
    }

    /// When the `i`-th arrival of the ramp happens: `i / ramp`, the first at 0.
    pub fn ramp_at(&self, i: u32) -> Duration {
        Duration::from_secs_f64(f64::from(i) / self.ramp_per_s)
    }

    /// Every visit of the run, in arrival order. Ramp arrivals that would come after the end of
    /// the run are left out.
    pub fn visits(&self) -> Result<Vec<Visit>, PlanError> {
        self.validate()?;
        let mut out = Vec::new();
        for slot in 0..self.listeners {
            let arrive = self.ramp_at(slot);
            if arrive >= self.run {
                break;
            }
            out.push(Visit {
                slot,
                index: 0,
                arrive,
                leave: self.run,
                cohort: Cohort::Established,
            });
        }
        if self.scenario == Scenario::Flood {
            self.add_flood(&mut out);
        }
        if self.scenario == Scenario::Steady {
            // Each place is refilled the moment its visitor leaves, so about N stay connected.
            let mut k = 0u64;
            let mut i = 0;
            while i < out.len() {
                let v = out[i];
                let stay = self.stay.mul_f64(0.5 + spread(k));
                k += 1;
                let leave = v.arrive + stay;
                if leave < self.run {
                    out[i].leave = leave;
                    if out.len() >= MAX_VISITS {
                        return Err(PlanError::TooMany);
                    }
                    out.push(Visit {
                        slot: v.slot,
                        index: 0,
                        arrive: leave,
                        leave: self.run,
                        cohort: Cohort::Established,
                    });
                }
                i += 1;
            }
            // A stable sort keeps ramp order among equal times.
            out.sort_by_key(|v| v.arrive);
        }
        for (i, v) in out.iter_mut().enumerate() {
            v.index = i as u32;
        }
        Ok(out)
    }

    /// `Flood`: the oldest established listeners leave at the leave rate from the flood's start,
    /// and the flood's joins arrive at its rate; each flood join stays to the end.
    fn add_flood(&self, out: &mut Vec<Visit>) {
        let f = self.flood;
        let leavers = usize::try_from(f.leavers()).unwrap_or(usize::MAX);
        for (k, v) in out.iter_mut().take(leavers).enumerate() {
            let at = f.start + Duration::from_secs_f64(k as f64 / f.leave_rate);
            v.leave = at.max(v.arrive).min(self.run);
        }
        for j in 0..f.joins() {
            let arrive = f.start + Duration::from_secs_f64(j as f64 / f.rate);
            if arrive >= self.run {
                break;
            }
            out.push(Visit {
                slot: self.listeners.saturating_add(j as u32),
                index: 0,
                arrive,
                leave: self.run,
                cohort: Cohort::Flood,
            });
        }
        out.sort_by_key(|v| v.arrive);
    }

    /// `Churn`: the connection drops of `visit` as (drop, return) times from the run's start. The
    /// first drop comes 0.5–1.5 periods after arrival (spread by slot), then one per period; a
    /// drop whose return would fall after the visit's end is not made. Empty for other scenarios.
    pub fn breaks(&self, visit: &Visit) -> impl Iterator<Item = (Duration, Duration)> {
        let on = self.scenario == Scenario::Churn;
        let every = self.churn_every;
        let gap = self.churn_gap;
        let first = visit.arrive + every.mul_f64(0.5 + spread(u64::from(visit.slot)));
        let leave = visit.leave;
        (0u32..)
            .map(move |k| {
                let off = first + every * k;
                (off, off + gap)
            })
            .take_while(move |&(_, back)| on && back < leave)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scenario: Scenario) -> PlanConfig {
        PlanConfig {
            scenario,
            listeners: 4,
            ramp_per_s: 2.0,
            run: Duration::from_secs(10),
            stay: Duration::from_secs(4),
            churn_every: Duration::from_secs(3),
            churn_gap: Duration::from_secs(1),
            flood: FloodPlan {
                rate: 3.0,
                start: Duration::from_secs(4),
                length: Duration::from_secs(2),
                leave_rate: 1.0,
            },
        }
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn flash_arrives_at_the_ramp_rate_and_holds() {
        let v = cfg(Scenario::Flash).visits().unwrap();
        let arrive: Vec<f64> = v.iter().map(|v| secs(v.arrive)).collect();
        assert_eq!(arrive, vec![0.0, 0.5, 1.0, 1.5]);
        assert!(v.iter().all(|v| v.leave == Duration::from_secs(10)));
        assert_eq!(v.iter().map(|v| v.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // A ramp longer than the run is cut at the end.
        let mut short = cfg(Scenario::Flash);
        short.run = Duration::from_millis(1200);
        assert_eq!(short.visits().unwrap().len(), 3);
    }

    #[test]
    fn steady_refills_each_place_as_it_empties() {
        let c = cfg(Scenario::Steady);
        let v = c.visits().unwrap();
        // At any moment after the ramp exactly 4 visits are present.
        for t in [2.0, 3.3, 5.0, 7.7, 9.9] {
            let here = v
                .iter()
                .filter(|v| secs(v.arrive) <= t && t < secs(v.leave))
                .count();
            assert_eq!(here, 4, "at {t} s");
        }
        // Slot 0's first visitor stays 4 × (0.5 + spread(0)) = 2 s, the next one arrives then.
        let slot0: Vec<(f64, f64)> = v
            .iter()
            .filter(|v| v.slot == 0)
            .map(|v| (secs(v.arrive), secs(v.leave)))
            .collect();
        assert_eq!(slot0[0], (0.0, 2.0));
        assert_eq!(slot0[1].0, 2.0);
        // Arrival order, indices dense.
        assert!(v.windows(2).all(|w| w[0].arrive <= w[1].arrive));
        assert!(v.iter().enumerate().all(|(i, v)| v.index as usize == i));
        assert!(v.len() > 4);
    }

    #[test]
    fn churn_breaks_are_periodic_and_end_before_leaving() {
        let c = cfg(Scenario::Churn);
        let v = c.visits().unwrap();
        // Slot 0: first drop at 0 + 3 × 0.5 = 1.5 s, then every 3 s; returns 1 s later; the
        // drop at 10.5 s is past the end.
        let b: Vec<(f64, f64)> = c.breaks(&v[0]).map(|(a, b)| (secs(a), secs(b))).collect();
        assert_eq!(b, vec![(1.5, 2.5), (4.5, 5.5), (7.5, 8.5)]);
        assert_eq!(cfg(Scenario::Flash).breaks(&v[0]).count(), 0);
    }

    #[test]
    fn flood_follows_the_ramp_while_the_oldest_leave() {
        let v = cfg(Scenario::Flood).visits().unwrap();
        // 4 established (0, 0.5, 1, 1.5 s), then 6 joins at 3/s from 4 s; 2 leave at 1/s.
        assert_eq!(v.len(), 10);
        let flood: Vec<f64> = v
            .iter()
            .filter(|v| v.cohort == Cohort::Flood)
            .map(|v| secs(v.arrive))
            .collect();
        assert_eq!(flood.len(), 6);
        for (got, want) in flood
            .iter()
            .zip([4.0, 4.0 + 1.0 / 3.0, 4.0 + 2.0 / 3.0, 5.0])
        {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let leaves: Vec<(u32, f64)> = v
            .iter()
            .filter(|v| v.cohort == Cohort::Established)
            .map(|v| (v.slot, secs(v.leave)))
            .collect();
        assert_eq!(leaves, vec![(0, 4.0), (1, 5.0), (2, 10.0), (3, 10.0)]);
        assert!(v.windows(2).all(|w| w[0].arrive <= w[1].arrive));
        assert!(v.iter().enumerate().all(|(i, v)| v.index as usize == i));
        // The flood must end within the run.
        let mut late = cfg(Scenario::Flood);
        late.flood.start = Duration::from_secs(9);
        assert!(late.visits().is_err());
        let mut none = cfg(Scenario::Flood);
        none.flood.rate = 0.0;
        assert!(none.visits().is_err());
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut c = cfg(Scenario::Churn);
        c.churn_gap = Duration::from_secs(3);
        assert!(c.validate().is_err());
        let mut c = cfg(Scenario::Flash);
        c.ramp_per_s = 0.0;
        assert!(c.visits().is_err());
        c.ramp_per_s = f64::NAN;
        assert!(c.visits().is_err());
        let mut c = cfg(Scenario::Flash);
        c.listeners = 0;
        assert!(c.visits().is_err());
    }
}
