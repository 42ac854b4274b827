//! Sans-IO checks of WHIP and WHEP offers and answers: an offer must be well-formed SDP (str0m's
//! parser is the judge) and must send Opus audio (WHIP) or receive it (WHEP); an answer must have
//! accepted that audio in the matching direction.
//!
//! The audio check is a small scan of the SDP text (m-lines, `a=rtpmap`, direction attributes),
//! so the reason for a refusal can be told to the client in plain words.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::{IceCreds, Rtc, RtcConfig};

/// Why an offer is refused (answered `400` with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The body is empty.
    #[error("empty SDP offer")]
    Empty,
    /// The body is not SDP.
    #[error("malformed SDP offer: {0}")]
    Malformed(String),
    /// No enabled `m=audio` section.
    #[error("the offer has no audio track (WHIP ingest here takes one Opus audio track)")]
    NoAudio,
    /// Audio, but no `opus/48000` payload type on it.
    #[error("the offer's audio offers no Opus (opus/48000) payload type")]
    NoOpus,
    /// The Opus audio is `recvonly` or `inactive`: nothing would be published.
    #[error("the offer's Opus audio is not sent (direction must be sendonly or sendrecv)")]
    NotSending,
    /// A playback offer whose Opus audio is `sendonly` or `inactive`: nothing could be played.
    #[error(
        "the offer's Opus audio is not received (WHEP plays audio: direction must be recvonly \
         or sendrecv)"
    )]
    NotReceiving,
    /// str0m could not answer the offer (inconsistent SDP, no fingerprint, ...).
    #[error("offer refused: {0}")]
    Refused(String),
    /// The answer took no Opus audio from the offer.
    #[error("no Opus audio could be negotiated from the offer")]
    NoOpusNegotiated,
}

/// Which way the audio of a session flows, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// WHIP: the client sends, we receive.
    Publish,
    /// WHEP: we send, the client plays.
    Play,
}

/// A str0m peer connection set up as our WHIP answerer: ICE lite, Opus only, no stats.
pub fn answerer(crypto: Arc<CryptoProvider>, cert: DtlsCert, creds: IceCreds) -> Rtc {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_local_ice_credentials(creds)
        .set_crypto_provider(crypto)
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_opus(true, false)
        .set_stats_interval(None)
        .build(Instant::now())
}

/// Checks a WHIP offer and answers it on `rtc`: the SDP answer text, or why not.
pub fn negotiate(rtc: &mut Rtc, offer_text: &str) -> Result<String, OfferError> {
    negotiate_for(rtc, offer_text, Flow::Publish)
}

/// Checks an offer for `flow` and answers it on `rtc`: the SDP answer text, or why not. A panic
/// inside str0m on hostile SDP is caught and becomes a refusal.
pub fn negotiate_for(rtc: &mut Rtc, offer_text: &str, flow: Flow) -> Result<String, OfferError> {
    let offer = parse_offer_for(offer_text, flow)?;
    let accepted = std::panic::catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)))
        .map_err(|_| OfferError::Refused("the offer could not be processed".to_owned()))?;
    let answer = accepted
        .map_err(|e| OfferError::Refused(e.to_string()))?
        .to_sdp_string();
    let s = summarize_audio(&answer);
    let ok = match flow {
        Flow::Publish => s.opus_receiving > 0,
        Flow::Play => s.opus_sending > 0,
    };
    if !ok {
        return Err(OfferError::NoOpusNegotiated);
    }
    Ok(answer)
}

/// What the audio sections of an SDP say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioSummary {
    /// Enabled `m=audio` sections.
    pub audio_sections: usize,
    /// Of those, how many carry an `opus/48000` payload type listed on their m-line.
    pub opus_sections: usize,
    /// Of those, how many send (sendonly or sendrecv, the default).
    pub opus_sending: usize,
    /// Of the Opus sections, how many receive (recvonly or sendrecv): what an answer must say.
    pub opus_receiving: usize,
}

#[derive(Default)]
struct Section {
    audio: bool,
    enabled: bool,
    fmts: Vec<String>,
    opus: bool,
    send: bool,
    recv: bool,
}

