//! Staggered fan-out of a room's audio batches. A room's listeners are spread over phase groups,
//! each with its own watch of published batches. At a batch interval of `b` frames, group `g`
//! is published on the ticks where `(tick + g) % b == 0`, so each 20 ms tick wakes and writes
//! about `1/b` of the listeners instead of all of them at once every `b` ticks. Writes per second
//! (the cost) stay the same, but the work no longer comes in one sweep over every listener, whose
//! last writes would wait behind all the others (at 18 000 listeners a sweep took ~200 ms on one
//! core and put that on top of the batch interval).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tribune_core::Seq;

use crate::metrics::Metrics;
use crate::net::batch::Batch;
use crate::net::direct::{write_group, Joining};

/// The phase groups of one room.
#[derive(Debug)]
pub struct Fanout {
    groups: Vec<watch::Sender<Batch>>,
    /// Each group's sockets on their way to its writer (see `direct`).
    joining: Vec<Arc<Joining>>,
    next: AtomicUsize,
}

/// A listener's place in a phase group.
#[derive(Debug)]
pub struct Member {
    /// The group's published batches.
    pub batches: watch::Receiver<Batch>,
    /// Where to hand the socket to the group's writer.
    pub joining: Arc<Joining>,
}

impl Fanout {
    /// `groups` phase groups (at least one), each starting with an empty batch at `head` (the
    /// ring's first number: a listener arriving before any batch waits there).
    pub fn new(groups: usize, head: Seq) -> Fanout {
        let empty = Batch {
            start: head,
            end: head,
            bytes: Bytes::new(),
            frame: Bytes::new(),
            event: None,
        };
        let groups = groups.max(1);
        Fanout {
            groups: (0..groups)
                .map(|_| watch::Sender::new(empty.clone()))
                .collect(),
            joining: (0..groups).map(|_| Arc::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Starts each group's writer task (they end when the fan-out is dropped).
    pub fn spawn_writers(&self, metrics: &Arc<Metrics>) {
        for (tx, joining) in self.groups.iter().zip(&self.joining) {
            tokio::spawn(write_group(
                tx.subscribe(),
                joining.clone(),
                metrics.clone(),
            ));
        }
    }

    /// Joins the next group in turn (round robin keeps groups even).
    pub fn subscribe(&self) -> Member {
        let g = self.next.fetch_add(1, Ordering::Relaxed) % self.groups.len();
        Member {
            batches: self.groups[g].subscribe(),
            joining: self.joining[g].clone(),
        }
    }

    /// How many groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Publishes `batch` to group `g`.
    pub fn publish(&self, g: usize, batch: Batch) {
        if let Some(tx) = self.groups.get(g) {
            tx.send_replace(batch);
        }
    }
}

/// A group due for publishing, with the range of frames it gets: (group, start, end).
pub type Due = (usize, Seq, Seq);

/// Where each group's published batches end (sans-IO): decides which groups are due.
#[derive(Debug, Clone)]
pub struct Phases {
    published: Vec<Seq>,
}

impl Phases {
    /// `groups` groups, all published up to `head`.
    pub fn new(groups: usize, head: Seq) -> Phases {
        Phases {
            published: vec![head; groups.max(1)],
        }
    }

    /// Puts in `out` the groups due at `tick` with `batch_frames` per write and the ring at
    /// `head`, each with the range to publish: those whose phase comes up and have something
    /// new, and groups more than one interval behind (the interval changed under them: while an
    /// audience grows it changes every few hundred joins, and waiting for the new phase could
    /// hold a group's frames for up to two intervals). Those catch up at most `groups / b` a
    /// tick, the share one phase holds, so an interval that falls at once (a big room ended)
    /// does not write half the listeners in one tick. Marks them published. `out` is the
    /// caller's, reused every tick.
    pub fn due(&mut self, tick: u64, batch_frames: u64, head: Seq, out: &mut Vec<Due>) {
        let b = batch_frames.max(1);
        let mut catch_ups = self.published.len().div_ceil(b as usize);
        out.clear();
        for (g, published) in self.published.iter_mut().enumerate() {
            let pending = head.0.saturating_sub(published.0);
            if pending == 0 {
                continue;
            }
            let on_phase = (tick + g as u64).is_multiple_of(b);
            if !on_phase {
                if pending <= b || catch_ups == 0 {
                    continue;
                }
                catch_ups -= 1;
            }
            out.push((g, *published, head));
            *published = head;
        }
    }

    /// Each group with where its published batches end.
    pub fn published(&self) -> impl Iterator<Item = (usize, Seq)> + '_ {
        self.published.iter().copied().enumerate()
    }

    /// Puts in `out` every group with something new, published up to `head` (the room's last
    /// batch).
    pub fn flush(&mut self, head: Seq, out: &mut Vec<Due>) {
        out.clear();
        for (g, published) in self.published.iter_mut().enumerate() {
            if *published < head {
                out.push((g, *published, head));
                *published = head;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_take_turns_and_each_gets_every_frame() {
        // 4 groups, 4 frames per write: one group per tick, each every 4 ticks.
        let mut p = Phases::new(4, Seq(0));
        let mut got: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 4];
        let mut due = Vec::new();
        for tick in 1..=16u64 {
            p.due(tick, 4, Seq(tick), &mut due);
            assert_eq!(due.len(), 1, "tick {tick}: {due:?}");
            for &(g, s, e) in &due {
                got[g].push((s.0, e.0));
            }
        }
        for (g, ranges) in got.iter().enumerate() {
            // Contiguous from 0 to the head the group last saw, in steps of 4 after the first.
            assert_eq!(ranges[0].0, 0, "group {g}");
            assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{ranges:?}");
            assert!(ranges[1..].iter().all(|(s, e)| e - s == 4), "{ranges:?}");
        }
        // Every group got the same frames in the end.
        p.flush(Seq(16), &mut due);
        assert_eq!(due.len(), 3, "three groups had frames left");
    }

    #[test]
    fn one_frame_writes_publish_every_group_every_tick() {
        let mut p = Phases::new(3, Seq(10));
        let mut due = Vec::new();
        p.due(1, 1, Seq(10), &mut due);
        assert!(due.is_empty(), "nothing new");
        p.due(2, 1, Seq(11), &mut due);
        assert_eq!(
            due,
            vec![
                (0, Seq(10), Seq(11)),
                (1, Seq(10), Seq(11)),
                (2, Seq(10), Seq(11))
            ]
        );
    }

    #[test]
    fn a_group_left_behind_by_an_interval_change_catches_up() {
        // 2 groups at 10 frames a write; then the interval drops to 3: group 1 is due by phase
        // or by being two intervals behind, never starved.
        let mut p = Phases::new(2, Seq(0));
        let mut due = Vec::new();
        for tick in 1..=10u64 {
            p.due(tick, 10, Seq(tick), &mut due);
        }
        let mut last = [0u64; 2];
        for tick in 11..=30u64 {
            p.due(tick, 3, Seq(tick), &mut due);
            for &(g, s, e) in &due {
                assert_eq!(s.0, last[g].max(s.0));
                last[g] = e.0;
            }
        }
        assert!(last.iter().all(|&e| e >= 27), "{last:?}");
    }

    #[test]
    fn while_the_interval_grows_no_group_waits_more_than_an_interval_and_a_frame() {
        // An audience arriving at 1 000 a second: the interval grows by a frame every 600
        // joins, from 1 to 18 frames (30 000 writes a second).
        let groups = 18;
        let mut p = Phases::new(groups, Seq(0));
        let mut due = Vec::new();
        let mut last = vec![0u64; groups];
        let mut writes = 0u64;
        for tick in 1..=2_000u64 {
            let listeners = (tick * 20).min(18_000);
            let b = (listeners * 1000 / (30_000 * 20)).clamp(1, 18);
            p.due(tick, b, Seq(tick), &mut due);
            for &(g, s, e) in &due {
                assert_eq!(s.0, last[g], "group {g} got every frame in order");
                assert!(
                    e.0 - s.0 <= b + 1,
                    "tick {tick}: group {g} held {} > {b} + 1",
                    e.0 - s.0
                );
                last[g] = e.0;
                writes += 1;
            }
            // Every group is at most an interval and a frame behind the head.
            assert!(
                last.iter().all(|&l| tick - l <= b + 1),
                "tick {tick}: {last:?}"
            );
        }
        // Once the interval stops moving the groups are spread again: one group per tick.
        let mut per_tick = Vec::new();
        for tick in 2_001..=2_036u64 {
            p.due(tick, 18, Seq(tick), &mut due);
            per_tick.push(due.len());
        }
        assert!(per_tick[18..].iter().all(|&n| n == 1), "{per_tick:?}");
        // The catch-up writes are few: about one per group per change of the interval.
        let steady: u64 = (1..=2_000u64)
            .map(|t| groups as u64 / ((t * 20).min(18_000) * 1000 / 600_000).clamp(1, 18))
            .sum();
        assert!(
            writes < steady + steady / 10,
            "{writes} writes against {steady}"
        );
    }

    #[test]
    fn an_interval_that_falls_at_once_does_not_write_every_group_in_one_tick() {
        // 18 groups in step at 18 frames a write; then the interval halves (a big room on the
        // node ended): no tick writes more than the groups of two phases, and every group
        // catches up within an interval.
        let groups = 18;
        let mut p = Phases::new(groups, Seq(0));
        let mut due = Vec::new();
        for tick in 1..=100u64 {
            p.due(tick, 18, Seq(tick), &mut due);
        }
        let mut last = vec![0u64; groups];
        for tick in 101..=200u64 {
            p.due(tick, 9, Seq(tick), &mut due);
            assert!(
                due.len() <= 2 * 2,
                "tick {tick}: {} groups at once",
                due.len()
            );
            for &(g, _, e) in &due {
                last[g] = e.0;
            }
            if tick >= 110 {
                assert!(
                    last.iter().all(|&l| tick - l <= 2 * 9),
                    "tick {tick}: {last:?}"
                );
            }
        }
    }

    #[test]
    fn subscribers_are_spread_round_robin() {
        let f = Fanout::new(3, Seq(0));
        let rx: Vec<_> = (0..6).map(|_| f.subscribe().batches).collect();
        f.publish(
            1,
            Batch {
                start: Seq(0),
                end: Seq(1),
                bytes: Bytes::from_static(b"x"),
                frame: Bytes::new(),
                event: None,
            },
        );
        let changed: Vec<bool> = rx.iter().map(|r| r.has_changed().unwrap()).collect();
        assert_eq!(changed, vec![false, true, false, false, true, false]);
    }
}
