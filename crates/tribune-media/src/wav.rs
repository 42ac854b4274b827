//! RIFF/WAVE reading (integer PCM of 8/16/24/32 bits and 32/64-bit float) and 16-bit writing.

use std::io::{self, Write};

use crate::error::ContainerError;
use crate::resample::resample_linear;
use crate::SAMPLE_RATE;

/// Most channels accepted when reading.
pub const MAX_CHANNELS: u16 = 8;
/// Lowest sample rate accepted, which bounds how much `to_mono_48k` can expand the data.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
/// Highest sample rate accepted.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Data size written by streaming encoders that did not know the final length.
const SIZE_UNKNOWN: u32 = u32::MAX;

/// Decoded WAV audio as 16-bit samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Number of interleaved channels.
    pub channels: u16,
    /// Interleaved samples, converted to 16 bits.
    pub samples: Vec<i16>,
}

impl Wav {
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// Averages the channels and resamples to 48 kHz mono.
    pub fn to_mono_48k(&self) -> Vec<i16> {
        let ch = usize::from(self.channels.max(1));
        let mono: Vec<i16> = if ch == 1 {
            self.samples.clone()
        } else {
            self.samples
                .chunks_exact(ch)
                .map(|f| {
                    let sum: i32 = f.iter().map(|&s| i32::from(s)).sum();
                    (sum / ch as i32) as i16
                })
                .collect()
        };
        resample_linear(&mono, self.sample_rate, SAMPLE_RATE)
    }
}

/// Format fields from the `fmt ` chunk.
struct Format {
    float: bool,
    channels: u16,
    sample_rate: u32,
    bits: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_format(body: &[u8]) -> Result<Format, ContainerError> {
    let short = ContainerError::Malformed("fmt chunk too short");
    let mut tag = u16_at(body, 0).ok_or(short)?;
    let channels = u16_at(body, 2).unwrap_or(0);
    let sample_rate = u32_at(body, 4).unwrap_or(0);
    let bits = u16_at(body, 14).ok_or(ContainerError::Malformed("fmt chunk too short"))?;
    if tag == FORMAT_EXTENSIBLE {
        // The real format code opens the sub-format GUID after cbSize, valid bits and mask.
        tag = u16_at(body, 24).ok_or(ContainerError::Malformed("extensible fmt too short"))?;
    }
    let float = match (tag, bits) {
        (FORMAT_PCM, 8 | 16 | 24 | 32) => false,
        (FORMAT_FLOAT, 32 | 64) => true,
        _ => {
            return Err(ContainerError::Unsupported(format!(
                "WAV format {tag:#x} with {bits} bits"
            )))
        }
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(ContainerError::Unsupported(format!(
            "{channels} WAV channels"
        )));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
        return Err(ContainerError::Unsupported(format!(
            "sample rate {sample_rate} Hz"
        )));
    }
    Ok(Format {
        float,
        channels,
        sample_rate,
        bits,
    })
}

/// Converts one little-endian sample of the given format to 16 bits.
fn convert(bytes: &[u8], fmt: &Format) -> i16 {
    let float_to_i16 = |x: f64| {
        if x.is_nan() {
            0
        } else {
            (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
        }
    };
    match (fmt.float, bytes) {
        (false, &[b]) => (i16::from(b) - 128) << 8,
        (false, &[a, b]) => i16::from_le_bytes([a, b]),
        // Keep the most significant 16 bits of wider integers.
        (false, &[_, b, c]) => i16::from_le_bytes([b, c]),
        (false, &[_, _, c, d]) => i16::from_le_bytes([c, d]),
        (true, &[a, b, c, d]) => float_to_i16(f64::from(f32::from_le_bytes([a, b, c, d]))),
        (true, &[a, b, c, d, e, f, g, h]) => {
            float_to_i16(f64::from_le_bytes([a, b, c, d, e, f, g, h]))
        }
        _ => 0,
    }
}

/// Parses a WAV file held in memory.
pub fn read_wav(bytes: &[u8]) -> Result<Wav, ContainerError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(
            if bytes.len() < 12 && b"RIFF".starts_with(&bytes[..bytes.len().min(4)]) {
                ContainerError::Truncated("WAV header")
            } else {
                ContainerError::NotWav
            },
        );
    }
    let mut fmt: Option<Format> = None;
    let mut at = 12usize;
    loop {
        if at >= bytes.len() {
            return Err(ContainerError::Malformed("no data chunk"));
        }
        let header = bytes
            .get(at..at + 8)
            .ok_or(ContainerError::Truncated("WAV chunk header"))?;
        let id = &header[0..4];
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = at + 8;
        let remaining = bytes.len() - start;
        let len = match usize::try_from(size) {
            Ok(len) if len <= remaining => len,
            // Streaming writers leave the data size unknown: take the rest of the file.
            _ if id == b"data" && size == SIZE_UNKNOWN => remaining,
            _ => return Err(ContainerError::Truncated("WAV chunk body")),
        };
        let body = &bytes[start..start + len];
        match id {
            b"fmt " => fmt = Some(parse_format(body)?),
            b"data" => {
                let fmt = fmt.ok_or(ContainerError::Malformed("data chunk before fmt chunk"))?;
                return Ok(decode_data(body, &fmt));
            }
            _ => {}
        }
        // Chunks are padded to an even length; the pad may be missing at the end of a file.
        at = start + len + (len & 1);
    }
}

