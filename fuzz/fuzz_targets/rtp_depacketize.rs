//! RTP as the WHIP path receives it, through the WebRTC stack we run (str0m, the same version
//! and crypto backend as the server): RTP header and packet parsing, depacketizing (Opus among
//! the codecs), and a whole `Rtc` receive path fed arbitrary datagrams. The payloads that come
//! out of an Opus depacketizer then meet our own check, which must refuse or accept, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use str0m::_internal_test_exports::fuzz;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            fuzz::rtp_packet(rest);
        }
        1 => {
            fuzz::depack(rest);
        }
        2 => {
            fuzz::receive(rest);
        }
        _ => {
            // An Opus RTP payload is the Opus packet itself (RFC 7587): what str0m hands the
            // session is what `validate_packet` sees.
            let _ = tribune_media::validate_packet(rest);
        }
    }
});
