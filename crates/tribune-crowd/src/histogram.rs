//! Fixed-bucket histograms for latencies in microseconds: constant memory whatever the number of
//! samples, so a crowd of 18 000 listeners receiving 50 frames per second each records every
//! frame without allocating.
//!
//! Buckets are log-linear (as in HdrHistogram): values below 64 µs have a bucket each; above,
//! every power of two is split into 32 equal buckets, so a bucket is at most 1/32 (3.1 %) of its
//! values wide. Percentiles report the **upper** bound of the bucket holding the rank: a
//! latency figure is never under-reported. The maximum is kept exactly.

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-bucket bits: values below `1 << MANTISSA_BITS` are exact.
const MANTISSA_BITS: u32 = 6;
/// Buckets per power of two above the exact range.
const HALF: u64 = 1 << (MANTISSA_BITS - 1);
/// Largest power of two tracked; larger values are clamped into the last bucket (about 9.5 hours
/// in microseconds, far past any run's length).
const MAX_EXPONENT: u32 = 35;
/// Number of buckets.
pub const BUCKETS: usize = ((MAX_EXPONENT - MANTISSA_BITS + 1) as usize + 2) * HALF as usize;

/// The bucket of value `v`.
pub fn bucket_of(v: u64) -> usize {
    if v < (1 << MANTISSA_BITS) {
        return v as usize;
    }
    let e = (63 - v.leading_zeros()).min(MAX_EXPONENT);
    let v = v.min((1u64 << (MAX_EXPONENT + 1)) - 1);
    let shift = e - (MANTISSA_BITS - 1);
    let sub = v >> shift; // in [HALF, 2 * HALF)
    (shift as u64 * HALF + sub) as usize
}

/// The smallest and largest value that fall into bucket `i` (inclusive).
pub fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < (1 << MANTISSA_BITS) {
        return (i, i);
    }
    let shift = i / HALF - 1;
    let sub = i % HALF + HALF;
    let low = sub << shift;
    (low, low + (1 << shift) - 1)
}

/// A histogram owned by one thread: plain counters, merged and queried at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            sum: 0,
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.record_n(v, 1);
    }

    /// Records `n` samples of value `v`.
    pub fn record_n(&mut self, v: u64, n: u64) {
        if n == 0 {
            return;
        }
        self.counts[bucket_of(v)] += n;
        self.total += n;
        self.max = self.max.max(v);
        self.sum += u128::from(v) * u128::from(n);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum as f64 / self.total as f64
    }

    /// The nearest-rank percentile `p` (0–100): the upper bound of the bucket holding that rank,
    /// but never above the exact maximum. 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return bucket_bounds(i).1.min(self.max);
            }
        }
        self.max
    }
}

/// A histogram many tasks record into at once (relaxed atomic adds), drained into a
/// [`Histogram`] by one reader. Draining swaps each bucket with zero, so a sample recorded during
/// a drain lands in this drain or the next one, never in both or neither.
#[derive(Debug)]
pub struct AtomicHistogram {
    counts: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl AtomicHistogram {
    /// Records one value.
    pub fn record(&self, v: u64) {
        self.counts[bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    /// Moves every sample into `into` and leaves this histogram empty. The sum (for the mean) is
    /// rebuilt from bucket midpoints, since an exact atomic sum would cost a second contended add
    /// per sample; the maximum stays exact.
    pub fn drain_into(&self, into: &mut Histogram) {
        let max = self.max.swap(0, Ordering::Relaxed);
        let mut any = false;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                any = true;
                let (lo, hi) = bucket_bounds(i);
                into.counts[i] += n;
                into.total += n;
                into.sum += u128::from(lo + (hi - lo) / 2) * u128::from(n);
            }
        }
        if any {
            into.max = into.max.max(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_cover_their_bounds() {
        let mut prev_hi = None;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_bounds(i);
            assert!(lo <= hi);
            if let Some(p) = prev_hi {
                assert_eq!(lo, p + 1, "bucket {i} starts right after the previous one");
            }
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
            // Never wider than 1/32 of its lower bound (above the exact range).
            if lo >= 64 {
                assert!((hi - lo + 1) * 32 <= lo, "bucket {i} too wide");
            }
            prev_hi = Some(hi);
        }
        assert_eq!(BUCKETS, 1024);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn exact_below_64_and_known_buckets_above() {
        assert_eq!(bucket_bounds(bucket_of(63)), (63, 63));
        assert_eq!(bucket_bounds(bucket_of(64)), (64, 65));
        // 50 000 µs: 2^15 ≤ v < 2^16, buckets 1 024 µs wide.
        assert_eq!(bucket_bounds(bucket_of(50_000)), (49_152, 50_175));
    }

    #[test]
    fn percentiles_nearest_rank_upper_bound() {
        let mut h = Histogram::default();
        // 1..=100 ms in microseconds.
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        assert_eq!(h.count(), 100);
        // Rank 50 is 50 000 µs, in bucket [49 152, 50 175].
        assert_eq!(h.percentile(50.0), 50_175);
        // Rank 99 is 99 000 µs: bucket [98 304, 100 351], capped by the exact max 100 000.
        assert_eq!(h.percentile(99.0), 100_000);
        assert_eq!(h.percentile(100.0), 100_000);
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.mean(), 50_500.0);
        // Small exact values.
        let mut s = Histogram::default();
        for v in [5, 1, 9, 3] {
            s.record(v);
        }
        assert_eq!((s.percentile(50.0), s.percentile(99.0)), (3, 9));
        assert_eq!(Histogram::default().percentile(99.0), 0);
    }

    #[test]
    fn merge_and_drain_keep_every_sample() {
        let shared = AtomicHistogram::default();
        for v in [10, 20, 30_000] {
            shared.record(v);
        }
        let mut a = Histogram::default();
        shared.drain_into(&mut a);
        assert_eq!((a.count(), a.max()), (3, 30_000));
        let mut again = Histogram::default();
        shared.drain_into(&mut again);
        assert_eq!(again.count(), 0, "a drain empties the shared histogram");
        let mut b = Histogram::default();
        b.record_n(40, 2);
        b.merge(&a);
        assert_eq!((b.count(), b.max(), b.percentile(50.0)), (5, 30_000, 40));
    }
}
