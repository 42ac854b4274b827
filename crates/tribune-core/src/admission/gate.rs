//! The admission gate of one node: a listener capacity, an admission rate, and a FIFO waiting
//! room made of counters (a bakery's ticket roll and "now serving" display).
//!
//! - `issued`: queue numbers handed out so far; a new arrival that cannot enter now gets the
//!   next one, in a signed queue ticket (the node keeps no list of who waits).
//! - `serving`: every number below it has been called. [`Gate::tick`] calls the next numbers
//!   while the rate and the capacity allow, so a caller's position is `number − serving + 1`,
//!   which can only go down.
//! - Called numbers whose holders have not come back yet are *promised* seats: they count
//!   against the capacity for [`GateConfig::call_hold_s`] seconds, then lapse (an abandoned
//!   place in the queue must not hold a seat forever). They are kept as counts per second in a
//!   small ring, so memory does not grow with the queue.

use super::bucket::TokenBucket;
use super::holds::Holds;

/// Microseconds per second.
const US: u64 = 1_000_000;

/// Settings of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Most listeners the node holds.
    pub max_listeners: u64,
    /// New admissions per second.
    pub join_rate: u32,
    /// Admissions that may happen at once after a quiet period.
    pub join_burst: u32,
    /// How long a called number keeps its seat while its holder comes back (seconds).
    pub call_hold_s: u32,
    /// How long an admitted listener's seat is held for it to connect (seconds).
    pub connect_hold_s: u32,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            max_listeners: 100_000,
            join_rate: 5_000,
            join_burst: 5_000,
            call_hold_s: 10,
            connect_hold_s: 5,
        }
    }
}

impl GateConfig {
    /// When a queued listener at `position` (told `eta_s`) should ask again: no later than
    /// half the call hold (so a called number is claimed before its promise lapses), and no
    /// later than the earliest it can be called at the admission rate (`position / rate`): the
    /// ETA while a full node frees seats can be far too long, and those near the front must
    /// come back soon to take the seats as they free. At least a second.
    pub fn retry_after_s(&self, position: u64, eta_s: u64) -> u64 {
        let rate = u64::from(self.join_rate.max(1));
        let earliest = position.div_ceil(rate);
        let most = u64::from(self.call_hold_s / 2).max(1);
        eta_s.min(earliest).clamp(1, most)
    }
}

/// What to tell a joining listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// In: issue a listen ticket.
    Admit,
    /// Wait: hold queue number `number`, now at `position` (1 = next), expected in `eta_s`.
    Queue {
        /// The queue number (kept in the signed queue ticket).
        number: u64,
        /// Position in the queue, 1 = next.
        position: u64,
        /// Seconds until admission at the current rate (a promise, not a guarantee).
        eta_s: u64,
    },
}

/// Counters of a gate, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GateStats {
    /// Queue numbers handed out.
    pub issued: u64,
    /// Numbers called.
    pub serving: u64,
    /// Called numbers whose seat is still held.
    pub promised: u64,
    /// Admitted listeners not connected yet.
    pub pending: u64,
    /// Listeners admitted (directly or from the queue).
    pub admitted: u64,
    /// Promises that lapsed (their holder never came back in time).
    pub lapsed: u64,
}

/// The gate (see the module docs).
#[derive(Debug, Clone)]
pub struct Gate {
    config: GateConfig,
    bucket: TokenBucket,
    issued: u64,
    serving: u64,
    /// Seats promised to called numbers whose holders have not come back yet.
    called: Holds,
    /// Seats of listeners admitted but not yet connected (released by [`Gate::connected`]).
    admitted_pending: Holds,
    admitted: u64,
    /// Numbers called in the current window of [`RATE_WINDOW_S`] seconds, and when it began.
    calls_in_window: u64,
    window_start_s: u64,
    /// Numbers called per second over the last complete window: how fast the line moves
    /// when capacity, not the rate, holds it.
    recent_call_rate: f64,
}

