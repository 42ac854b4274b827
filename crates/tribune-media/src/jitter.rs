//! Per-speaker jitter buffer: reorders frames by sequence number and plays them out one per
//! 20 ms tick, asking for concealment when a frame is missing.
//!
//! Sans-IO: the caller pushes frames as they arrive and calls [`JitterBuffer::pop`] on its own
//! clock. Playback starts once `target_frames` frames are queued, which is the latency traded
//! for robustness against network jitter.
//!
//! The buffer also keeps its depth: over every window of ticks it notes the fewest frames it
//! held in reserve. After a stall (the node paused, the speaker's network held packets and then
//! released them) that reserve is either far too deep (every frame now arrives seconds early) or
//! gone (frames play the tick they arrive, so the next hiccup is a gap). Too deep, it skips
//! frames, one every `drain_every` ticks, until the reserve is back at the target; too shallow,
//! it stretches (conceals one tick without consuming a frame) until the reserve is rebuilt. A
//! reserve that dips only as far as the network's real jitter is what the target is for and is
//! left alone.

use std::collections::BTreeMap;

use bytes::Bytes;

/// A frame this many slots ahead of where playback stands restarts the buffer from it (5 s).
pub const RESYNC_GAP: u64 = 250;

/// Tuning of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Frames to queue before (re)starting playback; once playing, `target_frames - 1` frames
    /// are held in reserve behind the one playing (the target depth).
    pub target_frames: usize,
    /// Most frames held; older ones are dropped beyond this.
    pub max_frames: usize,
    /// Most consecutive concealed frames before skipping ahead or re-buffering.
    pub max_conceal: usize,
    /// Frames above the target depth the reserve may keep for a whole window without being
    /// drained (ordinary jitter makes it breathe).
    pub drain_slack: usize,
    /// Ticks between two skipped frames while draining (2 = half the frames for as long as it
    /// takes: one second of extra delay is gone in two).
    pub drain_every: usize,
    /// Ticks over which the reserve's low point is measured before the depth is corrected
    /// (25 = 0.5 s).
    pub window: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            target_frames: 3,
            max_frames: 50,
            max_conceal: 5,
            drain_slack: 2,
            drain_every: 2,
            window: 25,
        }
    }
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued for playout.
    Accepted,
    /// Already queued; ignored.
    Duplicate,
    /// Its slot was already played or concealed; ignored.
    Late,
    /// Queued, but the buffer was full so the oldest frames were dropped.
    Overflow,
}

/// What to play for one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// A received frame.
    Frame {
        /// Its sequence number.
        seq: u64,
        /// Its capture time, microseconds.
        capture_us: u64,
        /// When it reached this buffer, microseconds (the caller's clock).
        arrived_us: u64,
        /// The Opus packet.
        payload: Bytes,
    },
    /// Frame `seq` is missing: synthesise it.
    Conceal {
        /// The missing sequence number.
        seq: u64,
    },
    /// Nothing to play (buffering or idle speaker).
    Idle,
}

/// Counters describing a buffer's history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames played out.
    pub played: u64,
    /// Concealed frames returned.
    pub concealed: u64,
    /// Frames refused because their slot had passed.
    pub late: u64,
    /// Frames refused because they were already queued.
    pub duplicates: u64,
    /// Queued frames dropped to stay within `max_frames`.
    pub overflow_dropped: u64,
    /// Times playback stopped for lack of frames and went back to buffering.
    pub underruns: u64,
    /// Frames skipped to drain extra delay (see [`JitterConfig::drain_slack`]).
    pub drained: u64,
    /// Ticks concealed without consuming a frame, to rebuild a reserve that a stall used up.
    pub stretched: u64,
    /// Times a frame came so far ahead that the buffer started over from it.
    pub resyncs: u64,
}

impl std::ops::AddAssign for JitterStats {
    fn add_assign(&mut self, o: JitterStats) {
        self.played += o.played;
        self.concealed += o.concealed;
        self.late += o.late;
        self.duplicates += o.duplicates;
        self.overflow_dropped += o.overflow_dropped;
        self.underruns += o.underruns;
        self.drained += o.drained;
        self.stretched += o.stretched;
        self.resyncs += o.resyncs;
    }
}

/// A queued frame: capture time, arrival time, packet.
type Held = (u64, u64, Bytes);

