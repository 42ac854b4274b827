//! The packager state machine: program packets in, LL-HLS parts and segments out.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::{decode_time, fragment, CmafError, PART_FRAMES, SEGMENT_FRAMES, SEGMENT_PARTS};
use crate::opus::validate_packet;
use crate::FRAME_MS;

/// A part: one CMAF fragment of up to [`PART_FRAMES`] frames, published as soon as it is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Media sequence number of the segment this part belongs to.
    pub msn: u64,
    /// Position of the part in its segment, from 0.
    pub index: u32,
    /// Sequence number of the first packet.
    pub first_seq: u64,
    /// Number of 20 ms packets.
    pub frames: u32,
    /// Whether the part starts with an independent frame (always, for Opus).
    pub independent: bool,
    /// Whether this is the first part of a segment that follows a gap in sequence numbers.
    pub discontinuity: bool,
    /// Wall-clock time of the first packet, in microseconds since the Unix epoch.
    pub program_date_us: u64,
    /// The `moof` + `mdat` bytes.
    pub bytes: Bytes,
}

/// A complete segment: the concatenation of its parts' fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    /// Sequence number of the first packet.
    pub first_seq: u64,
    /// Number of 20 ms packets.
    pub frames: u32,
    /// Number of parts it was published as.
    pub parts: u32,
    /// Whether the segment follows a gap in sequence numbers (`EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Wall-clock time of the first packet, in microseconds since the Unix epoch.
    pub program_date_us: u64,
    /// The fragments of all its parts, back to back.
    pub bytes: Bytes,
}

impl Part {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u32 {
        self.frames * FRAME_MS
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        f64::from(self.duration_ms()) / 1000.0
    }
}

impl Segment {
    /// Duration in milliseconds.
    pub fn duration_ms(&self) -> u32 {
        self.frames * FRAME_MS
    }

    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        f64::from(self.duration_ms()) / 1000.0
    }
}

/// What [`Packager::push`] and [`Packager::finish`] produce, in publication order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackagerEvent {
    /// A part is complete and may be published.
    Part(Part),
    /// A segment is complete (its last part was reported just before).
    Segment(Segment),
}

/// Where a segment starts and how it is numbered and dated: what another node packaging the
/// same program (a relay) is told, so that it cuts the same parts and segments with the same
/// numbers and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// Its media sequence number.
    pub msn: u64,
    /// The sequence number of its first packet.
    pub first_seq: u64,
    /// Whether it follows a gap (`EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
    /// Wall-clock time of its first packet, µs since the Unix epoch.
    pub program_date_us: u64,
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    first_seq: u64,
    frames: u32,
    parts: u32,
    discontinuity: bool,
    program_date_us: u64,
    bytes: BytesMut,
}

/// Cuts the program track into parts and segments aligned on sequence numbers.
///
/// Segments end after every sequence number `s` with `s % 100 == 99`, so in a continuous run
/// segment `n` holds `seq` `100n..100n+99` and its media sequence number is `seq / 100` (the
/// first segment after a start may be shorter). Parts hold 10 packets, except the last part of
/// a shortened segment. Any `seq` other than the previous one plus one (a gap, a restart, a
/// repeat) closes the open part and segment early and marks the next segment as a
/// discontinuity; media sequence numbers keep counting up by one so playlists stay valid.
#[derive(Debug, Default)]
pub struct Packager {
    last_seq: Option<u64>,
    last_msn: Option<u64>,
    open: Option<OpenSegment>,
    /// Packets of the part being filled.
    pending: Vec<Bytes>,
    pending_first_seq: u64,
    /// Start of the current continuous run: (seq, capture time), for program dates.
    anchor: (u64, u64),
    discontinuity_next: bool,
    discontinuities: u64,
    /// A following packager (a relay's): opens segments only where it is told to, at the
    /// starts declared by the packager it follows (oldest first).
    follow: Option<VecDeque<SegmentStart>>,
}

impl Packager {
    /// A packager waiting for its first packet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A packager that continues a stream whose last published segment was `last_msn` (after
    /// a process restart): numbers go on from there and the first segment is a discontinuity,
    /// so playlists never go back and cached URLs are never reused for other bytes.
    pub fn resuming(last_msn: u64) -> Self {
        Packager {
            last_msn: Some(last_msn),
            discontinuity_next: true,
            ..Self::default()
        }
    }

