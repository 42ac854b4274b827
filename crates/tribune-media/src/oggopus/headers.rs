//! The two Ogg Opus header packets: identification (`OpusHead`) and comments (`OpusTags`),
//! RFC 7845 sections 5.1 and 5.2.

use crate::error::ContainerError;
use crate::SAMPLE_RATE;

const HEAD_MAGIC: &[u8; 8] = b"OpusHead";
const TAGS_MAGIC: &[u8; 8] = b"OpusTags";
const HEAD_LEN: usize = 19;
/// Samples the decoder discards at the start: the encoder's lookahead at 48 kHz (6.5 ms).
pub const DEFAULT_PRE_SKIP: u16 = 312;

/// The identification header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Encapsulation version (1 for RFC 7845; any 0..=15 is compatible).
    pub version: u8,
    /// Output channel count.
    pub channels: u8,
    /// Samples to discard from the decoder output at the start.
    pub pre_skip: u16,
    /// Sample rate of the original input (informational).
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0: mono or stereo, one stream).
    pub mapping_family: u8,
}

impl OpusHead {
    /// The header Tribune writes: mono, 48 kHz, default pre-skip, no gain.
    pub fn mono() -> Self {
        OpusHead {
            version: 1,
            channels: 1,
            pre_skip: DEFAULT_PRE_SKIP,
            input_sample_rate: SAMPLE_RATE,
            output_gain: 0,
            mapping_family: 0,
        }
    }

    /// Serialises the header packet.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEAD_LEN);
        b.extend_from_slice(HEAD_MAGIC);
        b.push(self.version);
        b.push(self.channels);
        b.extend_from_slice(&self.pre_skip.to_le_bytes());
        b.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        b.extend_from_slice(&self.output_gain.to_le_bytes());
        b.push(self.mapping_family);
        b
    }

    /// Parses and validates a header packet; only mono or stereo family-0 streams are accepted.
    pub fn parse(b: &[u8]) -> Result<Self, ContainerError> {
        if !b.starts_with(HEAD_MAGIC) {
            return Err(ContainerError::NotOpus);
        }
        if b.len() < HEAD_LEN {
            return Err(ContainerError::Truncated("OpusHead"));
        }
        let head = OpusHead {
            version: b[8],
            channels: b[9],
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            input_sample_rate: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            output_gain: i16::from_le_bytes([b[16], b[17]]),
            mapping_family: b[18],
        };
        // The upper nibble is the major version; a new one would be incompatible.
        if head.version >> 4 != 0 {
            return Err(ContainerError::Unsupported(format!(
                "Ogg Opus version {}",
                head.version
            )));
        }
        if head.channels == 0 {
            return Err(ContainerError::Malformed("OpusHead with zero channels"));
        }
        if head.channels > 2 {
            return Err(ContainerError::TooManyChannels(u16::from(head.channels)));
        }
        if head.mapping_family != 0 {
            return Err(ContainerError::Unsupported(format!(
                "channel mapping family {}",
                head.mapping_family
            )));
        }
        Ok(head)
    }
}

/// The comment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusTags {
    /// Name of the encoder.
    pub vendor: String,
    /// `KEY=value` comments.
    pub comments: Vec<String>,
}

impl OpusTags {
    /// Tags with the given vendor and no comments.
    pub fn with_vendor(vendor: &str) -> Self {
        OpusTags {
            vendor: vendor.to_owned(),
            comments: Vec::new(),
        }
    }

    /// Serialises the comment packet.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = TAGS_MAGIC.to_vec();
        let put = |s: &str, b: &mut Vec<u8>| {
            // Strings longer than 4 GiB cannot be represented; clip them.
            let bytes = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            b.extend_from_slice(bytes);
        };
        put(&self.vendor, &mut b);
        b.extend_from_slice(&(self.comments.len() as u32).to_le_bytes());
        for c in &self.comments {
            put(c, &mut b);
        }
        b
    }

    /// Parses a comment packet, checking every length against the packet size.
    pub fn parse(b: &[u8]) -> Result<Self, ContainerError> {
        if !b.starts_with(TAGS_MAGIC) {
            return Err(ContainerError::Malformed("second packet is not OpusTags"));
        }
        let mut rest = &b[TAGS_MAGIC.len()..];
        let vendor = take_string(&mut rest)?;
        let count = take_u32(&mut rest)?;
        // Each comment needs at least its 4-byte length, which bounds the loop by the input.
        if count as usize > rest.len() / 4 {
            return Err(ContainerError::Truncated("OpusTags comments"));
        }
        let comments = (0..count)
            .map(|_| take_string(&mut rest))
            .collect::<Result<_, _>>()?;
        Ok(OpusTags { vendor, comments })
    }
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, ContainerError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(ContainerError::Truncated("OpusTags"))?;
    *rest = tail;
    Ok(u32::from_le_bytes(*head))
}

fn take_string(rest: &mut &[u8]) -> Result<String, ContainerError> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(ContainerError::Truncated("OpusTags string"));
    }
    let (s, tail) = rest.split_at(len);
    *rest = tail;
    Ok(String::from_utf8_lossy(s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trips_with_rfc_layout() {
        let b = OpusHead::mono().to_bytes();
        assert_eq!(b.len(), 19);
        assert_eq!(&b[..8], b"OpusHead");
        assert_eq!(&b[8..], &[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        assert_eq!(OpusHead::parse(&b).unwrap(), OpusHead::mono());
    }

    #[test]
    fn head_rejects_unsupported_streams() {
        let mut b = OpusHead::mono().to_bytes();
        b[9] = 6;
        assert!(matches!(
            OpusHead::parse(&b),
            Err(ContainerError::TooManyChannels(6))
        ));
        b[9] = 2;
        b[18] = 1;
        assert!(matches!(
            OpusHead::parse(&b),
            Err(ContainerError::Unsupported(_))
        ));
        b[18] = 0;
        b[8] = 0x10;
        assert!(OpusHead::parse(&b).is_err());
        assert!(matches!(
            OpusHead::parse(b"OpusHea"),
            Err(ContainerError::NotOpus)
        ));
        assert!(matches!(
            OpusHead::parse(&b[..18]),
            Err(ContainerError::Truncated(_))
        ));
        assert!(matches!(
            OpusHead::parse(b"\x01vorbis"),
            Err(ContainerError::NotOpus)
        ));
    }

    #[test]
    fn tags_round_trip_and_reject_bad_lengths() {
        let tags = OpusTags {
            vendor: "tribune".into(),
            comments: vec!["TITLE=room".into(), "X=ü".into()],
        };
        let b = tags.to_bytes();
        assert_eq!(&b[8..12], &7u32.to_le_bytes());
        assert_eq!(OpusTags::parse(&b).unwrap(), tags);
        for cut in 8..b.len() {
            assert!(OpusTags::parse(&b[..cut]).is_err(), "cut {cut}");
        }
        let mut huge = b.clone();
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(OpusTags::parse(&huge).is_err());
        let mut many = OpusTags::with_vendor("v").to_bytes();
        let n = many.len();
        many[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(OpusTags::parse(&many).is_err());
    }
}
