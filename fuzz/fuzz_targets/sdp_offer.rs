//! WHIP and WHEP offers: arbitrary text through the same path `POST /api/rooms/{id}/whip` and
//! `/whep` take (the text checks, str0m's parser, and answering on a real str0m peer
//! connection). Every input is either answered with SDP that receives Opus (WHIP) or sends it
//! (WHEP), or refused with a reason; nothing panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::{Candidate, IceCreds};
use tribune_server::whip::sdp;

fn crypto() -> &'static (Arc<CryptoProvider>, DtlsCert) {
    static CRYPTO: OnceLock<(Arc<CryptoProvider>, DtlsCert)> = OnceLock::new();
    CRYPTO.get_or_init(|| {
        let provider = Arc::new(str0m::crypto::from_feature_flags());
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate");
        (provider, cert)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let summary = sdp::summarize_audio(text);
    assert!(summary.opus_sections <= summary.audio_sections);
    assert!(summary.opus_sending <= summary.opus_sections);
    assert!(summary.opus_receiving <= summary.opus_sections);
    for flow in [sdp::Flow::Publish, sdp::Flow::Play] {
        let checked = sdp::parse_offer_for(text, flow);
        if checked.is_ok() {
            let flowing = match flow {
                sdp::Flow::Publish => summary.opus_sending,
                sdp::Flow::Play => summary.opus_receiving,
            };
            assert!(flowing > 0, "accepted without Opus flowing: {summary:?}");
        }
        let (provider, cert) = crypto();
        let creds = IceCreds {
            ufrag: "fuzzfuzzfuzzfuzz".to_owned(),
            pass: "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz".to_owned(),
        };
        let mut rtc = sdp::answerer(provider.clone(), cert.clone(), creds);
        if let Ok(c) = Candidate::host(([127, 0, 0, 1], 9).into(), "udp") {
            rtc.add_local_candidate(c);
        }
        match sdp::negotiate_for(&mut rtc, text, flow) {
            Ok(answer) => {
                assert!(checked.is_ok(), "answered an offer the checks refuse");
                let s = sdp::summarize_audio(&answer);
                match flow {
                    sdp::Flow::Publish => assert!(s.opus_receiving > 0),
                    sdp::Flow::Play => assert!(s.opus_sending > 0),
                }
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
