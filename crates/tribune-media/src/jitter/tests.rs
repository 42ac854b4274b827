//! The jitter buffer driven tick by tick: ordering, concealment, and keeping its depth after
//! stalls.

use super::*;

fn payload(seq: u64) -> Bytes {
    Bytes::from(seq.to_be_bytes().to_vec())
}

fn push(jb: &mut JitterBuffer, seq: u64) -> PushOutcome {
    jb.push(seq, seq.wrapping_mul(20_000), payload(seq))
}

/// Compact view of a playout: `Some(seq)` for frames, `Some(1000 + seq)` for concealment.
fn kind(p: &Playout) -> Option<u64> {
    match p {
        Playout::Frame {
            seq,
            capture_us,
            payload: data,
            ..
        } => {
            assert_eq!(*capture_us, seq.wrapping_mul(20_000));
            assert_eq!(data, &payload(*seq));
            Some(*seq)
        }
        Playout::Conceal { seq } => Some(1000 + seq),
        Playout::Idle => None,
    }
}

#[test]
fn buffers_until_target_then_plays_in_order() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    assert_eq!(jb.pop(), Playout::Idle);
    for seq in [3, 1] {
        assert_eq!(push(&mut jb, seq), PushOutcome::Accepted);
        assert_eq!(jb.pop(), Playout::Idle);
    }
    for seq in [2, 5, 4] {
        assert_eq!(push(&mut jb, seq), PushOutcome::Accepted);
    }
    let order: Vec<_> = (0..5).map(|_| kind(&jb.pop())).collect();
    assert_eq!(order, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
    assert_eq!(jb.stats().played, 5);
    assert!(jb.is_empty());
}

#[test]
fn a_jump_past_the_buffer_starts_over_instead_of_concealing_through_it() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for seq in 1..=3 {
        push(&mut jb, seq);
    }
    assert_eq!(kind(&jb.pop()), Some(1));
    // Sparse numbers, each far ahead of the last: every one plays at its tick, none waits.
    for seq in [1_000u64, 2_000, 3_000] {
        assert_eq!(push(&mut jb, seq), PushOutcome::Accepted);
        assert_eq!(kind(&jb.pop()), Some(seq));
    }
    assert_eq!(jb.stats().resyncs, 3);
    // What was queued before a jump (frames 2 and 3) is dropped, not played after it.
    assert_eq!(jb.stats().overflow_dropped, 2);
    // A jump within the buffer's reach is still a gap to conceal.
    push(&mut jb, 3_003);
    push(&mut jb, 3_004);
    assert_eq!(kind(&jb.pop()), Some(1_000 + 3_001));
    assert_eq!(jb.stats().resyncs, 3);
}

#[test]
fn conceals_a_gap() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for seq in [1, 2, 4, 5] {
        push(&mut jb, seq);
    }
    let order: Vec<_> = (0..5).map(|_| kind(&jb.pop())).collect();
    assert_eq!(order, [Some(1), Some(2), Some(1003), Some(4), Some(5)]);
    assert_eq!(jb.stats().concealed, 1);
    // The concealed slot is gone: its frame arriving now is late.
    assert_eq!(push(&mut jb, 3), PushOutcome::Late);
}

/// A speaker sending one frame per tick, played out one pop per tick, with ways to disturb
/// either side. Records the delay (ticks from its arrival) of every frame played.
struct Sim {
    jb: JitterBuffer,
    tick: u64,
    sent: u64,
    arrived: Vec<u64>,
    /// (tick, delay in ticks, seq) of every frame played.
    delays: Vec<(u64, u64, u64)>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            jb: JitterBuffer::new(JitterConfig::default()),
            tick: 0,
            sent: 0,
            arrived: Vec::new(),
            delays: Vec::new(),
        }
    }

    fn send(&mut self) {
        self.jb.push(self.sent, self.sent, Bytes::from_static(b"x"));
        self.arrived.push(self.tick);
        self.sent += 1;
    }

    fn pop(&mut self) {
        if let Playout::Frame { seq, .. } = self.jb.pop() {
            let delay = self.tick - self.arrived[seq as usize];
            self.delays.push((self.tick, delay, seq));
        }
    }

    /// Ticks in real time: the speaker's frame arrives, then the node plays one out.
    fn steady(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.send();
            self.pop();
            self.tick += 1;
        }
    }

    /// The delay of the frame played at the last tick.
    fn delay(&self) -> u64 {
        self.delays.last().map_or(u64::MAX, |d| d.1)
    }

    /// The first tick from which the delay stayed at `want` to the end.
    fn settled_at(&self, want: u64) -> u64 {
        let last_off = self.delays.iter().rev().find(|d| d.1 != want);
        last_off.map_or(0, |d| d.0 + 1)
    }
}

