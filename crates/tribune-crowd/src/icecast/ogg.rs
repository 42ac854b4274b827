//! An incremental Ogg page reader (sans-IO, RFC 3533): bytes go in as they arrive, in pieces of any
//! size, and each complete page comes out as a small fixed-size [`Page`] summary. Page bodies are
//! skipped, not buffered (only their first bytes are kept, to tell Opus header pages from audio),
//! so reading a stream allocates nothing. The CRC is not checked.
//!
//! A stream that does not start with, or loses, the capture pattern `OggS` is resynchronised by
//! scanning for the next one (counted in [`OggReader::resyncs`]); more than [`MAX_HUNT`] bytes
//! without one is an error, so a stream that is not Ogg at all fails clearly.

/// Fixed page header length, up to and including the segment count.
const HEADER_LEN: usize = 27;
/// The capture pattern at the start of every page.
const CAPTURE: &[u8; 4] = b"OggS";
/// Bytes of each page body kept in [`Page::head`].
pub const PEEK: usize = 8;
/// Most bytes skipped in a row while hunting for a capture pattern before giving up.
pub const MAX_HUNT: u64 = 64 * 1024;

/// Header type flag: this page continues a packet from the previous page.
pub const CONTINUED: u8 = 0x01;
/// Header type flag: first page of a logical stream.
pub const BOS: u8 = 0x02;
/// Header type flag: last page of a logical stream.
pub const EOS: u8 = 0x04;

/// Why a byte stream is not readable as Ogg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    /// No capture pattern in [`MAX_HUNT`] bytes.
    #[error("not an Ogg stream: no \"OggS\" capture pattern in {0} bytes")]
    NoCapture(u64),
}

/// What one page holds, without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Header type flags ([`CONTINUED`], [`BOS`], [`EOS`]).
    pub header_type: u8,
    /// Granule position: for Opus, 48 kHz samples up to the end of the last packet that ends on
    /// this page; `u64::MAX` (-1) when no packet ends on it.
    pub granule: u64,
    /// Bitstream serial number.
    pub serial: u32,
    /// Page sequence number within the logical stream.
    pub seq: u32,
    /// Packets that end on this page (lacing values below 255).
    pub packets: u16,
    /// Body length in bytes.
    pub body_len: usize,
    /// The first bytes of the body (fewer if the body is shorter: see `body_len`).
    pub head: [u8; PEEK],
}

impl Page {
    /// Whether this page starts with an Opus header packet (`OpusHead` or `OpusTags`).
    pub fn is_opus_header(&self) -> bool {
        self.body_len >= PEEK && (&self.head == b"OpusHead" || &self.head == b"OpusTags")
    }
}

/// Where the reader is within a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the 27-byte fixed header (the capture pattern first).
    Header,
    /// Collecting the segment table.
    Segments,
    /// Skipping the body.
    Body,
}

/// The incremental page reader. Create one per stream (or per connection).
#[derive(Debug, Clone)]
pub struct OggReader {
    state: State,
    header: [u8; HEADER_LEN],
    header_len: usize,
    segments: [u8; 255],
    segments_len: usize,
    body_left: usize,
    page: Page,
    hunted: u64,
    /// Times the capture pattern was found again after bytes that were not a page.
    pub resyncs: u64,
    /// Bytes skipped while hunting for a capture pattern, over the whole stream.
    pub skipped: u64,
}

impl Default for OggReader {
    fn default() -> Self {
        OggReader {
            state: State::Header,
            header: [0; HEADER_LEN],
            header_len: 0,
            segments: [0; 255],
            segments_len: 0,
            body_left: 0,
            page: Page {
                header_type: 0,
                granule: 0,
                serial: 0,
                seq: 0,
                packets: 0,
                body_len: 0,
                head: [0; PEEK],
            },
            hunted: 0,
            resyncs: 0,
            skipped: 0,
        }
    }
}

