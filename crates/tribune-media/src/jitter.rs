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
//! reserve used up entirely is rebuilt at once; one that dipped but held (a frame came late and
//! the reserve covered it) is what the reserve is for, and only a dip that lasts `dip_windows`
//! windows in a row rebuilds it (the arrivals moved for good). One that stays a frame or two above it for `settle_windows` windows in a row is
//! brought down too, so the delay a stage settles at does not depend on its history (a burst at
//! start, one busy moment) but on the jitter it sees now.
//!
//! When the caller says when frames arrived and when it plays ([`JitterBuffer::push_arrived`],
//! [`JitterBuffer::pop_at`]), the reserve is kept in time rather than in frames: the least time
//! a frame waited in the buffer over a window is held between `target_wait_us` and one frame
//! more. A reserve counted in frames also holds however long frames wait for the tick after
//! they arrive (0–20 ms, the phase between the speaker's clock and the mixer's), so its delay
//! depended on that phase; kept in time, a frame that arrives just after a tick needs one frame
//! of reserve where one arriving just before it needs two.

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
    /// Frames above the target depth the reserve may keep for a window without being drained
    /// at once (a moment's jitter makes it breathe); a smaller excess that lasts
    /// `settle_windows` windows is drained all the same.
    pub drain_slack: usize,
    /// Ticks between two skipped frames while draining (2 = half the frames for as long as it
    /// takes: one second of extra delay is gone in two).
    pub drain_every: usize,
    /// Ticks over which the reserve's low point is measured before the depth is corrected
    /// (25 = 0.5 s).
    pub window: usize,
    /// Windows in a row whose low point stayed above the target (within the slack) before the
    /// excess is drained as well (4 = 2 s without the reserve ever being needed).
    pub settle_windows: usize,
    /// Windows in a row whose low point was under the target but above zero before the
    /// reserve is rebuilt (2 = 1 s); a reserve used up entirely is rebuilt after one.
    pub dip_windows: usize,
    /// The least time a frame should wait in the buffer, in microseconds, when arrival and play
    /// times are known (0: count the reserve in frames only). The time a late frame can be
    /// late by and still play.
    pub target_wait_us: u64,
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
            settle_windows: 4,
            dip_windows: 2,
            target_wait_us: 30_000,
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

/// A frame's length in microseconds: one tick.
const FRAME_US: u64 = 20_000;

