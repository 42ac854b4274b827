//! Token and ticket verification: arbitrary text is refused with a reason, never accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_core::Keyring;

fuzz_target!(|data: &[u8]| {
    let keys = Keyring::new("k1", b"fuzzing key, not a secret".to_vec());
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(keys.verify(text, 0).is_err(), "forged token accepted: {text:?}");
    }
});
