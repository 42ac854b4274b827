//! Speaker payloads: validation and decoding of arbitrary bytes never panic, and a packet that
//! validates decodes to exactly one 20 ms frame or a clean error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_media::{validate_packet, Decoder, FRAME_SAMPLES};

fuzz_target!(|data: &[u8]| {
    let valid = validate_packet(data).is_ok();
    let mut dec = Decoder::new().expect("decoder");
    let mut pcm = [0i16; FRAME_SAMPLES * 6];
    if let Ok(n) = dec.decode(data, &mut pcm) {
        if valid {
            assert_eq!(n, FRAME_SAMPLES);
        }
    }
});