fn decode_data(body: &[u8], fmt: &Format) -> Wav {
    let width = usize::from(fmt.bits / 8);
    let frame = width * usize::from(fmt.channels);
    // A trailing partial frame is ignored.
    let whole = body.len() / frame * frame;
    let samples = body[..whole]
        .chunks_exact(width)
        .map(|s| convert(s, fmt))
        .collect();
    Wav {
        sample_rate: fmt.sample_rate,
        channels: fmt.channels,
        samples,
    }
}

/// Writes 16-bit PCM WAV. A `channels` of 0 is written as 1; sizes beyond 4 GiB are written as
/// the "unknown length" marker.
pub fn write_wav<W: Write>(
    mut w: W,
    sample_rate: u32,
    channels: u16,
    samples: &[i16],
) -> io::Result<()> {
    let channels = channels.max(1);
    let data_len = u32::try_from(samples.len().saturating_mul(2)).unwrap_or(SIZE_UNKNOWN);
    let riff_len = data_len.saturating_add(36);
    let block_align = channels.saturating_mul(2);
    let byte_rate = sample_rate.saturating_mul(u32::from(block_align));
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&riff_len.to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    header.extend_from_slice(&channels.to_le_bytes());
    header.extend_from_slice(&sample_rate.to_le_bytes());
    header.extend_from_slice(&byte_rate.to_le_bytes());
    header.extend_from_slice(&block_align.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_len.to_le_bytes());
    w.write_all(&header)?;
    // Convert in chunks so large files do not need a second full-size buffer.
    let mut buf = Vec::with_capacity(8192);
    for chunk in samples.chunks(4096) {
        buf.clear();
        buf.extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
        w.write_all(&buf)?;
    }
    Ok(())
}

