//! LL-HLS playlists for the CMAF program track (RFC 8216bis), sans IO.
//!
//! - [`LivePlaylist`]: the live window behind `live.m3u8` — parts, segments, preload hint,
//!   blocking reload decisions ([`LivePlaylist::decide`]) and the bytes of every resource it
//!   lists ([`LivePlaylist::part`], [`LivePlaylist::segment`]).
//! - [`parse_blocking_query`]: strict parsing of `_HLS_msn` / `_HLS_part`.
//! - [`render_replay`]: the EVENT (while live) / VOD (after) playlist over recorded segments.
//!
//! Resource names are relative to the playlist, stable and immutable once published:
//! `init.mp4`, `seg/{msn}.m4s`, `part/{msn}.{index}.m4s` ([`Resource`]).
//!
//! Numbers: target duration 2 s, part target 0.2 s, `PART-HOLD-BACK` 3 part targets (the
//! spec's SHOULD; it MUST be at least 2), `HOLD-BACK` 3 target durations, blocking reloads
//! answered within [`BLOCKING_TIMEOUT_MS`] (else 503), protocol version 6 (needed by `EXT-X-MAP`;
//! nothing here needs more).

mod blocking;
mod live;
mod replay;

pub use blocking::{parse_blocking_query, BlockDecision, BlockingRequest, DirectiveError};
pub use live::{LiveConfig, LivePlaylist, Lookup};
pub use replay::{render_replay, ReplaySegment};

use crate::cmaf::{PART_MS, SEGMENT_MS};

/// `EXT-X-VERSION` of every playlist written here.
pub const VERSION: u32 = 6;
/// `EXT-X-TARGETDURATION`, in seconds: the segment duration.
pub const TARGET_DURATION_S: u32 = SEGMENT_MS / 1000;
/// `PART-TARGET`, in milliseconds.
pub const PART_TARGET_MS: u32 = PART_MS;
/// RFC 8216bis 6.2.5.2: a part request more than this many parts past the newest one is
/// refused (3 / part target, when the part target is under a second).
pub const ADVANCE_PART_LIMIT: u64 = if PART_MS < 1000 {
    3000 / PART_MS as u64
} else {
    3
};
/// How long a blocking request may wait before the server answers 503 (3 target durations).
pub const BLOCKING_TIMEOUT_MS: u32 = 3 * SEGMENT_MS;
/// URI of the init segment.
pub const INIT_URI: &str = "init.mp4";
/// RFC 6381 codec string for a multivariant playlist (lowercase: what browsers accept).
pub const CODECS: &str = "opus";
/// Content type of playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content type of the init segment, segments and parts.
pub const MEDIA_CONTENT_TYPE: &str = "audio/mp4";

// Target durations are whole seconds in the playlist; keep the segment length compatible.
const _: () = assert!(TARGET_DURATION_S * 1000 == SEGMENT_MS && TARGET_DURATION_S >= 1);

/// Why a playlist could not take an event or be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlsError {
    /// A part that does not continue the open segment (or start the next one).
    #[error("unexpected part {msn}.{index}")]
    UnexpectedPart {
        /// Its media sequence number.
        msn: u64,
        /// Its index.
        index: u32,
    },
    /// A segment that does not close the open segment with the parts received.
    #[error("unexpected segment {0}")]
    UnexpectedSegment(u64),
    /// A segment or part with an impossible duration.
    #[error("bad duration: {0} frames")]
    BadDuration(u32),
    /// Media sequence numbers that do not increase.
    #[error("segment {msn} does not follow {previous}")]
    OutOfOrder {
        /// The previous segment's number.
        previous: u64,
        /// The offending number.
        msn: u64,
    },
    /// The playlist has ended and takes no more media.
    #[error("the playlist has ended")]
    Ended,
}

/// A resource named by a playlist, as found in request paths below `/hls/{id}/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `init.mp4`.
    Init,
    /// `seg/{msn}.m4s`.
    Segment(u64),
    /// `part/{msn}.{index}.m4s`.
    Part {
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Index of the part in its segment.
        index: u32,
    },
}

