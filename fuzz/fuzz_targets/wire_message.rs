//! The binary audio message parser: never panics, and what it accepts re-encodes identically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_media::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = wire::parse_message(data) {
        let rebuilt: Vec<bytes::Bytes> = records
            .map(|r| wire::record(r.seq, r.capture_us, r.payload))
            .collect();
        let msg = wire::message(rebuilt.iter().map(|b| b.as_ref()));
        assert_eq!(&msg[..], data);
    }
});