impl OggReader {
    /// Consumes bytes from the front of `input` until a page completes (returned, with the rest
    /// of `input` left for the next call) or `input` is used up (`Ok(None)`).
    pub fn next_page(&mut self, input: &mut &[u8]) -> Result<Option<Page>, OggError> {
        while !input.is_empty() {
            match self.state {
                State::Header => {
                    if self.header_len < CAPTURE.len() {
                        self.hunt(input)?;
                        continue;
                    }
                    let take = (HEADER_LEN - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    *input = &input[take..];
                    if self.header_len == HEADER_LEN {
                        self.start_page()?;
                    }
                }
                State::Segments => {
                    let n = self.segments_len;
                    let want = usize::from(self.header[26]);
                    let take = (want - n).min(input.len());
                    self.segments[n..n + take].copy_from_slice(&input[..take]);
                    self.segments_len += take;
                    *input = &input[take..];
                    if self.segments_len == want {
                        if let Some(p) = self.start_body() {
                            return Ok(Some(p));
                        }
                    }
                }
                State::Body => {
                    let read = self.page.body_len - self.body_left;
                    let take = self.body_left.min(input.len());
                    if read < PEEK {
                        let k = (PEEK - read).min(take);
                        self.page.head[read..read + k].copy_from_slice(&input[..k]);
                    }
                    self.body_left -= take;
                    *input = &input[take..];
                    if self.body_left == 0 {
                        return Ok(Some(self.finish_page()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Matches the capture pattern byte by byte, skipping whatever is not part of it.
    fn hunt(&mut self, input: &mut &[u8]) -> Result<(), OggError> {
        let b = input[0];
        *input = &input[1..];
        if b == CAPTURE[self.header_len] {
            self.header[self.header_len] = b;
            self.header_len += 1;
            if self.header_len == CAPTURE.len() && self.hunted > 0 {
                self.resyncs += 1;
                self.hunted = 0;
            }
            return Ok(());
        }
        // "OggS" has no repeated prefix: a mismatch restarts the match, at this byte if it is
        // an 'O'.
        let dropped = self.header_len as u64 + u64::from(b != CAPTURE[0]);
        self.header_len = usize::from(b == CAPTURE[0]);
        if self.header_len == 1 {
            self.header[0] = b;
        }
        self.skip(dropped)
    }

    fn skip(&mut self, n: u64) -> Result<(), OggError> {
        self.hunted += n;
        self.skipped += n;
        if self.hunted > MAX_HUNT {
            return Err(OggError::NoCapture(self.hunted));
        }
        Ok(())
    }

    /// The fixed header is complete: check the version and read its fields.
    fn start_page(&mut self) -> Result<(), OggError> {
        let h = &self.header;
        if h[4] != 0 {
            // Not a version-0 page: a false capture. Hunt again after the pattern.
            self.header_len = 0;
            return self.skip(HEADER_LEN as u64);
        }
        let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let mut granule = [0u8; 8];
        granule.copy_from_slice(&h[6..14]);
        self.page = Page {
            header_type: h[5],
            granule: u64::from_le_bytes(granule),
            serial: u32_at(14),
            seq: u32_at(18),
            packets: 0,
            body_len: 0,
            head: [0; PEEK],
        };
        self.segments_len = 0;
        self.state = State::Segments;
        // A page may have no segments at all.
        if h[26] == 0 {
            self.state = State::Body;
            self.body_left = 0;
        }
        Ok(())
    }

    /// The segment table is complete: count packets and size the body. Returns the page if its
    /// body is empty.
    fn start_body(&mut self) -> Option<Page> {
        let segs = &self.segments[..self.segments_len];
        self.page.body_len = segs.iter().map(|&l| usize::from(l)).sum();
        self.page.packets = segs.iter().filter(|&&l| l < 255).count() as u16;
        self.body_left = self.page.body_len;
        self.state = State::Body;
        (self.body_left == 0).then(|| self.finish_page())
    }

    fn finish_page(&mut self) -> Page {
        self.state = State::Header;
        self.header_len = 0;
        self.hunted = 0;
        self.page
    }
}

/// Writes one Ogg page (no CRC: the reader does not check it) holding `packets`, each under 255
/// bytes, into `out`. For tests and fake servers.
pub fn write_page(
    out: &mut Vec<u8>,
    header_type: u8,
    granule: u64,
    serial: u32,
    seq: u32,
    packets: &[&[u8]],
) {
    out.extend_from_slice(CAPTURE);
    out.push(0);
    out.push(header_type);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(packets.len() as u8);
    for p in packets {
        out.push(p.len().min(254) as u8);
    }
    for p in packets {
        out.extend_from_slice(&p[..p.len().min(254)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        write_page(&mut s, BOS, 0, 7, 0, &[b"OpusHead\x01\x02"]);
        write_page(&mut s, 0, 0, 7, 1, &[b"OpusTags...."]);
        for k in 0..3u32 {
            let pk = [0xfcu8; 80];
            let pk: &[u8] = &pk;
            write_page(&mut s, 0, 4800 * u64::from(k + 1), 7, 2 + k, &[pk; 5]);
        }
        s
    }

    fn read_all(r: &mut OggReader, mut input: &[u8], out: &mut Vec<Page>) {
        while let Some(p) = r.next_page(&mut input).unwrap() {
            out.push(p);
        }
        assert!(input.is_empty());
    }

    #[test]
    fn pages_are_read_whatever_the_read_sizes() {
        let s = stream();
        let mut whole = Vec::new();
        read_all(&mut OggReader::default(), &s, &mut whole);
        assert_eq!(whole.len(), 5);
        assert!(whole[0].is_opus_header() && whole[0].header_type == BOS);
        assert!(whole[1].is_opus_header());
        let audio = whole[4];
        assert!(!audio.is_opus_header());
        assert_eq!((audio.seq, audio.serial, audio.granule), (4, 7, 14_400));
        assert_eq!((audio.packets, audio.body_len), (5, 400));
        // Every split of the stream into reads of 1..=64 bytes gives the same pages.
        for size in 1..=64 {
            let mut r = OggReader::default();
            let mut pages = Vec::new();
            for chunk in s.chunks(size) {
                read_all(&mut r, chunk, &mut pages);
            }
            assert_eq!(pages, whole, "reads of {size} bytes");
            assert_eq!(r.resyncs, 0);
        }
    }

    #[test]
    fn garbage_is_skipped_and_counted_as_a_resync() {
        let s = stream();
        // Garbage before the stream (false starts "O", "Og", "Ogg", then "OggS" with a bad
        // version and 3 bytes after its 27-byte header), then a page cut in its body.
        let mut bad = b"xxOOgOggxOggS\x01.........................".to_vec();
        // Page 2 starts at 78 (header 27 + 5 lacing values, then 400 body bytes): cut it 100
        // bytes into its body.
        bad.extend_from_slice(&s[..210]);
        bad.extend_from_slice(b"ICY junk");
        bad.extend_from_slice(&s);
        let mut r = OggReader::default();
        let mut pages = Vec::new();
        for chunk in bad.chunks(7) {
            read_all(&mut r, chunk, &mut pages);
        }
        // The cut page swallows the next 300 bytes as its body (no CRC check), then the reader
        // hunts for the next capture pattern: page 3 of the repeated stream.
        let seqs: Vec<u32> = pages.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        // Resyncs: the bad-version pattern, the stream after it, page 3 after the cut.
        assert_eq!(r.resyncs, 3);
        assert_eq!(r.skipped, 9 + 27 + 3 + (510 - (300 - 8)) as u64);
    }

    #[test]
    fn a_stream_that_is_not_ogg_is_an_error() {
        let junk = vec![b'x'; 70_000];
        let mut r = OggReader::default();
        let mut input = &junk[..];
        let mut result = Ok(None);
        for _ in 0..junk.len() {
            result = r.next_page(&mut input);
            if result.is_err() || input.is_empty() {
                break;
            }
        }
        assert_eq!(result, Err(OggError::NoCapture(MAX_HUNT + 1)));
    }

    #[test]
    fn empty_pages_and_spanning_packets() {
        let mut s = Vec::new();
        write_page(&mut s, 0, u64::MAX, 1, 0, &[]);
        // A 255 lacing value continues a packet onto the next page: no packet ends here.
        s.extend_from_slice(b"OggS\0\0");
        s.extend_from_slice(&u64::MAX.to_le_bytes());
        s.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 255]);
        s.extend_from_slice(&[0u8; 255]);
        let mut pages = Vec::new();
        read_all(&mut OggReader::default(), &s, &mut pages);
        assert_eq!(pages.len(), 2);
        assert_eq!((pages[0].packets, pages[0].body_len), (0, 0));
        assert_eq!(
            (pages[1].packets, pages[1].body_len, pages[1].seq),
            (0, 255, 1)
        );
        assert_eq!(pages[1].granule, u64::MAX);
    }
}
