//! Proof of work for joins under attack: the node hands out signed challenges with a difficulty;
//! a client finds a nonce whose SHA-256 (over the challenge text, `:`, the nonce in decimal) has
//! that many leading zero bits. Checking costs one hash; solving costs ~2^bits hashes, which is
//! nothing for one listener and a wall for a flood. Each solved challenge is accepted once.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::RoomId;
use crate::token::{Keyring, SignedPayload, TokenError};

/// Hardest difficulty the node asks for (~16 M hashes: seconds in a browser).
pub const MAX_BITS: u8 = 24;

/// The signed content of a challenge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowChallenge {
    /// Key id that signed it.
    pub kid: String,
    /// The room it admits to.
    pub room: RoomId,
    /// Leading zero bits required.
    pub bits: u8,
    /// Random, so every challenge is distinct (and its use can be remembered).
    pub salt: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl SignedPayload for PowChallenge {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn set_kid(&mut self, kid: String) {
        self.kid = kid;
    }
    fn exp(&self) -> u64 {
        self.exp
    }
}

/// Why a solution was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    /// The challenge itself is not valid (forged, expired, another room).
    #[error("invalid challenge: {0}")]
    Challenge(#[from] TokenError),
    /// The nonce does not give enough leading zero bits.
    #[error("the nonce does not solve the challenge")]
    Unsolved,
    /// This challenge was already used.
    #[error("this challenge was already used")]
    Replayed,
    /// Too many challenges in flight to remember another; try again shortly.
    #[error("too many challenges in flight")]
    Busy,
}

/// Leading zero bits of SHA-256(`challenge` `:` `nonce`).
pub fn work_bits(challenge: &str, nonce: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(b":");
    h.update(nonce.to_string().as_bytes());
    let digest = h.finalize();
    let mut bits = 0;
    for byte in digest {
        if byte == 0 {
            bits += 8;
        } else {
            bits += byte.leading_zeros();
            break;
        }
    }
    bits
}

/// Finds a nonce for `challenge` with `bits` leading zero bits, trying at most `max_tries`.
pub fn solve(challenge: &str, bits: u8, max_tries: u64) -> Option<u64> {
    (0..max_tries).find(|&n| work_bits(challenge, n) >= u32::from(bits))
}

impl PowChallenge {
    /// Signs a fresh challenge of `bits` for `room`.
    pub fn issue(keys: &Keyring, room: &RoomId, bits: u8, exp: u64) -> String {
        keys.sign_payload(&PowChallenge {
            kid: String::new(),
            room: room.clone(),
            bits: bits.min(MAX_BITS),
            salt: rand::random(),
            exp,
        })
    }
}

/// Remembers used challenges until they expire, so each admits once. Bounded: when full, new
/// solutions are refused ([`PowError::Busy`]) rather than memory growing.
#[derive(Debug)]
pub struct ReplayGuard {
    seen: HashSet<u64>,
    by_expiry: VecDeque<(u64, u64)>,
    capacity: usize,
}

impl ReplayGuard {
    /// A guard that remembers at most `capacity` live challenges.
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            seen: HashSet::new(),
            by_expiry: VecDeque::new(),
            capacity,
        }
    }

    /// Challenges remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Checks a solution: the challenge verifies for `room`, the nonce solves it, and it was
    /// not used before (it is remembered as used from now on).
    pub fn redeem(
        &mut self,
        keys: &Keyring,
        room: &RoomId,
        challenge: &str,
        nonce: u64,
        now_s: u64,
    ) -> Result<PowChallenge, PowError> {
        let c: PowChallenge = keys.verify_payload(challenge, now_s)?;
        if &c.room != room {
            return Err(TokenError::WrongRoom.into());
        }
        if work_bits(challenge, nonce) < u32::from(c.bits) {
            return Err(PowError::Unsolved);
        }
        while let Some(&(exp, salt)) = self.by_expiry.front() {
            if exp > now_s {
                break;
            }
            self.by_expiry.pop_front();
            self.seen.remove(&salt);
        }
        if self.seen.contains(&c.salt) {
            return Err(PowError::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(PowError::Busy);
        }
        self.seen.insert(c.salt);
        // Expiries are nearly in order (same lifetime from issue); an out-of-order one is
        // only remembered a little longer.
        self.by_expiry.push_back((c.exp.max(now_s), c.salt));
        Ok(c)
    }
}

/// Decides the difficulty from the rate of joins that came without a proof: zero while that
/// rate stays under `threshold` per second; above it, one more bit for each doubling; back to
/// zero `cool_down_s` seconds after the rate falls under the threshold again.
#[derive(Debug, Clone)]
pub struct AttackMeter {
    threshold: u32,
    cool_down_s: u64,
    second: u64,
    count: u32,
    bits: u8,
    calm_since: Option<u64>,
}

