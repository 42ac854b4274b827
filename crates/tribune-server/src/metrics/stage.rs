//! Figures of the stage path: WHEP sessions, mix-minus encodes, what the stage hears and how
//! late.

use super::histogram::Histogram;
use super::{put, Counter, Gauge};

/// What `/metrics` reports about the stage's return audio.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Open WHEP sessions playing a stage participant's mix-minus.
    pub whep_stage: Gauge,
    /// Open WHEP sessions playing the program (WebRTC listeners).
    pub whep_listeners: Gauge,
    /// WHEP sessions opened since start.
    pub whep_total: Counter,
    /// WHEP offers refused (credentials, room, SDP, caps).
    pub whep_refused: Counter,
    /// Mix-minus frames encoded for a participant (their voice was in the tick's mix).
    pub minus_encodes: Counter,
    /// Mix-minus frames that were the program frame itself (nothing of theirs in the mix).
    pub minus_shared: Counter,
    /// Stage frames sent to participants (over WHEP or the speak WebSocket).
    pub frames_sent: Counter,
    /// Stage frames a participant's connection skipped because it was behind.
    pub frames_skipped: Counter,
    /// Speaker packet in to mix-minus packet out, per frame sent.
    pub delay: Histogram,
}

impl StageMetrics {
    /// Appends these figures to a Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        put(
            out,
            "whep_sessions{kind=\"stage\"}",
            "gauge",
            "Open WHEP sessions, by what they play (stage: a participant's mix-minus; \
             listener: the program).",
            self.whep_stage.get(),
        );
        put(
            out,
            "whep_sessions{kind=\"listener\"}",
            "",
            "",
            self.whep_listeners.get(),
        );
        put(
            out,
            "whep_sessions_total",
            "counter",
            "WHEP sessions opened.",
            self.whep_total.get(),
        );
        put(
            out,
            "whep_refused_total",
            "counter",
            "WHEP offers refused.",
            self.whep_refused.get(),
        );
        put(
            out,
            "mix_minus_encodes_total",
            "counter",
            "Mix-minus frames encoded for a participant whose voice was in the mix (rate() \
             gives encodes per second).",
            self.minus_encodes.get(),
        );
        put(
            out,
            "mix_minus_shared_total",
            "counter",
            "Mix-minus frames that were the program frame itself (no encode).",
            self.minus_shared.get(),
        );
        put(
            out,
            "stage_frames_sent_total",
            "counter",
            "Stage frames sent to participants.",
            self.frames_sent.get(),
        );
        put(
            out,
            "stage_frames_skipped_total",
            "counter",
            "Stage frames skipped by a participant's connection that was behind.",
            self.frames_skipped.get(),
        );
        self.delay.render(
            out,
            "stage_delay_seconds",
            "Speaker packet in to mix-minus packet out on the stage path.",
        );
    }
}
