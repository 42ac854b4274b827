//! Counters and histograms the listener tasks record into, sharded so that thousands of tasks on
//! a few threads rarely touch the same cache line, and read once a second by the reporter.
//!
//! Listeners only add; the reporter sums the shards (counters are cumulative) and drains the
//! latency histograms (each drain is one second of samples, merged into the run's totals).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use super::histogram::{AtomicHistogram, Histogram};

/// Shards: enough that two worker threads seldom share one.
const SHARDS: usize = 16;

/// Cumulative counts of the whole crowd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Joins admitted.
    pub joins_ok: u64,
    /// Joins that ended without admission (refused, out of retries, or out of time).
    pub joins_failed: u64,
    /// Join retries after `429`/`503`/transport errors.
    pub join_retries: u64,
    /// Join answers that queued (`202`).
    pub joins_queued: u64,
    /// Visits that got at least one listen connection.
    pub listeners_connected: u64,
    /// Listen connections that could not be opened.
    pub connect_failed: u64,
    /// Frames received (first copies).
    pub frames: u64,
    /// Frames missing between received ones.
    pub lost: u64,
    /// Gaps in the sequence (each gap is one skip, whatever its length).
    pub skips: u64,
    /// Duplicate or older frames, ignored.
    pub stale: u64,
    /// Frames received after a resume that were captured while away (the ring's backlog):
    /// counted as received, kept out of the latency figures.
    pub backlog: u64,
    /// Connections that ended before the listener meant to leave.
    pub disconnects: u64,
    /// Connections re-opened with `from=SEQ` (after a disconnect or a planned churn break).
    pub resumes: u64,
    /// Visits that ended having lost at least one frame.
    pub listeners_with_loss: u64,
    /// Visits that ended.
    pub visits_done: u64,
    /// Audio bytes received.
    pub bytes: u64,
    /// Frames received by established listeners (see [`super::plan::Cohort`]).
    pub established_frames: u64,
    /// Frames established listeners missed.
    pub established_lost: u64,
    /// How the server answered each join request.
    pub answers: Answers,
}

/// How the server answered join requests (every request: first asks, queue polls, retries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Answers {
    /// `200`: admitted.
    pub admitted: u64,
    /// `202`: queued.
    pub queued: u64,
    /// `401` with a proof-of-work challenge.
    pub challenged: u64,
    /// `429`/`503`: come back later.
    pub busy: u64,
    /// Any other status: a final refusal.
    pub refused: u64,
    /// No answer: the connection failed or the request timed out.
    pub none: u64,
}

impl Answers {
    /// Requests the server answered (with any status).
    pub fn answered(&self) -> u64 {
        self.admitted + self.queued + self.challenged + self.busy + self.refused
    }
}

/// One shard: padded to its own cache lines.
#[repr(align(128))]
#[derive(Default)]
pub struct Shard {
    c: [AtomicU64; COUNTS],
    connected: AtomicI64,
    /// Glass-to-ear latency, µs, since the last drain.
    pub latency: AtomicHistogram,
    /// Join latency (first request to admission), µs, since the last drain.
    pub join: AtomicHistogram,
    /// Time to the answer of each join request, µs, since the last drain.
    pub answer: AtomicHistogram,
}

/// Counters per shard (the number of [`Count`] variants).
const COUNTS: usize = 24;
const _: () = assert!(Count::Unanswered as usize + 1 == COUNTS);

/// Which counter.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Count {
    JoinsOk,
    JoinsFailed,
    JoinRetries,
    JoinsQueued,
    ListenersConnected,
    ConnectFailed,
    Frames,
    Lost,
    Skips,
    Stale,
    Backlog,
    Disconnects,
    Resumes,
    ListenersWithLoss,
    VisitsDone,
    Bytes,
    EstablishedFrames,
    EstablishedLost,
    AnsweredAdmitted,
    AnsweredQueued,
    AnsweredChallenged,
    AnsweredBusy,
    AnsweredRefused,
    Unanswered,
}

