//! Spectrum tools for tests and the CLI: dominant frequency, band energy, peaks and RMS level.

use std::f64::consts::TAU;

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// Largest FFT block analysed; longer inputs use their middle part.
pub const MAX_FFT_LEN: usize = 65_536;
/// Smallest block worth analysing.
const MIN_FFT_LEN: usize = 64;
/// Blocks quieter than this RMS (about -80 dBFS) count as silence.
const SILENCE_RMS: f64 = 1e-4;
/// Spectral peaks closer than this are treated as one (codec side lobes sit near the tone).
const PEAK_SEPARATION_HZ: f64 = 20.0;
/// ... and never closer than this many bins, for short blocks with coarse bins.
const PEAK_SEPARATION_BINS: usize = 3;

/// Linear RMS level of `samples` relative to full scale (0 for empty input).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((sum / samples.len() as f64).sqrt() / 32768.0) as f32
}

/// Linear RMS level of samples given as fractions of full scale (0 for empty input).
pub fn rms_f32(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f32 = samples.iter().map(|&s| s * s).sum();
    (sum / samples.len() as f32).sqrt()
}

/// Power spectrum (bins `0..=n/2`) of a Hann-windowed block, with the block length `n`.
struct Spectrum {
    power: Vec<f64>,
    n: usize,
    sample_rate: u32,
}

impl Spectrum {
    /// Analyses the middle power-of-two block of `samples`; `None` if too short or silent.
    fn of(samples: &[i16], sample_rate: u32) -> Option<Spectrum> {
        if sample_rate == 0 || samples.len() < MIN_FFT_LEN {
            return None;
        }
        let n = prev_power_of_two(samples.len().min(MAX_FFT_LEN));
        let start = (samples.len() - n) / 2;
        let block = &samples[start..start + n];
        if f64::from(rms(block)) < SILENCE_RMS {
            return None;
        }
        let mut buf: Vec<Complex<f64>> = block
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let w = 0.5 - 0.5 * (TAU * i as f64 / n as f64).cos();
                Complex::new(f64::from(s) / 32768.0 * w, 0.0)
            })
            .collect();
        FftPlanner::new().plan_fft_forward(n).process(&mut buf);
        let power = buf[..=n / 2].iter().map(|c| c.norm_sqr()).collect();
        Some(Spectrum {
            power,
            n,
            sample_rate,
        })
    }

    fn bin_hz(&self) -> f64 {
        f64::from(self.sample_rate) / self.n as f64
    }

    /// Frequency of bin `k`, refined by a parabola through the log power of its neighbours
    /// (exact for a Gaussian peak and close for the Hann window's main lobe).
    fn refined_hz(&self, k: usize) -> f64 {
        let delta = if k == 0 || k + 1 >= self.power.len() {
            0.0
        } else {
            let ln = |p: f64| p.max(1e-300).ln();
            let (a, b, c) = (
                ln(self.power[k - 1]),
                ln(self.power[k]),
                ln(self.power[k + 1]),
            );
            let denom = a - 2.0 * b + c;
            if denom.abs() < 1e-12 {
                0.0
            } else {
                (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
            }
        };
        (k as f64 + delta) * self.bin_hz()
    }

    /// Indices of local maxima (excluding DC), strongest first.
    fn local_maxima(&self) -> Vec<usize> {
        let p = &self.power;
        let mut idx: Vec<usize> = (1..p.len())
            .filter(|&k| p[k] > p[k - 1] && p.get(k + 1).is_none_or(|&next| p[k] >= next))
            .collect();
        idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        idx
    }
}

fn prev_power_of_two(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// Frequency in Hz of the strongest spectral component, or `None` for silence or tiny input.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> Option<f32> {
    let spec = Spectrum::of(samples, sample_rate)?;
    let k = spec.local_maxima().first().copied()?;
    Some(spec.refined_hz(k) as f32)
}

