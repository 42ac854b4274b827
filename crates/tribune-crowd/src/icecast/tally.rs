//! What one HTTP stream listener's pages mean (sans-IO): loss from gaps in the Ogg page sequence,
//! Opus packets received, and lateness against the stream's own clock, plus the HTTP response
//! head of a stream request.
//!
//! An HTTP stream carries no capture timestamps, so glass-to-ear cannot be measured. Instead
//! each page is timed against the stream clock (the granule position, 48 kHz for Opus): lateness
//! = arrival − (anchor + granule / 48 000 s), where the anchor is the first page's arrival minus
//! its granule time. A server that falls behind the stream shows as growing lateness; the
//! source's and network's constant delay is not in it. The anchor moves earlier whenever a page
//! arrives earlier than the clock says it could: that is how Icecast's burst on connect (a few
//! seconds of past audio sent at once) looks, and those pages are counted as backlog, not timed.

use super::ogg::Page;

/// Opus granule positions count 48 kHz samples, whatever the input rate.
pub const GRANULE_RATE: u64 = 48_000;
/// A page arriving this much ahead of the stream clock re-anchors it and counts as backlog
/// (burst) rather than as a page on time.
pub const AHEAD_SLACK_US: i64 = 20_000;

/// The stream clock of one listener.
#[derive(Debug, Default, Clone)]
pub struct StreamClock {
    /// Granule of the first timed page (times are relative to it).
    base_granule: Option<u64>,
    /// Earliest (arrival − granule time) seen, µs: arrival of granule `base_granule`.
    anchor_us: Option<i64>,
    /// Pages whose scheduled time falls before this were sent while the listener was away.
    resumed_at_us: i64,
}

/// How one page's arrival compares with the stream clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// On the clock or behind it by this many µs.
    Late(u64),
    /// Ahead of the clock (burst on connect) or audio from while the listener was away (burst
    /// after a reconnect): not timed.
    Backlog,
}

impl StreamClock {
    /// Times a page with granule position `granule` that arrived at `now_us`.
    pub fn time(&mut self, granule: u64, now_us: u64) -> Timing {
        let base = *self.base_granule.get_or_insert(granule);
        // Granules of one stream only grow; an older one (a replay) counts from the base back.
        let g_us = (granule as i128 - base as i128) * 1_000_000 / i128::from(GRANULE_RATE);
        let offset = (i128::from(now_us) - g_us).clamp(i64::MIN.into(), i64::MAX.into()) as i64;
        let Some(anchor) = self.anchor_us else {
            self.anchor_us = Some(offset);
            return Timing::Late(0);
        };
        if offset < anchor {
            self.anchor_us = Some(offset);
            return if offset < anchor - AHEAD_SLACK_US {
                Timing::Backlog
            } else {
                Timing::Late(0)
            };
        }
        let scheduled = anchor as i128 + g_us;
        if scheduled < i128::from(self.resumed_at_us) {
            return Timing::Backlog;
        }
        Timing::Late((offset - anchor) as u64)
    }

    /// A new connection starts at `now_us`: audio the clock puts before then is backlog.
    pub fn resumed(&mut self, now_us: u64) {
        self.resumed_at_us = now_us.min(i64::MAX as u64) as i64;
    }

    /// A new logical stream (new serial): granules restart.
    pub fn reset(&mut self) {
        self.base_granule = None;
        self.anchor_us = None;
    }
}

/// What one page meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageEvent {
    /// An Opus header page (`OpusHead`, `OpusTags`): sent again on every connection, not audio.
    Header,
    /// A page already received (Icecast's burst replays the recent past on a reconnect).
    Stale,
    /// A new audio page.
    Audio {
        /// Opus packets (frames) ending on this page.
        frames: u64,
        /// Pages missing right before it.
        lost_pages: u64,
        /// Frames estimated missing: `lost_pages` × this page's packets.
        lost_frames: u64,
        /// Lateness against the stream clock, µs, or None when not timed.
        lateness_us: Option<u64>,
    },
}