#[test]
fn steady_arrivals_hold_the_target_depth_without_corrections() {
    let mut sim = Sim::new();
    sim.steady(1_500);
    assert_eq!(sim.jb.depth(), Some(sim.jb.target_depth()));
    assert_eq!(sim.delay(), 2);
    let s = sim.jb.stats();
    assert_eq!((s.drained, s.stretched, s.concealed), (0, 0, 0));
    // Frames arriving in pairs every other tick (40 ms of jitter): the reserve grows to
    // absorb it once, then stays; no frame is concealed afterwards.
    let mut jittery = Sim::new();
    jittery.steady(100);
    for _ in 0..1_500 {
        if jittery.tick.is_multiple_of(2) {
            jittery.send();
            jittery.send();
        }
        jittery.pop();
        jittery.tick += 1;
    }
    let s = jittery.jb.stats();
    assert!(s.stretched <= 2, "{s:?}");
    assert_eq!((s.drained, s.concealed, s.underruns), (0, 0, 0), "{s:?}");
}

#[test]
fn a_reserve_used_up_by_a_stall_is_rebuilt_within_5_s() {
    let mut sim = Sim::new();
    sim.steady(500);
    let before = sim.delay();
    // After a stall the node's catch-up burst of ticks ran two ahead of the frames it had
    // read: the reserve is played out and from here every frame plays the tick it arrives,
    // with nothing left for the next hiccup (47 ms of glass-to-ear became 7 and stayed).
    sim.pop();
    sim.pop();
    let stall_end = sim.tick;
    sim.steady(500);
    assert_eq!(sim.delay(), before);
    let settled = sim.settled_at(before).saturating_sub(stall_end);
    assert!(
        settled <= 250,
        "back at {before} frames after {settled} ticks"
    );
    assert_eq!(sim.jb.depth(), Some(sim.jb.target_depth()));
    // Rebuilt by stretching two ticks, nothing concealed or dropped.
    let s = sim.jb.stats();
    assert_eq!((s.stretched, s.concealed, s.drained), (2, 0, 0), "{s:?}");
}

impl Sim {
    /// One tick in which the speaker's frame does not arrive; it comes with the next one.
    fn late_frame(&mut self) {
        self.pop();
        self.tick += 1;
        self.send();
        self.steady(1);
    }
}

#[test]
fn a_late_frame_the_reserve_covers_costs_no_delay_but_lasting_dips_rebuild_it() {
    // A frame 20 ms late every 3 s (a busy moment somewhere on the path): the reserve covers
    // it, so nothing is stretched, concealed or drained and the delay stays at the target.
    let mut sim = Sim::new();
    sim.steady(200);
    let before = sim.delay();
    for _ in 0..10 {
        sim.late_frame();
        sim.steady(148);
    }
    let s = sim.jb.stats();
    assert_eq!((s.stretched, s.concealed, s.drained), (0, 0, 0), "{s:?}");
    assert_eq!(sim.delay(), before);
    // A frame late every 200 ms dips the reserve in every window: after two windows it is
    // rebuilt by one frame (and then drained again only once the dips stop for 2 s).
    let mut dips = Sim::new();
    dips.steady(200);
    for _ in 0..50 {
        dips.late_frame();
        dips.steady(8);
    }
    let s = dips.jb.stats();
    assert_eq!((s.stretched, s.concealed, s.drained), (1, 0, 0), "{s:?}");
    assert_eq!(dips.delay(), before + 1);
}

#[test]
fn a_speaker_that_stops_sending_for_2_s_comes_back_at_the_target_depth() {
    let mut sim = Sim::new();
    sim.steady(500);
    let before = sim.delay();
    // The speaker's frames stop for 2 s and then go on with the next number: the reserve
    // is played, a few slots concealed, then the buffer re-buffers to its target.
    for _ in 0..100 {
        sim.pop();
        sim.tick += 1;
    }
    let stall_end = sim.tick;
    sim.steady(500);
    assert_eq!(sim.delay(), before);
    let settled = sim.settled_at(before).saturating_sub(stall_end);
    assert!(
        settled <= 250,
        "back at {before} frames after {settled} ticks"
    );
    assert_eq!(sim.jb.depth(), Some(sim.jb.target_depth()));
    assert_eq!(sim.jb.stats().underruns, 1);
}

