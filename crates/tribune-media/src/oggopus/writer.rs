//! Writing a mono Ogg Opus stream (RFC 7845) one Opus packet at a time.

use std::io::Write;

use super::headers::{OpusHead, OpusTags};
use super::page::{PageWriter, MAX_WRITE_PACKET};
use crate::error::ContainerError;
use crate::opus::packet_samples;
use crate::SAMPLE_RATE;

/// Vendor string written in the comment header.
pub const VENDOR: &str = "tribune";
/// Audio pages are closed after this many samples (one second) to bound seeking granularity
/// and the audio lost if a recording is cut short.
const SAMPLES_PER_PAGE: u64 = SAMPLE_RATE as u64;

/// Writes Opus packets into an Ogg Opus stream; call [`OggOpusWriter::finish`] at the end.
pub struct OggOpusWriter<W: Write> {
    pages: PageWriter<W>,
    granule: u64,
    samples_in_page: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream with the given serial number, writing both header pages.
    pub fn new(w: W, serial: u32) -> Result<Self, ContainerError> {
        let mut pages = PageWriter::new(w, serial);
        // Each header must sit alone on its page (RFC 7845 section 3), at granule 0.
        pages.push_packet(&OpusHead::mono().to_bytes(), 0)?;
        pages.flush_page(false)?;
        pages.push_packet(&OpusTags::with_vendor(VENDOR).to_bytes(), 0)?;
        pages.flush_page(false)?;
        Ok(OggOpusWriter {
            pages,
            granule: 0,
            samples_in_page: 0,
        })
    }

    /// Appends one Opus packet; its duration advances the granule position.
    pub fn write_packet(&mut self, packet: &[u8]) -> Result<(), ContainerError> {
        if packet.len() > MAX_WRITE_PACKET {
            return Err(ContainerError::TooLarge("Opus packet for one Ogg page"));
        }
        let samples = packet_samples(packet)? as u64;
        self.granule = self.granule.saturating_add(samples);
        self.pages.push_packet(packet, self.granule)?;
        self.samples_in_page += samples;
        if self.samples_in_page >= SAMPLES_PER_PAGE {
            self.pages.flush_page(false)?;
            self.samples_in_page = 0;
        }
        Ok(())
    }

    /// Ends the current page and flushes the underlying writer, so everything written so far
    /// is readable (useful for live recordings).
    pub fn flush(&mut self) -> Result<(), ContainerError> {
        self.pages.flush_page(false)?;
        self.samples_in_page = 0;
        self.pages.get_mut().flush()?;
        Ok(())
    }

    /// Total samples written so far at 48 kHz, including the pre-skip.
    pub fn granule_position(&self) -> u64 {
        self.granule
    }

    /// Writes the final page, marked end-of-stream, and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, ContainerError> {
        self.pages.flush_page(true)?;
        self.pages.get_mut().flush()?;
        Ok(self.pages.into_inner())
    }
}