    /// A packager that follows another: it opens a segment only at a start [`declare`]d to it
    /// and numbers and dates it as declared, so it packages a relayed program exactly as the
    /// node it comes from (packets before the first declared start are not packaged).
    ///
    /// [`declare`]: Packager::declare
    pub fn following() -> Self {
        Packager {
            follow: Some(VecDeque::new()),
            ..Self::default()
        }
    }

    /// Declares where a segment of the followed program starts (ignored unless following, and
    /// for starts not after the last one declared).
    pub fn declare(&mut self, start: SegmentStart) {
        let Some(follow) = self.follow.as_mut() else {
            return;
        };
        let after_declared = follow.back().is_none_or(|b| start.first_seq > b.first_seq);
        let after_packaged = self.last_seq.is_none_or(|l| start.first_seq > l);
        if after_declared && after_packaged {
            follow.push_back(start);
        }
    }

    /// The start of the segment being cut, if one is open.
    pub fn segment_start(&self) -> Option<SegmentStart> {
        self.open.as_ref().map(|o| SegmentStart {
            msn: o.msn,
            first_seq: o.first_seq,
            discontinuity: o.discontinuity,
            program_date_us: o.program_date_us,
        })
    }

    /// Adds the program packet `seq` captured at `capture_us` (µs since the Unix epoch).
    ///
    /// Returns the parts and segments completed by this packet, usually none. A packet that is
    /// not one valid 20 ms Opus packet is refused and leaves the packager unchanged.
    pub fn push(
        &mut self,
        seq: u64,
        capture_us: u64,
        packet: Bytes,
    ) -> Result<Vec<PackagerEvent>, CmafError> {
        validate_packet(&packet)?;
        decode_time(seq)?;
        let mut events = Vec::new();
        if self.follow.is_some() {
            if !self.follow_start(seq, &mut events)? {
                return Ok(events);
            }
            return self.add(seq, packet, events);
        }
        match self.last_seq {
            Some(last) if last.checked_add(1) == Some(seq) => {}
            Some(_) => {
                self.close(&mut events)?;
                self.anchor = (seq, capture_us);
                self.discontinuity_next = true;
                self.discontinuities += 1;
            }
            None => self.anchor = (seq, capture_us),
        }
        self.last_seq = Some(seq);
        if self.open.is_none() {
            self.open = Some(OpenSegment {
                // Continuous runs number segments seq / 100; after a gap the count goes on
                // from the previous segment, since a playlist's numbers must be consecutive.
                msn: self
                    .last_msn
                    .map_or(seq / u64::from(SEGMENT_FRAMES), |m| m + 1),
                first_seq: seq,
                frames: 0,
                parts: 0,
                discontinuity: std::mem::take(&mut self.discontinuity_next),
                program_date_us: self.program_date(seq),
                bytes: BytesMut::new(),
            });
        }
        self.add(seq, packet, events)
    }

    /// Opens the declared segment starting at `seq`, if any, closing the one before; says
    /// whether `seq` is packaged (a segment is open for it).
    fn follow_start(
        &mut self,
        seq: u64,
        events: &mut Vec<PackagerEvent>,
    ) -> Result<bool, CmafError> {
        let continuous = self.last_seq.and_then(|l| l.checked_add(1)) == Some(seq);
        let declared = {
            let Some(follow) = self.follow.as_mut() else {
                return Ok(false);
            };
            while follow.front().is_some_and(|d| d.first_seq < seq) {
                follow.pop_front();
            }
            follow.front().filter(|d| d.first_seq == seq).copied()
        };
        if self.last_seq.is_some() && !continuous {
            self.discontinuities += 1;
        }
        self.last_seq = Some(seq);
        if declared.is_some() || !continuous {
            self.close(events)?;
        }
        if let Some(d) = declared {
            if let Some(follow) = self.follow.as_mut() {
                follow.pop_front();
            }
            self.anchor = (seq, d.program_date_us);
            self.open = Some(OpenSegment {
                msn: d.msn,
                first_seq: seq,
                frames: 0,
                parts: 0,
                discontinuity: d.discontinuity,
                program_date_us: d.program_date_us,
                bytes: BytesMut::new(),
            });
        }
        Ok(self.open.is_some())
    }

