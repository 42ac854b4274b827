//! The room's task: the only owner of its mixer.
//!
//! Sequence numbers follow the room's clock: frame `n` is the one due `n × 20 ms` after the
//! room started. While someone speaks, or anyone listens (a listener connection, an LL-HLS
//! client lately), the task ticks every 20 ms and produces frame `n`: the mix of its speakers,
//! or, with nobody on stage, one silent Opus packet encoded once for every room (no encoding,
//! and nothing recorded). Otherwise the room is quiet: the task sleeps until something happens
//! or a second passes (reactions, the room event, the idle deadline), and when it produces
//! again its numbers have moved on with the clock; the ring, LL-HLS and the recording show the
//! gap (a discontinuity), never a shifted timeline.
//!
//! A room with no host or speaker connected for `idle_end` ends by itself (a scheduled room
//! counts from its start time).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tribune_core::{unix_micros, ParticipantId, RoomState};
use tribune_media::{JitterStats, Mixer, MixerConfig, ProgramFrame};

use super::program::Program;
use super::{Ingress, LiveRoom, SpeakerDepth, SpeakerState, Stage, StageTick};
use crate::metrics::Metrics;
use crate::room::batching::Batching;

/// One tick: a 20 ms frame.
const TICK: Duration = Duration::from_millis(tribune_media::FRAME_MS as u64);
/// Ticks per second: reactions windows and the periodic room event.
const TICKS_PER_S: u64 = 1000 / tribune_media::FRAME_MS as u64;
/// Window over which a speaker counts as speaking (10 ticks = 200 ms, so the flag does not
/// flicker between syllables).
const SPEAKING_WINDOW_TICKS: u64 = 10;
/// RMS level (0..1) above which a speaker counts as speaking.
const SPEAKING_RMS: f32 = 0.01;

/// One 20 ms Opus packet of digital silence (what a room with nobody on stage sends its
/// audience), encoded once per process.
fn silence() -> Option<Bytes> {
    static SILENCE: OnceLock<Option<Bytes>> = OnceLock::new();
    SILENCE
        .get_or_init(|| {
            let mut enc = tribune_media::Encoder::new(32_000).ok()?;
            let zeros = [0i16; tribune_media::FRAME_SAMPLES];
            // The encoder's first frames carry start-up state; a later one is the steady packet.
            let mut packet = Vec::new();
            for _ in 0..3 {
                packet = enc.encode_vec(&zeros).ok()?;
            }
            Some(Bytes::from(packet))
        })
        .clone()
}

/// How long after the epoch tick `n` is due.
fn tick_offset(n: u64) -> Duration {
    Duration::from_micros(n.saturating_mul(TICK.as_micros() as u64))
}

/// Runs the room until it ends.
pub(super) async fn run(
    room: Arc<LiveRoom>,
    rx: mpsc::Receiver<Ingress>,
    metrics: Arc<Metrics>,
    batching: Batching,
    mixer_cfg: MixerConfig,
    idle_end: Duration,
) {
    let epoch = Instant::now();
    // A room back after a restart goes on from its first free number, so nothing a listener
    // or a cache holds is ever reused for other audio.
    let first_seq = room.head().0;
    let mut task = MixTask {
        first_seq,
        program: Program::new(room.clone(), metrics.clone(), batching),
        idle_deadline: Some(first_idle_deadline(&room, epoch, idle_end)),
        room,
        rx,
        metrics,
        mixer_cfg,
        idle_end,
        epoch,
        mixer: None,
        stage: Stage::default(),
        stage_changed: false,
        last_second: 0,
        hearing: HashMap::new(),
        jitter_base: JitterStats::default(),
    };
    task.run().await;
}

/// When a room that never had a speaker ends for idleness: `idle_end` after it started, or
/// after its scheduled start.
fn first_idle_deadline(room: &LiveRoom, epoch: Instant, idle_end: Duration) -> Instant {
    let now_s = unix_micros() / 1_000_000;
    let until_start = room
        .info()
        .scheduled_for
        .map_or(0, |at| at.saturating_sub(now_s));
    epoch + Duration::from_secs(until_start) + idle_end
}

