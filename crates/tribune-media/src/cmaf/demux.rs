//! Reads the program's Opus packets back out of fragments this packager wrote (recordings on
//! disk, for clips and for rebuilding a recording's index).
//!
//! Only the layout [`fragment`](super::fragment) writes is accepted: `moof` (`mfhd`, one
//! `traf` with `tfhd` default-base-is-moof + default duration, `tfdt`, `trun` with data offset
//! and sizes) followed by its `mdat`. Anything else is an error, never a panic: the bytes come
//! from files that a crash, a full disk or an operator may have damaged.

use bytes::Bytes;

use super::{CmafError, MAX_FRAGMENT_SAMPLES, SAMPLE_DURATION, TRACK_ID};

/// One Opus packet of the program with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Program sequence number (`baseMediaDecodeTime / 960` + its index in the fragment).
    pub seq: u64,
    /// The packet (a slice of the input, not a copy).
    pub packet: Bytes,
}

/// What a run of fragments holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Sequence number of the first packet.
    pub first_seq: u64,
    /// Number of packets.
    pub frames: u32,
    /// Number of fragments (parts).
    pub fragments: u32,
}

/// A box header: type and the range of its payload.
struct Header {
    kind: [u8; 4],
    start: usize,
    body: usize,
    end: usize,
}

fn malformed(what: &'static str) -> CmafError {
    CmafError::Malformed(what)
}

fn header(bytes: &[u8], at: usize) -> Result<Header, CmafError> {
    let h = bytes
        .get(at..at + 8)
        .ok_or(malformed("truncated box header"))?;
    let size = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let end = at.checked_add(size).ok_or(malformed("box size"))?;
    if size < 8 || end > bytes.len() {
        return Err(malformed("box size outside the data"));
    }
    Ok(Header {
        kind: [h[4], h[5], h[6], h[7]],
        start: at,
        body: at + 8,
        end,
    })
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, CmafError> {
    let b = bytes.get(at..at + 4).ok_or(malformed("truncated field"))?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, CmafError> {
    Ok((u64::from(u32_at(bytes, at)?) << 32) | u64::from(u32_at(bytes, at + 4)?))
}

/// Children of a container body, by type.
fn child(bytes: &[u8], parent: &Header, kind: &[u8; 4]) -> Result<Header, CmafError> {
    let mut at = parent.body;
    while at < parent.end {
        let h = header(&bytes[..parent.end], at)?;
        if &h.kind == kind {
            return Ok(h);
        }
        at = h.end;
    }
    Err(malformed("a required box is missing"))
}

/// One fragment: its first sequence number and the byte ranges of its samples.
fn fragment_at(
    bytes: &[u8],
    at: usize,
    mut each: impl FnMut(u64, std::ops::Range<usize>),
) -> Result<(u64, u32, usize), CmafError> {
    let moof = header(bytes, at)?;
    if &moof.kind != b"moof" {
        return Err(malformed("expected moof"));
    }
    let mdat = header(bytes, moof.end)?;
    if &mdat.kind != b"mdat" {
        return Err(malformed("expected mdat after moof"));
    }
    let traf = child(bytes, &moof, b"traf")?;
    let tfhd = child(bytes, &traf, b"tfhd")?;
    let tfdt = child(bytes, &traf, b"tfdt")?;
    let trun = child(bytes, &traf, b"trun")?;
    // tfhd: flags, track id, default sample duration.
    if u32_at(bytes, tfhd.body)? != 0x0002_0008 || u32_at(bytes, tfhd.body + 4)? != TRACK_ID {
        return Err(malformed("tfhd is not this packager's"));
    }
    if u32_at(bytes, tfhd.body + 8)? != SAMPLE_DURATION {
        return Err(malformed("samples are not 20 ms"));
    }
    let decode_time = match bytes.get(tfdt.body) {
        Some(1) => u64_at(bytes, tfdt.body + 4)?,
        Some(0) => u64::from(u32_at(bytes, tfdt.body + 4)?),
        _ => return Err(malformed("tfdt version")),
    };
    if decode_time % u64::from(SAMPLE_DURATION) != 0 {
        return Err(malformed("decode time is not on a frame boundary"));
    }
    let first_seq = decode_time / u64::from(SAMPLE_DURATION);
    if u32_at(bytes, trun.body)? != 0x0000_0201 {
        return Err(malformed("trun is not this packager's"));
    }
    let count = u32_at(bytes, trun.body + 4)? as usize;
    if count == 0 || count > MAX_FRAGMENT_SAMPLES || trun.body + 12 + 4 * count != trun.end {
        return Err(malformed("trun sample count"));
    }
    let data_offset = u32_at(bytes, trun.body + 8)? as usize;
    if moof.start + data_offset != mdat.body {
        return Err(malformed("data offset does not point at the mdat payload"));
    }
    let mut pos = mdat.body;
    for i in 0..count {
        let size = u32_at(bytes, trun.body + 12 + 4 * i)? as usize;
        let end = pos + size;
        if size == 0 || end > mdat.end {
            return Err(malformed("sample outside the mdat"));
        }
        each(first_seq + i as u64, pos..end);
        pos = end;
    }
    if pos != mdat.end {
        return Err(malformed("mdat longer than its samples"));
    }
    Ok((first_seq, count as u32, mdat.end))
}

/// Every packet of consecutive fragments, in order, as slices of `bytes`.
pub fn read_samples(bytes: &Bytes) -> Result<Vec<Sample>, CmafError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (_, _, end) = fragment_at(bytes, at, |seq, range| {
            out.push(Sample {
                seq,
                packet: bytes.slice(range),
            })
        })?;
        at = end;
    }
    Ok(out)
}