impl Shard {
    /// Adds `n` to a counter.
    pub fn add(&self, which: Count, n: u64) {
        if n > 0 {
            self.c[which as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One more (or one fewer) open listen connection.
    pub fn connected(&self, delta: i64) {
        self.connected.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Latency samples drained from the shards, µs.
#[derive(Debug, Default)]
pub struct Samples {
    /// Glass-to-ear latency of live frames.
    pub latency: Histogram,
    /// Join latency (first request to admission).
    pub join: Histogram,
    /// Time to the answer of each join request.
    pub answer: Histogram,
}

/// What listeners got from one node (a cluster's edges are told apart by address).
#[derive(Default)]
pub struct NodeShard {
    /// Listen connections opened to it (first connections and resumes).
    pub connections: AtomicU64,
    /// Frames received from it.
    pub frames: AtomicU64,
    /// Frames missing right before a frame it sent.
    pub lost: AtomicU64,
    /// Glass-to-ear latency of its live frames, µs (read once, at the end).
    pub latency: AtomicHistogram,
}

/// Everything the crowd shares.
#[derive(Default)]
pub struct Stats {
    shards: [Shard; SHARDS],
    errors: Mutex<BTreeMap<String, u64>>,
    nodes: Mutex<BTreeMap<String, std::sync::Arc<NodeShard>>>,
}

impl Stats {
    /// The shard of listener `i`.
    pub fn shard(&self, i: u32) -> &Shard {
        &self.shards[i as usize % SHARDS]
    }

    /// Counts one error by kind (rare events only: join failures, failed connections).
    pub fn error(&self, kind: &str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// The counts of node `addr` (once per connection: a lock, no per-frame cost beyond its
    /// atomics).
    pub fn node(&self, addr: &str) -> std::sync::Arc<NodeShard> {
        match self.nodes.lock() {
            Ok(mut m) => m.entry(addr.to_owned()).or_default().clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }

    /// Every node's counts: (connections, frames, lost, latency), by address.
    pub fn nodes(&self) -> BTreeMap<String, (u64, u64, u64, Histogram)> {
        let Ok(m) = self.nodes.lock() else {
            return BTreeMap::new();
        };
        m.iter()
            .map(|(k, n)| {
                let mut h = Histogram::default();
                n.latency.drain_into(&mut h);
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                (
                    k.clone(),
                    (get(&n.connections), get(&n.frames), get(&n.lost), h),
                )
            })
            .collect()
    }

    /// Error kinds and how often each happened.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The cumulative counts now.
    pub fn totals(&self) -> Totals {
        let sum = |w: Count| -> u64 {
            self.shards
                .iter()
                .map(|s| s.c[w as usize].load(Ordering::Relaxed))
                .sum()
        };
        Totals {
            joins_ok: sum(Count::JoinsOk),
            joins_failed: sum(Count::JoinsFailed),
            join_retries: sum(Count::JoinRetries),
            joins_queued: sum(Count::JoinsQueued),
            listeners_connected: sum(Count::ListenersConnected),
            connect_failed: sum(Count::ConnectFailed),
            frames: sum(Count::Frames),
            lost: sum(Count::Lost),
            skips: sum(Count::Skips),
            stale: sum(Count::Stale),
            backlog: sum(Count::Backlog),
            disconnects: sum(Count::Disconnects),
            resumes: sum(Count::Resumes),
            listeners_with_loss: sum(Count::ListenersWithLoss),
            visits_done: sum(Count::VisitsDone),
            bytes: sum(Count::Bytes),
            established_frames: sum(Count::EstablishedFrames),
            established_lost: sum(Count::EstablishedLost),
            answers: Answers {
                admitted: sum(Count::AnsweredAdmitted),
                queued: sum(Count::AnsweredQueued),
                challenged: sum(Count::AnsweredChallenged),
                busy: sum(Count::AnsweredBusy),
                refused: sum(Count::AnsweredRefused),
                none: sum(Count::Unanswered),
            },
        }
    }

    /// Open listen connections now.
    pub fn open_connections(&self) -> u64 {
        let n: i64 = self
            .shards
            .iter()
            .map(|s| s.connected.load(Ordering::Relaxed))
            .sum();
        n.max(0) as u64
    }

    /// Moves the samples recorded since the last drain into fresh histograms.
    pub fn drain(&self) -> Samples {
        let mut out = Samples::default();
        for s in &self.shards {
            s.latency.drain_into(&mut out.latency);
            s.join.drain_into(&mut out.join);
            s.answer.drain_into(&mut out.answer);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_sum_and_drain() {
        let s = Stats::default();
        s.shard(0).add(Count::Frames, 5);
        s.shard(17).add(Count::Frames, 7);
        s.shard(3).add(Count::Lost, 2);
        s.shard(3).connected(1);
        s.shard(4).connected(1);
        s.shard(4).connected(-1);
        s.shard(1).latency.record(40_000);
        s.shard(2).latency.record(60_000);
        s.shard(2).join.record(1_000);
        let t = s.totals();
        assert_eq!((t.frames, t.lost, t.skips), (12, 2, 0));
        assert_eq!(s.open_connections(), 1);
        s.shard(5).add(Count::Unanswered, 1);
        s.shard(6).add(Count::AnsweredQueued, 2);
        s.shard(6).answer.record(900);
        let t = s.totals();
        assert_eq!(
            (t.answers.none, t.answers.queued, t.answers.answered()),
            (1, 2, 2)
        );
        let d = s.drain();
        assert_eq!(
            (
                d.latency.count(),
                d.latency.max(),
                d.join.count(),
                d.answer.count()
            ),
            (2, 60_000, 1, 1)
        );
        assert_eq!(s.drain().latency.count(), 0);
        s.error("503");
        s.error("503");
        assert_eq!(s.errors().get("503"), Some(&2));
    }
}
