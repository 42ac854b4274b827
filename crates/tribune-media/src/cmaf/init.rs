//! The CMAF header (init segment): `ftyp` + `moov` describing one mono Opus track.

use super::boxes::BoxWriter;
use super::{ROLL_DISTANCE, SAMPLE_DURATION, TIMESCALE, TRACK_ID};
use crate::oggopus::DEFAULT_PRE_SKIP;
use crate::{CHANNELS, SAMPLE_RATE};

/// `trex` default sample flags: `sample_depends_on = 2` (no dependency), a sync sample.
const DEFAULT_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Unity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30 fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];
/// ISO-639-2 "und" packed into 15 bits, as `mdhd` stores languages.
const LANGUAGE_UND: u16 =
    (((b'u' - 0x60) as u16) << 10) | (((b'n' - 0x60) as u16) << 5) | (b'd' - 0x60) as u16;

/// Decoder set-up carried in the `dOps` box (the fields of the Ogg `OpusHead`, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusTrackConfig {
    /// Samples (at 48 kHz) the decoder discards when it starts: the encoder's lookahead.
    pub pre_skip: u16,
    /// Sample rate of the audio before encoding (informational).
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
}

impl Default for OpusTrackConfig {
    /// Tribune's program track: pre-skip 312 (libopus lookahead), 48 kHz input, no gain.
    fn default() -> Self {
        OpusTrackConfig {
            pre_skip: DEFAULT_PRE_SKIP,
            input_sample_rate: SAMPLE_RATE,
            output_gain: 0,
        }
    }
}

/// Builds the init segment (`ftyp` + `moov`) of the mono Opus program track.
pub fn init_segment(config: &OpusTrackConfig) -> Vec<u8> {
    let mut w = BoxWriter::with_capacity(640);
    w.begin(b"ftyp").bytes(b"iso6").u32(0);
    w.bytes(b"iso6").bytes(b"cmfc").bytes(b"Opus").end();

    w.begin(b"moov");
    write_mvhd(&mut w);
    w.begin(b"trak");
    write_tkhd(&mut w);
    w.begin(b"mdia");
    write_mdhd_hdlr(&mut w);
    w.begin(b"minf");
    // Sound media header: balance 0, reserved.
    w.begin_full(b"smhd", 0, 0).i16(0).u16(0).end();
    // One data reference, flag 1 = media is in this file.
    w.begin(b"dinf").begin_full(b"dref", 0, 0).u32(1);
    w.begin_full(b"url ", 0, 1).end().end().end();
    write_stbl(&mut w, config);
    w.end(); // minf
    w.end(); // mdia
    w.end(); // trak
    w.begin(b"mvex");
    w.begin_full(b"trex", 0, 0)
        .u32(TRACK_ID)
        .u32(1) // sample description index
        .u32(SAMPLE_DURATION)
        .u32(0) // default sample size: every trun lists sizes
        .u32(DEFAULT_SAMPLE_FLAGS)
        .end();
    w.end(); // mvex
    w.end(); // moov
    w.into_inner()
}

fn write_matrix(w: &mut BoxWriter) {
    for v in MATRIX {
        w.u32(v);
    }
}

