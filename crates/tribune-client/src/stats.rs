//! Percentiles and latency summaries for reports.

use serde::Serialize;

/// Percentiles of a set of samples, in the samples' unit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place); all zero when empty.
    pub fn of(samples: &mut [f64]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_by(f64::total_cmp);
        Percentiles {
            p50: nearest_rank(samples, 50.0),
            p99: nearest_rank(samples, 99.0),
            max: samples[samples.len() - 1],
        }
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted, non-empty `sorted`.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Latency in milliseconds, rounded for reports.
pub type LatencySummary = Percentiles;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        let mut one = vec![7.0];
        assert_eq!(Percentiles::of(&mut one).p99, 7.0);
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        let mut ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(Percentiles::of(&mut ten).p99, 10.0);
        assert_eq!(Percentiles::of(&mut ten).p50, 5.0);
    }
}
