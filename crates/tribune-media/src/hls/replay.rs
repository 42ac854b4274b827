//! The replay playlist over recorded segments: `EVENT` while the room is live (segments are
//! only ever appended), `VOD` with `EXT-X-ENDLIST` once it has ended.

use std::fmt::Write as _;

use super::{
    format_program_date, seconds, HlsError, Resource, INIT_URI, TARGET_DURATION_S, VERSION,
};
use crate::cmaf::{Segment, SEGMENT_FRAMES};
use crate::FRAME_MS;

/// What the recorder keeps about each segment to list it again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySegment {
    /// Media sequence number (also its file name, `seg/{msn}.m4s`).
    pub msn: u64,
    /// Number of 20 ms frames.
    pub frames: u32,
    /// Whether it follows a gap in the program (restart, lost frames).
    pub discontinuity: bool,
    /// Wall-clock time of its first packet, µs since the Unix epoch, if known.
    pub program_date_us: Option<u64>,
}

impl From<&Segment> for ReplaySegment {
    /// The listing facts of a packaged segment.
    fn from(s: &Segment) -> Self {
        ReplaySegment {
            msn: s.msn,
            frames: s.frames,
            discontinuity: s.discontinuity,
            program_date_us: Some(s.program_date_us),
        }
    }
}

/// Renders `replay.m3u8`: `EVENT` while `ended` is false, `VOD` + `EXT-X-ENDLIST` after.
///
/// Segments must have increasing media sequence numbers; a jump in numbers (a part of the
/// recording that is missing) is marked as a discontinuity so players do not expect the
/// timeline to continue. Program dates are written on the first segment and after each
/// discontinuity.
pub fn render_replay(segments: &[ReplaySegment], ended: bool) -> Result<String, HlsError> {
    let mut previous: Option<u64> = None;
    for s in segments {
        if s.frames == 0 || s.frames > SEGMENT_FRAMES {
            return Err(HlsError::BadDuration(s.frames));
        }
        if let Some(p) = previous.filter(|&p| s.msn <= p) {
            return Err(HlsError::OutOfOrder {
                previous: p,
                msn: s.msn,
            });
        }
        previous = Some(s.msn);
    }
    let kind = if ended { "VOD" } else { "EVENT" };
    let mut out = String::with_capacity(128 + 40 * segments.len());
    let _ = write!(
        out,
        "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{TARGET_DURATION_S}\n"
    );
    let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{kind}");
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.msn)
    );
    let _ = writeln!(
        out,
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_URI}\""
    );
    let mut previous: Option<u64> = None;
    for s in segments {
        let gap = previous.is_some_and(|p| p.checked_add(1) != Some(s.msn));
        // A discontinuity before the first segment would mean nothing: nothing precedes it.
        let discontinuity = previous.is_some() && (s.discontinuity || gap);
        if discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if let Some(date) = s
            .program_date_us
            .filter(|_| previous.is_none() || discontinuity)
        {
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                format_program_date(date)
            );
        }
        let _ = writeln!(
            out,
            "#EXTINF:{},\n{}",
            seconds(u64::from(s.frames * FRAME_MS)),
            Resource::Segment(s.msn).uri()
        );
        previous = Some(s.msn);
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, frames: u32, discontinuity: bool) -> ReplaySegment {
        ReplaySegment {
            msn,
            frames,
            discontinuity,
            program_date_us: Some(1_700_000_000_000_000 + msn * 2_000_000),
        }
    }

    #[test]
    fn golden_event_then_vod() {
        let segs = [seg(4, 100, false), seg(5, 100, false), seg(6, 37, false)];
        let body = "#EXT-X-MEDIA-SEQUENCE:4
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z
#EXTINF:2.000,
seg/4.m4s
#EXTINF:2.000,
seg/5.m4s
#EXTINF:0.740,
seg/6.m4s
";
        let head = "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n";
        assert_eq!(
            render_replay(&segs, false).unwrap(),
            format!("{head}#EXT-X-PLAYLIST-TYPE:EVENT\n{body}")
        );
        assert_eq!(
            render_replay(&segs, true).unwrap(),
            format!("{head}#EXT-X-PLAYLIST-TYPE:VOD\n{body}#EXT-X-ENDLIST\n")
        );
    }

    #[test]
    fn gaps_and_restarts_are_discontinuities() {
        let segs = [
            seg(1, 100, true),
            seg(2, 50, false),
            seg(3, 100, true),
            seg(9, 100, false),
        ];
        let text = render_replay(&segs, true).unwrap();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 2);
        assert!(text.contains(
            "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.000Z\n#EXTINF:2.000,\nseg/3.m4s\n"
        ));
        assert!(text.contains("seg/3.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:"));
        assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
    }

    #[test]
    fn an_empty_recording_is_a_valid_playlist() {
        let text = render_replay(&[], false).unwrap();
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(!text.contains("#EXTINF"));
    }

    #[test]
    fn bad_listings_are_refused() {
        assert_eq!(
            render_replay(&[seg(3, 100, false), seg(3, 100, false)], true),
            Err(HlsError::OutOfOrder {
                previous: 3,
                msn: 3
            })
        );
        assert_eq!(
            render_replay(&[seg(3, 0, false)], true),
            Err(HlsError::BadDuration(0))
        );
        assert_eq!(
            render_replay(&[seg(3, 101, false)], true),
            Err(HlsError::BadDuration(101))
        );
    }
}
