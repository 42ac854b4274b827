//! The recording index: one text line per recorded segment, appended after the segment's file
//! is durable, and rebuilt from the segment files when it is missing, torn or stale.
//!
//! Line format (version 1), fields separated by one space:
//! `msn first_seq frames parts discontinuity(0|1) program_date_us(-|µs) bytes`.
//! A line only counts when it ends with `\n`: a crash in the middle of an append leaves a
//! torn tail that is ignored, never a wrong entry.

use std::fmt::Write as _;

use crate::cmaf::{summarize, CmafError, Segment};
use crate::hls::ReplaySegment;
use crate::FRAME_MS;

/// First line of every index file.
pub const INDEX_HEADER: &str = "tribune-recording-index 1";

/// What the recording keeps about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Media sequence number (the file is `seg/{msn}.m4s`).
    pub msn: u64,
    /// Program sequence number of its first packet.
    pub first_seq: u64,
    /// Number of 20 ms packets.
    pub frames: u32,
    /// Number of fragments (parts).
    pub parts: u32,
    /// Whether it does not continue the previous entry (a restart, a gap, recording paused).
    pub discontinuity: bool,
    /// Wall-clock time of its first packet, µs since the Unix epoch, when known.
    pub program_date_us: Option<u64>,
    /// Size of the segment file.
    pub bytes: u64,
}

impl From<&Segment> for IndexEntry {
    fn from(s: &Segment) -> Self {
        IndexEntry {
            msn: s.msn,
            first_seq: s.first_seq,
            frames: s.frames,
            parts: s.parts,
            discontinuity: s.discontinuity,
            program_date_us: Some(s.program_date_us),
            bytes: s.bytes.len() as u64,
        }
    }
}

impl From<&IndexEntry> for ReplaySegment {
    fn from(e: &IndexEntry) -> Self {
        ReplaySegment {
            msn: e.msn,
            frames: e.frames,
            discontinuity: e.discontinuity,
            program_date_us: e.program_date_us,
        }
    }
}

impl IndexEntry {
    /// The entry as one index line, with its newline.
    pub fn to_line(&self) -> String {
        let pdt = self
            .program_date_us
            .map_or_else(|| "-".to_string(), |p| p.to_string());
        format!(
            "{} {} {} {} {} {} {}\n",
            self.msn,
            self.first_seq,
            self.frames,
            self.parts,
            u8::from(self.discontinuity),
            pdt,
            self.bytes
        )
    }

    /// Parses one line (without its newline); `None` if it is not a valid entry.
    pub fn parse_line(line: &str) -> Option<IndexEntry> {
        let mut f = line.split(' ');
        let mut num = || f.next()?.parse::<u64>().ok();
        let msn = num()?;
        let first_seq = num()?;
        let frames = u32::try_from(num()?).ok()?;
        let parts = u32::try_from(num()?).ok()?;
        let discontinuity = match num()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let pdt = f.next()?;
        let program_date_us = match pdt {
            "-" => None,
            p => Some(p.parse::<u64>().ok()?),
        };
        let bytes = f.next()?.parse::<u64>().ok()?;
        if f.next().is_some() || frames == 0 || parts == 0 || bytes == 0 {
            return None;
        }
        Some(IndexEntry {
            msn,
            first_seq,
            frames,
            parts,
            discontinuity,
            program_date_us,
            bytes,
        })
    }

    /// The entry of a segment file's bytes, as far as they tell: timing, size and parts come
    /// from the fragments; continuity and wall-clock time from the entry before it.
    pub fn rebuild(
        msn: u64,
        bytes: &[u8],
        previous: Option<&IndexEntry>,
    ) -> Result<IndexEntry, CmafError> {
        let run = summarize(bytes)?;
        let follows = previous.filter(|p| p.first_seq + u64::from(p.frames) == run.first_seq);
        Ok(IndexEntry {
            msn,
            first_seq: run.first_seq,
            frames: run.frames,
            parts: run.fragments,
            discontinuity: follows.is_none(),
            program_date_us: follows.and_then(|p| {
                p.program_date_us
                    .map(|d| d + u64::from(p.frames) * u64::from(FRAME_MS) * 1000)
            }),
            bytes: bytes.len() as u64,
        })
    }

    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        u64::from(self.frames) * u64::from(FRAME_MS)
    }
}