/// Fraction (0..=1) of the total spectral energy lying within `freq ± width_hz`.
pub fn band_energy_ratio(samples: &[i16], sample_rate: u32, freq: f32, width_hz: f32) -> f32 {
    let Some(spec) = Spectrum::of(samples, sample_rate) else {
        return 0.0;
    };
    let total: f64 = spec.power.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let bin = spec.bin_hz();
    let (f, w) = (f64::from(freq), f64::from(width_hz.abs()));
    let band: f64 = spec
        .power
        .iter()
        .enumerate()
        .filter(|&(k, _)| (k as f64 * bin - f).abs() <= w)
        .map(|(_, p)| p)
        .sum();
    (band / total) as f32
}

/// Frequencies of the `n` strongest spectral peaks, strongest first, at least 20 Hz apart.
pub fn peaks(samples: &[i16], sample_rate: u32, n: usize) -> Vec<f32> {
    let Some(spec) = Spectrum::of(samples, sample_rate) else {
        return Vec::new();
    };
    let min_gap = ((PEAK_SEPARATION_HZ / spec.bin_hz()).ceil() as usize).max(PEAK_SEPARATION_BINS);
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    for k in spec.local_maxima() {
        if chosen.len() == n {
            break;
        }
        if chosen.iter().all(|&c| c.abs_diff(k) >= min_gap) {
            chosen.push(k);
        }
    }
    chosen
        .into_iter()
        .map(|k| spec.refined_hz(k) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::ToneGenerator;

    fn tone(freq: f32, amplitude: f32, samples: usize) -> Vec<i16> {
        let mut out = vec![0i16; samples];
        ToneGenerator::new(freq, amplitude).fill(&mut out);
        out
    }

    #[test]
    fn dominant_frequency_of_pure_tones() {
        for freq in [440.0f32, 1000.0, 123.4, 3150.0] {
            let s = tone(freq, 0.5, 48_000);
            let f = dominant_frequency(&s, 48_000).unwrap();
            assert!((f - freq).abs() < 2.0, "{freq}: got {f}");
        }
        // Short blocks are coarser but still land on the right bin.
        let f = dominant_frequency(&tone(1000.0, 0.5, 4096), 48_000).unwrap();
        assert!((f - 1000.0).abs() < 6.0, "got {f}");
    }

    #[test]
    fn silence_and_tiny_input_have_no_frequency() {
        assert_eq!(dominant_frequency(&[0i16; 48_000], 48_000), None);
        assert_eq!(dominant_frequency(&[1000i16; 10], 48_000), None);
        assert_eq!(dominant_frequency(&tone(440.0, 0.5, 4800), 0), None);
        assert!(peaks(&[0i16; 4800], 48_000, 3).is_empty());
        assert_eq!(band_energy_ratio(&[0i16; 4800], 48_000, 440.0, 10.0), 0.0);
    }

    #[test]
    fn band_energy_and_peaks_of_a_two_tone_mix() {
        let a = tone(440.0, 0.4, 48_000);
        let b = tone(1500.0, 0.2, 48_000);
        let mix: Vec<i16> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let ra = band_energy_ratio(&mix, 48_000, 440.0, 20.0);
        let rb = band_energy_ratio(&mix, 48_000, 1500.0, 20.0);
        // Power ratio 0.4^2 : 0.2^2 = 4 : 1.
        assert!((ra - 0.8).abs() < 0.02, "ra {ra}");
        assert!((rb - 0.2).abs() < 0.02, "rb {rb}");
        assert!(band_energy_ratio(&mix, 48_000, 3000.0, 20.0) < 0.001);
        let p = peaks(&mix, 48_000, 2);
        assert_eq!(p.len(), 2);
        assert!(
            (p[0] - 440.0).abs() < 2.0 && (p[1] - 1500.0).abs() < 2.0,
            "{p:?}"
        );
    }

    #[test]
    fn rms_of_known_signals() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[0; 100]), 0.0);
        assert!((rms(&[-32768; 10]) - 1.0).abs() < 1e-6);
        let r = rms(&tone(440.0, 1.0, 48_000));
        assert!((r - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.001, "{r}");
        let as_f32: Vec<f32> = tone(440.0, 1.0, 48_000)
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        assert!((rms_f32(&as_f32) - r).abs() < 1e-4);
        assert_eq!(rms_f32(&[]), 0.0);
    }
}