impl Section {
    fn open(line: &str) -> Section {
        // m=<media> <port> <proto> <fmt> ...
        let mut parts = line.split_ascii_whitespace();
        let audio = parts.next() == Some("audio");
        let port = parts.next().unwrap_or("0");
        let _proto = parts.next();
        Section {
            audio,
            // Port 0 disables a section, except a bundle-only one (fixed up by `a=bundle-only`).
            enabled: port.split('/').next().is_some_and(|p| p != "0"),
            fmts: parts.map(str::to_owned).collect(),
            opus: false,
            send: true,
            recv: true,
        }
    }

    fn attribute(&mut self, attr: &str) {
        match attr {
            "sendonly" => (self.send, self.recv) = (true, false),
            "recvonly" => (self.send, self.recv) = (false, true),
            "inactive" => (self.send, self.recv) = (false, false),
            "sendrecv" => (self.send, self.recv) = (true, true),
            "bundle-only" => self.enabled = true,
            _ => {
                if let Some(map) = attr.strip_prefix("rtpmap:") {
                    // rtpmap:<pt> <encoding>/<clock rate>[/<channels>]
                    let mut it = map.split_ascii_whitespace();
                    let (Some(pt), Some(enc)) = (it.next(), it.next()) else {
                        return;
                    };
                    let mut enc = enc.split('/');
                    let name = enc.next().unwrap_or("");
                    let rate = enc.next().unwrap_or("");
                    if name.eq_ignore_ascii_case("opus")
                        && rate == "48000"
                        && self.fmts.iter().any(|f| f == pt)
                    {
                        self.opus = true;
                    }
                }
            }
        }
    }

    fn close(self, s: &mut AudioSummary) {
        if !(self.audio && self.enabled) {
            return;
        }
        s.audio_sections += 1;
        if self.opus {
            s.opus_sections += 1;
            s.opus_sending += usize::from(self.send);
            s.opus_receiving += usize::from(self.recv);
        }
    }
}

/// Scans SDP text for its audio sections.
pub fn summarize_audio(sdp: &str) -> AudioSummary {
    let mut summary = AudioSummary::default();
    let mut section: Option<Section> = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(done) = section.take() {
                done.close(&mut summary);
            }
            section = Some(Section::open(m));
        } else if let (Some(a), Some(s)) = (line.strip_prefix("a="), section.as_mut()) {
            s.attribute(a.trim());
        }
    }
    if let Some(done) = section {
        done.close(&mut summary);
    }
    summary
}

/// Checks a WHIP offer and parses it for str0m: well-formed SDP with Opus audio that is sent.
pub fn parse_offer(text: &str) -> Result<SdpOffer, OfferError> {
    parse_offer_for(text, Flow::Publish)
}

/// Checks an offer and parses it for str0m: well-formed SDP with Opus audio flowing the way
/// `flow` needs.
pub fn parse_offer_for(text: &str, flow: Flow) -> Result<SdpOffer, OfferError> {
    if text.trim().is_empty() {
        return Err(OfferError::Empty);
    }
    let offer = SdpOffer::from_sdp_string(text).map_err(|e| {
        let mut msg = parse_error_text(&e.to_string());
        truncate_chars(&mut msg, 300);
        OfferError::Malformed(msg)
    })?;
    let s = summarize_audio(text);
    if s.audio_sections == 0 {
        return Err(OfferError::NoAudio);
    }
    if s.opus_sections == 0 {
        return Err(OfferError::NoOpus);
    }
    match flow {
        Flow::Publish if s.opus_sending == 0 => Err(OfferError::NotSending),
        Flow::Play if s.opus_receiving == 0 => Err(OfferError::NotReceiving),
        _ => Ok(offer),
    }
}