fn write_mvhd(w: &mut BoxWriter) {
    // Version 0; times and duration zero: the movie is fragmented and open-ended. The movie
    // timescale matches the media one so no edit or duration ever needs rounding.
    w.begin_full(b"mvhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(TIMESCALE)
        .u32(0);
    w.u32(0x0001_0000).u16(0x0100).zeros(2 + 8); // rate 1.0, volume 1.0, reserved
    write_matrix(w);
    w.zeros(24).u32(TRACK_ID + 1).end(); // pre_defined, next track id
}

fn write_tkhd(w: &mut BoxWriter) {
    // Flags 3: track enabled and used in the presentation.
    w.begin_full(b"tkhd", 0, 3)
        .u32(0)
        .u32(0)
        .u32(TRACK_ID)
        .u32(0)
        .u32(0);
    w.zeros(8).u16(0).u16(0).u16(0x0100).u16(0); // reserved, layer, group, volume, reserved
    write_matrix(w);
    w.u32(0).u32(0).end(); // width, height: audio
}

fn write_mdhd_hdlr(w: &mut BoxWriter) {
    w.begin_full(b"mdhd", 0, 0)
        .u32(0)
        .u32(0)
        .u32(TIMESCALE)
        .u32(0);
    w.u16(LANGUAGE_UND).u16(0).end();
    w.begin_full(b"hdlr", 0, 0).u32(0).bytes(b"soun").zeros(12);
    w.bytes(b"SoundHandler\0").end();
}

fn write_stbl(w: &mut BoxWriter, config: &OpusTrackConfig) {
    w.begin(b"stbl");
    w.begin_full(b"stsd", 0, 0).u32(1);
    // AudioSampleEntry('Opus'): reserved, data reference 1, reserved, channels, 16-bit sample
    // size, pre-defined, reserved, sample rate 48000 in 16.16.
    w.begin(b"Opus").zeros(6).u16(1).zeros(8);
    w.u16(CHANNELS as u16)
        .u16(16)
        .u16(0)
        .u16(0)
        .u32(SAMPLE_RATE << 16);
    // OpusSpecificBox: version 0, then OpusHead's fields big-endian; family 0 has no table.
    w.begin(b"dOps")
        .u8(0)
        .u8(CHANNELS as u8)
        .u16(config.pre_skip);
    w.u32(config.input_sample_rate)
        .i16(config.output_gain)
        .u8(0)
        .end();
    w.end(); // Opus
    w.end(); // stsd
             // Empty sample tables: every sample lives in movie fragments.
    w.begin_full(b"stts", 0, 0).u32(0).end();
    w.begin_full(b"stsc", 0, 0).u32(0).end();
    w.begin_full(b"stsz", 0, 0).u32(0).u32(0).end();
    w.begin_full(b"stco", 0, 0).u32(0).end();
    // The roll group every fragment refers to: 2-byte entries, one entry.
    w.begin_full(b"sgpd", 1, 0).bytes(b"roll").u32(2).u32(1);
    w.i16(ROLL_DISTANCE).end();
    w.end(); // stbl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::reader::{parse, Box as Bx};

    fn init() -> Vec<u8> {
        init_segment(&OpusTrackConfig::default())
    }

    #[test]
    fn top_level_is_ftyp_then_moov_and_sizes_add_up() {
        let bytes = init();
        let boxes = parse(&bytes).unwrap();
        let kinds: Vec<_> = boxes.iter().map(|b| b.kind_str()).collect();
        assert_eq!(kinds, ["ftyp", "moov"]);
        assert_eq!(boxes.iter().map(|b| b.size).sum::<usize>(), bytes.len());
        let ftyp = boxes[0].body;
        assert_eq!(&ftyp[..4], b"iso6");
        assert_eq!(&ftyp[8..], b"iso6cmfcOpus");
    }

    #[test]
    fn moov_describes_a_mono_48k_opus_track() {
        let bytes = init();
        let boxes = parse(&bytes).unwrap();
        let moov = &boxes[1];
        let mvhd = moov.find(&["mvhd"]).unwrap();
        assert_eq!(mvhd.u32_at(12), TIMESCALE);
        assert_eq!(mvhd.u32_at(96), 2, "next track id");
        let tkhd = moov.find(&["trak", "tkhd"]).unwrap();
        assert_eq!(tkhd.u32_at(0), 3, "version 0, enabled + in movie");
        assert_eq!(tkhd.u32_at(12), TRACK_ID);
        let mdhd = moov.find(&["trak", "mdia", "mdhd"]).unwrap();
        assert_eq!(mdhd.u32_at(12), 48_000);
        assert_eq!(mdhd.u16_at(20), 0x55c4, "und");
        let hdlr = moov.find(&["trak", "mdia", "hdlr"]).unwrap();
        assert_eq!(&hdlr.body[8..12], b"soun");
        let stbl = moov.find(&["trak", "mdia", "minf", "stbl"]).unwrap();
        let kinds: Vec<_> = stbl.children.iter().map(Bx::kind_str).collect();
        assert_eq!(kinds, ["stsd", "stts", "stsc", "stsz", "stco", "sgpd"]);
        assert!(moov.find(&["trak", "mdia", "minf", "smhd"]).is_some());
        let url = moov.find(&["trak", "mdia", "minf", "dinf", "dref", "url "]);
        assert_eq!(url.unwrap().u32_at(0), 1, "self-contained");
        assert!(
            moov.find(&["trak", "edts"]).is_none(),
            "no edit list by design"
        );
    }

    #[test]
    fn sample_entry_and_dops_match_the_opus_mapping() {
        let bytes = init();
        let boxes = parse(&bytes).unwrap();
        let stsd = boxes[1]
            .find(&["trak", "mdia", "minf", "stbl", "stsd"])
            .unwrap();
        assert_eq!(stsd.u32_at(4), 1, "one sample entry");
        let opus = &stsd.children[0];
        assert_eq!(opus.kind_str(), "Opus");
        assert_eq!(opus.u16_at(6), 1, "data reference index");
        assert_eq!(opus.u16_at(16), 1, "channel count");
        assert_eq!(opus.u16_at(18), 16, "sample size");
        assert_eq!(opus.u32_at(24), 48_000 << 16);
        let dops = opus.find(&["dOps"]).unwrap();
        // Version 0, 1 channel, pre-skip 312, 48000 Hz, gain 0, family 0.
        assert_eq!(dops.body, [0, 1, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        let sgpd = boxes[1]
            .find(&["trak", "mdia", "minf", "stbl", "sgpd"])
            .unwrap();
        assert_eq!(
            sgpd.body,
            [1, 0, 0, 0, b'r', b'o', b'l', b'l', 0, 0, 0, 2, 0, 0, 0, 1, 0xff, 0xfc]
        );
    }

    #[test]
    fn trex_sets_960_tick_samples() {
        let bytes = init();
        let boxes = parse(&bytes).unwrap();
        let trex = boxes[1].find(&["mvex", "trex"]).unwrap();
        assert_eq!(trex.u32_at(4), TRACK_ID);
        assert_eq!(trex.u32_at(8), 1);
        assert_eq!(trex.u32_at(12), 960);
        assert_eq!(trex.u32_at(20), DEFAULT_SAMPLE_FLAGS);
    }

    #[test]
    fn config_fields_reach_dops() {
        let cfg = OpusTrackConfig {
            pre_skip: 3840,
            input_sample_rate: 16_000,
            output_gain: -256,
        };
        let bytes = init_segment(&cfg);
        let boxes = parse(&bytes).unwrap();
        let dops = boxes[1]
            .find(&["trak", "mdia", "minf", "stbl", "stsd", "Opus", "dOps"])
            .unwrap();
        assert_eq!(
            dops.body,
            [0, 1, 0x0f, 0x00, 0, 0, 0x3e, 0x80, 0xff, 0x00, 0]
        );
    }
}