#[test]
fn a_second_of_held_packets_drains_back_within_5_s() {
    let mut sim = Sim::new();
    sim.steady(500);
    let before = sim.delay();
    // The speaker's network holds its packets for 1 s, then releases them at once.
    for _ in 0..50 {
        sim.pop();
        sim.tick += 1;
    }
    for _ in 0..50 {
        sim.send();
    }
    let released = sim.tick;
    sim.steady(750);
    assert_eq!(sim.delay(), before);
    let settled = sim.settled_at(before) - released;
    assert!(
        settled <= 250,
        "back at {before} frames after {settled} ticks"
    );
    assert_eq!(sim.jb.depth(), Some(sim.jb.target_depth()));
    let s = sim.jb.stats();
    assert!(s.drained >= 40, "{s:?}");
    // Draining skips single frames, never two in a row.
    let played: Vec<u64> = sim
        .delays
        .iter()
        .filter(|d| d.0 >= released)
        .map(|d| d.2)
        .collect();
    assert!(
        played
            .windows(2)
            .all(|w| w[1] == w[0] + 1 || w[1] == w[0] + 2),
        "{played:?}"
    );
}

#[test]
fn a_burst_of_extra_delay_drains_away() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Playing steadily with 3 queued; then the speaker stalls and 20 frames arrive at once.
    let mut seq = 0u64;
    for _ in 0..3 {
        jb.push(seq, seq, Bytes::from_static(b"x"));
        seq += 1;
    }
    for _ in 0..20 {
        assert!(matches!(jb.pop(), Playout::Frame { .. }));
        jb.push(seq, seq, Bytes::from_static(b"x"));
        seq += 1;
    }
    for _ in 0..20 {
        jb.push(seq, seq, Bytes::from_static(b"x"));
        seq += 1;
    }
    assert_eq!(jb.len(), 23);
    // One frame in, one out each tick: within a window and 20 × 2 ticks the queue is back
    // at the target (2 held behind the one playing, 3 before each pop) and stays there.
    for _ in 0..150 {
        jb.pop();
        jb.push(seq, seq, Bytes::from_static(b"x"));
        seq += 1;
    }
    assert_eq!(jb.len(), 3);
    assert_eq!(jb.stats().drained, 20);
    // An excess within the slack that lasts (two frames more than the target, never needed)
    // is drained after `settle_windows` windows, one frame every other tick, then stays put.
    let mut calm = JitterBuffer::new(JitterConfig::default());
    for s in 0..5 {
        calm.push(s, s, Bytes::from_static(b"x"));
    }
    let cfg = calm.config();
    let mut drained_at = Vec::new();
    for s in 5..1_000 {
        let before = calm.stats().drained;
        calm.pop();
        if calm.stats().drained > before {
            drained_at.push(s - 5);
        }
        calm.push(s, s, Bytes::from_static(b"x"));
    }
    let first = (cfg.window * cfg.settle_windows) as u64;
    assert_eq!(drained_at, vec![first, first + 2], "window {cfg:?}");
    assert_eq!(calm.depth(), Some(calm.target_depth()));
    // Jitter that dips to the target in every window keeps its reserve: nothing drained.
    let mut breathing = JitterBuffer::new(JitterConfig::default());
    let mut seq = 0;
    for _ in 0..3 {
        breathing.push(seq, seq, Bytes::from_static(b"x"));
        seq += 1;
    }
    for tick in 0..1_000u64 {
        breathing.pop();
        // Two frames on the first tick of each window, none on its last one.
        let n = match tick % 25 {
            0 => 2,
            24 => 0,
            _ => 1,
        };
        for _ in 0..n {
            breathing.push(seq, seq, Bytes::from_static(b"x"));
            seq += 1;
        }
    }
    let s = breathing.stats();
    assert_eq!((s.drained, s.concealed), (0, 0), "{s:?}");
}

#[test]
fn counts_duplicates_and_late_frames() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for seq in 10..13 {
        push(&mut jb, seq);
    }
    assert_eq!(push(&mut jb, 11), PushOutcome::Duplicate);
    assert_eq!(kind(&jb.pop()), Some(10));
    assert_eq!(push(&mut jb, 10), PushOutcome::Late);
    assert_eq!(push(&mut jb, 3), PushOutcome::Late);
    let s = jb.stats();
    assert_eq!((s.duplicates, s.late, s.played), (1, 2, 1));
}

