//! Clips: a stretch of a recording (at most [`MAX_CLIP_MS`]) cut on 20 ms frame boundaries and
//! written as one self-contained fragmented MP4 (`.m4a`) whose timeline starts at zero.

use bytes::Bytes;

use super::IndexEntry;
use crate::cmaf::{fragment, init_segment, CmafError, OpusTrackConfig};
use crate::FRAME_MS;

/// Longest clip.
pub const MAX_CLIP_MS: u64 = 60_000;
/// Frames per fragment of a clip file (1 s).
const CLIP_FRAGMENT_FRAMES: usize = 50;

/// Why a clip cannot be cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipError {
    /// The range is empty, reversed, negative or not a number.
    #[error("the clip must end after it starts (start {start_ms} ms, end {end_ms} ms)")]
    EmptyRange {
        /// Requested start.
        start_ms: u64,
        /// Requested end.
        end_ms: u64,
    },
    /// Longer than [`MAX_CLIP_MS`].
    #[error("a clip lasts at most 60 s, not {0} ms")]
    TooLong(u64),
    /// Ends after what has been recorded.
    #[error("the recording holds {recorded_ms} ms; the clip ends at {end_ms} ms")]
    BeyondRecording {
        /// Recorded duration so far.
        recorded_ms: u64,
        /// Requested end.
        end_ms: u64,
    },
    /// The segment files do not hold what the index says.
    #[error("the recording is damaged: {0}")]
    Damaged(#[from] CmafError),
}

/// The frames of one segment a clip takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipPiece {
    /// The segment.
    pub msn: u64,
    /// Frames of the segment to skip first.
    pub skip: u32,
    /// Frames to take after that.
    pub take: u32,
}

/// The pieces of `entries` (a recording's timeline, segments back to back as a replay plays
/// them) between `start_ms` and `end_ms`, rounded outwards to whole frames.
pub fn select(
    entries: &[IndexEntry],
    start_ms: u64,
    end_ms: u64,
) -> Result<Vec<ClipPiece>, ClipError> {
    if end_ms <= start_ms {
        return Err(ClipError::EmptyRange { start_ms, end_ms });
    }
    if end_ms - start_ms > MAX_CLIP_MS {
        return Err(ClipError::TooLong(end_ms - start_ms));
    }
    let recorded_ms: u64 = entries.iter().map(IndexEntry::duration_ms).sum();
    if end_ms > recorded_ms {
        return Err(ClipError::BeyondRecording {
            recorded_ms,
            end_ms,
        });
    }
    let frame = u64::from(FRAME_MS);
    let (first, last) = (start_ms / frame, end_ms.div_ceil(frame));
    let mut pieces = Vec::new();
    let mut at = 0u64; // frame index of the segment's start on the timeline
    for e in entries {
        let (from, to) = (at, at + u64::from(e.frames));
        at = to;
        let (a, b) = (first.max(from), last.min(to));
        if a < b {
            pieces.push(ClipPiece {
                msn: e.msn,
                skip: (a - from) as u32,
                take: (b - a) as u32,
            });
        }
        if to >= last {
            break;
        }
    }
    Ok(pieces)
}

/// A complete `.m4a`: the init segment, then `packets` as 1 s fragments timed from zero.
pub fn clip_file(packets: &[Bytes]) -> Result<Vec<u8>, ClipError> {
    let mut out = init_segment(&OpusTrackConfig::default());
    for (i, chunk) in packets.chunks(CLIP_FRAGMENT_FRAMES).enumerate() {
        let first = (i * CLIP_FRAGMENT_FRAMES) as u64;
        out.extend(fragment(i as u32 + 1, first * 960, chunk)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline() -> Vec<IndexEntry> {
        // 2 s, then a 0.7 s segment (a restart), then 2 s.
        [(0, 0, 100), (1, 500, 35), (2, 535, 100)]
            .into_iter()
            .map(|(msn, first_seq, frames)| IndexEntry {
                msn,
                first_seq,
                frames,
                parts: frames.div_ceil(10),
                discontinuity: msn == 1,
                program_date_us: None,
                bytes: 1,
            })
            .collect()
    }

    #[test]
    fn selection_spans_segments_on_frame_boundaries() {
        let t = timeline();
        assert_eq!(
            select(&t, 1_990, 2_710).unwrap(),
            vec![
                ClipPiece {
                    msn: 0,
                    skip: 99,
                    take: 1
                },
                ClipPiece {
                    msn: 1,
                    skip: 0,
                    take: 35
                },
                ClipPiece {
                    msn: 2,
                    skip: 0,
                    take: 1
                },
            ]
        );
        // Rounded outwards: 10..15 ms is frame 0.
        assert_eq!(
            select(&t, 10, 15).unwrap(),
            vec![ClipPiece {
                msn: 0,
                skip: 0,
                take: 1
            }]
        );
        let all = select(&t, 0, 4_700).unwrap();
        assert_eq!(all.iter().map(|p| p.take).sum::<u32>(), 235);
    }

    #[test]
    fn bad_ranges_are_refused() {
        let t = timeline();
        assert!(matches!(
            select(&t, 5, 5),
            Err(ClipError::EmptyRange { .. })
        ));
        assert!(matches!(
            select(&t, 9, 5),
            Err(ClipError::EmptyRange { .. })
        ));
        assert_eq!(select(&t, 0, 60_001), Err(ClipError::TooLong(60_001)));
        assert_eq!(
            select(&t, 0, 4_720),
            Err(ClipError::BeyondRecording {
                recorded_ms: 4_700,
                end_ms: 4_720
            })
        );
    }

    #[test]
    fn clip_files_start_at_zero() {
        let packets = vec![Bytes::from_static(&[0xF8, 0xFF, 0xFE]); 120];
        let file = clip_file(&packets).unwrap();
        let init_len = init_segment(&OpusTrackConfig::default()).len();
        let samples = crate::cmaf::read_samples(&Bytes::from(file[init_len..].to_vec())).unwrap();
        assert_eq!(samples.len(), 120);
        assert_eq!(samples[0].seq, 0);
        assert_eq!(samples[119].seq, 119);
        let run = crate::cmaf::summarize(&file[init_len..]).unwrap();
        assert_eq!(run.fragments, 3);
    }
}
