//! Tests of the live playlist: golden text, window sliding, discontinuities, blocking reload
//! decisions and resource lookups.

use super::*;
use crate::cmaf::Packager;
use crate::opus::Encoder;

/// 2023-11-14T22:13:20Z, the capture time of seq 0 in these tests.
const T0: u64 = 1_700_000_000_000_000;

fn packet() -> Bytes {
    let mut enc = Encoder::new(32_000).unwrap();
    Bytes::from(enc.encode_vec(&[0i16; 960]).unwrap())
}

struct Feed {
    packager: Packager,
    playlist: LivePlaylist,
    packet: Bytes,
    events: Vec<PackagerEvent>,
}

impl Feed {
    fn new() -> Self {
        Feed {
            packager: Packager::new(),
            playlist: LivePlaylist::new(LiveConfig::default()),
            packet: packet(),
            events: Vec::new(),
        }
    }

    /// Pushes these sequence numbers, captured 20 ms apart on the seq clock.
    fn push(&mut self, seqs: impl IntoIterator<Item = u64>) -> &mut Self {
        for seq in seqs {
            let events = self
                .packager
                .push(seq, T0 + seq * 20_000, self.packet.clone())
                .unwrap();
            for e in &events {
                self.playlist.apply(e).unwrap();
            }
            self.events.extend(events);
        }
        self
    }

    fn part(&self, msn: u64, index: u32) -> &Part {
        self.events
            .iter()
            .find_map(|e| match e {
                PackagerEvent::Part(p) if p.msn == msn && p.index == index => Some(p),
                _ => None,
            })
            .unwrap()
    }

    fn segment(&self, msn: u64) -> &Segment {
        self.events
            .iter()
            .find_map(|e| match e {
                PackagerEvent::Segment(s) if s.msn == msn => Some(s),
                _ => None,
            })
            .unwrap()
    }
}

fn parts(msn: u64, range: std::ops::Range<u32>) -> String {
    range
        .map(|i| format!("#EXT-X-PART:DURATION=0.200,URI=\"part/{msn}.{i}.m4s\",INDEPENDENT=YES\n"))
        .collect()
}

const HEADER: &str = "#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600,HOLD-BACK=6.000
#EXT-X-PART-INF:PART-TARGET=0.200
";

#[test]
fn golden_live_playlist() {
    let mut f = Feed::new();
    f.push(0..235);
    let expected = format!(
        "{HEADER}#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
{}#EXTINF:2.000,
seg/0.m4s
{}#EXTINF:2.000,
seg/1.m4s
{}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/2.3.m4s\"
",
        parts(0, 0..10),
        parts(1, 0..10),
        parts(2, 0..3)
    );
    assert_eq!(f.playlist.render(), expected);
}

#[test]
fn first_playlist_has_only_parts_and_a_hint() {
    let mut f = Feed::new();
    f.push(0..10);
    let expected = format!(
        "{HEADER}#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z
{}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/0.1.m4s\"
",
        parts(0, 0..1)
    );
    assert_eq!(f.playlist.render(), expected);
    assert!(!f.playlist.is_empty());
    assert!(LivePlaylist::new(LiveConfig::default()).is_empty());
}