/// One listener's account of its stream, across reconnects.
#[derive(Debug, Default, Clone)]
pub struct StreamTally {
    serial: Option<u32>,
    next_seq: Option<u32>,
    clock: StreamClock,
    /// Audio pages received.
    pub pages: u64,
    /// Opus packets received.
    pub frames: u64,
    /// Opus packets estimated lost.
    pub lost: u64,
    /// Gaps in the page sequence.
    pub gaps: u64,
    /// Opus packets of pages received again.
    pub stale: u64,
    /// Opus packets of pages not timed (burst).
    pub backlog: u64,
    /// Logical stream changes (new serial) after the first.
    pub restarts: u64,
}

impl StreamTally {
    /// Records a page that arrived at `now_us`.
    pub fn page(&mut self, p: &Page, now_us: u64) -> PageEvent {
        if p.is_opus_header() {
            return PageEvent::Header;
        }
        if self.serial != Some(p.serial) {
            // A new logical stream (the source restarted): its numbering starts over.
            if self.serial.is_some() {
                self.restarts += 1;
            }
            self.serial = Some(p.serial);
            self.next_seq = None;
            self.clock.reset();
        }
        let lost_pages = match self.next_seq {
            Some(next) if p.seq < next => {
                self.stale += u64::from(p.packets);
                return PageEvent::Stale;
            }
            Some(next) => u64::from(p.seq - next),
            None => 0,
        };
        self.next_seq = p.seq.checked_add(1);
        let frames = u64::from(p.packets);
        let lost_frames = lost_pages * frames;
        self.pages += 1;
        self.frames += frames;
        self.lost += lost_frames;
        if lost_pages > 0 {
            self.gaps += 1;
        }
        let lateness_us = if p.granule == u64::MAX {
            None // no packet ends on this page: no time
        } else {
            match self.clock.time(p.granule, now_us) {
                Timing::Late(us) => Some(us),
                Timing::Backlog => {
                    self.backlog += frames;
                    None
                }
            }
        };
        PageEvent::Audio {
            frames,
            lost_pages,
            lost_frames,
            lateness_us,
        }
    }

    /// A new connection starts at `now_us`.
    pub fn resumed(&mut self, now_us: u64) {
        self.clock.resumed(now_us);
    }
}

/// Why a stream request's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The status line is not HTTP (or ICY).
    #[error("not an HTTP response")]
    NotHttp,
    /// The server answered with another status than 200.
    #[error("{0}")]
    Status(u16),
    /// A chunked body, which a stream reader here does not take.
    #[error("chunked transfer encoding is not supported")]
    Chunked,
}