/// A 16-bit PCM WAV file in memory.
pub fn wav_bytes(sample_rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    // Writing into a Vec cannot fail.
    let _ = write_wav(&mut out, sample_rate, channels, samples);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::dominant_frequency;
    use crate::testutil::XorShift;
    use crate::tone::ToneGenerator;

    #[test]
    fn round_trip_keeps_samples_and_header() {
        let samples: Vec<i16> = (0..1000)
            .map(|i| (i * 37 % 65_536 - 32_768) as i16)
            .collect();
        let bytes = wav_bytes(44_100, 2, &samples);
        assert_eq!(bytes.len(), 44 + 2000);
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(&bytes, 4), Some(36 + 2000));
        assert_eq!(u16_at(&bytes, 22), Some(2));
        assert_eq!(u32_at(&bytes, 24), Some(44_100));
        assert_eq!(u32_at(&bytes, 28), Some(44_100 * 4));
        assert_eq!(u16_at(&bytes, 32), Some(4));
        assert_eq!(u16_at(&bytes, 34), Some(16));
        assert_eq!(u32_at(&bytes, 40), Some(2000));
        let wav = read_wav(&bytes).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (44_100, 2));
        assert_eq!(wav.samples, samples);
        assert_eq!(wav.frames(), 500);
    }

    /// Builds a WAV with arbitrary format fields and raw data, plus an extra chunk first.
    fn custom(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut b = b"RIFF\0\0\0\0WAVELIST\x03\0\0\0abc\0fmt \x10\0\0\0".to_vec();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_other_sample_formats() {
        let w = read_wav(&custom(1, 1, 8000, 8, &[0, 128, 255])).unwrap();
        assert_eq!(w.samples, [-32768, 0, 127 << 8]);
        let w = read_wav(&custom(1, 1, 8000, 24, &[0xAA, 0x34, 0x12, 0, 0, 0x80])).unwrap();
        assert_eq!(w.samples, [0x1234, i16::MIN]);
        let w = read_wav(&custom(1, 1, 8000, 32, &[9, 9, 0xFF, 0x7F])).unwrap();
        assert_eq!(w.samples, [i16::MAX]);
        let mut f = Vec::new();
        for x in [0.5f32, -1.5, f32::NAN] {
            f.extend_from_slice(&x.to_le_bytes());
        }
        let w = read_wav(&custom(3, 1, 8000, 32, &f)).unwrap();
        assert_eq!(w.samples, [16384, -32767, 0]);
        let w = read_wav(&custom(3, 1, 8000, 64, &(-0.25f64).to_le_bytes())).unwrap();
        assert_eq!(w.samples, [-8192]);
        // A trailing partial stereo frame is dropped.
        let w = read_wav(&custom(1, 2, 8000, 16, &[1, 0, 2, 0, 3])).unwrap();
        assert_eq!(w.samples, [1, 2]);
    }

    #[test]
    fn resampling_to_48k_keeps_tone_frequency() {
        let mut tone = vec![0i16; 44_100];
        // The generator runs at 48 kHz, so scale the frequency to get 1 kHz at 44.1 kHz.
        ToneGenerator::new(1000.0 * 48_000.0 / 44_100.0, 0.5).fill(&mut tone);
        let stereo: Vec<i16> = tone.iter().flat_map(|&s| [s, s]).collect();
        let wav = read_wav(&wav_bytes(44_100, 2, &stereo)).unwrap();
        let mono = wav.to_mono_48k();
        assert_eq!(mono.len(), 48_000);
        let f = dominant_frequency(&mono, 48_000).unwrap();
        assert!((f - 1000.0).abs() < 2.0, "{f}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(read_wav(b""), Err(ContainerError::Truncated(_))));
        assert!(matches!(
            read_wav(b"RIF"),
            Err(ContainerError::Truncated(_))
        ));
        assert!(matches!(
            read_wav(b"OggS and more bytes"),
            Err(ContainerError::NotWav)
        ));
        let good = wav_bytes(16_000, 1, &[1, 2, 3, 4]);
        for cut in 12..good.len() {
            assert!(read_wav(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            read_wav(&custom(2, 1, 8000, 16, &[0, 0])),
            Err(ContainerError::Unsupported(_))
        ));
        assert!(read_wav(&custom(1, 0, 8000, 16, &[0, 0])).is_err());
        assert!(read_wav(&custom(1, 1, 10, 16, &[0, 0])).is_err());
        assert!(read_wav(&custom(1, 9, 8000, 16, &[0, 0])).is_err());
        // A huge chunk size must not overflow or allocate.
        let mut huge = good.clone();
        huge[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        assert!(read_wav(&huge).is_err());
        // Unknown data size means "until the end of the file".
        let mut streaming = good.clone();
        streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_wav(&streaming).unwrap().samples, [1, 2, 3, 4]);
        let mut rng = XorShift::new(77);
        for i in 0..3000 {
            let mut b = if i % 2 == 0 {
                rng.bytes_below(100)
            } else {
                good.clone()
            };
            for _ in 0..rng.below(6) {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
            }
            if let Ok(w) = read_wav(&b) {
                let _ = w.to_mono_48k();
            }
        }
    }
}