impl AttackMeter {
    /// A meter with the threshold (joins per second) and cool-down.
    pub fn new(threshold: u32, cool_down_s: u64) -> Self {
        AttackMeter {
            threshold: threshold.max(1),
            cool_down_s,
            second: 0,
            count: 0,
            bits: 0,
            calm_since: None,
        }
    }

    /// Counts one join without a proof at `now_s`.
    pub fn count(&mut self, now_s: u64) {
        self.roll(now_s);
        self.count = self.count.saturating_add(1);
        if self.count > self.threshold {
            // Doublings over the threshold within this second, plus a base of 8 bits.
            let over = (self.count / self.threshold).max(1);
            let bits = (8 + over.ilog2() as u8 * 2).min(MAX_BITS);
            self.bits = self.bits.max(bits);
            self.calm_since = None;
        }
    }

    fn roll(&mut self, now_s: u64) {
        if now_s == self.second {
            return;
        }
        let calm = self.count <= self.threshold;
        let ended = std::mem::replace(&mut self.second, now_s);
        self.count = 0;
        // Calm since the second that just ended, or (if nothing came for a while) the one
        // after it.
        let calm_from = if calm {
            Some(ended)
        } else if now_s > ended + 1 {
            Some(ended + 1)
        } else {
            None
        };
        if let (Some(from), true) = (calm_from, self.bits > 0) {
            let since = *self.calm_since.get_or_insert(from);
            if now_s.saturating_sub(since) >= self.cool_down_s {
                self.bits = 0;
                self.calm_since = None;
            }
        }
    }

    /// The difficulty to ask for now (0: no proof needed).
    pub fn bits(&mut self, now_s: u64) -> u8 {
        self.roll(now_s);
        self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solved_challenges_admit_once_and_wrong_ones_never() {
        let keys = Keyring::new("a", b"k".to_vec());
        let room = RoomId::random();
        let c = PowChallenge::issue(&keys, &room, 8, 100);
        let nonce = solve(&c, 8, 1 << 20).expect("8 bits are found quickly");
        assert!(work_bits(&c, nonce) >= 8);
        let mut guard = ReplayGuard::new(10);
        // A nonce that does not solve it (find one that fails).
        let bad = (0..).find(|&n| work_bits(&c, n) < 8).unwrap();
        assert_eq!(
            guard.redeem(&keys, &room, &c, bad, 1),
            Err(PowError::Unsolved)
        );
        assert_eq!(guard.redeem(&keys, &room, &c, nonce, 1).unwrap().bits, 8);
        assert_eq!(
            guard.redeem(&keys, &room, &c, nonce, 2),
            Err(PowError::Replayed)
        );
        assert!(matches!(
            guard.redeem(&keys, &RoomId::random(), &c, nonce, 2),
            Err(PowError::Challenge(TokenError::WrongRoom))
        ));
        assert!(matches!(
            guard.redeem(&keys, &room, &c, nonce, 100),
            Err(PowError::Challenge(TokenError::Expired))
        ));
        // A forged challenge (difficulty lowered by hand) fails its signature.
        let (body, sig) = c.split_once('.').unwrap();
        let forged = format!("{}x.{sig}", &body[..body.len() - 1]);
        assert!(matches!(
            guard.redeem(&keys, &room, &forged, 0, 1),
            Err(PowError::Challenge(_))
        ));
    }

    #[test]
    fn the_guard_forgets_expired_challenges_and_stays_bounded() {
        let keys = Keyring::new("a", b"k".to_vec());
        let room = RoomId::random();
        let mut guard = ReplayGuard::new(2);
        for _ in 0..2 {
            let c = PowChallenge::issue(&keys, &room, 0, 10);
            guard.redeem(&keys, &room, &c, 0, 1).unwrap();
        }
        let c = PowChallenge::issue(&keys, &room, 0, 20);
        assert_eq!(guard.redeem(&keys, &room, &c, 0, 5), Err(PowError::Busy));
        // At 10 the first two expire and are forgotten.
        guard.redeem(&keys, &room, &c, 0, 10).unwrap();
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn difficulty_rises_with_the_flood_and_falls_after_it() {
        let mut m = AttackMeter::new(100, 5);
        for _ in 0..100 {
            m.count(1);
        }
        assert_eq!(m.bits(1), 0, "at the threshold: no proof");
        m.count(1);
        assert_eq!(m.bits(1), 8);
        for _ in 0..800 {
            m.count(2);
        }
        assert_eq!(m.bits(2), 8 + 3 * 2, "8× the threshold");
        // Calm from second 3: still asked until the cool-down passes.
        for s in 3..8 {
            m.count(s);
            assert_eq!(m.bits(s), 14, "second {s}");
        }
        assert_eq!(m.bits(8), 0);
        // A flood, then nothing at all: the quiet seconds count as calm.
        for _ in 0..500 {
            m.count(20);
        }
        assert_eq!(m.bits(20), 12);
        assert_eq!(m.bits(25), 12);
        assert_eq!(m.bits(26), 0);
    }
}
