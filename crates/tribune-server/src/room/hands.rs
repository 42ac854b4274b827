//! Requests to speak, per address: how often one address (IPv6: its /64) may raise a hand in a
//! room, and which addresses a moderator's "no" keeps out for the room's life.
//!
//! A listen ticket is free (one join), so a listener id alone cannot hold back a flood of hand
//! raises, nor keep out someone who was declined or blocked and simply joins again. The room
//! remembers the address each pending request came from; declining or blocking it refuses that
//! address's requests from then on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};
use tribune_core::ListenerId;

use crate::error::ApiError;
use crate::net::limits::{host_key, throttle};

/// Most addresses remembered, refused or behind a pending request (each room).
const MAX_REMEMBERED: usize = 10_000;

/// A room's hand-raise bookkeeping.
pub struct HandRaises {
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Where each recent requester asked from (oldest first, bounded).
    from: HashMap<ListenerId, IpAddr>,
    order: VecDeque<ListenerId>,
    /// Addresses a moderator declined or blocked.
    refused: HashSet<IpAddr>,
    refused_order: VecDeque<IpAddr>,
}

impl std::fmt::Debug for HandRaises {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandRaises")
            .field("requesters", &self.from.len())
            .field("refused", &self.refused.len())
            .finish()
    }
}

impl HandRaises {
    /// At most `per_minute` requests a minute from one address (0: no rate).
    pub fn new(per_minute: u32) -> Self {
        let rate = NonZeroU32::new(per_minute).map(|n| {
            let burst = NonZeroU32::new(n.get().div_ceil(2)).unwrap_or(n);
            DefaultKeyedRateLimiter::keyed(Quota::per_minute(n).allow_burst(burst))
        });
        HandRaises {
            rate,
            from: HashMap::new(),
            order: VecDeque::new(),
            refused: HashSet::new(),
            refused_order: VecDeque::new(),
        }
    }

    /// Whether a hand may be raised from `client` now: `403` for an address a
    /// moderator refused, `429` past the address's rate. Counts the attempt.
    pub fn check(&mut self, client: IpAddr) -> Result<(), ApiError> {
        let key = host_key(client);
        if self.refused.contains(&key) {
            return Err(ApiError::Forbidden(
                "a request to speak from this address was declined or blocked in this room".into(),
            ));
        }
        match &self.rate {
            Some(rate) => throttle(
                rate,
                &key,
                "too many requests to speak from this address; wait a little",
            ),
            None => Ok(()),
        }
    }

    /// Remembers that `listener` asked from `client`.
    pub fn asked(&mut self, listener: ListenerId, client: IpAddr) {
        if self.from.insert(listener, host_key(client)).is_none() {
            self.order.push_back(listener);
        }
        while self.order.len() > MAX_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.from.remove(&old);
            }
        }
    }

    /// A moderator declined or blocked `listener`: its address may not ask again.
    pub fn refuse(&mut self, listener: ListenerId) {
        let Some(ip) = self.from.remove(&listener) else {
            return;
        };
        if self.refused.insert(ip) {
            self.refused_order.push_back(ip);
        }
        while self.refused_order.len() > MAX_REMEMBERED {
            if let Some(old) = self.refused_order.pop_front() {
                self.refused.remove(&old);
            }
        }
    }

    /// Forgets old entries of the rate limiter.
    pub fn sweep(&self) {
        if let Some(r) = &self.rate {
            r.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_rate_limited_and_a_refusal_keeps_it_out() {
        let mut h = HandRaises::new(6);
        let a = ip("192.0.2.1");
        // A burst of half the minute's rate, then 429.
        for _ in 0..3 {
            h.check(a).unwrap();
        }
        assert_eq!(h.check(a).unwrap_err().status().as_u16(), 429);
        // Another address is not affected; refusing its listener keeps its whole /64 out.
        let b = ip("2001:db8::5");
        h.check(b).unwrap();
        h.asked(ListenerId(9), b);
        h.refuse(ListenerId(9));
        let e = h.check(ip("2001:db8::77")).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
        // Refusing an unknown listener changes nothing.
        h.refuse(ListenerId(10));
        assert!(h.check(ip("198.51.100.1")).is_ok());
    }
}