struct MixTask {
    room: Arc<LiveRoom>,
    rx: mpsc::Receiver<Ingress>,
    metrics: Arc<Metrics>,
    mixer_cfg: MixerConfig,
    idle_end: Duration,
    /// When tick `first_seq` was due.
    epoch: Instant,
    /// The number of the tick due at `epoch`.
    first_seq: u64,
    /// The mixer, while anyone holds a seat (its decoders and encoder cost memory).
    mixer: Option<Mixer>,
    /// The audience's side: ring, LL-HLS, fan-out.
    program: Program,
    stage: Stage,
    stage_changed: bool,
    /// The last second (ticks / 50) whose housekeeping ran.
    last_second: u64,
    /// When the room ends if nobody takes a seat (`None` while someone holds one).
    idle_deadline: Option<Instant>,
    /// Participants playing their mix-minus, with how many connections each.
    hearing: HashMap<ParticipantId, usize>,
    /// Jitter figures of mixers this room no longer has (everyone left the stage).
    jitter_base: JitterStats,
}

/// What handling a message asks of the loop.
enum Step {
    Go,
    Stop,
}

impl MixTask {
    /// The tick due now by the clock.
    fn clock_tick(&self) -> u64 {
        self.first_seq + (self.epoch.elapsed().as_micros() / TICK.as_micros()) as u64
    }

    /// When tick `n` is due.
    fn due_at(&self, n: u64) -> Instant {
        self.epoch + tick_offset(n.saturating_sub(self.first_seq))
    }

    async fn run(&mut self) {
        let mut ticking: Option<Interval> = None;
        // The number of the next tick to produce while ticking.
        let mut next = 0u64;
        loop {
            let now_tick = match ticking.as_mut() {
                Some(interval) => {
                    interval.tick().await;
                    next += 1;
                    next - 1
                }
                None => {
                    if let Step::Stop = self.wait_quietly().await {
                        return self.finish("ended");
                    }
                    self.clock_tick()
                }
            };
            if let Step::Stop = self.drain() {
                return self.finish("ended");
            }
            self.housekeeping(now_tick);
            if self.idle_deadline.is_some_and(|d| Instant::now() >= d) {
                let now_s = unix_micros() / 1_000_000;
                if self.room.info.lock().end(now_s) {
                    self.room.changed();
                    self.metrics.rooms_idle_ended.inc();
                }
                return self.finish("ended: nobody on stage");
            }
            let live = self.room.info.lock().state == RoomState::Live;
            let producing = live && (self.mixer.is_some() || self.room.has_audience());
            match (&ticking, producing) {
                (None, true) => {
                    // Start at the clock: numbers skipped while quiet stay skipped.
                    next = self.clock_tick();
                    let mut interval = tokio::time::interval_at(self.due_at(next), TICK);
                    // A late task catches up with a burst of ticks so the timeline keeps pace.
                    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
                    ticking = Some(interval);
                    continue;
                }
                (Some(_), false) => {
                    // Going quiet: every group gets what it has not been sent yet, and the
                    // segment being cut is completed (and recorded, if anyone spoke in it).
                    ticking = None;
                    self.program.pause();
                }
                _ => {}
            }
            if !producing {
                // No batches to carry a new event: it goes out on its own.
                if std::mem::take(&mut self.stage_changed)
                    && self.room.publish_snapshot(&self.stage)
                {
                    self.program.announce();
                }
                continue;
            }
            self.produce(now_tick);
        }
    }

    /// While quiet: waits for a message, a wake-up, or the next second. `Stop` when the room
    /// ends.
    async fn wait_quietly(&mut self) -> Step {
        let next_second = self.due_at((self.clock_tick() / TICKS_PER_S + 1) * TICKS_PER_S);
        tokio::select! {
            msg = self.rx.recv() => match msg {
                Some(m) => self.handle(m),
                None => Step::Stop,
            },
            _ = self.room.wake.notified() => Step::Go,
            _ = tokio::time::sleep_until(next_second) => Step::Go,
        }
    }