#[test]
fn the_window_slides_and_old_parts_leave_the_listing() {
    let mut f = Feed::new();
    f.push(0..1630); // 16 complete segments, 3 parts into segment 16
    let text = f.playlist.render();
    // 12 s listed: segments 10..=15, the first with a program date.
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:10\n"));
    assert!(!text.contains("seg/9.m4s"));
    assert!(text
        .contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z\n#EXTINF:2.000,\nseg/10.m4s"));
    // Parts are listed for segments ending within 6 s of the live edge: 13, 14, 15 and 16.
    assert!(!text.contains("part/12."));
    for msn in 13..=15 {
        assert!(text.contains(&parts(msn, 0..10)), "parts of {msn}");
    }
    assert!(text.ends_with(&format!(
        "{}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/16.3.m4s\"\n",
        parts(16, 0..3)
    )));
    assert_eq!(text.matches("#EXTINF:").count(), 6);
    // Unlisted segments stay downloadable for 3 target durations more: 7, 8, 9.
    assert!(matches!(f.playlist.segment(7), Lookup::Ready(_)));
    assert!(matches!(f.playlist.part(7, 9), Lookup::Ready(_)));
    assert_eq!(f.playlist.segment(6), Lookup::NotFound);
    assert_eq!(f.playlist.part(6, 0), Lookup::NotFound);
}

#[test]
fn a_small_window_is_raised_to_three_target_durations() {
    let mut f = Feed::new();
    f.playlist = LivePlaylist::new(LiveConfig {
        window_ms: 1,
        part_hold_back_parts: 1,
    });
    f.push(0..1000);
    let text = f.playlist.render();
    assert_eq!(text.matches("#EXTINF:").count(), 3);
    assert!(text.contains("PART-HOLD-BACK=0.600,"));
}

#[test]
fn discontinuities_are_tagged_then_counted_when_they_leave() {
    let mut f = Feed::new();
    f.push(0..150).push(10_000..10_060);
    let text = f.playlist.render();
    // Segment 1 (seq 100..149) closed early; segment 2 starts over at seq 10 000.
    assert!(text.contains(&format!(
        "#EXTINF:1.000,\nseg/1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:16:40.000Z\n{}",
        parts(2, 0..6)
    )));
    assert!(!text.contains("DISCONTINUITY-SEQUENCE"));
    // Once segment 2 leaves the listing, its tag is counted instead.
    f.push(10_060..11_400);
    let text = f.playlist.render();
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
}

#[test]
fn blocking_decisions_mid_segment() {
    use BlockDecision::*;
    let mut f = Feed::new();
    f.push(0..235); // segments 0 and 1 complete, parts 2.0..2.2 published
    let d = |msn, part| f.playlist.decide(&BlockingRequest { msn, part });
    assert_eq!(f.playlist.last_part(), Some((2, 2)));
    assert_eq!(f.playlist.preload_hint(), Some((2, 3)));
    // Whole segments.
    assert_eq!(d(0, None), Ready);
    assert_eq!(d(1, None), Ready);
    assert_eq!(d(2, None), Wait);
    assert_eq!(d(3, None), Wait);
    assert_eq!(
        d(4, None),
        Invalid,
        "more than two past the last complete segment"
    );
    assert_eq!(d(u64::MAX, None), Invalid);
    // Parts.
    assert_eq!(d(2, Some(2)), Ready);
    assert_eq!(d(2, Some(3)), Wait);
    assert_eq!(d(1, Some(9)), Ready);
    assert_eq!(d(1, Some(10)), Ready, "past the end of 1 means 2.0");
    assert_eq!(d(0, Some(u64::MAX)), Ready, "rolls over to 1.0");
    // The Advance Part Limit: 15 parts past the newest (2.2).
    assert_eq!(d(2, Some(17)), Wait);
    assert_eq!(d(2, Some(18)), Invalid);
    assert_eq!(d(3, Some(7)), Wait);
    assert_eq!(d(3, Some(8)), Invalid);
    assert_eq!(d(3, Some(u64::MAX)), Invalid);
}

#[test]
fn blocking_decisions_at_a_segment_boundary() {
    use BlockDecision::*;
    let mut f = Feed::new();
    f.push(0..300); // segments 0..=2 complete, nothing of 3 yet
    let d = |msn, part| f.playlist.decide(&BlockingRequest { msn, part });
    assert_eq!(f.playlist.preload_hint(), Some((3, 0)));
    assert_eq!(d(2, None), Ready);
    assert_eq!(d(2, Some(9)), Ready);
    assert_eq!(d(2, Some(10)), Wait, "2.10 is 3.0, the hinted part");
    assert_eq!(d(3, Some(0)), Wait);
    assert_eq!(d(4, None), Wait);
    assert_eq!(d(5, None), Invalid);
    // 15 parts past 2.9: 3.0..=3.9 and 4.0..=4.4.
    assert_eq!(d(4, Some(4)), Wait);
    assert_eq!(d(4, Some(5)), Invalid);
}

#[test]
fn blocking_before_anything_and_after_the_end() {
    let empty = LivePlaylist::new(LiveConfig::default());
    let req = BlockingRequest {
        msn: 1_000,
        part: Some(3),
    };
    assert_eq!(empty.decide(&req), BlockDecision::Wait);
    let mut f = Feed::new();
    f.push(0..35);
    f.playlist.end();
    assert_eq!(f.playlist.decide(&req), BlockDecision::Ready);
}

#[test]
fn lookups_serve_published_bytes_and_hold_the_hinted_part() {
    let mut f = Feed::new();
    f.push(0..235);
    assert_eq!(
        f.playlist.part(2, 2),
        Lookup::Ready(f.part(2, 2).bytes.clone())
    );
    assert_eq!(f.playlist.part(2, 3), Lookup::Pending);
    assert_eq!(f.playlist.part(2, 4), Lookup::NotFound);
    assert_eq!(f.playlist.part(3, 0), Lookup::NotFound);
    assert_eq!(
        f.playlist.segment(1),
        Lookup::Ready(f.segment(1).bytes.clone())
    );
    assert_eq!(
        f.playlist.segment(2),
        Lookup::NotFound,
        "open segments are not listed"
    );
    // Parts of complete segments are served as slices of the segment, same bytes.
    assert_eq!(
        f.playlist.part(1, 4),
        Lookup::Ready(f.part(1, 4).bytes.clone())
    );
}

#[test]
fn end_closes_the_open_segment() {
    let mut f = Feed::new();
    f.push(0..235);
    f.playlist.end();
    assert!(f.playlist.is_ended());
    let text = f.playlist.render();
    assert!(text.ends_with(&format!(
        "{}#EXTINF:0.600,\nseg/2.m4s\n#EXT-X-ENDLIST\n",
        parts(2, 0..3)
    )));
    assert!(!text.contains("PRELOAD-HINT"));
    let joined: Vec<u8> = (0..3).flat_map(|i| f.part(2, i).bytes.to_vec()).collect();
    assert_eq!(f.playlist.segment(2), Lookup::Ready(Bytes::from(joined)));
    assert_eq!(f.playlist.part(2, 3), Lookup::NotFound);
    let p0 = f.part(0, 0).clone();
    assert_eq!(f.playlist.push_part(&p0), Err(HlsError::Ended));
}

#[test]
fn out_of_order_events_are_refused() {
    let mut f = Feed::new();
    f.push(0..20);
    let p0 = f.part(0, 0).clone();
    assert_eq!(
        f.playlist.push_part(&p0),
        Err(HlsError::UnexpectedPart { msn: 0, index: 0 })
    );
    let mut skip = p0.clone();
    skip.index = 3;
    assert!(f.playlist.push_part(&skip).is_err());
    let mut empty = p0.clone();
    empty.frames = 0;
    assert_eq!(f.playlist.push_part(&empty), Err(HlsError::BadDuration(0)));
    f.push(20..100);
    let seg = f.segment(0).clone();
    assert_eq!(
        f.playlist.push_segment(&seg),
        Err(HlsError::UnexpectedSegment(0))
    );
    // A part that does not follow the last segment.
    let mut far = p0;
    far.msn = 5;
    assert!(f.playlist.push_part(&far).is_err());
    // The playlist is unchanged by refused events.
    assert_eq!(f.playlist.preload_hint(), Some((1, 0)));
    // 10 parts and a segment were taken; refusals do not count as changes.
    assert_eq!(f.playlist.generation(), 11);
}
