//! A fixed-bucket histogram of durations, lock-free, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the buckets, milliseconds (conversation lives under 150 ms, so the buckets
/// are fine there and coarse beyond).
pub const BOUNDS_MS: [u64; 14] = [1, 2, 5, 10, 20, 30, 40, 60, 80, 100, 150, 200, 500, 1000];

/// Counts of observed durations per bucket, their sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations at most `BOUNDS_MS[i]` (not cumulative; summed when rendered).
    buckets: [AtomicU64; BOUNDS_MS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration, microseconds.
    pub fn observe_us(&self, us: u64) {
        let ms_ceil = us.div_ceil(1_000);
        match BOUNDS_MS.iter().position(|&b| ms_ceil <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The smallest bucket bound (ms) at or below which a fraction `q` of observations lie
    /// (`None` if empty; `u64::MAX` if in the overflow bucket).
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let want = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want {
                return Some(BOUNDS_MS[i]);
            }
        }
        Some(u64::MAX)
    }

    /// Appends the histogram as `tribune_{name}` in seconds.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP tribune_{name} {help}");
        let _ = writeln!(out, "# TYPE tribune_{name} histogram");
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Ordering::Relaxed);
            let le = BOUNDS_MS[i] as f64 / 1000.0;
            let _ = writeln!(out, "tribune_{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "tribune_{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_s = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "tribune_{name}_sum {sum_s}");
        let _ = writeln!(out, "tribune_{name}_count {}", self.count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_quantiles_follow_them() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for us in [500, 4_000, 4_500, 45_000, 2_000_000] {
            h.observe_us(us);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "test");
        assert!(
            out.contains("tribune_x_seconds_bucket{le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("tribune_x_seconds_bucket{le=\"0.005\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("tribune_x_seconds_bucket{le=\"0.06\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("tribune_x_seconds_bucket{le=\"1\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("tribune_x_seconds_bucket{le=\"+Inf\"} 5\n"),
            "{out}"
        );
        assert!(out.contains("tribune_x_seconds_count 5\n"), "{out}");
        assert!(out.contains("tribune_x_seconds_sum 2.054\n"), "{out}");
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(0.8), Some(60));
        assert_eq!(h.quantile_ms(1.0), Some(u64::MAX));
    }
}