#[test]
fn stays_bounded_under_overflow() {
    let cfg = JitterConfig::default();
    let mut jb = JitterBuffer::new(cfg);
    let mut overflows = 0;
    for seq in 0..1000 {
        if push(&mut jb, seq) == PushOutcome::Overflow {
            overflows += 1;
        }
        assert!(jb.len() <= cfg.max_frames);
    }
    assert_eq!(jb.len(), cfg.max_frames);
    assert_eq!(overflows, 1000 - cfg.max_frames);
    assert_eq!(jb.stats().overflow_dropped, (1000 - cfg.max_frames) as u64);
    // Playback resumes at the oldest surviving frame without concealing dropped ones.
    assert_eq!(kind(&jb.pop()), Some(950));
    assert_eq!(push(&mut jb, 1000), PushOutcome::Accepted);
    // Overflow while playing also skips ahead instead of concealing the dropped range.
    let mut jb = JitterBuffer::new(JitterConfig {
        target_frames: 1,
        max_frames: 3,
        max_conceal: 5,
        ..JitterConfig::default()
    });
    push(&mut jb, 0);
    assert_eq!(kind(&jb.pop()), Some(0));
    for seq in 1..=5 {
        push(&mut jb, seq);
    }
    assert_eq!(kind(&jb.pop()), Some(3));
}

#[test]
fn underrun_conceals_then_rebuffers() {
    let cfg = JitterConfig::default();
    let mut jb = JitterBuffer::new(cfg);
    for seq in 0..3 {
        push(&mut jb, seq);
    }
    for seq in 0..3 {
        assert_eq!(kind(&jb.pop()), Some(seq));
    }
    for seq in 3..3 + cfg.max_conceal as u64 {
        assert_eq!(jb.pop(), Playout::Conceal { seq });
    }
    assert_eq!(jb.pop(), Playout::Idle);
    assert!(!jb.is_playing());
    assert_eq!(jb.stats().underruns, 1);
    // Re-buffering needs the target again; the concealed slots stay late.
    assert_eq!(push(&mut jb, 4), PushOutcome::Late);
    push(&mut jb, 20);
    push(&mut jb, 21);
    assert_eq!(jb.pop(), Playout::Idle);
    push(&mut jb, 22);
    assert_eq!(kind(&jb.pop()), Some(20));
}

#[test]
fn long_gap_skips_ahead_after_max_conceal() {
    let cfg = JitterConfig::default();
    let mut jb = JitterBuffer::new(cfg);
    for seq in [0, 1, 2, 100] {
        push(&mut jb, seq);
    }
    for seq in 0..3 {
        assert_eq!(kind(&jb.pop()), Some(seq));
    }
    for seq in 3..3 + cfg.max_conceal as u64 {
        assert_eq!(jb.pop(), Playout::Conceal { seq });
    }
    assert_eq!(kind(&jb.pop()), Some(100));
}

#[test]
fn reset_forgets_frames_and_watermark() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    for seq in 50..53 {
        push(&mut jb, seq);
    }
    assert_eq!(kind(&jb.pop()), Some(50));
    jb.reset();
    assert!(jb.is_empty());
    assert_eq!(push(&mut jb, 0), PushOutcome::Accepted);
    assert_eq!(jb.stats().played, 1);
}

#[test]
fn degenerate_config_is_usable() {
    let mut jb = JitterBuffer::new(JitterConfig {
        target_frames: 0,
        max_frames: 0,
        max_conceal: 0,
        drain_slack: 0,
        drain_every: 0,
        window: 0,
        settle_windows: 0,
        dip_windows: 0,
        target_wait_us: 0,
    });
    assert_eq!(jb.config().max_frames, 1);
    assert_eq!(jb.pop(), Playout::Idle);
    push(&mut jb, u64::MAX);
    assert_eq!(kind(&jb.pop()).map(|s| s == u64::MAX), Some(true));
    // After u64::MAX there is no next slot; the buffer must not panic.
    assert_eq!(jb.pop(), Playout::Idle);
    assert_eq!(push(&mut jb, 7), PushOutcome::Accepted);
    assert_eq!(kind(&jb.pop()), Some(7));
}

/// `late_us` that means the frames never arrive.
const LOST: u64 = u64::MAX;