/// The SDP parser's error as a client may see it: what was unexpected and expected, without the
/// parser's position, which it gives as a memory address inside this process.
fn parse_error_text(raw: &str) -> String {
    let text = raw
        .lines()
        .map(|line| {
            line.replace("Parse error at", "")
                .split_whitespace()
                .filter(|w| !looks_like_address(w))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
        .replace(":; ", ": ");
    if text.is_empty() || text == "SDP parse:" {
        return "the offer does not parse as SDP (RFC 8866)".to_owned();
    }
    text
}

/// A word that holds an address: a hex number (`0x…`) or a run of 8 or more digits anywhere in
/// it (the parser writes positions as `PointerOffset(0x…)` or as plain numbers).
fn looks_like_address(word: &str) -> bool {
    let b = word.as_bytes();
    let hex = b
        .windows(3)
        .any(|w| w[0] == b'0' && (w[1] | 0x20) == b'x' && w[2].is_ascii_hexdigit());
    let digits = word
        .split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() >= 8);
    hex || digits
}

/// Whether an answer accepted Opus audio for receiving.
pub fn answer_receives_opus(answer: &str) -> bool {
    summarize_audio(answer).opus_receiving > 0
}

#[cfg(test)]
mod error_text_tests {
    use super::*;

    #[test]
    fn parser_errors_show_no_addresses() {
        let raw = "SDP parse: Parse error at 94812716543210\nUnexpected `x`\nExpected digit\n";
        let text = parse_error_text(raw);
        assert_eq!(text, "SDP parse: Unexpected `x`; Expected digit");
        assert!(!parse_error_text("at 0x7ffd5e8a1c20 here").contains("0x"));
        let wrapped = parse_error_text("SDP parse: PointerOffset(0x7ff63666cf69); Unexpected `x`");
        assert_eq!(wrapped, "SDP parse: Unexpected `x`");
        assert_eq!(
            parse_error_text("Parse error at 123456789"),
            "the offer does not parse as SDP (RFC 8866)"
        );
        // A real offer with a broken version line.
        let e = parse_offer("v=x\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("malformed SDP offer"), "{msg}");
        assert!(!msg.split_whitespace().any(looks_like_address), "{msg}");
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A browser-like audio-only WHIP offer.
    pub(crate) const OFFER: &str = "v=0\r\n\
o=- 4215775240449105457 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Ahb3\r\n\
a=ice-pwd:b2mVw0Yp4o5Ha8IXStq29zsm\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ssrc:1001 cname:test\r\n";

    #[test]
    fn accepts_a_browser_like_offer() {
        let s = summarize_audio(OFFER);
        assert_eq!(
            s,
            AudioSummary {
                audio_sections: 1,
                opus_sections: 1,
                opus_sending: 1,
                opus_receiving: 0
            }
        );
        assert!(parse_offer(OFFER).is_ok());
    }

    #[test]
    fn refuses_what_cannot_be_published() {
        assert_eq!(parse_offer("  \r\n").unwrap_err(), OfferError::Empty);
        assert!(matches!(
            parse_offer("hello world").unwrap_err(),
            OfferError::Malformed(_)
        ));
        let video = OFFER
            .replace(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
                "m=video 9 UDP/TLS/RTP/SAVPF 96",
            )
            .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:96 VP8/90000")
            .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "")
            .replace("a=rtpmap:0 PCMU/8000\r\n", "");
        assert_eq!(parse_offer(&video).unwrap_err(), OfferError::NoAudio);
        let pcmu = OFFER
            .replace(" 111 0\r\n", " 0\r\n")
            .replace("a=rtpmap:111 opus/48000/2\r\n", "")
            .replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "");
        assert_eq!(parse_offer(&pcmu).unwrap_err(), OfferError::NoOpus);
        // Opus named in an rtpmap but not listed on the m-line does not count.
        let unlisted = OFFER.replace(" 111 0\r\n", " 0\r\n");
        assert_eq!(summarize_audio(&unlisted).opus_sections, 0);
        let recv = OFFER.replace("a=sendonly", "a=recvonly");
        assert_eq!(parse_offer(&recv).unwrap_err(), OfferError::NotSending);
        let disabled = OFFER.replace("m=audio 9 ", "m=audio 0 ");
        assert_eq!(summarize_audio(&disabled).audio_sections, 0);
    }

    #[test]
    fn playback_offers_must_receive_opus() {
        let recv = OFFER.replace("a=sendonly", "a=recvonly");
        assert!(parse_offer_for(&recv, Flow::Play).is_ok());
        let both = OFFER.replace("a=sendonly", "a=sendrecv");
        assert!(parse_offer_for(&both, Flow::Play).is_ok());
        assert_eq!(
            parse_offer_for(OFFER, Flow::Play).unwrap_err(),
            OfferError::NotReceiving
        );
        let inactive = OFFER.replace("a=sendonly", "a=inactive");
        assert_eq!(
            parse_offer_for(&inactive, Flow::Play).unwrap_err(),
            OfferError::NotReceiving
        );
        assert!(OfferError::NotReceiving.to_string().contains("recvonly"));
    }

    #[test]
    fn answers_are_checked_for_receiving_opus() {
        let answer = OFFER.replace("a=sendonly", "a=recvonly");
        assert!(answer_receives_opus(&answer));
        assert!(!answer_receives_opus(OFFER));
        assert!(!answer_receives_opus(""));
    }
}
