//! The live LL-HLS media playlist: a sliding window of segments and parts fed by the packager.

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::{
    format_program_date, seconds, BlockDecision, BlockingRequest, HlsError, Resource,
    ADVANCE_PART_LIMIT, INIT_URI, PART_TARGET_MS, TARGET_DURATION_S, VERSION,
};
use crate::cmaf::{PackagerEvent, Part, Segment, PART_FRAMES, SEGMENT_FRAMES, SEGMENT_PARTS};
use crate::FRAME_MS;

/// Frames in one target duration.
const TARGET_FRAMES: u64 = SEGMENT_FRAMES as u64;
/// RFC 8216bis 6.2.2: parts are listed while within 3 target durations of the playlist end,
/// and stay downloadable for 3 more after that.
const PART_LISTING_FRAMES: u64 = 3 * TARGET_FRAMES;

/// Tunables of the live playlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// Duration of complete segments listed, in ms (raised to 3 target durations, the minimum).
    pub window_ms: u32,
    /// `PART-HOLD-BACK` in part targets (raised to 3, the spec's recommended minimum).
    pub part_hold_back_parts: u32,
}

impl Default for LiveConfig {
    /// A 12 s window (6 segments) and a 0.6 s part hold-back.
    fn default() -> Self {
        LiveConfig {
            window_ms: 12_000,
            part_hold_back_parts: 3,
        }
    }
}

/// The state of a resource a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Available: send these bytes (immutable, cacheable).
    Ready(Bytes),
    /// The part named by the preload hint: hold the request until it is published.
    Pending,
    /// Unknown, too old, or not hinted: 404.
    NotFound,
}

#[derive(Debug)]
struct Entry {
    msn: u64,
    frames: u32,
    discontinuity: bool,
    program_date_us: u64,
    parts: Vec<(u32, Bytes)>,
    /// The whole segment, once complete.
    bytes: Option<Bytes>,
}

/// The live playlist of one room (see the module docs of [`crate::hls`]).
#[derive(Debug)]
pub struct LivePlaylist {
    window_frames: u64,
    part_hold_back_ms: u64,
    /// Complete segments still downloadable, oldest first; the first `unlisted` of them have
    /// left the playlist but are kept a little longer for clients that just read it.
    segments: VecDeque<Entry>,
    unlisted: usize,
    open: Option<Entry>,
    discontinuity_sequence: u64,
    ended: bool,
    generation: u64,
}

impl LivePlaylist {
    /// An empty playlist.
    pub fn new(config: LiveConfig) -> Self {
        let window_frames = u64::from(config.window_ms / FRAME_MS).max(3 * TARGET_FRAMES);
        LivePlaylist {
            window_frames,
            part_hold_back_ms: u64::from(config.part_hold_back_parts.max(3))
                * u64::from(PART_TARGET_MS),
            segments: VecDeque::new(),
            unlisted: 0,
            open: None,
            discontinuity_sequence: 0,
            ended: false,
            generation: 0,
        }
    }

    /// A counter bumped by every change: cache the rendered text per value, and wake
    /// blocked requests (to decide again) when it moves.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies one packager event.
    pub fn apply(&mut self, event: &PackagerEvent) -> Result<(), HlsError> {
        match event {
            PackagerEvent::Part(p) => self.push_part(p),
            PackagerEvent::Segment(s) => self.push_segment(s),
        }
    }