/// The entries of an index file's text: complete, valid lines, in increasing `msn` (anything
/// else — a torn last line, a damaged or repeated line, a foreign header — is skipped; the
/// segment files are the truth and [`reconcile`] fills in from them).
pub fn parse_index(text: &str) -> Vec<IndexEntry> {
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some(INDEX_HEADER) {
        return Vec::new();
    }
    let mut out: Vec<IndexEntry> = Vec::new();
    for line in lines {
        let Some(line) = line.strip_suffix('\n') else {
            break; // torn tail
        };
        if let Some(e) = IndexEntry::parse_line(line) {
            if out.last().is_none_or(|last| last.msn < e.msn) {
                out.push(e);
            }
        }
    }
    out
}

/// A whole index file for `entries`.
pub fn render_index(entries: &[IndexEntry]) -> String {
    let mut s = String::with_capacity(16 + entries.len() * 48);
    let _ = writeln!(s, "{INDEX_HEADER}");
    for e in entries {
        s.push_str(&e.to_line());
    }
    s
}

/// A segment file found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFile {
    /// Its media sequence number (from its name).
    pub msn: u64,
    /// Its size.
    pub bytes: u64,
}

/// The index the files on disk support: every segment file in `msn` order, described by its
/// index entry when that entry matches the file's size, otherwise by `read`ing the file and
/// rebuilding the entry (a file that does not parse is left out and reported). Entries without
/// a file are dropped.
pub fn reconcile(
    index: &[IndexEntry],
    files: &[SegmentFile],
    mut read: impl FnMut(u64) -> Option<Vec<u8>>,
) -> Reconciled {
    let mut files = files.to_vec();
    files.sort_by_key(|f| f.msn);
    files.dedup_by_key(|f| f.msn);
    let mut out = Reconciled::default();
    for f in files {
        let indexed = index
            .binary_search_by_key(&f.msn, |e| e.msn)
            .ok()
            .map(|i| index[i])
            .filter(|e| e.bytes == f.bytes);
        let entry = match indexed {
            Some(e) => Some(e),
            None => {
                let rebuilt = read(f.msn)
                    .and_then(|b| IndexEntry::rebuild(f.msn, &b, out.entries.last()).ok());
                if rebuilt.is_some() {
                    out.rebuilt += 1;
                }
                rebuilt
            }
        };
        match entry {
            Some(e) => out.entries.push(e),
            None => out.unreadable.push(f.msn),
        }
    }
    let kept = |e: &IndexEntry| {
        out.entries
            .binary_search_by_key(&e.msn, |k| k.msn)
            .is_ok_and(|i| out.entries[i] == *e)
    };
    out.dropped = index.iter().filter(|e| !kept(e)).count();
    out
}

