//! Ogg pages (RFC 3533): writing packets into pages and reading pages back, with CRC checks.

use std::io::{self, Read, Write};

use crate::error::ContainerError;

/// Page flag: the first packet continues one from the previous page.
pub(crate) const FLAG_CONTINUED: u8 = 0x01;
/// Page flag: first page of a logical stream.
pub(crate) const FLAG_BOS: u8 = 0x02;
/// Page flag: last page of a logical stream.
pub(crate) const FLAG_EOS: u8 = 0x04;
/// Granule position meaning "no packet ends on this page".
pub(crate) const NO_GRANULE: u64 = u64::MAX;
/// Most lacing values (segments) one page can hold.
const MAX_SEGMENTS: usize = 255;
/// Largest packet the writer places on one page; Opus packets are always smaller.
pub(crate) const MAX_WRITE_PACKET: usize = MAX_SEGMENTS * 255 - 1;
const HEADER_LEN: usize = 27;
const CRC_OFFSET: usize = 22;

/// CRC-32 lookup table for the Ogg polynomial 0x04c11db7 (MSB first, no reflection).
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

/// Continues an Ogg CRC over `data` (start from 0; no final inversion).
pub(crate) fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// Collects packets into pages of one logical stream and writes them out.
pub(crate) struct PageWriter<W: Write> {
    w: W,
    serial: u32,
    seq: u32,
    first: bool,
    lacing: Vec<u8>,
    body: Vec<u8>,
    /// Granule position of the last packet added.
    granule: u64,
}

impl<W: Write> PageWriter<W> {
    pub(crate) fn new(w: W, serial: u32) -> Self {
        PageWriter {
            w,
            serial,
            seq: 0,
            first: true,
            lacing: Vec::with_capacity(MAX_SEGMENTS),
            body: Vec::new(),
            granule: 0,
        }
    }

    /// Adds a whole packet ending at `granule`, starting a new page if this one is full.
    pub(crate) fn push_packet(&mut self, packet: &[u8], granule: u64) -> io::Result<()> {
        if packet.len() > MAX_WRITE_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "packet too large for one Ogg page",
            ));
        }
        let segments = packet.len() / 255 + 1;
        if self.lacing.len() + segments > MAX_SEGMENTS {
            self.flush_page(false)?;
        }
        self.lacing
            .extend(std::iter::repeat_n(255u8, packet.len() / 255));
        self.lacing.push((packet.len() % 255) as u8);
        self.body.extend_from_slice(packet);
        self.granule = granule;
        Ok(())
    }

    /// Writes the pending packets as one page; with `eos` it marks the end of the stream and
    /// is written even when empty.
    pub(crate) fn flush_page(&mut self, eos: bool) -> io::Result<()> {
        if self.lacing.is_empty() && !eos {
            return Ok(());
        }
        let mut flags = 0;
        if self.first {
            flags |= FLAG_BOS;
        }
        if eos {
            flags |= FLAG_EOS;
        }
        let mut header = [0u8; HEADER_LEN];
        header[0..4].copy_from_slice(b"OggS");
        header[5] = flags;
        header[6..14].copy_from_slice(&self.granule.to_le_bytes());
        header[14..18].copy_from_slice(&self.serial.to_le_bytes());
        header[18..22].copy_from_slice(&self.seq.to_le_bytes());
        header[26] = self.lacing.len() as u8;
        let crc = [&header[..], &self.lacing, &self.body]
            .iter()
            .fold(0, |crc, part| crc_update(crc, part));
        header[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        self.w.write_all(&header)?;
        self.w.write_all(&self.lacing)?;
        self.w.write_all(&self.body)?;
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.lacing.clear();
        self.body.clear();
        Ok(())
    }

    pub(crate) fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    pub(crate) fn into_inner(self) -> W {
        self.w
    }
}

/// One page as read from a stream.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) flags: u8,
    pub(crate) granule: u64,
    pub(crate) serial: u32,
    pub(crate) seq: u32,
    pub(crate) lacing: Vec<u8>,
    pub(crate) body: Vec<u8>,
}