    /// Adds a part: the next part of the open segment, or part 0 of the next segment.
    pub fn push_part(&mut self, part: &Part) -> Result<(), HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        if part.frames == 0 || part.frames > PART_FRAMES {
            return Err(HlsError::BadDuration(part.frames));
        }
        let unexpected = HlsError::UnexpectedPart {
            msn: part.msn,
            index: part.index,
        };
        match self.open.as_mut() {
            Some(open) => {
                if open.msn != part.msn || open.parts.len() != part.index as usize {
                    return Err(unexpected);
                }
                if open.frames + part.frames > SEGMENT_FRAMES {
                    return Err(HlsError::BadDuration(open.frames + part.frames));
                }
                open.frames += part.frames;
                open.parts.push((part.frames, part.bytes.clone()));
            }
            None => {
                let follows = self
                    .segments
                    .back()
                    .is_none_or(|s| s.msn.checked_add(1) == Some(part.msn));
                if part.index != 0 || !follows {
                    return Err(unexpected);
                }
                self.open = Some(Entry {
                    msn: part.msn,
                    frames: part.frames,
                    discontinuity: part.discontinuity,
                    program_date_us: part.program_date_us,
                    parts: vec![(part.frames, part.bytes.clone())],
                    bytes: None,
                });
            }
        }
        self.generation += 1;
        Ok(())
    }

    /// Completes the open segment (all its parts must have been pushed).
    pub fn push_segment(&mut self, segment: &Segment) -> Result<(), HlsError> {
        if self.ended {
            return Err(HlsError::Ended);
        }
        let matches = self.open.as_ref().is_some_and(|o| {
            o.msn == segment.msn
                && o.parts.len() == segment.parts as usize
                && o.frames == segment.frames
        });
        let Some(mut entry) = self.open.take().filter(|_| matches) else {
            return Err(HlsError::UnexpectedSegment(segment.msn));
        };
        // Serve parts as slices of the segment so each byte is held once.
        let sizes: usize = entry.parts.iter().map(|(_, b)| b.len()).sum();
        if sizes == segment.bytes.len() {
            let mut at = 0;
            for (_, bytes) in entry.parts.iter_mut() {
                let len = bytes.len();
                *bytes = segment.bytes.slice(at..at + len);
                at += len;
            }
        }
        entry.bytes = Some(segment.bytes.clone());
        self.segments.push_back(entry);
        self.slide();
        self.generation += 1;
        Ok(())
    }

    /// Marks the end of the stream: closes any open segment from its parts, adds
    /// `EXT-X-ENDLIST`, drops the preload hint; blocking requests are answered at once.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        if let Some(mut open) = self.open.take() {
            let mut bytes = BytesMut::new();
            for (_, b) in &open.parts {
                bytes.extend_from_slice(b);
            }
            open.bytes = Some(bytes.freeze());
            self.segments.push_back(open);
            self.slide();
        }
        self.ended = true;
        self.generation += 1;
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether nothing has been published yet (serve 404 or wait rather than an empty list).
    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.segments.is_empty()
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`: discontinuities that left the listing.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Starts an empty playlist's discontinuity count at `n` (a relay's playlist, which begins
    /// where its origin's listing began, counts as the origin did).
    pub fn start_discontinuity_sequence(&mut self, n: u64) {
        if self.segments.is_empty() && self.open.is_none() {
            self.discontinuity_sequence = n;
        }
    }

    /// Media sequence number of the first listed segment (or of the open one).
    pub fn media_sequence(&self) -> Option<u64> {
        self.listed().next().or(self.open.as_ref()).map(|e| e.msn)
    }

    /// The newest part published, as (msn, index).
    pub fn last_part(&self) -> Option<(u64, u32)> {
        self.open
            .as_ref()
            .filter(|o| !o.parts.is_empty())
            .or(self.segments.back())
            .map(|e| (e.msn, e.parts.len().saturating_sub(1) as u32))
    }

    /// The part announced by `EXT-X-PRELOAD-HINT`: the next one to be published.
    pub fn preload_hint(&self) -> Option<(u64, u32)> {
        if self.ended {
            return None;
        }
        match (&self.open, self.segments.back()) {
            (Some(open), _) => Some((open.msn, open.parts.len() as u32)),
            (None, Some(last)) => Some((last.msn.checked_add(1)?, 0)),
            (None, None) => None,
        }
    }

    /// The bytes of part `index` of segment `msn`, if still held.
    pub fn part(&self, msn: u64, index: u32) -> Lookup {
        let found = self
            .entries()
            .find(|e| e.msn == msn)
            .and_then(|e| e.parts.get(index as usize));
        match found {
            Some((_, bytes)) => Lookup::Ready(bytes.clone()),
            None if self.preload_hint() == Some((msn, index)) => Lookup::Pending,
            None => Lookup::NotFound,
        }
    }

    /// The bytes of complete segment `msn`, if still held.
    pub fn segment(&self, msn: u64) -> Lookup {
        match self.segments.iter().find(|e| e.msn == msn) {
            Some(Entry { bytes: Some(b), .. }) => Lookup::Ready(b.clone()),
            _ => Lookup::NotFound,
        }
    }

    /// Decides a blocking reload (RFC 8216bis 6.2.5.2) against the current state.
    pub fn decide(&self, req: &BlockingRequest) -> BlockDecision {
        // With EXT-X-ENDLIST the directives are ignored.
        if self.ended {
            return BlockDecision::Ready;
        }
        // Nothing published yet: the first part is at most one part target away.
        let (Some(next), Some((last_msn, last_index))) = (self.next_msn(), self.last_part()) else {
            return BlockDecision::Wait;
        };
        // More than two segments past the last complete one (next - 1): refuse.
        if req.msn > next.saturating_add(1) {
            return BlockDecision::Invalid;
        }
        let Some(mut part) = req.part else {
            return if req.msn < next {
                BlockDecision::Ready
            } else {
                BlockDecision::Wait
            };
        };
        // A part index past the last part of a complete segment means part 0 of the next one.
        let mut msn = req.msn;
        while let Some(seg) = self.segments.iter().find(|e| e.msn == msn) {
            if part < seg.parts.len() as u64 {
                break;
            }
            msn += 1;
            part = 0;
        }
        if msn < next {
            return BlockDecision::Ready;
        }
        let published = self.open.as_ref().map_or(0, |o| o.parts.len() as u64);
        if msn == next && part < published {
            return BlockDecision::Ready;
        }
        // Distance in parts from the newest part, counting full segments ahead.
        let ahead = i128::from(msn - last_msn) * i128::from(SEGMENT_PARTS) + i128::from(part)
            - i128::from(last_index);
        if ahead > i128::from(ADVANCE_PART_LIMIT) {
            BlockDecision::Invalid
        } else {
            BlockDecision::Wait
        }
    }

    /// Renders `live.m3u8`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{VERSION}\n#EXT-X-TARGETDURATION:{TARGET_DURATION_S}\n"
        );
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},HOLD-BACK={}",
            seconds(self.part_hold_back_ms),
            seconds(3 * u64::from(TARGET_DURATION_S) * 1000)
        );
        let _ = writeln!(
            out,
            "#EXT-X-PART-INF:PART-TARGET={}",
            seconds(u64::from(PART_TARGET_MS))
        );
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA-SEQUENCE:{}",
            self.media_sequence().unwrap_or(0)
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        let _ = writeln!(
            out,
            "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_URI}\""
        );

        // Frames from the end of each listed entry to the end of the playlist decide whether
        // its parts are still listed.
        let open_frames = self.open.as_ref().map_or(0, |o| u64::from(o.frames));
        let listed: Vec<&Entry> = self.listed().collect();
        let mut after: Vec<u64> = vec![open_frames; listed.len()];
        for i in (0..listed.len().saturating_sub(1)).rev() {
            after[i] = after[i + 1] + u64::from(listed[i + 1].frames);
        }
        for (i, entry) in listed.iter().enumerate() {
            write_entry_head(&mut out, entry, i == 0);
            if after[i] < PART_LISTING_FRAMES {
                write_parts(&mut out, entry);
            }
            let _ = writeln!(
                out,
                "#EXTINF:{},\n{}",
                seconds(u64::from(entry.frames * FRAME_MS)),
                Resource::Segment(entry.msn).uri()
            );
        }
        if let Some(open) = &self.open {
            write_entry_head(&mut out, open, listed.is_empty());
            write_parts(&mut out, open);
        }
        if let Some((msn, index)) = self.preload_hint() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
                Resource::Part { msn, index }.uri()
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    /// Media sequence number of the segment being filled (or about to be).
    fn next_msn(&self) -> Option<u64> {
        match (&self.open, self.segments.back()) {
            (Some(open), _) => Some(open.msn),
            (None, Some(last)) => last.msn.checked_add(1),
            (None, None) => None,
        }
    }

    fn listed(&self) -> impl Iterator<Item = &Entry> {
        self.segments.iter().skip(self.unlisted)
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.segments.iter().chain(self.open.as_ref())
    }

    /// Drops segments from the listing past the window, and from memory 3 target durations
    /// after that (RFC 8216bis 6.2.2: still downloadable after removal).
    fn slide(&mut self) {
        let mut listed: u64 = self.listed().map(|e| u64::from(e.frames)).sum();
        while let Some(front) = self.segments.get(self.unlisted) {
            let front_frames = u64::from(front.frames);
            if self.segments.len() - self.unlisted <= 1
                || listed - front_frames < self.window_frames
            {
                break;
            }
            if front.discontinuity {
                // Keeps every remaining segment's discontinuity sequence number unchanged.
                self.discontinuity_sequence += 1;
            }
            listed -= front_frames;
            self.unlisted += 1;
        }
        let mut unlisted: u64 = self
            .segments
            .iter()
            .take(self.unlisted)
            .map(|e| u64::from(e.frames))
            .sum();
        while let Some(front) = self.segments.front().filter(|_| self.unlisted > 0) {
            let front_frames = u64::from(front.frames);
            if unlisted - front_frames < PART_LISTING_FRAMES {
                break;
            }
            unlisted -= front_frames;
            self.segments.pop_front();
            self.unlisted -= 1;
        }
    }
}

/// Discontinuity and program date tags applying to a segment (they precede its parts).
fn write_entry_head(out: &mut String, entry: &Entry, first: bool) {
    if entry.discontinuity {
        out.push_str("#EXT-X-DISCONTINUITY\n");
    }
    if first || entry.discontinuity {
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            format_program_date(entry.program_date_us)
        );
    }
}

fn write_parts(out: &mut String, entry: &Entry) {
    for (index, (frames, _)) in entry.parts.iter().enumerate() {
        let uri = Resource::Part {
            msn: entry.msn,
            index: index as u32,
        }
        .uri();
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{uri}\",INDEPENDENT=YES",
            seconds(u64::from(frames * FRAME_MS))
        );
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
