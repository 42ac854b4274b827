//! Reading an Ogg Opus stream (RFC 7845) packet by packet from any `Read`.

use std::collections::VecDeque;
use std::io::Read;

use super::headers::{OpusHead, OpusTags};
use super::page::{read_page, Page, FLAG_BOS, FLAG_CONTINUED, FLAG_EOS, NO_GRANULE};
use crate::error::ContainerError;

/// Largest packet accepted, which bounds memory on hostile input (comment headers with cover
/// art are the only legitimately large packets).
pub const MAX_READ_PACKET: usize = 16 << 20;

/// Reads the audio packets of the first logical Opus stream in an Ogg file.
pub struct OggOpusReader<R: Read> {
    r: R,
    head: OpusHead,
    tags: OpusTags,
    demux: Demux,
}

impl<R: Read> OggOpusReader<R> {
    /// Reads and validates both header packets.
    pub fn new(r: R) -> Result<Self, ContainerError> {
        let mut demux = Demux::default();
        let mut r = r;
        let head = demux
            .next_packet(&mut r)?
            .ok_or(ContainerError::Truncated("stream without OpusHead"))?;
        let head = OpusHead::parse(&head)?;
        let tags = demux
            .next_packet(&mut r)?
            .ok_or(ContainerError::Truncated("stream without OpusTags"))?;
        let tags = OpusTags::parse(&tags)?;
        Ok(OggOpusReader {
            r,
            head,
            tags,
            demux,
        })
    }

    /// Channel count from the header (1 or 2).
    pub fn channels(&self) -> u8 {
        self.head.channels
    }

    /// Samples to discard at the start of the decoded audio.
    pub fn pre_skip(&self) -> u16 {
        self.head.pre_skip
    }

    /// The identification header.
    pub fn head(&self) -> &OpusHead {
        &self.head
    }

    /// The comment header.
    pub fn tags(&self) -> &OpusTags {
        &self.tags
    }

    /// Granule position of the last page read that ends a packet, if any.
    pub fn last_granule(&self) -> Option<u64> {
        self.demux.last_granule
    }

    /// The next audio packet, or `None` at the end of the stream.
    pub fn next_packet(&mut self) -> Result<Option<Vec<u8>>, ContainerError> {
        self.demux.next_packet(&mut self.r)
    }
}

/// Reassembles the packets of one logical stream from its pages.
#[derive(Default)]
struct Demux {
    serial: Option<u32>,
    next_seq: Option<u32>,
    partial: Vec<u8>,
    in_packet: bool,
    ready: VecDeque<Vec<u8>>,
    eos: bool,
    last_granule: Option<u64>,
}

impl Demux {
    fn next_packet<R: Read>(&mut self, r: &mut R) -> Result<Option<Vec<u8>>, ContainerError> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(Some(p));
            }
            if self.eos {
                return Ok(None);
            }
            match read_page(r)? {
                Some(page) => self.absorb(page)?,
                // Files cut at a page boundary still yield their complete packets.
                None if self.in_packet => return Err(ContainerError::Truncated("Ogg packet")),
                None => return Ok(None),
            }
        }
    }

    fn absorb(&mut self, page: Page) -> Result<(), ContainerError> {
        match self.serial {
            None if page.flags & FLAG_BOS == 0 => {
                return Err(ContainerError::Malformed(
                    "first Ogg page is not a stream start",
                ))
            }
            None => self.serial = Some(page.serial),
            // Pages of other multiplexed streams are not ours to decode.
            Some(serial) if serial != page.serial => return Ok(()),
            Some(_) => {}
        }
        if self.next_seq.is_some_and(|seq| seq != page.seq) {
            return Err(ContainerError::Malformed("Ogg page missing from sequence"));
        }
        self.next_seq = Some(page.seq.wrapping_add(1));
        let continued = page.flags & FLAG_CONTINUED != 0;
        if continued != self.in_packet {
            return Err(ContainerError::Malformed(
                "Ogg packet continuation mismatch",
            ));
        }
        let mut at = 0usize;
        for &lace in &page.lacing {
            let end = at + usize::from(lace);
            let piece = page
                .body
                .get(at..end)
                .ok_or(ContainerError::Malformed("Ogg lacing exceeds page"))?;
            if self.partial.len() + piece.len() > MAX_READ_PACKET {
                return Err(ContainerError::TooLarge("Ogg packet"));
            }
            self.partial.extend_from_slice(piece);
            at = end;
            // A lacing value below 255 ends the packet; 255 means it goes on.
            self.in_packet = lace == 255;
            if !self.in_packet {
                self.ready.push_back(std::mem::take(&mut self.partial));
            }
        }
        if page.granule != NO_GRANULE {
            self.last_granule = Some(page.granule);
        }
        if page.flags & FLAG_EOS != 0 {
            if self.in_packet {
                return Err(ContainerError::Truncated("packet cut by end of stream"));
            }
            self.eos = true;
        }
        Ok(())
    }
}
