//! WHIP offers: arbitrary text through the same path `POST /api/rooms/{id}/whip` takes (the text
//! checks, str0m's parser, and answering on a real str0m peer connection). Every input is either
//! answered with SDP that receives Opus or refused with a reason; nothing panics.
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
    let checked = sdp::parse_offer(text);
    if checked.is_ok() {
        assert!(
            summary.opus_sending > 0,
            "accepted without Opus sent: {summary:?}"
        );
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
    match sdp::negotiate(&mut rtc, text) {
        Ok(answer) => {
            assert!(checked.is_ok(), "answered an offer the checks refuse");
            assert!(sdp::answer_receives_opus(&answer));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
