//! Ogg Opus files (RFC 7845): a writer for program recordings, a reader, and a helper that
//! decodes a whole file to 48 kHz mono PCM.

mod headers;
mod page;
mod reader;
mod writer;

pub use headers::{OpusHead, OpusTags, DEFAULT_PRE_SKIP};
pub use reader::{OggOpusReader, MAX_READ_PACKET};
pub use writer::{OggOpusWriter, VENDOR};

use crate::error::ContainerError;
use crate::opus::{Decoder, MAX_PACKET_SAMPLES};
use crate::SAMPLE_RATE;

/// Most samples [`decode_ogg_to_pcm`] produces (one hour), since a few bytes of Opus can
/// expand to thousands of samples.
pub const MAX_DECODED_SAMPLES: usize = SAMPLE_RATE as usize * 3600;

/// Decodes a whole Ogg Opus file to 48 kHz mono PCM, trimming pre-skip and end padding.
///
/// Stereo files are downmixed by the decoder. Files longer than [`MAX_DECODED_SAMPLES`] are
/// refused; see [`decode_ogg_to_pcm_limited`].
pub fn decode_ogg_to_pcm(bytes: &[u8]) -> Result<Vec<i16>, ContainerError> {
    decode_ogg_to_pcm_limited(bytes, MAX_DECODED_SAMPLES)
}

