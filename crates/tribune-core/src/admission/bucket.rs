//! A token bucket driven by an explicit clock: `rate` tokens per second, at most `burst` saved.

/// Microseconds per second.
const US: u64 = 1_000_000;

/// A token bucket. Time is passed in (µs, any monotonic origin), so tests drive it exactly.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens added per second.
    rate: u32,
    /// Most tokens held, in millionths of a token (so fractional refills are not lost).
    burst_micro: u64,
    /// Tokens held, in millionths.
    micro: u64,
    /// When `micro` was last brought up to date.
    at_us: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` per second (`rate` 0: never refills).
    pub fn new(rate: u32, burst: u32, now_us: u64) -> Self {
        let burst_micro = u64::from(burst.max(1)) * US;
        TokenBucket {
            rate,
            burst_micro,
            micro: burst_micro,
            at_us: now_us,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    fn refill(&mut self, now_us: u64) {
        let elapsed = now_us.saturating_sub(self.at_us);
        self.at_us = self.at_us.max(now_us);
        let added = elapsed.saturating_mul(u64::from(self.rate));
        self.micro = self.micro.saturating_add(added).min(self.burst_micro);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now_us: u64) -> bool {
        self.refill(now_us);
        if self.micro >= US {
            self.micro -= US;
            true
        } else {
            false
        }
    }

    /// Whole tokens available now.
    pub fn available(&mut self, now_us: u64) -> u64 {
        self.refill(now_us);
        self.micro / US
    }

    /// Microseconds until the next token (0 if one is there; `None` if it never refills).
    pub fn wait_us(&mut self, now_us: u64) -> Option<u64> {
        self.refill(now_us);
        if self.micro >= US {
            return Some(0);
        }
        if self.rate == 0 {
            return None;
        }
        Some((US - self.micro).div_ceil(u64::from(self.rate)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let mut b = TokenBucket::new(10, 3, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0));
        assert_eq!(b.wait_us(0), Some(100_000));
        assert!(!b.try_take(99_999));
        assert!(b.try_take(100_000));
        // A long pause refills to the burst only.
        assert_eq!(b.available(60 * US), 3);
        // 1 000 tries over one second at 10/s: the burst plus 10.
        let mut b = TokenBucket::new(10, 3, 0);
        let taken = (0..1000).filter(|i| b.try_take(i * 1000)).count();
        assert_eq!(taken, 3 + 9);
    }

    #[test]
    fn a_clock_going_back_changes_nothing() {
        let mut b = TokenBucket::new(1, 1, 5 * US);
        assert!(b.try_take(5 * US));
        assert!(!b.try_take(US));
        assert!(!b.try_take(5 * US + 999_999));
        assert!(b.try_take(6 * US));
        let mut never = TokenBucket::new(0, 1, 0);
        assert!(never.try_take(0));
        assert_eq!(never.wait_us(10 * US), None);
    }
}