/// First sequence number, packet count and fragment count of consecutive fragments; an error
/// if they are empty, damaged, or not contiguous in time.
pub fn summarize(bytes: &[u8]) -> Result<RunSummary, CmafError> {
    let mut at = 0;
    let mut run: Option<RunSummary> = None;
    while at < bytes.len() {
        let (first, count, end) = fragment_at(bytes, at, |_, _| {})?;
        run = Some(match run {
            None => RunSummary {
                first_seq: first,
                frames: count,
                fragments: 1,
            },
            Some(r) if r.first_seq + u64::from(r.frames) == first => RunSummary {
                frames: r.frames + count,
                fragments: r.fragments + 1,
                ..r
            },
            Some(_) => return Err(malformed("fragments are not contiguous")),
        });
        at = end;
    }
    run.ok_or(malformed("no fragment"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::fragment;

    fn packets(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8 + 1; 3 + i % 5]).collect()
    }

    #[test]
    fn samples_and_summary_read_back() {
        let p = packets(25);
        let mut bytes = fragment(1, 40 * 960, &p[..10]).unwrap();
        bytes.extend(fragment(2, 50 * 960, &p[10..]).unwrap());
        let bytes = Bytes::from(bytes);
        let samples = read_samples(&bytes).unwrap();
        assert_eq!(samples.len(), 25);
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(s.seq, 40 + i as u64);
            assert_eq!(&s.packet[..], &p[i][..]);
        }
        assert_eq!(
            summarize(&bytes).unwrap(),
            RunSummary {
                first_seq: 40,
                frames: 25,
                fragments: 2
            }
        );
    }

    #[test]
    fn gaps_truncation_and_garbage_are_errors() {
        let p = packets(10);
        let mut gap = fragment(1, 0, &p).unwrap();
        gap.extend(fragment(2, 11 * 960, &p).unwrap());
        assert!(summarize(&gap).is_err());
        assert_eq!(read_samples(&Bytes::from(gap)).unwrap().len(), 20);

        let whole = fragment(1, 0, &p).unwrap();
        for cut in [1, 8, 30, whole.len() / 2, whole.len() - 1] {
            assert!(summarize(&whole[..cut]).is_err(), "cut at {cut}");
            assert!(read_samples(&Bytes::copy_from_slice(&whole[..cut])).is_err());
        }
        assert!(summarize(&[]).is_err());
        assert!(summarize(b"\0\0\0\x08free").is_err());
        let mut flipped = whole.clone();
        flipped[3] ^= 0x40; // moof size
        assert!(summarize(&flipped).is_err());
    }
}