/// Reorders one speaker's frames and paces them out.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    frames: BTreeMap<u64, Held>,
    /// Next sequence number to play; also the watermark below which pushes are late. It is
    /// kept across underruns so stale frames cannot be replayed after re-buffering.
    next_seq: Option<u64>,
    playing: bool,
    conceal_run: usize,
    /// Ticks measured in the current depth window, and the fewest frames held in it.
    window_ticks: usize,
    window_low: usize,
    /// The low point of the last complete window (`None` until one completes).
    depth: Option<usize>,
    /// Frames still to skip (too deep) or ticks still to stretch (too shallow).
    to_drain: usize,
    to_stretch: usize,
    /// Ticks since the last skipped frame.
    since_drain: usize,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Creates an empty buffer; `target_frames` and `max_frames` are raised to at least 1.
    pub fn new(cfg: JitterConfig) -> Self {
        let max_frames = cfg.max_frames.max(1);
        let cfg = JitterConfig {
            max_frames,
            target_frames: cfg.target_frames.clamp(1, max_frames),
            max_conceal: cfg.max_conceal,
            drain_slack: cfg.drain_slack,
            drain_every: cfg.drain_every.max(1),
            window: cfg.window.max(1),
        };
        JitterBuffer {
            cfg,
            frames: BTreeMap::new(),
            next_seq: None,
            playing: false,
            conceal_run: 0,
            window_ticks: 0,
            window_low: usize::MAX,
            depth: None,
            to_drain: 0,
            to_stretch: 0,
            since_drain: 0,
            stats: JitterStats::default(),
        }
    }

    /// The effective configuration.
    pub fn config(&self) -> JitterConfig {
        self.cfg
    }

    /// Queues a received frame (arrived at its capture time, as far as the buffer knows).
    pub fn push(&mut self, seq: u64, capture_us: u64, payload: Bytes) -> PushOutcome {
        self.push_arrived(seq, capture_us, capture_us, payload)
    }

    /// Queues a received frame that reached the caller at `arrived_us`.
    pub fn push_arrived(
        &mut self,
        seq: u64,
        capture_us: u64,
        arrived_us: u64,
        payload: Bytes,
    ) -> PushOutcome {
        if self.next_seq.is_some_and(|next| seq < next) {
            self.stats.late += 1;
            return PushOutcome::Late;
        }
        if self.frames.contains_key(&seq) {
            self.stats.duplicates += 1;
            return PushOutcome::Duplicate;
        }
        self.resync_if_far_ahead(seq);
        self.frames.insert(seq, (capture_us, arrived_us, payload));
        let mut dropped = 0;
        while self.frames.len() > self.cfg.max_frames {
            self.frames.pop_first();
            dropped += 1;
        }
        if dropped == 0 {
            return PushOutcome::Accepted;
        }
        self.stats.overflow_dropped += dropped;
        // Skip the dropped slots rather than concealing each of them later.
        if let (Some(next), Some((&first, _))) = (self.next_seq, self.frames.first_key_value()) {
            self.next_seq = Some(next.max(first));
        }
        PushOutcome::Overflow
    }

    /// A frame more than [`RESYNC_GAP`] ahead (the sender restarted its numbering, came back
    /// from a long silence, or sends sparse numbers): starting over from it beats concealing
    /// up to the gap and then queueing, which would leave every later frame to age in the queue.
    fn resync_if_far_ahead(&mut self, seq: u64) {
        let base = self
            .next_seq
            .or_else(|| self.frames.first_key_value().map(|(&s, _)| s));
        let Some(base) = base else { return };
        if seq <= base.saturating_add(RESYNC_GAP) {
            return;
        }
        self.stats.resyncs += 1;
        self.stats.overflow_dropped += self.frames.len() as u64;
        self.frames.clear();
        self.conceal_run = 0;
        self.next_seq = Some(seq);
    }

    /// Takes what to play for this tick; call exactly once per 20 ms.
    pub fn pop(&mut self) -> Playout {
        if !self.playing {
            if self.frames.len() < self.cfg.target_frames {
                return Playout::Idle;
            }
            self.playing = true;
            self.conceal_run = 0;
            self.next_seq = self.frames.first_key_value().map(|(&seq, _)| seq);
            self.restart_window();
        }
        let Some(next) = self.next_seq else {
            // Sequence space exhausted (u64::MAX was played): start over from what arrives next.
            self.playing = false;
            return Playout::Idle;
        };
        if self.to_stretch > 0 && !self.frames.contains_key(&next) {
            // Nothing to hold back (the speaker paused): the next window judges afresh.
            self.to_stretch = 0;
        }
        if self.to_stretch > 0 {
            // Hold the frame for a tick: the reserve grows by one as the next one arrives.
            self.to_stretch -= 1;
            self.stats.stretched += 1;
            self.measure();
            return Playout::Conceal { seq: next };
        }
        let next = self.drain(next);
        let out = if let Some(held) = self.frames.remove(&next) {
            self.play(next, held)
        } else if self.conceal_run < self.cfg.max_conceal {
            self.conceal_run += 1;
            self.stats.concealed += 1;
            self.next_seq = next.checked_add(1);
            Playout::Conceal { seq: next }
        } else {
            // Concealed long enough: jump to the next frame we have, or wait for more.
            match self.frames.pop_first() {
                Some((seq, held)) => self.play(seq, held),
                None => {
                    self.playing = false;
                    self.conceal_run = 0;
                    self.stats.underruns += 1;
                    return Playout::Idle;
                }
            }
        };
        self.measure();
        out
    }

    /// The reserve this buffer aims to hold behind the frame playing.
    pub fn target_depth(&self) -> usize {
        self.cfg.target_frames - 1
    }

    /// The fewest frames held in reserve over the last complete window (`None` before one has
    /// completed since playback started).
    pub fn depth(&self) -> Option<usize> {
        self.depth
    }

    fn restart_window(&mut self) {
        self.window_ticks = 0;
        self.window_low = usize::MAX;
        self.depth = None;
        self.to_drain = 0;
        self.to_stretch = 0;
    }

    /// Notes the reserve after this tick; at the end of a window, sets how many frames to
    /// skip or ticks to stretch to bring the reserve back to the target. Each window's verdict
    /// replaces the last, so a correction stops as soon as the depth is right.
    fn measure(&mut self) {
        if self.to_drain > 0 || self.to_stretch > 0 {
            // A correction under way: measure the depth it leaves, not the one it is changing.
            self.window_ticks = 0;
            self.window_low = usize::MAX;
            return;
        }
        self.window_low = self.window_low.min(self.frames.len());
        self.window_ticks += 1;
        if self.window_ticks < self.cfg.window {
            return;
        }
        let low = self.window_low;
        self.depth = Some(low);
        self.window_ticks = 0;
        self.window_low = usize::MAX;
        let target = self.target_depth();
        self.to_drain = if low > target + self.cfg.drain_slack {
            low - target
        } else {
            0
        };
        self.to_stretch = target.saturating_sub(low);
    }

    /// Skips the frame at `next` while the reserve is too deep, one every `drain_every` ticks;
    /// returns the slot to play now.
    fn drain(&mut self, next: u64) -> u64 {
        self.since_drain = self.since_drain.saturating_add(1);
        if self.frames.len() <= self.target_depth() + 1 {
            // Already back at the target (the speaker paused, or the window overestimated).
            self.to_drain = 0;
        }
        if self.to_drain == 0
            || self.since_drain < self.cfg.drain_every
            || !self.frames.contains_key(&next)
        {
            return next;
        }
        self.since_drain = 0;
        self.to_drain -= 1;
        self.frames.remove(&next);
        self.stats.drained += 1;
        let after = next.saturating_add(1);
        self.next_seq = Some(after);
        after
    }

    fn play(&mut self, seq: u64, (capture_us, arrived_us, payload): Held) -> Playout {
        self.conceal_run = 0;
        self.stats.played += 1;
        self.next_seq = seq.checked_add(1);
        Playout::Frame {
            seq,
            capture_us,
            arrived_us,
            payload,
        }
    }

    /// Frames currently queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether playout is running (as opposed to buffering).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    /// Counters since creation.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Forgets all frames and the sequence watermark (e.g. when a speaker restarts its stream);
    /// counters are kept.
    pub fn reset(&mut self) {
        self.frames.clear();
        self.next_seq = None;
        self.playing = false;
        self.conceal_run = 0;
        self.restart_window();
    }
}

#[cfg(test)]
mod tests {
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
        // Steady jitter within the slack never drains.
        let mut calm = JitterBuffer::new(JitterConfig::default());
        for s in 0..5 {
            calm.push(s, s, Bytes::from_static(b"x"));
        }
        for s in 5..500 {
            calm.pop();
            calm.push(s, s, Bytes::from_static(b"x"));
        }
        assert_eq!(calm.stats().drained, 0);
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
}
