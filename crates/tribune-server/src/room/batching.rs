//! How many program frames each listener write carries. A node's cost is set by its writes per
//! second, so the batch interval grows with the node's listeners (listeners / a write budget)
//! between a latency floor and a ceiling: small audiences get 20 ms writes, a crowd gets fewer,
//! larger writes that stay inside the latency budget.

use std::time::Duration;

use tribune_media::FRAME_MS;

/// The batch-interval rule of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    min_frames: u64,
    max_frames: u64,
    writes_per_s: u64,
}

impl Batching {
    /// The rule a node's settings give.
    pub fn of(config: &crate::config::ServerConfig) -> Batching {
        Batching::new(
            config.batch_interval,
            config.batch_interval_max,
            config.batch_writes_per_s,
        )
    }

    /// Intervals from `min` to `max` (whole 20 ms frames, at least one), aiming at no more than
    /// `writes_per_s` listener writes per second in all.
    pub fn new(min: Duration, max: Duration, writes_per_s: u32) -> Batching {
        let frames = |d: Duration| (d.as_millis() as u64 / u64::from(FRAME_MS)).max(1);
        let min_frames = frames(min);
        Batching {
            min_frames,
            max_frames: frames(max).max(min_frames),
            writes_per_s: u64::from(writes_per_s.max(1)),
        }
    }

    /// Frames per write when the node has `listeners`: the largest interval that keeps
    /// `listeners / interval` at or above the budget, rounded down to whole frames, within the
    /// bounds.
    pub fn frames(&self, listeners: u64) -> u64 {
        let frames = listeners.saturating_mul(1000) / (self.writes_per_s * u64::from(FRAME_MS));
        frames.clamp(self.min_frames, self.max_frames)
    }

    /// The most frames one write can carry (the ceiling).
    pub fn max_frames(&self) -> u64 {
        self.max_frames
    }

    #[cfg(test)]
    /// The interval for `listeners`.
    pub fn interval(&self, listeners: u64) -> Duration {
        Duration::from_millis(self.frames(listeners) * u64::from(FRAME_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_interval_grows_with_listeners_within_bounds() {
        let b = Batching::new(ms(20), ms(400), 45_000);
        assert_eq!(b.interval(0), ms(20));
        assert_eq!(b.interval(1_000), ms(20));
        // 1 800 listeners at 40 ms is 45 000 writes a second.
        assert_eq!(b.interval(1_800), ms(40));
        assert_eq!(b.interval(1_799), ms(20));
        assert_eq!(b.interval(9_000), ms(200));
        assert_eq!(b.interval(18_000), ms(400));
        assert_eq!(b.interval(1_000_000), ms(400));
        assert_eq!(b.interval(u64::MAX), ms(400));
    }

    #[test]
    fn fixed_and_odd_bounds() {
        // min = max: a fixed interval.
        let fixed = Batching::new(ms(100), ms(100), 45_000);
        assert_eq!((fixed.frames(0), fixed.frames(50_000)), (5, 5));
        // A max below the min is the min; sub-frame intervals are one frame.
        let odd = Batching::new(ms(60), ms(20), 1);
        assert_eq!((odd.frames(0), odd.frames(10)), (3, 3));
        assert_eq!(Batching::new(ms(5), ms(5), 0).frames(7), 1);
    }
}
