//! Reactions, aggregated: a room counts reactions per kind over a short window and publishes
//! the totals once per window, so one reaction never becomes a message to every listener.
//!
//! Each reactor (a listener or a participant) may react at most
//! [`ReactionLimits::per_reactor`] times per window, and at most
//! [`ReactionLimits::max_reactors`] distinct reactors are tracked per window (more are refused
//! until the window rolls), so memory stays bounded whatever the audience does.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ListenerId, ParticipantId};

/// What a reaction says.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionKind {
    /// 👏
    Clap,
    /// ❤️
    Heart,
    /// 😂
    Laugh,
    /// 🔥
    Fire,
    /// 💯
    Hundred,
    /// ✋
    Raise,
}

impl ReactionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ReactionKind; 6] = [
        ReactionKind::Clap,
        ReactionKind::Heart,
        ReactionKind::Laugh,
        ReactionKind::Fire,
        ReactionKind::Hundred,
        ReactionKind::Raise,
    ];

    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReactionKind::Clap => "clap",
            ReactionKind::Heart => "heart",
            ReactionKind::Laugh => "laugh",
            ReactionKind::Fire => "fire",
            ReactionKind::Hundred => "hundred",
            ReactionKind::Raise => "raise",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Who reacted.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reactor {
    /// A listener, by its ticket's id.
    Listener(ListenerId),
    /// Someone on stage.
    Participant(ParticipantId),
}

/// Bounds on reactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionLimits {
    /// Reactions one reactor may send per window.
    pub per_reactor: u32,
    /// Distinct reactors tracked per window.
    pub max_reactors: usize,
}

impl Default for ReactionLimits {
    fn default() -> Self {
        ReactionLimits {
            per_reactor: 5,
            max_reactors: 10_000,
        }
    }
}

/// Why a reaction was not counted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReactionError {
    /// This reactor already reacted its share in this window.
    #[error("at most {0} reactions per second")]
    TooMany(u32),
    /// Too many distinct reactors in this window.
    #[error("too many reactions in this room right now")]
    Busy,
}

/// The totals of one closed window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowCounts {
    /// The window's number (increases by one per window; clients count each window once).
    pub window: u64,
    /// Count per kind, only kinds with at least one reaction, in [`ReactionKind::ALL`] order.
    pub counts: Vec<(ReactionKind, u64)>,
}

impl WindowCounts {
    /// Sum over kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n).sum()
    }
}

/// A room's reaction counters.
#[derive(Debug, Default)]
pub struct Reactions {
    limits: ReactionLimits,
    counts: [u64; 6],
    per_reactor: HashMap<Reactor, u32>,
    window: u64,
    last: Option<WindowCounts>,
}

impl Reactions {
    /// Counters with these limits.
    pub fn new(limits: ReactionLimits) -> Self {
        Reactions {
            limits,
            ..Reactions::default()
        }
    }

    /// Counts one reaction in the current window, or says why not.
    pub fn record(&mut self, who: Reactor, kind: ReactionKind) -> Result<(), ReactionError> {
        let tracked = self.per_reactor.len();
        let n = match self.per_reactor.get_mut(&who) {
            Some(n) => n,
            None if tracked >= self.limits.max_reactors => return Err(ReactionError::Busy),
            None => self.per_reactor.entry(who).or_insert(0),
        };
        if *n >= self.limits.per_reactor {
            return Err(ReactionError::TooMany(self.limits.per_reactor));
        }
        *n += 1;
        self.counts[kind.index()] += 1;
        Ok(())
    }

    /// Closes the current window: its totals become [`Reactions::last`] (`None` if nobody
    /// reacted) and a new window starts. Answers whether `last` changed.
    pub fn roll(&mut self) -> bool {
        let counts: Vec<(ReactionKind, u64)> = ReactionKind::ALL
            .iter()
            .map(|&k| (k, self.counts[k.index()]))
            .filter(|&(_, n)| n > 0)
            .collect();
        let last = (!counts.is_empty()).then_some(WindowCounts {
            window: self.window,
            counts,
        });
        self.window += 1;
        self.counts = [0; 6];
        if self.per_reactor.capacity() > 4 * self.per_reactor.len().max(64) {
            // A burst grew the map; give the memory back.
            self.per_reactor = HashMap::new();
        } else {
            self.per_reactor.clear();
        }
        let changed = last != self.last;
        self.last = last;
        changed
    }

    /// The totals of the last closed window, if anyone reacted in it.
    pub fn last(&self) -> Option<&WindowCounts> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lis(n: u64) -> Reactor {
        Reactor::Listener(ListenerId(n))
    }

    #[test]
    fn counts_per_window_and_publishes_totals() {
        let mut r = Reactions::new(ReactionLimits::default());
        assert!(!r.roll(), "an empty window changes nothing");
        assert_eq!(r.last(), None);
        for i in 0..20 {
            r.record(lis(i), ReactionKind::Clap).unwrap();
            r.record(lis(i), ReactionKind::Clap).unwrap();
            r.record(lis(i), ReactionKind::Heart).unwrap();
        }
        r.record(Reactor::Participant(ParticipantId(1)), ReactionKind::Raise)
            .unwrap();
        assert!(r.roll());
        let last = r.last().unwrap();
        assert_eq!(last.window, 1);
        assert_eq!(
            last.counts,
            vec![
                (ReactionKind::Clap, 40),
                (ReactionKind::Heart, 20),
                (ReactionKind::Raise, 1)
            ]
        );
        assert_eq!(last.total(), 61);
        // The next window starts from zero; a quiet window clears `last`.
        assert!(r.roll());
        assert_eq!(r.last(), None);
        r.record(lis(1), ReactionKind::Fire).unwrap();
        assert!(r.roll());
        assert_eq!(r.last().unwrap().window, 3);
        assert_eq!(r.last().unwrap().counts, vec![(ReactionKind::Fire, 1)]);
    }

    #[test]
    fn each_reactor_is_limited_per_window() {
        let mut r = Reactions::new(ReactionLimits {
            per_reactor: 2,
            max_reactors: 100,
        });
        r.record(lis(1), ReactionKind::Clap).unwrap();
        r.record(lis(1), ReactionKind::Laugh).unwrap();
        assert_eq!(
            r.record(lis(1), ReactionKind::Clap),
            Err(ReactionError::TooMany(2))
        );
        // A participant with the same number is someone else.
        r.record(Reactor::Participant(ParticipantId(1)), ReactionKind::Clap)
            .unwrap();
        r.roll();
        assert_eq!(r.last().unwrap().total(), 3);
        r.record(lis(1), ReactionKind::Clap).unwrap();
    }

    #[test]
    fn distinct_reactors_are_bounded() {
        let mut r = Reactions::new(ReactionLimits {
            per_reactor: 5,
            max_reactors: 3,
        });
        for i in 0..3 {
            r.record(lis(i), ReactionKind::Hundred).unwrap();
        }
        assert_eq!(
            r.record(lis(3), ReactionKind::Hundred),
            Err(ReactionError::Busy)
        );
        // Known reactors still count.
        r.record(lis(0), ReactionKind::Hundred).unwrap();
        r.roll();
        assert_eq!(r.last().unwrap().counts, vec![(ReactionKind::Hundred, 4)]);
        r.record(lis(3), ReactionKind::Hundred).unwrap();
    }

    #[test]
    fn kinds_have_wire_names() {
        for k in ReactionKind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(ReactionKind::ALL[k.index()], k);
        }
        assert!(serde_json::from_str::<ReactionKind>("\"boo\"").is_err());
    }
}
