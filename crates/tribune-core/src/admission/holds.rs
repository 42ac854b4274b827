//! Seats held for a while: counts per second in a small ring, so holding costs no memory per
//! holder. A hold ends when it is released (its holder arrived) or lapses after `hold_s`.

/// Microseconds per second.
const US: u64 = 1_000_000;
/// Longest hold, in seconds (the size of the ring).
pub const MAX_HOLD_S: usize = 60;

/// Held seats (see the module docs).
#[derive(Debug, Clone)]
pub struct Holds {
    hold_s: u64,
    slots: [u32; MAX_HOLD_S],
    /// The second the ring was last advanced to.
    second: u64,
    total: u64,
    lapsed: u64,
}

impl Holds {
    /// Holds that last `hold_s` seconds (clamped to 1..=[`MAX_HOLD_S`]).
    pub fn new(hold_s: u32, now_us: u64) -> Self {
        Holds {
            hold_s: u64::from(hold_s.clamp(1, MAX_HOLD_S as u32)),
            slots: [0; MAX_HOLD_S],
            second: now_us / US,
            total: 0,
            lapsed: 0,
        }
    }

    /// Seats held now.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Holds that lapsed since the start.
    pub fn lapsed(&self) -> u64 {
        self.lapsed
    }

    /// Lets holds older than `hold_s` lapse.
    pub fn advance(&mut self, now_us: u64) {
        let second = now_us / US;
        if second <= self.second {
            return;
        }
        // Each second that passed empties the slot that is now `hold_s` seconds old.
        let steps = (second - self.second).min(self.hold_s);
        for i in 1..=steps {
            let slot = ((self.second + i) % self.hold_s) as usize;
            let n = u64::from(std::mem::take(&mut self.slots[slot]));
            self.total -= n;
            self.lapsed += n;
        }
        self.second = second;
    }

    /// Holds one more seat from now.
    pub fn hold(&mut self) {
        let slot = (self.second % self.hold_s) as usize;
        self.slots[slot] = self.slots[slot].saturating_add(1);
        self.total += 1;
    }

    /// Releases the oldest hold, if any; false if none was held.
    pub fn release(&mut self) -> bool {
        if self.total == 0 {
            return false;
        }
        for age in (0..self.hold_s).rev() {
            let slot = ((self.second + self.hold_s - age) % self.hold_s) as usize;
            if self.slots[slot] > 0 {
                self.slots[slot] -= 1;
                self.total -= 1;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_lapse_after_their_time_and_release_oldest_first() {
        let mut h = Holds::new(3, 0);
        h.hold();
        h.advance(US);
        h.hold();
        h.hold();
        assert_eq!(h.total(), 3);
        // The oldest (second 0) is released first: at 3 s only the second-1 holds are left,
        // and they lapse at 4 s.
        assert!(h.release());
        h.advance(3 * US);
        assert_eq!((h.total(), h.lapsed()), (2, 0));
        h.advance(4 * US);
        assert_eq!((h.total(), h.lapsed()), (0, 2));
        assert!(!h.release());
        // A long gap empties everything at once.
        h.hold();
        h.advance(1_000 * US);
        assert_eq!((h.total(), h.lapsed()), (0, 3));
    }
}