    /// Adds `packet` (number `seq`) to the open segment, publishing what it completes.
    fn add(
        &mut self,
        seq: u64,
        packet: Bytes,
        mut events: Vec<PackagerEvent>,
    ) -> Result<Vec<PackagerEvent>, CmafError> {
        if self.pending.is_empty() {
            self.pending_first_seq = seq;
        }
        self.pending.push(packet);
        if let Some(open) = self.open.as_mut() {
            open.frames += 1;
        }
        let segment_end = seq % u64::from(SEGMENT_FRAMES) == u64::from(SEGMENT_FRAMES - 1);
        if segment_end {
            self.close(&mut events)?;
        } else if self.pending.len() == PART_FRAMES as usize {
            self.flush_part(&mut events)?;
        }
        Ok(events)
    }

    /// Publishes the partial part and segment, if any: call when the program ends, or pauses
    /// (the next packet then opens a new segment).
    pub fn finish(&mut self) -> Result<Vec<PackagerEvent>, CmafError> {
        let mut events = Vec::new();
        self.close(&mut events)?;
        Ok(events)
    }

    /// Number of discontinuities seen (gaps, restarts or repeats in sequence numbers).
    pub fn discontinuities(&self) -> u64 {
        self.discontinuities
    }

    /// The last sequence number accepted.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The first media sequence number not used yet (by a published or an open segment).
    pub fn next_msn(&self) -> u64 {
        match (&self.open, self.last_msn) {
            (Some(open), _) => open.msn + 1,
            (None, Some(last)) => last + 1,
            (None, None) => 0,
        }
    }

    /// Wall-clock time of packet `seq`, counted in 20 ms steps from the start of the run so
    /// that program dates advance exactly like the media timeline (no capture jitter).
    fn program_date(&self, seq: u64) -> u64 {
        let (seq0, t0) = self.anchor;
        let steps = seq.saturating_sub(seq0);
        t0.saturating_add(steps.saturating_mul(u64::from(FRAME_MS) * 1000))
    }

    /// Turns the pending packets into a part of the open segment.
    fn flush_part(&mut self, events: &mut Vec<PackagerEvent>) -> Result<(), CmafError> {
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        if self.pending.is_empty() {
            return Ok(());
        }
        let first_seq = self.pending_first_seq;
        // mfhd numbers only need to increase; deriving them from the position keeps them
        // identical for anyone packaging the same run. Wrapping after 2^32 parts (27 years).
        let number = open
            .msn
            .wrapping_mul(u64::from(SEGMENT_PARTS))
            .wrapping_add(u64::from(open.parts) + 1) as u32;
        let bytes = Bytes::from(fragment(number, decode_time(first_seq)?, &self.pending)?);
        let part = Part {
            msn: open.msn,
            index: open.parts,
            first_seq,
            frames: self.pending.len() as u32,
            independent: true,
            discontinuity: open.discontinuity && open.parts == 0,
            program_date_us: self.program_date(first_seq),
            bytes,
        };
        self.pending.clear();
        if let Some(open) = self.open.as_mut() {
            open.bytes.extend_from_slice(&part.bytes);
            open.parts += 1;
        }
        events.push(PackagerEvent::Part(part));
        Ok(())
    }

