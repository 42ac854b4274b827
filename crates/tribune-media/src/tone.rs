//! Sine test-tone generator producing phase-continuous 20 ms frames.

use std::f64::consts::TAU;

use crate::{FRAME_SAMPLES, SAMPLE_RATE};

/// Generates a sine wave at 48 kHz, frame after frame, without phase jumps between frames.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    /// Current phase in radians, kept in `0..TAU` so precision does not decay over long runs.
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl ToneGenerator {
    /// A tone at `freq_hz` with `amplitude` as a fraction of full scale (clamped to 0..=1).
    pub fn new(freq_hz: f32, amplitude: f32) -> Self {
        let mut tone = ToneGenerator {
            phase: 0.0,
            step: 0.0,
            amplitude: 0.0,
        };
        tone.set_frequency(freq_hz);
        tone.set_amplitude(amplitude);
        tone
    }

    /// Changes the frequency from the next sample on, keeping the phase.
    pub fn set_frequency(&mut self, freq_hz: f32) {
        let f = if freq_hz.is_finite() { freq_hz } else { 0.0 };
        self.step = TAU * f64::from(f) / f64::from(SAMPLE_RATE);
    }

    /// Changes the amplitude (fraction of full scale, clamped to 0..=1).
    pub fn set_amplitude(&mut self, amplitude: f32) {
        let a = if amplitude.is_finite() {
            amplitude
        } else {
            0.0
        };
        self.amplitude = f64::from(a.clamp(0.0, 1.0));
    }

    /// Fills `out` with the next samples of the tone.
    pub fn fill(&mut self, out: &mut [i16]) {
        let scale = self.amplitude * f64::from(i16::MAX);
        for s in out.iter_mut() {
            *s = (self.phase.sin() * scale).round() as i16;
            self.phase = (self.phase + self.step).rem_euclid(TAU);
        }
    }

    /// The next 20 ms frame.
    pub fn next_frame(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut frame = [0i16; FRAME_SAMPLES];
        self.fill(&mut frame);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_phase_continuous() {
        let mut split = ToneGenerator::new(440.0, 0.8);
        let mut joined = Vec::new();
        for _ in 0..3 {
            joined.extend_from_slice(&split.next_frame());
        }
        let mut whole = ToneGenerator::new(440.0, 0.8);
        let mut one = vec![0i16; 3 * FRAME_SAMPLES];
        whole.fill(&mut one);
        assert_eq!(joined, one);
    }

    #[test]
    fn amplitude_and_start_are_as_asked() {
        let mut t = ToneGenerator::new(1000.0, 0.5);
        let f = t.next_frame();
        assert_eq!(f[0], 0);
        let peak = f.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((16_300..=16_384).contains(&peak), "peak {peak}");
        // 1 kHz at 48 kHz: a quarter period is 12 samples, where the sine peaks.
        assert!(f[12] > 16_300);
        let mut loud = ToneGenerator::new(100.0, 7.0);
        let max = loud.next_frame().iter().copied().max().unwrap_or(0);
        assert_eq!(max, i16::MAX);
    }
}
