//! One CMAF fragment: `moof` (timing and sample sizes) followed by `mdat` (the packets).

use super::boxes::BoxWriter;
use super::{CmafError, MAX_FRAGMENT_SAMPLES, SAMPLE_DURATION, TRACK_ID};

/// `tfhd` flags: default-base-is-moof (CMAF requires it) + default-sample-duration-present.
const TFHD_FLAGS: u32 = 0x0002_0000 | 0x0000_0008;
/// `trun` flags: data-offset-present + sample-size-present (durations come from `tfhd`).
const TRUN_FLAGS: u32 = 0x0000_0001 | 0x0000_0200;
/// Largest `mdat` payload accepted; far above any real fragment, well inside 32-bit sizes.
const MAX_MDAT_BYTES: usize = 64 << 20;

/// Builds `moof` + `mdat` for consecutive 20 ms samples starting at `base_media_decode_time`.
///
/// `sequence_number` goes to `mfhd` and must increase from fragment to fragment of a track.
/// Every sample lasts [`SAMPLE_DURATION`] ticks and is a sync sample in the Opus `roll` group.
pub fn fragment<S: AsRef<[u8]>>(
    sequence_number: u32,
    base_media_decode_time: u64,
    samples: &[S],
) -> Result<Vec<u8>, CmafError> {
    if samples.is_empty() {
        return Err(CmafError::EmptyFragment);
    }
    if samples.len() > MAX_FRAGMENT_SAMPLES {
        return Err(CmafError::TooManySamples(samples.len()));
    }
    let mut payload = 0usize;
    for (i, s) in samples.iter().enumerate() {
        let len = s.as_ref().len();
        if len == 0 {
            return Err(CmafError::EmptySample(i));
        }
        payload = payload.saturating_add(len);
    }
    if payload > MAX_MDAT_BYTES {
        return Err(CmafError::TooLarge("fragment payload"));
    }
    // Both bounds above make every count and size below fit in u32.
    let count = samples.len() as u32;

    let mut w = BoxWriter::with_capacity(payload + 120 + 4 * samples.len());
    w.begin(b"moof");
    w.begin_full(b"mfhd", 0, 0).u32(sequence_number).end();
    w.begin(b"traf");
    w.begin_full(b"tfhd", 0, TFHD_FLAGS)
        .u32(TRACK_ID)
        .u32(SAMPLE_DURATION)
        .end();
    // Version 1: 64-bit decode time, since seq × 960 passes 2^32 after about 25 hours.
    w.begin_full(b"tfdt", 1, 0)
        .u64(base_media_decode_time)
        .end();
    w.begin_full(b"trun", 0, TRUN_FLAGS).u32(count);
    let data_offset_at = w.len();
    w.u32(0); // patched once the moof size is known
    for s in samples {
        w.u32(s.as_ref().len() as u32);
    }
    w.end(); // trun
             // Every sample belongs to the init segment's `roll` group (index 1 of its sgpd).
    w.begin_full(b"sbgp", 0, 0)
        .bytes(b"roll")
        .u32(1)
        .u32(count)
        .u32(1);
    w.end();
    w.end(); // traf
    w.end(); // moof
             // The moof starts at offset 0 and the samples right after the mdat header.
    let moof_len = w.len();
    w.patch_u32(data_offset_at, (moof_len + 8) as u32);
    w.begin(b"mdat");
    for s in samples {
        w.bytes(s.as_ref());
    }
    w.end();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmaf::reader::{fragments, parse};

    #[test]
    fn fragment_fields_read_back() {
        let samples: [&[u8]; 3] = [b"abc", b"de", b"fghij"];
        let bytes = fragment(7, 12_345 * 960, &samples).unwrap();
        let info = fragments(&bytes).unwrap();
        assert_eq!(info.len(), 1);
        let f = &info[0];
        assert_eq!(f.sequence_number, 7);
        assert_eq!(f.decode_time, 12_345 * 960);
        assert_eq!(f.sample_duration, 960);
        assert_eq!(f.sizes, [3, 2, 5]);
        assert_eq!(
            f.samples,
            [b"abc".to_vec(), b"de".to_vec(), b"fghij".to_vec()]
        );
    }

    #[test]
    fn layout_is_moof_then_mdat_with_roll_group() {
        let samples = vec![vec![0x55u8; 100]; 10];
        let bytes = fragment(1, 0, &samples).unwrap();
        let boxes = parse(&bytes).unwrap();
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[1].kind_str(), "mdat");
        assert_eq!(boxes[1].size, 8 + 1000);
        let traf = boxes[0].find(&["traf"]).unwrap();
        let kinds: Vec<_> = traf.children.iter().map(|b| b.kind_str()).collect();
        assert_eq!(kinds, ["tfhd", "tfdt", "trun", "sbgp"]);
        let sbgp = &traf.children[3];
        assert_eq!(&sbgp.body[4..8], b"roll");
        assert_eq!(sbgp.u32_at(8), 1, "one entry");
        assert_eq!(sbgp.u32_at(12), 10, "covering all samples");
        assert_eq!(
            sbgp.u32_at(16),
            1,
            "group description 1 of the init segment"
        );
        // moof: 8 + mfhd 16 + traf (8 + tfhd 20 + tfdt 20 + trun 20 + 40 + sbgp 28).
        assert_eq!(boxes[0].size, 8 + 16 + 8 + 20 + 20 + 60 + 28);
    }

    #[test]
    fn large_decode_times_keep_64_bits() {
        let t = (u32::MAX as u64 + 5) * 960;
        let bytes = fragment(1, t, &[[1u8]]).unwrap();
        assert_eq!(fragments(&bytes).unwrap()[0].decode_time, t);
    }

    #[test]
    fn bad_input_is_refused() {
        let none: [&[u8]; 0] = [];
        assert_eq!(fragment(1, 0, &none), Err(CmafError::EmptyFragment));
        let with_empty: [&[u8]; 2] = [b"x", b""];
        assert_eq!(fragment(1, 0, &with_empty), Err(CmafError::EmptySample(1)));
        let many = vec![[1u8]; MAX_FRAGMENT_SAMPLES + 1];
        assert_eq!(
            fragment(1, 0, &many),
            Err(CmafError::TooManySamples(MAX_FRAGMENT_SAMPLES + 1))
        );
        let huge = [vec![0u8; MAX_MDAT_BYTES + 1]];
        assert!(matches!(fragment(1, 0, &huge), Err(CmafError::TooLarge(_))));
    }
}
