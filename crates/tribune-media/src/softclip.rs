//! Soft clipping of a mixed signal back into the 16-bit range.
//!
//! The curve is the identity up to [`KNEE`] of full scale. Above it the excess is squashed by
//! `tanh`, scaled so the slope stays 1 at the knee (no audible corner) and the output approaches
//! but never exceeds full scale: `y = sign(x) * (K + (1 - K) * tanh((|x| - K) / (1 - K)))`.
//! Sums of several loud speakers therefore saturate smoothly instead of wrapping around.

/// Fraction of full scale below which samples pass through unchanged.
pub const KNEE: f32 = 0.7;

/// Soft-clips one sample given as a fraction of full scale; the result lies in `-1.0..=1.0`.
pub fn soft_clip(x: f32) -> f32 {
    if x.is_nan() {
        return 0.0;
    }
    let a = x.abs();
    if a <= KNEE {
        return x;
    }
    let room = 1.0 - KNEE;
    let y = KNEE + room * ((a - KNEE) / room).tanh();
    y.copysign(x)
}

/// Soft-clips a mix (fractions of full scale) into 16-bit samples; extra output is untouched.
pub fn clip_to_i16(mix: &[f32], out: &mut [i16]) {
    for (o, &x) in out.iter_mut().zip(mix) {
        // `as` saturates, and soft_clip already keeps |y| <= 1, so this cannot wrap.
        *o = (soft_clip(x) * f32::from(i16::MAX)).round() as i16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::ToneGenerator;

    #[test]
    fn linear_below_knee_and_bounded_above() {
        for x in [-0.7f32, -0.3, 0.0, 0.25, 0.7] {
            assert_eq!(soft_clip(x), x);
        }
        assert!(soft_clip(0.8) < 0.8 && soft_clip(0.8) > 0.7);
        assert!(soft_clip(100.0) <= 1.0 && soft_clip(100.0) > 0.99);
        assert_eq!(soft_clip(-2.0), -soft_clip(2.0));
        assert_eq!(soft_clip(f32::NAN), 0.0);
        assert_eq!(soft_clip(f32::INFINITY), 1.0);
        // Monotonic and smooth at the knee: a tiny step past it moves by about the same step.
        let mut prev = soft_clip(0.0);
        for i in 1..=4000 {
            let y = soft_clip(i as f32 / 1000.0);
            assert!(y >= prev);
            prev = y;
        }
        let d = soft_clip(KNEE + 1e-3) - soft_clip(KNEE);
        assert!((d - 1e-3).abs() < 1e-4, "{d}");
    }

    #[test]
    fn two_full_scale_tones_never_wrap() {
        let mut a = ToneGenerator::new(440.0, 1.0);
        let mut b = ToneGenerator::new(440.0, 1.0);
        let mut c = ToneGenerator::new(330.0, 1.0);
        let mut out = [0i16; crate::FRAME_SAMPLES];
        for _ in 0..10 {
            let (fa, fb, fc) = (a.next_frame(), b.next_frame(), c.next_frame());
            let mix: Vec<f32> = (0..fa.len())
                .map(|i| (f32::from(fa[i]) + f32::from(fb[i]) + f32::from(fc[i])) / 32768.0)
                .collect();
            clip_to_i16(&mix, &mut out);
            for (&m, &o) in mix.iter().zip(&out) {
                // Never the opposite sign of the true sum (what wrapping would produce).
                assert!(m * f32::from(o) >= 0.0, "sum {m} became {o}");
                assert!(o > i16::MIN);
            }
            let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak > 32_000, "loud sum should approach full scale: {peak}");
        }
    }
}