/// Reads until `buf` is full or the input ends, returning how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_exact_or_truncated<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), ContainerError> {
    if read_full(r, buf)? < buf.len() {
        return Err(ContainerError::Truncated(what));
    }
    Ok(())
}

/// Reads the next page, or `None` at a clean end of input.
pub(crate) fn read_page<R: Read>(r: &mut R) -> Result<Option<Page>, ContainerError> {
    let mut header = [0u8; HEADER_LEN];
    let n = read_full(r, &mut header)?;
    if n == 0 {
        return Ok(None);
    }
    let magic = n.min(4);
    if header[..magic] != b"OggS"[..magic] {
        return Err(ContainerError::NotOgg);
    }
    if n < HEADER_LEN {
        return Err(ContainerError::Truncated("Ogg page header"));
    }
    if header[4] != 0 {
        return Err(ContainerError::Unsupported(format!(
            "Ogg stream structure version {}",
            header[4]
        )));
    }
    let mut lacing = vec![0u8; usize::from(header[26])];
    read_exact_or_truncated(r, &mut lacing, "Ogg lacing table")?;
    let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
    let mut body = vec![0u8; body_len];
    read_exact_or_truncated(r, &mut body, "Ogg page body")?;
    let stored = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
    header[CRC_OFFSET..CRC_OFFSET + 4].fill(0);
    let crc = [&header[..], &lacing, &body]
        .iter()
        .fold(0, |crc, part| crc_update(crc, part));
    if crc != stored {
        return Err(ContainerError::BadChecksum);
    }
    let le_u32 = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let mut granule = [0u8; 8];
    granule.copy_from_slice(&header[6..14]);
    Ok(Some(Page {
        flags: header[5],
        granule: u64::from_le_bytes(granule),
        serial: le_u32(14),
        seq: le_u32(18),
        lacing,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_reference_value() {
        // Same polynomial and initial value as POSIX cksum's CRC (check value 0x765e7680),
        // minus its final inversion.
        assert_eq!(crc_update(0, b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn pages_round_trip_and_split_when_full() {
        let mut w = PageWriter::new(Vec::new(), 42);
        // 300 packets of 300 bytes need two segments each, so they spill over several pages.
        for i in 0..300u64 {
            w.push_packet(&[i as u8; 300], i).unwrap();
        }
        w.flush_page(true).unwrap();
        let bytes = w.into_inner();
        let mut r = &bytes[..];
        let mut pages = Vec::new();
        while let Some(p) = read_page(&mut r).unwrap() {
            pages.push(p);
        }
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[0].flags, FLAG_BOS);
        assert_eq!(pages[2].flags, FLAG_EOS);
        assert_eq!(pages[0].lacing.len(), 254);
        assert_eq!(pages[0].granule, 126);
        assert_eq!(pages[2].granule, 299);
        assert!(pages.iter().all(|p| p.serial == 42));
        assert_eq!(pages.iter().map(|p| p.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(w_rejects_oversize());
    }

    fn w_rejects_oversize() -> bool {
        let mut w = PageWriter::new(Vec::new(), 1);
        w.push_packet(&vec![0u8; MAX_WRITE_PACKET + 1], 0).is_err()
    }

    #[test]
    fn corrupt_pages_are_errors() {
        let mut w = PageWriter::new(Vec::new(), 7);
        w.push_packet(b"hello", 5).unwrap();
        w.flush_page(true).unwrap();
        let good = w.into_inner();
        let mut flipped = good.clone();
        flipped[30] ^= 1;
        assert!(matches!(
            read_page(&mut &flipped[..]),
            Err(ContainerError::BadChecksum)
        ));
        assert!(matches!(
            read_page(&mut &b"RIFF...."[..]),
            Err(ContainerError::NotOgg)
        ));
        for cut in 1..good.len() {
            assert!(matches!(
                read_page(&mut &good[..cut]),
                Err(ContainerError::Truncated(_))
            ));
        }
        let mut version = good.clone();
        version[4] = 1;
        assert!(matches!(
            read_page(&mut &version[..]),
            Err(ContainerError::Unsupported(_))
        ));
    }
}