    /// Publishes the pending part and closes the open segment.
    fn close(&mut self, events: &mut Vec<PackagerEvent>) -> Result<(), CmafError> {
        self.flush_part(events)?;
        if let Some(open) = self.open.take() {
            self.last_msn = Some(open.msn);
            events.push(PackagerEvent::Segment(Segment {
                msn: open.msn,
                first_seq: open.first_seq,
                frames: open.frames,
                parts: open.parts,
                discontinuity: open.discontinuity,
                program_date_us: open.program_date_us,
                bytes: open.bytes.freeze(),
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::reader::fragments;
    use crate::opus::Encoder;
    use crate::tone::ToneGenerator;

    /// Real 20 ms Opus packets, since the packager validates them.
    fn packets(n: usize) -> Vec<Bytes> {
        let mut enc = Encoder::new(32_000).unwrap();
        let mut tone = ToneGenerator::new(440.0, 0.3);
        (0..n)
            .map(|_| Bytes::from(enc.encode_vec(&tone.next_frame()).unwrap()))
            .collect()
    }

    /// Pushes `packets` with the given sequence numbers; capture time is 1 s + 20 ms × i.
    fn run(
        p: &mut Packager,
        seqs: impl IntoIterator<Item = u64>,
        packets: &[Bytes],
    ) -> Vec<PackagerEvent> {
        let mut out = Vec::new();
        for (i, seq) in seqs.into_iter().enumerate() {
            let t = 1_000_000 + 20_000 * i as u64;
            out.extend(p.push(seq, t, packets[i].clone()).unwrap());
        }
        out
    }

    fn split(events: &[PackagerEvent]) -> (Vec<&Part>, Vec<&Segment>) {
        let parts = events
            .iter()
            .filter_map(|e| match e {
                PackagerEvent::Part(p) => Some(p),
                PackagerEvent::Segment(_) => None,
            })
            .collect();
        let segs = events
            .iter()
            .filter_map(|e| match e {
                PackagerEvent::Segment(s) => Some(s),
                PackagerEvent::Part(_) => None,
            })
            .collect();
        (parts, segs)
    }

    #[test]
    fn aligned_run_makes_200ms_parts_and_2s_segments() {
        let pk = packets(250);
        let mut p = Packager::new();
        let mut events = run(&mut p, 0..250, &pk);
        events.extend(p.finish().unwrap());
        let (parts, segs) = split(&events);
        assert_eq!(parts.len(), 25);
        assert!(parts
            .iter()
            .all(|p| p.frames == 10 && p.independent && !p.discontinuity));
        let msns: Vec<_> = segs
            .iter()
            .map(|s| (s.msn, s.first_seq, s.frames, s.parts))
            .collect();
        assert_eq!(msns, [(0, 0, 100, 10), (1, 100, 100, 10), (2, 200, 50, 5)]);
        assert_eq!(segs[0].duration_s(), 2.0);
        assert_eq!(parts[13].msn, 1);
        assert_eq!(parts[13].index, 3);
        assert_eq!(parts[13].first_seq, 130);
        assert_eq!(parts[13].duration_s(), 0.2);
        // Every fragment carries tfdt = first seq × 960 and its own packets, in order.
        for part in &parts {
            let f = &fragments(&part.bytes).unwrap()[0];
            assert_eq!(f.decode_time, part.first_seq * 960);
            let expected: Vec<Vec<u8>> = (part.first_seq..part.first_seq + 10)
                .map(|s| pk[s as usize].to_vec())
                .collect();
            assert_eq!(f.samples, expected);
            assert_eq!(
                u64::from(f.sequence_number),
                part.msn * 10 + u64::from(part.index) + 1
            );
        }
        // A segment is its parts back to back.
        let seg1: Vec<u8> = parts[10..20]
            .iter()
            .flat_map(|p| p.bytes.to_vec())
            .collect();
        assert_eq!(segs[1].bytes.to_vec(), seg1);
        let f = fragments(&segs[1].bytes).unwrap();
        assert_eq!(f.len(), 10);
        assert_eq!(f[9].decode_time, 190 * 960);
        // Program dates advance with the media clock from the first capture time.
        assert_eq!(segs[1].program_date_us, 1_000_000 + 100 * 20_000);
        assert_eq!(parts[3].program_date_us, 1_000_000 + 30 * 20_000);
    }

    #[test]
    fn the_segment_closes_with_its_last_part_in_one_push() {
        let pk = packets(100);
        let mut p = Packager::new();
        let events = run(&mut p, 0..99, &pk[..99]);
        assert_eq!(split(&events).0.len(), 9);
        assert!(split(&events).1.is_empty());
        let last = p.push(99, 0, pk[99].clone()).unwrap();
        assert!(
            matches!(&last[..], [PackagerEvent::Part(pt), PackagerEvent::Segment(s)]
            if pt.index == 9 && s.msn == 0 && s.parts == 10)
        );
    }

    #[test]
    fn an_unaligned_start_shortens_the_first_segment() {
        let pk = packets(80);
        let mut p = Packager::new();
        let events = run(&mut p, 1_234_567..1_234_647, &pk);
        let (parts, segs) = split(&events);
        // seq 1_234_567..=1_234_599 (33 frames) is segment 12_345: 10 + 10 + 10 + 3.
        assert_eq!(segs.len(), 1);
        assert_eq!(
            (segs[0].msn, segs[0].frames, segs[0].parts),
            (12_345, 33, 4)
        );
        let sizes: Vec<_> = parts.iter().map(|p| (p.msn, p.index, p.frames)).collect();
        assert_eq!(
            &sizes[..6],
            [
                (12_345, 0, 10),
                (12_345, 1, 10),
                (12_345, 2, 10),
                (12_345, 3, 3),
                (12_346, 0, 10),
                (12_346, 1, 10)
            ]
        );
        let f = fragments(&parts[4].bytes).unwrap();
        assert_eq!(f[0].decode_time, 1_234_600 * 960);
    }

    #[test]
    fn a_gap_closes_early_and_marks_a_discontinuity() {
        let pk = packets(40);
        let mut p = Packager::new();
        let seqs = (0..15).chain(5_000..5_025);
        let mut events = run(&mut p, seqs, &pk);
        events.extend(p.finish().unwrap());
        let (parts, segs) = split(&events);
        let summary: Vec<_> = segs
            .iter()
            .map(|s| (s.msn, s.first_seq, s.frames, s.discontinuity))
            .collect();
        // The segment after the gap is numbered 1, not 50: playlist numbers are consecutive.
        assert_eq!(summary, [(0, 0, 15, false), (1, 5_000, 25, true)]);
        let flags: Vec<_> = parts
            .iter()
            .map(|p| (p.msn, p.index, p.frames, p.discontinuity))
            .collect();
        assert_eq!(
            flags,
            [
                (0, 0, 10, false),
                (0, 1, 5, false),
                (1, 0, 10, true),
                (1, 1, 10, false),
                (1, 2, 5, false)
            ]
        );
        assert_eq!(p.discontinuities(), 1);
        // Timestamps follow the new sequence numbers; dates restart from the new capture time.
        assert_eq!(
            fragments(&parts[2].bytes).unwrap()[0].decode_time,
            5_000 * 960
        );
        assert_eq!(parts[2].program_date_us, 1_000_000 + 15 * 20_000);
    }

    #[test]
    fn a_restart_from_zero_keeps_numbers_increasing() {
        let pk = packets(30);
        let mut p = Packager::new();
        let events = run(&mut p, (700..710).chain(0..20), &pk);
        let (parts, segs) = split(&events);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].msn, 7);
        assert_eq!((parts[1].msn, parts[1].discontinuity), (8, true));
        assert!(parts.windows(2).all(|w| {
            let n = |p: &Part| fragments(&p.bytes).unwrap()[0].sequence_number;
            n(w[1]) > n(w[0])
        }));
    }

    #[test]
    fn a_repeated_seq_is_a_discontinuity_too() {
        let pk = packets(3);
        let mut p = Packager::new();
        let events = run(&mut p, [5, 6, 6], &pk);
        let (parts, segs) = split(&events);
        assert_eq!((parts.len(), segs.len()), (1, 1));
        assert_eq!(p.discontinuities(), 1);
        let tail = p.finish().unwrap();
        assert!(
            matches!(&tail[..], [PackagerEvent::Part(pt), PackagerEvent::Segment(s)]
            if pt.msn == 1 && pt.first_seq == 6 && s.discontinuity)
        );
    }

    #[test]
    fn bad_packets_are_refused_without_changing_state() {
        let pk = packets(2);
        let mut p = Packager::new();
        p.push(10, 0, pk[0].clone()).unwrap();
        assert!(matches!(
            p.push(11, 0, Bytes::new()),
            Err(CmafError::Packet(_))
        ));
        assert!(matches!(
            p.push(11, 0, Bytes::from_static(&[0xff; 4000])),
            Err(CmafError::Packet(_))
        ));
        assert_eq!(
            p.push(u64::MAX, 0, pk[1].clone()),
            Err(CmafError::SeqOutOfRange(u64::MAX))
        );
        assert_eq!(p.last_seq(), Some(10));
        p.push(11, 0, pk[1].clone()).unwrap();
        assert_eq!(p.discontinuities(), 0);
    }

    #[test]
    fn resuming_continues_the_numbers_with_a_discontinuity() {
        let pk = packets(12);
        let mut p = Packager::resuming(41);
        let events = run(&mut p, 0..12, &pk);
        let (parts, _) = split(&events);
        assert_eq!(
            (parts[0].msn, parts[0].index, parts[0].discontinuity),
            (42, 0, true)
        );
        assert_eq!(fragments(&parts[0].bytes).unwrap()[0].decode_time, 0);
        assert_eq!(p.discontinuities(), 0, "no gap was seen by this packager");
    }

    #[test]
    fn finish_on_an_empty_packager_is_empty() {
        let mut p = Packager::new();
        assert!(p.finish().unwrap().is_empty());
    }

    /// One packet pushed to the origin: its number and bytes, what it completed, and the
    /// origin's open segment after it.
    struct Pushed {
        seq: u64,
        packet: Bytes,
        events: Vec<PackagerEvent>,
        start: Option<SegmentStart>,
    }

    /// A program with everything that moves segment numbers: a start mid-segment (numbered
    /// after a restart), a gap, and a cut (a pause) with no gap after it.
    fn eventful(origin: &mut Packager, packets: &[Bytes]) -> Vec<Pushed> {
        let mut seqs: Vec<u64> = (1234..1420).collect();
        seqs.extend(1500..1640);
        let mut out = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let mut events = Vec::new();
            if seq == 1570 {
                events.extend(origin.finish().unwrap());
            }
            let t = 1_000_000 + 20_000 * i as u64;
            events.extend(origin.push(seq, t, packets[i].clone()).unwrap());
            out.push(Pushed {
                seq,
                packet: packets[i].clone(),
                events,
                start: origin.segment_start(),
            });
        }
        out
    }

    fn parts_of(events: &[PackagerEvent]) -> Vec<Part> {
        events
            .iter()
            .filter_map(|e| match e {
                PackagerEvent::Part(p) => Some(p.clone()),
                PackagerEvent::Segment(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_follower_cuts_the_same_bytes_from_a_declared_start() {
        let packets = packets(400);
        let mut origin = Packager::resuming(7_000);
        let pushed = eventful(&mut origin, &packets);
        let mut starts: Vec<SegmentStart> = pushed.iter().filter_map(|p| p.start).collect();
        starts.dedup();
        // After the restart, the gap, the cut, and at every hundred.
        assert_eq!(
            starts
                .iter()
                .map(|s| (s.msn, s.first_seq, s.discontinuity))
                .collect::<Vec<_>>(),
            [
                (7_001, 1234, true),
                (7_002, 1300, false),
                (7_003, 1400, false),
                (7_004, 1500, true),
                (7_005, 1570, false),
                (7_006, 1600, false),
            ]
        );
        let all: Vec<PackagerEvent> = pushed.iter().flat_map(|p| p.events.clone()).collect();
        let origin_parts = parts_of(&all);
        // Followers joining at every declared start, or some frames before it, package every
        // part from there exactly as the origin did (capture times differ on a relay: unused).
        for (k, start) in starts.iter().enumerate() {
            for lead in [0u64, 1, 37] {
                let mut follower = Packager::following();
                for s in &starts[k..] {
                    follower.declare(*s);
                }
                let mut events = Vec::new();
                for p in pushed.iter().filter(|p| p.seq + lead >= start.first_seq) {
                    events.extend(follower.push(p.seq, 5, p.packet.clone()).unwrap());
                }
                let expected: Vec<Part> = origin_parts
                    .iter()
                    .filter(|p| p.first_seq >= start.first_seq)
                    .cloned()
                    .collect();
                assert_eq!(parts_of(&events), expected, "start {k}, lead {lead}");
            }
        }
    }

    #[test]
    fn a_follower_packages_nothing_before_its_first_declared_start() {
        let packets = packets(30);
        let mut follower = Packager::following();
        follower.declare(SegmentStart {
            msn: 42,
            first_seq: 110,
            discontinuity: true,
            program_date_us: 77,
        });
        let events = run(&mut follower, 100..130, &packets);
        let (parts, segs) = split(&events);
        assert!(segs.is_empty());
        assert_eq!(
            parts
                .iter()
                .map(|p| (
                    p.msn,
                    p.index,
                    p.first_seq,
                    p.discontinuity,
                    p.program_date_us
                ))
                .collect::<Vec<_>>(),
            [(42, 0, 110, true, 77), (42, 1, 120, false, 77 + 200_000)]
        );
        // A start declared in the past is ignored.
        follower.declare(SegmentStart {
            msn: 1,
            first_seq: 5,
            discontinuity: false,
            program_date_us: 0,
        });
        assert_eq!(follower.segment_start().map(|s| s.msn), Some(42));
    }
}
