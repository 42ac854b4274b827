//! The fan-out ring: the last few seconds of a room's program track, addressed by sequence
//! number, shared by every listener connection.
//!
//! Each frame is stored once, already in wire form, so serving a listener never re-encodes or
//! copies audio per listener. Readers hold only a cursor (the next `Seq` they want); a reader whose
//! cursor has fallen out of the ring skips to the live edge and the skip is reported to it.
//!
//! Sequence numbers follow the room's clock (one per 20 ms), so the ring may have gaps: while
//! a room produced nothing (nobody spoke and nobody listened) its numbers moved on without
//! frames ([`Ring::skip_to`]). A reader inside a gap simply gets the next frame after it.

use std::collections::VecDeque;

use bytes::Bytes;
use tribune_media::wire;

use crate::ids::Seq;

/// One program frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Its sequence number.
    pub seq: Seq,
    /// When its oldest contributing speaker captured it (µs since the Unix epoch).
    pub capture_us: u64,
    /// The wire record (header and Opus payload).
    pub record: Bytes,
}

/// What a reader at some cursor should send next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingRead {
    /// First sequence number to send (the cursor, or the oldest kept frame after a skip).
    pub from: Seq,
    /// One past the last sequence number to send: the reader's next cursor.
    pub to: Seq,
    /// How many frames the reader missed because it fell behind the ring (0 if none).
    pub skipped: u64,
}

impl RingRead {
    /// Number of frames to send.
    pub fn len(&self) -> u64 {
        self.to.0 - self.from.0
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.to == self.from
    }
}

/// A bounded window of the most recent frames.
#[derive(Debug)]
pub struct Ring {
    frames: VecDeque<Frame>,
    capacity: usize,
    next: Seq,
}

impl Ring {
    /// A ring keeping the last `capacity` frames, whose first frame will be `first`.
    pub fn new(capacity: usize, first: Seq) -> Self {
        Ring {
            frames: VecDeque::new(),
            capacity: capacity.max(1),
            next: first,
        }
    }

    /// Moves the live edge forward to `seq` without frames (the room's clock went on while it
    /// produced nothing). No-op if the edge is already there or past it.
    pub fn skip_to(&mut self, seq: Seq) {
        if seq > self.next {
            self.next = seq;
        }
    }

    /// Index of the first held frame whose number is at least `seq`.
    fn index_of(&self, seq: Seq) -> usize {
        self.frames.partition_point(|f| f.seq < seq)
    }

    /// Appends the next frame, evicting the oldest when full, and returns its sequence number.
    pub fn push(&mut self, capture_us: u64, payload: &[u8]) -> Seq {
        let seq = self.next;
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        if self.frames.capacity() == 0 {
            // Memory is taken when a room first produces audio, not when it is created.
            self.frames.reserve_exact(self.capacity);
        }
        self.frames.push_back(Frame {
            seq,
            capture_us,
            record: wire::record(seq.0, capture_us, payload),
        });
        self.next = seq.next();
        seq
    }

    /// The sequence number the next pushed frame will get: the live edge.
    pub fn head(&self) -> Seq {
        self.next
    }

    /// The oldest sequence number still held (equal to `head` when empty).
    pub fn tail(&self) -> Seq {
        self.frames.front().map_or(self.next, |f| f.seq)
    }

    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the ring holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame with this sequence number, if still held.
    pub fn get(&self, seq: Seq) -> Option<&Frame> {
        self.frames.get(self.index_of(seq)).filter(|f| f.seq == seq)
    }

    /// What a reader at `cursor` should be sent, at most `max` sequence numbers' worth.
    ///
    /// A cursor older than the ring skips to the live edge (`head`), minus nothing: a listener
    /// that fell behind hears the present rather than stale audio. A cursor from the future (a
    /// client's bad resume position) is treated as the live edge, with no skip. A cursor in a
    /// gap (numbers the room skipped) starts at the next frame held, with no skip counted.
    pub fn read(&self, cursor: Seq, max: u64) -> RingRead {
        let head = self.head();
        if cursor >= head {
            return RingRead {
                from: head,
                to: head,
                skipped: 0,
            };
        }
        if cursor < self.tail() {
            return RingRead {
                from: head,
                to: head,
                skipped: head.0 - cursor.0,
            };
        }
        let from = self
            .frames
            .get(self.index_of(cursor))
            .map_or(head, |f| f.seq);
        let to = Seq(head.0.min(from.0.saturating_add(max)));
        RingRead {
            from,
            to,
            skipped: 0,
        }
    }