/// Finds the end of an HTTP response head in `buf`: the offset just past the blank line, or
/// None when more bytes are needed.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Checks a complete response head (`HTTP/1.x 200 …` or `ICY 200 …`, no chunked encoding).
pub fn check_head(head: &[u8]) -> Result<(), HeadError> {
    let text = std::str::from_utf8(head).map_err(|_| HeadError::NotHttp)?;
    let mut lines = text.split("\r\n");
    let mut status = lines.next().unwrap_or("").split(' ');
    let proto = status.next().unwrap_or("");
    if !(proto.starts_with("HTTP/1.") || proto == "ICY") {
        return Err(HeadError::NotHttp);
    }
    let code: u16 = status
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or(HeadError::NotHttp)?;
    if code != 200 {
        return Err(HeadError::Status(code));
    }
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
            {
                return Err(HeadError::Chunked);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::ogg::{Page, PEEK};
    use super::*;

    fn page(seq: u32, granule: u64, packets: u16) -> Page {
        Page {
            header_type: 0,
            granule,
            serial: 9,
            seq,
            packets,
            body_len: 400,
            head: [0xfc; PEEK],
        }
    }

    /// 100 ms pages of 5 packets: page k ends at granule 4 800 × (k + 1).
    fn audio(k: u32) -> Page {
        page(k, 4_800 * u64::from(k + 1), 5)
    }

    #[test]
    fn lateness_is_measured_against_the_stream_clock() {
        let mut c = StreamClock::default();
        // The first page anchors the clock at 10 s.
        assert_eq!(c.time(48_000, 10_000_000), Timing::Late(0));
        // 100 ms of stream later, 130 ms of wall time later: 30 ms late.
        assert_eq!(c.time(52_800, 10_130_000), Timing::Late(30_000));
        // On time again.
        assert_eq!(c.time(57_600, 10_200_000), Timing::Late(0));
        // 5 ms early: the anchor moves 5 ms earlier, the page is on time.
        assert_eq!(c.time(62_400, 10_295_000), Timing::Late(0));
        assert_eq!(c.time(67_200, 10_400_000), Timing::Late(5_000));
    }

    #[test]
    fn a_burst_on_connect_is_backlog_and_reanchors() {
        let mut c = StreamClock::default();
        c.resumed(5_000_000);
        // Icecast sends 2 s of past pages at once at 5 s, then live pages every 100 ms.
        let mut timed = Vec::new();
        for k in 0..20u64 {
            timed.push(c.time(4_800 * (k + 1), 5_000_000 + k * 10));
        }
        assert_eq!(timed[0], Timing::Late(0));
        assert!(
            timed[1..].iter().all(|t| *t == Timing::Backlog),
            "{timed:?}"
        );
        // The live edge: page 20 arrives 100 ms after page 19, page 21 12 ms late.
        assert_eq!(c.time(4_800 * 21, 5_100_190), Timing::Late(0));
        assert_eq!(c.time(4_800 * 22, 5_212_190), Timing::Late(12_000));
    }

    #[test]
    fn audio_from_while_away_is_backlog_after_a_reconnect() {
        let mut c = StreamClock::default();
        c.time(4_800, 1_000_000);
        c.time(9_600, 1_100_000);
        // Away from 1.1 s to 3 s; the reconnect's burst replays pages from 1.5 s at 3 s.
        c.resumed(3_000_000);
        assert_eq!(c.time(4_800 * 6, 3_000_100), Timing::Backlog);
        assert_eq!(c.time(4_800 * 21, 3_000_200), Timing::Late(200));
    }

    #[test]
    fn loss_is_counted_from_page_sequence_gaps() {
        let mut t = StreamTally::default();
        let head = Page {
            head: *b"OpusHead",
            ..page(0, 0, 1)
        };
        assert_eq!(t.page(&head, 0), PageEvent::Header);
        assert!(matches!(
            t.page(&audio(2), 100_000),
            PageEvent::Audio { lost_pages: 0, .. }
        ));
        t.page(&audio(3), 200_000);
        // Pages 4 and 5 are missing: 2 pages × 5 packets.
        assert_eq!(
            t.page(&audio(6), 500_000),
            PageEvent::Audio {
                frames: 5,
                lost_pages: 2,
                lost_frames: 10,
                lateness_us: Some(0)
            }
        );
        // A reconnect: the headers again, then a replay of page 6 (stale), then page 7.
        t.resumed(600_000);
        assert_eq!(t.page(&head, 600_000), PageEvent::Header);
        assert_eq!(t.page(&audio(6), 600_000), PageEvent::Stale);
        t.page(&audio(7), 620_000);
        assert_eq!(
            (t.pages, t.frames, t.lost, t.gaps, t.stale),
            (4, 20, 10, 1, 5)
        );
        // A new serial (the source restarted) starts the numbering over without loss.
        let other = Page {
            serial: 10,
            ..audio(0)
        };
        assert!(matches!(
            t.page(&other, 700_000),
            PageEvent::Audio { lost_pages: 0, .. }
        ));
        assert_eq!((t.restarts, t.lost), (1, 10));
    }

    #[test]
    fn response_heads_are_checked() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\nOggS";
        let end = head_end(ok).unwrap();
        assert_eq!(&ok[end..], b"OggS");
        assert_eq!(check_head(&ok[..end]), Ok(()));
        assert_eq!(check_head(b"ICY 200 OK\r\n\r\n"), Ok(()));
        assert_eq!(head_end(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(
            check_head(b"HTTP/1.0 403 Forbidden\r\n\r\n"),
            Err(HeadError::Status(403))
        );
        assert_eq!(
            check_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Chunked)
        );
        assert_eq!(check_head(b"SSH-2.0\r\n\r\n"), Err(HeadError::NotHttp));
    }
}