/// A queued frame: capture time, arrival time (if the caller gave one), packet.
type Held = (u64, Option<u64>, Bytes);

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
    /// The least wait (play time − arrival) of a frame played in the current window, if known.
    window_wait: Option<u64>,
    /// Whether a frame was missing at its tick in the current window.
    window_missed: bool,
    /// The reserve, in frames, the last complete window called for.
    aim: usize,
    /// The low point of the last complete window (`None` until one completes).
    depth: Option<usize>,
    /// Frames still to skip (too deep) or ticks still to stretch (too shallow).
    to_drain: usize,
    to_stretch: usize,
    /// Complete windows in a row whose low point stayed above the target.
    over_windows: usize,
    /// Complete windows in a row whose low point dipped under the target (not to zero).
    under_windows: usize,
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
            settle_windows: cfg.settle_windows.max(1),
            dip_windows: cfg.dip_windows.max(1),
            target_wait_us: cfg.target_wait_us,
        };
        JitterBuffer {
            cfg,
            frames: BTreeMap::new(),
            next_seq: None,
            playing: false,
            conceal_run: 0,
            window_ticks: 0,
            window_low: usize::MAX,
            window_wait: None,
            window_missed: false,
            aim: cfg.target_frames - 1,
            depth: None,
            to_drain: 0,
            to_stretch: 0,
            over_windows: 0,
            under_windows: 0,
            since_drain: 0,
            stats: JitterStats::default(),
        }
    }

    /// The effective configuration.
    pub fn config(&self) -> JitterConfig {
        self.cfg
    }

    /// Queues a received frame (its arrival time unknown: the reserve is counted in frames).
    pub fn push(&mut self, seq: u64, capture_us: u64, payload: Bytes) -> PushOutcome {
        self.queue(seq, capture_us, None, payload)
    }

    /// Queues a received frame that reached the caller at `arrived_us` (the clock
    /// [`JitterBuffer::pop_at`] is given).
    pub fn push_arrived(
        &mut self,
        seq: u64,
        capture_us: u64,
        arrived_us: u64,
        payload: Bytes,
    ) -> PushOutcome {
        self.queue(seq, capture_us, Some(arrived_us), payload)
    }

    fn queue(
        &mut self,
        seq: u64,
        capture_us: u64,
        arrived_us: Option<u64>,
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
        // A new stream: corrections measured on the old one do not apply to it.
        self.restart_window();
    }

    /// Takes what to play for this tick; call exactly once per 20 ms.
    pub fn pop(&mut self) -> Playout {
        self.take(None)
    }

    /// Like [`JitterBuffer::pop`], at `now_us` on the clock arrivals were given in: frames that
    /// carry an arrival time then keep the reserve in time (see `target_wait_us`).
    pub fn pop_at(&mut self, now_us: u64) -> Playout {
        self.take(Some(now_us))
    }

    fn take(&mut self, now_us: Option<u64>) -> Playout {
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
            self.measure(None, false);
            return Playout::Conceal { seq: next };
        }
        let next = self.drain(next);
        let mut wait = None;
        let mut missed = false;
        let out = if let Some(held) = self.frames.remove(&next) {
            wait = now_us.zip(held.1).map(|(now, at)| now.saturating_sub(at));
            self.play(next, held)
        } else if self.conceal_run < self.cfg.max_conceal {
            // Only a reserve that ran dry calls for more delay; a packet lost on the way while
            // later ones wait costs a concealed tick and nothing more.
            missed = self.frames.is_empty();
            self.conceal_run += 1;
            self.stats.concealed += 1;
            self.next_seq = next.checked_add(1);
            Playout::Conceal { seq: next }
        } else {
            // Concealed long enough: jump to the next frame we have, or wait for more.
            missed = self.frames.is_empty();
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
        self.measure(wait, missed);
        out
    }

    /// The reserve, in frames, this buffer aims to hold behind the frame playing: the
    /// configured one, or where the reserve is kept in time, the frames that time takes at the
    /// current phase (as of the last complete window).
    pub fn target_depth(&self) -> usize {
        self.aim
    }

    /// The fewest frames held in reserve over the last complete window (`None` before one has
    /// completed since playback started).
    pub fn depth(&self) -> Option<usize> {
        self.depth
    }

    fn restart_window(&mut self) {
        self.window_ticks = 0;
        self.window_low = usize::MAX;
        self.window_wait = None;
        self.window_missed = false;
        self.depth = None;
        self.to_drain = 0;
        self.to_stretch = 0;
        self.over_windows = 0;
        self.under_windows = 0;
    }

    /// Notes the reserve after this tick; at the end of a window, sets how many frames to
    /// skip or ticks to stretch to bring the reserve back to the target. Each window's verdict
    /// replaces the last, so a correction stops as soon as the depth is right.
    fn measure(&mut self, wait: Option<u64>, missed: bool) {
        if self.to_drain > 0 || self.to_stretch > 0 {
            // A correction under way: measure the depth it leaves, not the one it is changing.
            self.window_ticks = 0;
            self.window_low = usize::MAX;
            self.window_wait = None;
            self.window_missed = false;
            return;
        }
        self.window_low = self.window_low.min(self.frames.len());
        if let Some(w) = wait {
            self.window_wait = Some(self.window_wait.map_or(w, |o| o.min(w)));
        }
        self.window_missed |= missed;
        self.window_ticks += 1;
        if self.window_ticks < self.cfg.window {
            return;
        }
        let (low, wait, missed) = (self.window_low, self.window_wait, self.window_missed);
        self.depth = Some(low);
        self.window_ticks = 0;
        self.window_low = usize::MAX;
        self.window_wait = None;
        self.window_missed = false;
        // Frames too many or too few, and whether the reserve ran out (a frame was not there
        // at its tick).
        let (excess, short, used_up) = match wait.filter(|_| self.cfg.target_wait_us > 0) {
            Some(w) => {
                let r = self.cfg.target_wait_us;
                let excess = (w.saturating_sub(r) / FRAME_US) as usize;
                let short = r.saturating_sub(w).div_ceil(FRAME_US) as usize;
                // A frame that missed its tick came later than any wait covered: one more.
                let short = if missed { short.max(1) } else { short };
                let excess = if short > 0 { 0 } else { excess.min(low) };
                (excess, short, missed)
            }
            None => {
                let target = self.cfg.target_frames - 1;
                (
                    low.saturating_sub(target),
                    target.saturating_sub(low),
                    low == 0,
                )
            }
        };
        self.aim = low + short - excess;
        self.over_windows = if excess > 0 { self.over_windows + 1 } else { 0 };
        self.to_drain =
            if excess > self.cfg.drain_slack || self.over_windows >= self.cfg.settle_windows {
                self.over_windows = 0;
                excess
            } else {
                0
            };
        self.under_windows = if short > 0 { self.under_windows + 1 } else { 0 };
        self.to_stretch = if short > 0 && (used_up || self.under_windows >= self.cfg.dip_windows) {
            self.under_windows = 0;
            short
        } else {
            0
        };
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
        let arrived_us = arrived_us.unwrap_or(capture_us);
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
mod tests;