    /// One wire message holding the frames numbered `from..to` that are still held.
    pub fn message(&self, from: Seq, to: Seq) -> Option<Bytes> {
        if from < self.tail() {
            return None;
        }
        let (start, end) = (self.index_of(from), self.index_of(to));
        if start >= end {
            return None;
        }
        let records = self.frames.range(start..end).map(|f| f.record.as_ref());
        Some(wire::message(records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(n: u64, cap: usize) -> Ring {
        let mut r = Ring::new(cap, Seq(100));
        for i in 0..n {
            let s = r.push(1_000 + i, &[i as u8; 3]);
            assert_eq!(s, Seq(100 + i));
        }
        r
    }

    #[test]
    fn reader_gets_frames_since_its_cursor() {
        let r = ring_with(10, 50);
        assert_eq!((r.tail(), r.head(), r.len()), (Seq(100), Seq(110), 10));
        let read = r.read(Seq(104), 100);
        assert_eq!(
            read,
            RingRead {
                from: Seq(104),
                to: Seq(110),
                skipped: 0
            }
        );
        let msg = r.message(read.from, read.to).unwrap();
        let recs: Vec<_> = wire::parse_message(&msg).unwrap().collect();
        assert_eq!(
            recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (104..110).collect::<Vec<_>>()
        );
        assert_eq!(recs[0].capture_us, 1_004);
        assert_eq!(recs[0].payload, &[4u8; 3]);
        assert_eq!(r.read(Seq(104), 2).to, Seq(106), "max bounds one read");
    }

    #[test]
    fn reader_at_live_edge_gets_nothing_until_a_push() {
        let mut r = ring_with(3, 50);
        assert!(r.read(Seq(103), 10).is_empty());
        r.push(9, b"x");
        assert_eq!(r.read(Seq(103), 10).len(), 1);
        assert!(
            r.read(Seq(500), 10).is_empty(),
            "future cursor waits at the edge"
        );
        assert_eq!(r.read(Seq(500), 10).skipped, 0);
    }

    #[test]
    fn reader_that_falls_behind_skips_to_live_edge_and_counts_it() {
        let r = ring_with(80, 50);
        assert_eq!(r.len(), 50);
        assert_eq!(r.tail(), Seq(130));
        let read = r.read(Seq(105), 100);
        assert_eq!(read.skipped, 75);
        assert_eq!((read.from, read.to), (Seq(180), Seq(180)));
        // The oldest kept frame is still readable.
        assert_eq!(r.read(Seq(130), 100).len(), 50);
        assert!(r.get(Seq(129)).is_none());
        assert_eq!(r.get(Seq(130)).unwrap().capture_us, 1_030);
    }

    #[test]
    fn numbers_skipped_by_the_clock_leave_a_gap_readers_step_over() {
        let mut r = ring_with(5, 50);
        r.skip_to(Seq(200));
        r.skip_to(Seq(150));
        assert_eq!(r.head(), Seq(200), "the edge never moves back");
        assert_eq!(r.push(7, b"y"), Seq(200));
        r.push(8, b"z");
        assert_eq!(r.len(), 7);
        // A reader at the old edge (in the gap) gets the frames after the gap, nothing skipped.
        let read = r.read(Seq(105), 100);
        assert_eq!(
            read,
            RingRead {
                from: Seq(200),
                to: Seq(202),
                skipped: 0
            }
        );
        // A message spanning the gap holds the frames on both sides.
        let m = r.message(Seq(103), Seq(202)).unwrap();
        let seqs: Vec<u64> = wire::parse_message(&m).unwrap().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![103, 104, 200, 201]);
        assert!(r.get(Seq(150)).is_none());
        assert_eq!(r.get(Seq(201)).unwrap().capture_us, 8);
        assert!(r.message(Seq(105), Seq(200)).is_none(), "only the gap");
        // Eviction still counts frames, not numbers.
        let mut small = Ring::new(2, Seq(0));
        small.push(0, b"a");
        small.skip_to(Seq(10));
        small.push(1, b"b");
        small.push(2, b"c");
        assert_eq!((small.tail(), small.head()), (Seq(10), Seq(12)));
        assert_eq!(small.read(Seq(0), 10).skipped, 12);
    }

    #[test]
    fn message_outside_the_ring_is_none() {
        let r = ring_with(5, 50);
        assert!(r.message(Seq(50), Seq(60)).is_none());
        assert!(r.message(Seq(105), Seq(110)).is_none());
        assert!(r.message(Seq(103), Seq(103)).is_none());
        let m = r.message(Seq(103), Seq(999)).unwrap();
        assert_eq!(wire::parse_message(&m).unwrap().count(), 2);
    }
}