    /// Takes everything sent since the last tick.
    fn drain(&mut self) -> Step {
        loop {
            match self.rx.try_recv() {
                Ok(m) => {
                    if let Step::Stop = self.handle(m) {
                        return Step::Stop;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => return Step::Go,
                Err(mpsc::error::TryRecvError::Disconnected) => return Step::Stop,
            }
        }
    }

    fn handle(&mut self, msg: Ingress) -> Step {
        match msg {
            Ingress::Frame {
                slot,
                seq,
                capture_us,
                arrived_us,
                payload,
            } => {
                if let Some(m) = self.mixer.as_mut() {
                    // An unknown slot (a frame racing its speaker's leave) is dropped.
                    let _ = m.push_arrived(slot, seq, capture_us, arrived_us, payload);
                }
            }
            Ingress::Join(slot) => self.join(slot),
            Ingress::Leave(slot) => {
                if let Some(m) = self.mixer.as_mut() {
                    m.remove_speaker(slot);
                    if m.speaker_count() == 0 {
                        self.jitter_base += m.jitter_totals();
                        self.mixer = None;
                        self.idle_deadline = Some(Instant::now() + self.idle_end);
                    }
                }
                self.stage.speakers.remove(&slot);
                self.stage_changed = true;
                self.apply_hearing();
            }
            Ingress::Hear(participant, on) => {
                let n = self.hearing.entry(participant).or_default();
                if on {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.hearing.remove(&participant);
                    }
                }
                self.apply_hearing();
            }
            Ingress::StageChanged => {
                self.room.stage_change_taken();
                self.stage_changed = true;
                if let Some(m) = self.mixer.as_mut() {
                    self.room.apply_mutes(m);
                }
            }
            Ingress::End => return Step::Stop,
        }
        Step::Go
    }

    fn join(&mut self, slot: u64) {
        if self.mixer.is_none() {
            match Mixer::new(self.mixer_cfg) {
                Ok(m) => self.mixer = Some(m),
                Err(e) => {
                    tracing::error!(room = %self.room.id, "cannot create mixer: {e}");
                    return;
                }
            }
        }
        let Some(m) = self.mixer.as_mut() else { return };
        if let Err(e) = m.add_speaker(slot) {
            tracing::warn!(room = %self.room.id, "speaker slot refused: {e}");
        }
        m.set_muted(slot, self.room.slot_muted(slot));
        if self.room.go_live() {
            self.metrics.rooms_live.inc();
        }
        self.idle_deadline = None;
        self.stage.speakers.insert(slot, SpeakerState::default());
        self.stage_changed = true;
        self.apply_hearing();
    }

    /// Gives the mixer one feed per hearing participant, taking out their own seats (few
    /// participants and seats: redone whole on every change).
    fn apply_hearing(&mut self) {
        let Some(m) = self.mixer.as_mut() else { return };
        let stale: Vec<u64> = m
            .receiver_ids()
            .filter(|id| !self.hearing.contains_key(&ParticipantId(*id)))
            .collect();
        for id in stale {
            m.remove_receiver(id);
        }
        for &p in self.hearing.keys() {
            m.set_receiver(p.0, &self.room.seats.slots_of(p));
        }
    }

    /// Publishes the room's jitter figures (once a second).
    fn publish_jitter_figures(&self) {
        let mut total = self.jitter_base;
        if let Some(m) = self.mixer.as_ref() {
            total += m.jitter_totals();
        }
        self.room
            .concealed
            .store(total.concealed, Ordering::Relaxed);
        self.room.late.store(total.late, Ordering::Relaxed);
        let mut depths = self.room.depths.lock();
        depths.clear();
        if let Some(m) = self.mixer.as_ref() {
            for &slot in self.stage.speakers.keys() {
                if let Some((depth, target)) = m.jitter_depth(slot) {
                    depths.push(SpeakerDepth {
                        slot,
                        depth,
                        target,
                    });
                }
            }
        }
    }

    /// What changes once a second whether or not the room produces audio: the reaction window,
    /// the room event's counts, the number reservation and pending saves.
    fn housekeeping(&mut self, now_tick: u64) {
        let second = now_tick / TICKS_PER_S;
        if second != self.last_second {
            self.last_second = second;
            // A change whose command did not fit the queue is applied here at the latest.
            if let Some(m) = self.mixer.as_mut() {
                self.room.apply_mutes(m);
            }
            self.room.reactions.lock().roll();
            if second.is_multiple_of(60) {
                self.room.hands.lock().sweep();
            }
            // Also picks up the lazily published changes (requests to speak) and the counts.
            self.stage_changed = true;
            self.publish_jitter_figures();
            let next_seq = self.clock_tick().max(self.room.head().0);
            self.room
                .reserve_numbers(next_seq, self.room.hls.next_msn());
            // Changes nobody waits for (a self-mute, going live on schedule, a renewed
            // reservation) reach the store.
            self.room.save_soon();
        }
    }

    /// Produces and publishes frame `n`.
    fn produce(&mut self, n: u64) {
        let started = std::time::Instant::now();
        let now_us = unix_micros();
        let frame = match self.mixer.as_mut() {
            Some(m) => match m.tick(now_us) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(room = %self.room.id, "mixer tick failed: {e}");
                    return;
                }
            },
            None => match silence() {
                Some(payload) => ProgramFrame {
                    payload,
                    capture_us: now_us,
                    levels: Vec::new(),
                    minus: Vec::new(),
                },
                None => return,
            },
        };
        let on_air = self.mixer.is_some();
        if on_air {
            self.metrics.mixer_ticks.inc();
            self.metrics
                .mixer_busy_us
                .add(started.elapsed().as_micros() as u64);
        }
        self.metrics.program_frames.inc();
        // The stage first: its participants are in a conversation, the audience is not.
        let frame = self.publish_stage(n, frame);
        self.program
            .push(n, frame.capture_us, &frame.payload, on_air);
        for (slot, level) in &frame.levels {
            if let Some(s) = self.stage.speakers.get_mut(slot) {
                s.peak = s.peak.max(*level);
            }
        }
        if n.is_multiple_of(SPEAKING_WINDOW_TICKS) {
            {
                let mut levels = self.room.levels.lock();
                levels.clear();
                levels.extend(self.stage.speakers.iter().map(|(slot, s)| (*slot, s.peak)));
            }
            for s in self.stage.speakers.values_mut() {
                let speaking = s.peak > SPEAKING_RMS;
                self.stage_changed |= speaking != s.speaking;
                s.speaking = speaking;
                s.peak = 0.0;
            }
        }
        if std::mem::take(&mut self.stage_changed) {
            self.room.publish_snapshot(&self.stage);
        }
    }

    /// Hands the tick to the connections playing the stage (if any); returns the program part.
    fn publish_stage(&mut self, n: u64, mut frame: ProgramFrame) -> ProgramFrame {
        if !self.room.has_stage_ears() {
            return frame;
        }
        let own = frame.minus.iter().filter(|f| f.own).count() as u64;
        let stage = &self.metrics.stage;
        stage.minus_encodes.add(own);
        stage.minus_shared.add(frame.minus.len() as u64 - own);
        let feeds = std::mem::take(&mut frame.minus);
        let tick = StageTick {
            seq: n,
            program: frame.payload.clone(),
            capture_us: frame.capture_us,
            program_rtp: Arc::from(&frame.payload[..]),
            feeds_rtp: feeds.iter().map(|f| Arc::from(&f.payload[..])).collect(),
            feeds,
        };
        self.room.stage_feed.send_replace(Some(Arc::new(tick)));
        frame
    }

    fn finish(&mut self, why: &str) {
        let head = self.room.head();
        self.program.finish();
        if self.room.info.lock().started_at.is_some() {
            self.metrics.rooms_live.dec();
        }
        self.room.publish_snapshot(&Stage::default());
        self.room.save_soon();
        tracing::info!(room = %self.room.id, frames = head.0, "room {why}");
    }
}