/// Seconds over which the queue's pace is measured.
const RATE_WINDOW_S: u64 = 10;
/// Longest ETA announced (an hour): beyond that it says nothing useful.
const MAX_ETA_S: u64 = 3_600;

impl Gate {
    /// A gate with an empty queue at time `now_us`.
    pub fn new(config: GateConfig, now_us: u64) -> Self {
        Gate {
            config,
            bucket: TokenBucket::new(config.join_rate, config.join_burst, now_us),
            issued: 0,
            serving: 0,
            called: Holds::new(config.call_hold_s, now_us),
            admitted_pending: Holds::new(config.connect_hold_s, now_us),
            admitted: 0,
            calls_in_window: 0,
            window_start_s: now_us / US,
            recent_call_rate: 0.0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> GateStats {
        GateStats {
            issued: self.issued,
            serving: self.serving,
            promised: self.called.total(),
            pending: self.admitted_pending.total(),
            admitted: self.admitted,
            lapsed: self.called.lapsed(),
        }
    }

    /// How many wait (numbers issued and not yet called).
    pub fn waiting(&self) -> u64 {
        self.issued - self.serving
    }

    fn expire(&mut self, now_us: u64) {
        self.called.advance(now_us);
        self.admitted_pending.advance(now_us);
    }

    /// A listener admitted here connected: its seat is now counted among the listeners.
    pub fn connected(&mut self, now_us: u64) {
        self.admitted_pending.advance(now_us);
        self.admitted_pending.release();
    }

    fn admit(&mut self) -> Decision {
        self.admitted += 1;
        self.admitted_pending.hold();
        Decision::Admit
    }

    fn has_room(&self, listeners: u64) -> bool {
        listeners
            .saturating_add(self.called.total())
            .saturating_add(self.admitted_pending.total())
            < self.config.max_listeners
    }

    /// Calls the next numbers while the rate and the capacity allow. Call it before each
    /// decision and now and then (every 100 ms) so the queue moves without arrivals.
    pub fn tick(&mut self, now_us: u64, listeners: u64) {
        self.expire(now_us);
        let second = now_us / US;
        if second >= self.window_start_s + RATE_WINDOW_S {
            let elapsed = (second - self.window_start_s) as f64;
            self.recent_call_rate = self.calls_in_window as f64 / elapsed;
            self.calls_in_window = 0;
            self.window_start_s = second;
        }
        while self.serving < self.issued && self.has_room(listeners) {
            if !self.bucket.try_take(now_us) {
                break;
            }
            self.serving += 1;
            self.calls_in_window += 1;
            self.called.hold();
        }
    }

    /// A fresh join (no queue ticket) with `listeners` connected now.
    pub fn join(&mut self, now_us: u64, listeners: u64) -> Decision {
        self.tick(now_us, listeners);
        // Nobody waits, there is room and a token: straight in. Otherwise behind the others.
        if self.serving == self.issued && self.has_room(listeners) && self.bucket.try_take(now_us) {
            return self.admit();
        }
        let number = self.issued;
        self.issued += 1;
        self.tick(now_us, listeners);
        self.decide_number(now_us, listeners, number)
    }

    /// A return with queue number `number` (from a verified queue ticket).
    pub fn rejoin(&mut self, now_us: u64, listeners: u64, number: u64) -> Decision {
        self.tick(now_us, listeners);
        if number >= self.issued {
            // A number this gate never issued (the node restarted, or another node's ticket):
            // a fresh place at the back rather than a refusal.
            return self.join(now_us, listeners);
        }
        self.decide_number(now_us, listeners, number)
    }

    fn decide_number(&mut self, now_us: u64, listeners: u64, number: u64) -> Decision {
        if number < self.serving {
            // Called: its seat is promised (or, if the promise lapsed, taken if free).
            if self.called.release() || self.has_room(listeners) {
                return self.admit();
            }
            return Decision::Queue {
                number,
                position: 1,
                eta_s: self.eta_s(now_us, listeners, 1),
            };
        }
        let position = number - self.serving + 1;
        Decision::Queue {
            number,
            position,
            eta_s: self.eta_s(now_us, listeners, position),
        }
    }

    /// Seconds until `position` is called: at the admission rate while there is room; when the
    /// node is full, at the pace seats have been freeing (at least one a minute assumed).
    fn eta_s(&mut self, now_us: u64, listeners: u64, position: u64) -> u64 {
        if !self.has_room(listeners) {
            let pace = self.recent_call_rate.max(1.0 / 60.0);
            return ((position as f64 / pace).ceil() as u64).clamp(1, MAX_ETA_S);
        }
        let rate = u64::from(self.config.join_rate.max(1));
        let first = self.bucket.wait_us(now_us).unwrap_or(US);
        (first + (position.saturating_sub(1)) * US / rate)
            .div_ceil(US)
            .min(MAX_ETA_S)
    }

    /// A listener resuming with a valid listen ticket: in, whatever the queue (it was in).
    pub fn resume(&mut self) -> Decision {
        self.admit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: u64, rate: u32) -> Gate {
        Gate::new(
            GateConfig {
                max_listeners: max,
                join_rate: rate,
                join_burst: rate,
                call_hold_s: 5,
                connect_hold_s: 5,
            },
            0,
        )
    }

    fn queued(d: Decision) -> (u64, u64) {
        match d {
            Decision::Queue {
                number, position, ..
            } => (number, position),
            Decision::Admit => panic!("admitted"),
        }
    }

    #[test]
    fn below_capacity_and_rate_everyone_enters() {
        let mut g = gate(100, 10);
        for i in 0..10 {
            assert_eq!(g.join(0, i), Decision::Admit);
        }
        // The 11th in the same instant is over the rate: queued first in line.
        assert_eq!(queued(g.join(0, 10)), (0, 1));
        assert_eq!(g.stats().admitted, 10);
    }

    #[test]
    fn beyond_capacity_joins_queue_in_order_and_enter_as_seats_free() {
        let mut g = gate(3, 1000);
        let mut listeners = 0;
        for _ in 0..3 {
            assert_eq!(g.join(0, listeners), Decision::Admit);
            // Not counted twice once connected.
            g.connected(0);
            listeners += 1;
        }
        let tickets: Vec<(u64, u64)> = (0..5).map(|_| queued(g.join(0, listeners))).collect();
        assert_eq!(tickets, vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]);
        // Positions never go up while nothing frees.
        let mut last = [1, 2, 3, 4, 5];
        for t in 1..5 {
            for (i, (number, _)) in tickets.iter().enumerate() {
                let (_, p) = queued(g.rejoin(t * US, listeners, *number));
                assert!(p <= last[i]);
                last[i] = p;
            }
        }
        // Two listeners leave: the first two numbers are called, in order; the third waits.
        listeners -= 2;
        g.tick(5 * US, listeners);
        assert_eq!(g.stats().serving, 2);
        assert_eq!(queued(g.rejoin(5 * US, listeners, 2)), (2, 1));
        assert_eq!(g.rejoin(5 * US, listeners, 1), Decision::Admit);
        g.connected(5 * US);
        listeners += 1;
        assert_eq!(g.rejoin(5 * US, listeners, 0), Decision::Admit);
        g.connected(5 * US);
        listeners += 1;
        assert_eq!(listeners, 3);
        // A fresh join now goes behind number 4.
        assert_eq!(queued(g.join(5 * US, listeners)), (5, 4));
    }

    #[test]
    fn the_rate_paces_admissions_from_the_queue() {
        let mut g = gate(1_000_000, 10);
        // 10 straight in, then 40 queued.
        let mut numbers = Vec::new();
        for _ in 0..50 {
            if let Decision::Queue { number, .. } = g.join(0, 0) {
                numbers.push(number);
            }
        }
        assert_eq!(numbers.len(), 40);
        // ETA of the last one: 40 places at 10/s.
        match g.rejoin(0, 0, 39) {
            Decision::Queue { eta_s, .. } => assert_eq!(eta_s, 4),
            d => panic!("{d:?}"),
        }
        // Ticked every 100 ms for 2 s: 20 have been called; the 21st still waits.
        for i in 1..=20 {
            g.tick(i * US / 10, 10);
        }
        assert_eq!(g.stats().serving, 20);
        assert_eq!(g.rejoin(2 * US, 10, 19), Decision::Admit);
        assert_eq!(queued(g.rejoin(2 * US, 11, 20)).1, 1);
    }

    #[test]
    fn unclaimed_promises_lapse_and_free_their_seats() {
        let mut g = gate(2, 1000);
        assert_eq!(g.join(0, 0), Decision::Admit);
        g.connected(0);
        assert_eq!(g.join(0, 1), Decision::Admit);
        g.connected(0);
        let (n, _) = queued(g.join(0, 2));
        // A seat frees; number n is called and its seat promised.
        g.tick(US, 1);
        assert_eq!(g.stats().promised, 1);
        // Meanwhile a fresh join may not take the promised seat.
        assert!(matches!(g.join(US, 1), Decision::Queue { .. }));
        // The holder never comes back: after the hold, the promise lapses and the next number
        // is called.
        g.tick(7 * US, 1);
        let s = g.stats();
        assert_eq!((s.lapsed, s.serving, s.promised), (1, 2, 1));
        // A lapsed holder that comes back late still enters if a seat is free.
        assert_eq!(g.rejoin(7 * US, 0, n), Decision::Admit);
    }

    #[test]
    fn the_front_of_the_queue_comes_back_soon() {
        // Rate 10/s, hold 5 s: positions 1-10 in 1 s, 25 in 3 s, anything far back in 2 s
        // (half the hold); never later than the ETA, never sooner than a second.
        let g = gate(100, 10);
        assert_eq!(g.config().retry_after_s(1, 600), 1);
        assert_eq!(g.config().retry_after_s(10, 600), 1);
        assert_eq!(g.config().retry_after_s(25, 600), 2);
        assert_eq!(g.config().retry_after_s(5_000, 600), 2);
        assert_eq!(g.config().retry_after_s(11, 1), 1);
        assert_eq!(g.config().retry_after_s(0, 0), 1);
    }

    #[test]
    fn a_full_node_estimates_from_the_pace_seats_free() {
        let mut g = gate(10, 1000);
        let eta = |d: Decision| match d {
            Decision::Queue { eta_s, .. } => eta_s,
            Decision::Admit => panic!("admitted"),
        };
        // Full, and nobody has left yet: a minute per place is assumed, not "0 s".
        assert_eq!(eta(g.join(0, 10)), 60);
        assert_eq!(eta(g.join(0, 10)), 120);
        // Over 10 s, 20 seats free one by one (and 20 more wait): 2 per second.
        for _ in 0..38 {
            g.join(0, 10);
        }
        for i in 0..20u64 {
            let t = i * US / 2;
            g.tick(t, 9);
            assert_eq!(g.rejoin(t, 9, i), Decision::Admit);
            g.connected(t);
        }
        g.tick(10 * US, 10);
        let last = g.stats().issued - 1;
        // 20 still wait ahead of and including the last: 10 s at 2 per second.
        assert_eq!(eta(g.rejoin(10 * US, 10, last)), 10);
    }

    #[test]
    fn unknown_numbers_go_to_the_back_and_resumes_skip_the_queue() {
        let mut g = gate(1, 1000);
        assert_eq!(g.join(0, 0), Decision::Admit);
        // Admitted but not connected yet: its seat is held, so the next one waits.
        assert_eq!(queued(g.join(0, 0)), (0, 1));
        g.connected(0);
        assert_eq!(queued(g.rejoin(0, 1, 999)), (1, 2));
        // Never connected: the held seat lapses after the hold.
        let mut g = gate(1, 1000);
        assert_eq!(g.join(0, 0), Decision::Admit);
        g.tick(6 * US, 0);
        assert_eq!(g.stats().pending, 0);
        assert_eq!(g.resume(), Decision::Admit);
    }
}
