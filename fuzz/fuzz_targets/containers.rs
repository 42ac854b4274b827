//! WAV and Ogg Opus readers (CLI input files): errors, never panics or runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(wav) = tribune_media::read_wav(data) {
        let _ = wav.to_mono_48k();
    }
    let _ = tribune_media::oggopus::decode_ogg_to_pcm_limited(data, 48_000 * 10);
});
