//! Sample-rate conversion by linear interpolation.
//!
//! Good enough for speech test fixtures and uploads; it has no anti-aliasing filter, so
//! downsampling content above the new Nyquist frequency folds it back into the band.

/// Resamples mono `input` from `from_rate` to `to_rate` Hz (returns a copy if equal, and an
/// empty vector if either rate is zero).
pub fn resample_linear(input: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == 0 || to_rate == 0 || input.is_empty() {
        return Vec::new();
    }
    if from_rate == to_rate {
        return input.to_vec();
    }
    let (from, to) = (u64::from(from_rate), u64::from(to_rate));
    let out_len = (input.len() as u64 * to).div_ceil(from);
    let last = input.len() - 1;
    (0..out_len)
        .map(|i| {
            // Exact integer position so long inputs do not accumulate rounding drift.
            let pos = i * from;
            let idx = ((pos / to) as usize).min(last);
            let frac = (pos % to) as f32 / to as f32;
            let a = f32::from(input[idx]);
            let b = f32::from(input[(idx + 1).min(last)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_identity() {
        assert_eq!(resample_linear(&[1, 2, 3], 48_000, 48_000), [1, 2, 3]);
        assert!(resample_linear(&[1, 2, 3], 0, 48_000).is_empty());
        assert_eq!(resample_linear(&[0; 441], 44_100, 48_000).len(), 480);
        assert_eq!(resample_linear(&[0; 16_000], 16_000, 48_000).len(), 48_000);
        assert_eq!(resample_linear(&[0; 96], 96_000, 48_000).len(), 48);
    }

    #[test]
    fn interpolates_between_samples() {
        // Tripling the rate puts two evenly spaced points between neighbours.
        let out = resample_linear(&[0, 300, 600], 16_000, 48_000);
        assert_eq!(out, [0, 100, 200, 300, 400, 500, 600, 600, 600]);
    }
}