/// Like [`decode_ogg_to_pcm`] with a caller-chosen limit on the output length.
pub fn decode_ogg_to_pcm_limited(
    bytes: &[u8],
    max_samples: usize,
) -> Result<Vec<i16>, ContainerError> {
    let mut reader = OggOpusReader::new(bytes)?;
    let pre_skip = usize::from(reader.pre_skip());
    let mut decoder = Decoder::new()?;
    decoder.set_gain_q8(reader.head().output_gain)?;
    let mut pcm = vec![0i16; MAX_PACKET_SAMPLES];
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet()? {
        let n = decoder.decode(&packet, &mut pcm)?;
        if out.len() + n > max_samples.saturating_add(pre_skip) {
            return Err(ContainerError::TooLarge("decoded audio exceeds the limit"));
        }
        out.extend_from_slice(&pcm[..n]);
    }
    out.drain(..pre_skip.min(out.len()));
    // The final granule position marks where the real audio ends (RFC 7845 section 4.5).
    if let Some(granule) = reader.last_granule() {
        let end = granule.saturating_sub(pre_skip as u64);
        if end < out.len() as u64 {
            out.truncate(end as usize);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::dominant_frequency;
    use crate::opus::Encoder;
    use crate::testutil::XorShift;
    use crate::tone::ToneGenerator;
    use crate::FRAME_SAMPLES;

    fn packets(n: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(24_000).unwrap();
        let mut tone = ToneGenerator::new(440.0, 0.4);
        (0..n)
            .map(|_| enc.encode_vec(&tone.next_frame()).unwrap())
            .collect()
    }

    fn file(packets: &[Vec<u8>], serial: u32) -> Vec<u8> {
        let mut w = OggOpusWriter::new(Vec::new(), serial).unwrap();
        for p in packets {
            w.write_packet(p).unwrap();
        }
        assert_eq!(w.granule_position(), (packets.len() * FRAME_SAMPLES) as u64);
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let input = packets(50);
        let bytes = file(&input, 0xC0FFEE);
        let mut r = OggOpusReader::new(&bytes[..]).unwrap();
        assert_eq!(r.channels(), 1);
        assert_eq!(r.pre_skip(), 312);
        assert_eq!(*r.head(), OpusHead::mono());
        assert_eq!(r.tags().vendor, "tribune");
        let mut out = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            out.push(p);
        }
        assert_eq!(out, input);
        assert_eq!(r.last_granule(), Some(50 * 960));
        assert_eq!(r.next_packet().unwrap(), None);
    }

    #[test]
    fn pages_follow_rfc_7845_layout() {
        let bytes = file(&packets(75), 9);
        let mut rest = &bytes[..];
        let mut pages = Vec::new();
        while let Some(p) = page::read_page(&mut rest).unwrap() {
            pages.push(p);
        }
        // Head page, tags page, one page per second of audio, and the final page.
        assert_eq!(pages.len(), 4);
        assert_eq!(pages[0].flags, page::FLAG_BOS);
        assert_eq!((pages[0].granule, pages[1].granule), (0, 0));
        assert_eq!(pages[0].lacing, [19]);
        assert_eq!(pages[2].granule, 48_000);
        assert_eq!(pages[3].granule, 75 * 960);
        assert_eq!(pages[3].flags, page::FLAG_EOS);
        assert!(pages.iter().all(|p| p.serial == 9));
        // An empty stream still ends with an end-of-stream page.
        let empty = file(&[], 1);
        let mut r = OggOpusReader::new(&empty[..]).unwrap();
        assert_eq!(r.next_packet().unwrap(), None);
    }

    #[test]
    fn decodes_file_to_trimmed_pcm() {
        let bytes = file(&packets(50), 3);
        let pcm = decode_ogg_to_pcm(&bytes).unwrap();
        assert_eq!(pcm.len(), 50 * 960 - 312);
        let f = dominant_frequency(&pcm, SAMPLE_RATE).unwrap();
        assert!((f - 440.0).abs() < 5.0, "{f}");
        assert!(matches!(
            decode_ogg_to_pcm_limited(&bytes, 1000),
            Err(ContainerError::TooLarge(_))
        ));
    }

    #[test]
    fn reads_streams_written_by_the_ogg_crate() {
        use ogg::{PacketWriteEndInfo, PacketWriter};
        let input = packets(20);
        let mut w = PacketWriter::new(Vec::new());
        let head = OpusHead {
            channels: 2,
            ..OpusHead::mono()
        };
        w.write_packet(head.to_bytes(), 5, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        // A large comment packet spans several pages.
        let tags = OpusTags {
            vendor: "other".into(),
            comments: vec!["X".repeat(70_000)],
        };
        w.write_packet(tags.to_bytes(), 5, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        for (i, p) in input.iter().enumerate() {
            let end = if i + 1 == input.len() {
                PacketWriteEndInfo::EndStream
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            w.write_packet(p.clone(), 5, end, (i as u64 + 1) * 960)
                .unwrap();
        }
        let bytes = w.into_inner();
        let mut r = OggOpusReader::new(&bytes[..]).unwrap();
        assert_eq!(r.channels(), 2);
        assert_eq!(r.tags().comments[0].len(), 70_000);
        let mut out = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            out.push(p);
        }
        assert_eq!(out, input);
    }

    #[test]
    fn ogg_crate_reads_our_streams() {
        let input = packets(60);
        let bytes = file(&input, 77);
        let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let head = r.read_packet_expected().unwrap();
        assert!(head.first_in_stream());
        assert_eq!(head.data, OpusHead::mono().to_bytes());
        r.read_packet_expected().unwrap();
        for p in &input {
            let got = r.read_packet_expected().unwrap();
            assert_eq!(&got.data, p);
            assert_eq!(got.stream_serial(), 77);
        }
        assert!(r.read_packet().unwrap().is_none());
    }

    #[test]
    fn rejects_non_opus_and_multichannel() {
        let mut w = page::PageWriter::new(Vec::new(), 1);
        w.push_packet(b"\x01vorbis\0\0\0\0\x02", 0).unwrap();
        w.flush_page(true).unwrap();
        assert!(matches!(
            OggOpusReader::new(&w.into_inner()[..]),
            Err(ContainerError::NotOpus)
        ));
        let mut head = OpusHead::mono().to_bytes();
        head[9] = 6;
        let mut w = page::PageWriter::new(Vec::new(), 1);
        w.push_packet(&head, 0).unwrap();
        w.flush_page(true).unwrap();
        assert!(matches!(
            OggOpusReader::new(&w.into_inner()[..]),
            Err(ContainerError::TooManyChannels(6))
        ));
        assert!(matches!(
            OggOpusReader::new(&b""[..]),
            Err(ContainerError::Truncated(_))
        ));
        assert!(matches!(
            decode_ogg_to_pcm(b"RIFF\0\0\0\0WAVE"),
            Err(ContainerError::NotOgg)
        ));
    }

    /// Recomputes the CRC of every page whose declared size fits in `b`.
    fn fix_crcs(b: &mut [u8]) {
        let mut at = 0;
        while at + 27 <= b.len() {
            let segments = usize::from(b[at + 26]);
            let Some(lacing) = b.get(at + 27..at + 27 + segments) else {
                return;
            };
            let len = 27 + segments + lacing.iter().map(|&l| usize::from(l)).sum::<usize>();
            if at + len > b.len() {
                return;
            }
            b[at + 22..at + 26].fill(0);
            let crc = page::crc_update(0, &b[at..at + len]);
            b[at + 22..at + 26].copy_from_slice(&crc.to_le_bytes());
            at += len;
        }
    }

    #[test]
    fn garbage_and_truncation_give_errors_not_panics() {
        let input = packets(10);
        let bytes = file(&input, 5);
        for cut in 0..bytes.len() {
            let mut packets_read = 0;
            let result = (|| -> Result<(), ContainerError> {
                let mut r = OggOpusReader::new(&bytes[..cut])?;
                while let Some(p) = r.next_packet()? {
                    assert_eq!(p, input[packets_read]);
                    packets_read += 1;
                }
                Ok(())
            })();
            // A cut inside a page is an error; a cut between pages yields a clean prefix.
            assert!(result.is_err() || packets_read < input.len(), "cut {cut}");
            let _ = decode_ogg_to_pcm(&bytes[..cut]);
        }
        let mut rng = XorShift::new(0x0bad_cafe);
        for i in 0..2000 {
            let mut b = if i % 3 == 0 {
                rng.bytes_below(300)
            } else {
                bytes.clone()
            };
            for _ in 0..1 + rng.below(4) {
                if !b.is_empty() {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
            }
            // Most mutations would only trip the checksum; repair it so parsing goes deeper.
            if i % 3 == 1 {
                fix_crcs(&mut b);
            }
            if let Ok(mut r) = OggOpusReader::new(&b[..]) {
                while let Ok(Some(_)) = r.next_packet() {}
            }
            let _ = decode_ogg_to_pcm(&b);
        }
    }
}