/// Frames that arrive `offset_us` after their slot's tick (plus `late_us` for the seqs in
/// `late`), played with their arrival times; returns the buffer and every played frame's wait.
fn timed(offset_us: u64, ticks: u64, late: &[u64], late_us: u64) -> (JitterBuffer, Vec<u64>) {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let arrival = |seq: u64| {
        let late = late.contains(&seq) && late_us != LOST;
        seq * 20_000 + offset_us + if late { late_us } else { 0 }
    };
    let mut waits = Vec::new();
    let mut next = 0u64;
    for tick in 1..=ticks {
        let now = tick * 20_000;
        loop {
            while late_us == LOST && late.contains(&next) {
                next += 1;
            }
            if arrival(next) > now {
                break;
            }
            jb.push_arrived(next, arrival(next), arrival(next), Bytes::from_static(b"x"));
            next += 1;
        }
        if let Playout::Frame { arrived_us, .. } = jb.pop_at(now) {
            waits.push(now - arrived_us);
        }
    }
    (jb, waits)
}

#[test]
fn a_reserve_kept_in_time_does_not_depend_on_the_tick_phase() {
    // Counted in frames, a frame arriving 2 ms after a tick waits 18 ms more than one arriving
    // 15 ms after it (58 against 45 ms at two frames). Kept in time, each settles at the
    // fewest frames that give at least the target wait (30 ms): 38 and 45 ms.
    for (offset, want, frames) in [(2_000, 38_000, 1), (15_000, 45_000, 2), (9_000, 31_000, 1)] {
        let (jb, waits) = timed(offset, 500, &[], 0);
        let settled = &waits[waits.len() - 100..];
        assert!(
            settled.iter().all(|&w| w == want),
            "offset {offset}: {settled:?}"
        );
        assert_eq!((jb.depth(), jb.target_depth()), (Some(frames), frames));
        assert_eq!(jb.stats().concealed, 0, "offset {offset}");
    }
    // A frame 15 ms late every 3 s still plays (the reserve is there for it): nothing is
    // stretched, the wait stays where it was.
    let late: Vec<u64> = (1..10).map(|i| 100 + i * 150).collect();
    let (jb, waits) = timed(2_000, 1_500, &late, 15_000);
    let s = jb.stats();
    assert_eq!((s.stretched, s.concealed), (0, 0), "{s:?}");
    assert_eq!(waits.last(), Some(&38_000));
    // Packets lost on the way (1 in 100) cost a concealed tick each, never more delay.
    let lost: Vec<u64> = (1..15).map(|i| 50 + i * 100 + i % 7).collect();
    let (jb, waits) = timed(2_000, 1_500, &lost, LOST);
    let s = jb.stats();
    assert_eq!((s.stretched, s.concealed), (0, lost.len() as u64), "{s:?}");
    assert!(waits[100..].iter().all(|&w| w == 38_000), "{waits:?}");
    // Frames that come too late for their tick use the reserve up: it is rebuilt at once.
    let (jb, waits) = timed(2_000, 600, &[300], 45_000);
    assert!(jb.stats().stretched >= 1, "{:?}", jb.stats());
    assert!(waits[waits.len() - 50..]
        .iter()
        .all(|&w| (30_000..50_000).contains(&w)));
}

#[test]
fn held_packets_drain_back_whatever_the_tick_phase() {
    // A speaker's network holds 1 s of packets, then releases them at once: within 5 s the
    // wait is back where it was, for every phase between the speaker's packets and the ticks.
    for offset in (0..20_000).step_by(500) {
        let (hold_from, hold_len) = (500u64, 50u64);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let arrival = |seq: u64| {
            let seq_at = if (hold_from..hold_from + hold_len).contains(&seq) {
                hold_from + hold_len
            } else {
                seq
            };
            seq_at * 20_000 + offset
        };
        let mut waits = Vec::new();
        let mut next = 0u64;
        for tick in 1..=1_200u64 {
            let now = tick * 20_000;
            while arrival(next) <= now {
                jb.push_arrived(next, arrival(next), arrival(next), Bytes::from_static(b"x"));
                next += 1;
            }
            let w = match jb.pop_at(now) {
                Playout::Frame { arrived_us, .. } => Some(now - arrived_us),
                _ => None,
            };
            waits.push((tick, w));
        }
        let before = waits[450].1;
        // Released at tick hold_from + hold_len; 5 s = 250 ticks later it is back.
        let back = (hold_from + hold_len + 250) as usize;
        let after: Vec<_> = waits[back..back + 100].iter().map(|w| w.1).collect();
        assert!(
            after.iter().all(|&w| w == before),
            "offset {offset} µs: before {before:?}, 5 s after the release {after:?}"
        );
    }
}