impl Resource {
    /// Parses a relative path strictly: only the exact names [`Resource::uri`] writes (ASCII
    /// digits, no sign, no leading zero), so each resource has exactly one cacheable URL.
    pub fn parse(path: &str) -> Option<Resource> {
        let resource = if path == INIT_URI {
            Resource::Init
        } else if let Some(rest) = path.strip_prefix("seg/") {
            Resource::Segment(parse_u64(rest.strip_suffix(".m4s")?)?)
        } else {
            let rest = path.strip_prefix("part/")?.strip_suffix(".m4s")?;
            let (msn, index) = rest.split_once('.')?;
            Resource::Part {
                msn: parse_u64(msn)?,
                index: u32::try_from(parse_u64(index)?).ok()?,
            }
        };
        (resource.uri() == path).then_some(resource)
    }

    /// The relative URI, as written in playlists.
    pub fn uri(&self) -> String {
        match self {
            Resource::Init => INIT_URI.to_string(),
            Resource::Segment(msn) => format!("seg/{msn}.m4s"),
            Resource::Part { msn, index } => format!("part/{msn}.{index}.m4s"),
        }
    }
}

/// Parses 1 to 20 ASCII digits into a u64, refusing anything else (including overflow).
pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Formats milliseconds as an HLS decimal-floating-point with exactly 3 decimals.
pub(crate) fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Formats microseconds since the Unix epoch as an ISO 8601 date with milliseconds, UTC.
pub fn format_program_date(us: u64) -> String {
    let ms = us / 1000;
    let secs = ms / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60,
        ms % 1000
    )
}

/// Converts days since 1970-01-01 into a proleptic Gregorian (year, month, day).
///
/// Works in 400-year eras (146 097 days each) counted from 0000-03-01, so leap days fall at
/// the end of each era-relative year and the month lengths follow a fixed 153-day pattern.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 719 468 days separate 0000-03-01 from 1970-01-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_follow_the_spec() {
        assert_eq!(TARGET_DURATION_S, 2);
        assert_eq!(PART_TARGET_MS, 200);
        assert_eq!(ADVANCE_PART_LIMIT, 15);
        assert_eq!(BLOCKING_TIMEOUT_MS, 6000);
    }

    #[test]
    fn program_dates_are_iso8601_utc() {
        assert_eq!(format_program_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_program_date(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123Z"
        );
        // Leap day and the day after, in a year divisible by 400.
        assert_eq!(
            format_program_date(951_782_400_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date(951_868_799_999_000),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_program_date(951_868_800_000_000),
            "2000-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_program_date(4_102_444_800_000_000),
            "2100-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn dates_agree_with_a_day_by_day_calendar() {
        // Walk 1970..2100 one day at a time with plain month lengths and compare.
        let mut date = (1970u64, 1u64, 1u64);
        for days in 0..47_482u64 {
            assert_eq!(civil_from_days(days), date, "day {days}");
            let (y, m, d) = date;
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            date = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn resources_round_trip_and_parse_strictly() {
        for r in [
            Resource::Init,
            Resource::Segment(0),
            Resource::Segment(u64::MAX),
            Resource::Part { msn: 12, index: 3 },
        ] {
            assert_eq!(Resource::parse(&r.uri()), Some(r));
        }
        for bad in [
            "",
            "init.mp4/",
            "seg/.m4s",
            "seg/+1.m4s",
            "seg/01.m4s",
            "part/1.00.m4s",
            "seg/-1.m4s",
            "seg/1.mp4",
            "seg/18446744073709551616.m4s",
            "seg/1 .m4s",
            "seg/١.m4s",
            "part/1.m4s",
            "part/1.2.3.m4s",
            "part/1.4294967296.m4s",
            "part/.1.m4s",
            "../seg/1.m4s",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn seconds_have_three_decimals() {
        assert_eq!(seconds(200), "0.200");
        assert_eq!(seconds(2000), "2.000");
        assert_eq!(seconds(660), "0.660");
    }
}