/// What [`reconcile`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The entries to use, in `msn` order.
    pub entries: Vec<IndexEntry>,
    /// How many entries were rebuilt from files.
    pub rebuilt: usize,
    /// Segment files that could not be read as segments.
    pub unreadable: Vec<u64>,
    /// Index entries that had no matching file.
    pub dropped: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::fragment;

    fn entry(msn: u64, first_seq: u64) -> IndexEntry {
        IndexEntry {
            msn,
            first_seq,
            frames: 100,
            parts: 10,
            discontinuity: false,
            program_date_us: Some(1_700_000_000_000_000 + first_seq * 20_000),
            bytes: 4000 + msn,
        }
    }

    /// A segment file of `frames` packets from `first_seq`, in parts of 10.
    fn segment_bytes(first_seq: u64, frames: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = first_seq;
        while seq < first_seq + frames {
            let n = (first_seq + frames - seq).min(10);
            let packets = vec![vec![0xF8u8, 0xFF, 0xFE]; n as usize];
            out.extend(fragment(seq as u32 + 1, seq * 960, &packets).unwrap());
            seq += n;
        }
        out
    }

    #[test]
    fn lines_round_trip_and_bad_lines_are_refused() {
        let mut e = entry(7, 700);
        assert_eq!(IndexEntry::parse_line(e.to_line().trim_end()), Some(e));
        e.program_date_us = None;
        e.discontinuity = true;
        assert_eq!(IndexEntry::parse_line(e.to_line().trim_end()), Some(e));
        for bad in [
            "",
            "7 700 100 10 0 - ",
            "7 700 100 10 2 - 5",
            "7 700 0 10 0 - 5",
            "7 700 100 10 0 - 5 extra",
            "x 700 100 10 0 - 5",
            "7 700 100 10 0 12a 5",
            "7 700 99999999999 10 0 - 5",
        ] {
            assert_eq!(IndexEntry::parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn torn_and_damaged_lines_are_skipped() {
        let a = entry(0, 0);
        let b = entry(1, 100);
        let c = entry(2, 200);
        let mut text = render_index(&[a, b]);
        text.push_str("garbage line\n");
        text.push_str(&b.to_line()); // repeated
        text.push_str(&c.to_line()[..10]); // torn
        assert_eq!(parse_index(&text), vec![a, b]);
        assert_eq!(parse_index("other header\n0 0 100 10 0 - 5\n"), vec![]);
        assert_eq!(parse_index(&render_index(&[a, b, c])), vec![a, b, c]);
    }

    #[test]
    fn rebuilt_entries_follow_their_predecessor() {
        let prev = entry(4, 400);
        let bytes = segment_bytes(500, 100);
        let e = IndexEntry::rebuild(5, &bytes, Some(&prev)).unwrap();
        assert_eq!((e.first_seq, e.frames, e.parts), (500, 100, 10));
        assert!(!e.discontinuity);
        assert_eq!(
            e.program_date_us,
            Some(prev.program_date_us.unwrap() + 2_000_000)
        );
        assert_eq!(e.bytes, bytes.len() as u64);
        // After a gap: a discontinuity with no known wall-clock time.
        let later = IndexEntry::rebuild(6, &segment_bytes(900, 35), Some(&e)).unwrap();
        assert!(later.discontinuity);
        assert_eq!(
            (later.frames, later.parts, later.program_date_us),
            (35, 4, None)
        );
        assert!(IndexEntry::rebuild(7, &bytes[..bytes.len() - 3], None).is_err());
    }

    #[test]
    fn reconcile_trusts_files_over_the_index() {
        let seg0 = segment_bytes(0, 100);
        let seg1 = segment_bytes(100, 100);
        let seg2 = segment_bytes(200, 100);
        let mut e0 = IndexEntry::rebuild(0, &seg0, None).unwrap();
        e0.program_date_us = Some(1_000_000);
        // Index: entry 0 matches, entry 1 is missing (crash before the append), entry 3 has
        // no file (deleted).
        let index = vec![e0, entry(3, 300)];
        let files = [
            SegmentFile {
                msn: 2,
                bytes: seg2.len() as u64 - 5,
            }, // torn copy
            SegmentFile {
                msn: 1,
                bytes: seg1.len() as u64,
            },
            SegmentFile {
                msn: 0,
                bytes: seg0.len() as u64,
            },
        ];
        let r = reconcile(&index, &files, |msn| match msn {
            0 => Some(seg0.clone()),
            1 => Some(seg1.clone()),
            2 => Some(seg2[..seg2.len() - 5].to_vec()),
            _ => None,
        });
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0], e0);
        assert_eq!(r.entries[1].first_seq, 100);
        assert_eq!(r.entries[1].program_date_us, Some(3_000_000));
        assert!(!r.entries[1].discontinuity);
        assert_eq!(r.rebuilt, 1);
        assert_eq!(r.unreadable, vec![2]);
        assert_eq!(r.dropped, 1);
    }
}
