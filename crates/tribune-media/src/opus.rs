//! Safe wrapper around the transpiled libopus: a mono 48 kHz encoder and decoder working on
//! 20 ms frames, plus packet validation for untrusted input.

use std::ptr::NonNull;

use unsafe_libopus::varargs::{VarArg, VarArgs};
use unsafe_libopus::{
    opus_decode, opus_decode_float, opus_decoder_create, opus_decoder_ctl_impl,
    opus_decoder_destroy, opus_encode, opus_encode_float, opus_encoder_create,
    opus_encoder_ctl_impl, opus_encoder_destroy, opus_packet_parse, opus_strerror, OpusDecoder,
    OpusEncoder, OPUS_APPLICATION_AUDIO, OPUS_APPLICATION_RESTRICTED_LOWDELAY, OPUS_OK,
    OPUS_SET_BITRATE_REQUEST, OPUS_SET_COMPLEXITY_REQUEST, OPUS_SET_GAIN_REQUEST,
};

use crate::{CHANNELS, FRAME_SAMPLES, SAMPLE_RATE};

/// Largest packet accepted from the network: three frames of the 1275-byte Opus maximum.
pub const MAX_PACKET_BYTES: usize = 3 * 1275;
/// Longest duration an Opus packet can have (120 ms at 48 kHz), in samples.
pub const MAX_PACKET_SAMPLES: usize = 5760;
/// Output buffer size that can hold any encoded 20 ms frame (the size libopus recommends).
pub const MAX_ENCODED_BYTES: usize = 4000;
/// Default encoder complexity: a middle ground between quality and mixing cost.
pub const DEFAULT_COMPLEXITY: u8 = 5;

/// A PCM sample libopus reads and writes: `i16`, or `f32` as a fraction of full scale (the
/// codec's own format: no conversion, and no rounding per sample).
pub trait Sample: Copy + sealed::Sealed {
    /// Calls `opus_decode` or `opus_decode_float`.
    ///
    /// # Safety
    /// `st` is a live decoder, `data` readable for `len` bytes (or null for a loss), `pcm`
    /// writable for `frame` samples.
    #[doc(hidden)]
    unsafe fn decode_raw(
        st: *mut OpusDecoder,
        data: *const u8,
        len: i32,
        pcm: *mut Self,
        frame: i32,
    ) -> i32;
    /// Calls `opus_encode` or `opus_encode_float`.
    ///
    /// # Safety
    /// `st` is a live encoder, `pcm` readable for `frame` samples, `out` writable for `max`.
    #[doc(hidden)]
    unsafe fn encode_raw(
        st: *mut OpusEncoder,
        pcm: *const Self,
        frame: i32,
        out: *mut u8,
        max: i32,
    ) -> i32;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for i16 {}
    impl Sealed for f32 {}
}

impl Sample for i16 {
    unsafe fn decode_raw(
        st: *mut OpusDecoder,
        data: *const u8,
        len: i32,
        pcm: *mut i16,
        frame: i32,
    ) -> i32 {
        // SAFETY: forwarded from the caller's contract.
        unsafe { opus_decode(st, data, len, pcm, frame, 0) }
    }
    unsafe fn encode_raw(
        st: *mut OpusEncoder,
        pcm: *const i16,
        frame: i32,
        out: *mut u8,
        max: i32,
    ) -> i32 {
        // SAFETY: forwarded from the caller's contract.
        unsafe { opus_encode(st, pcm, frame, out, max) }
    }
}

impl Sample for f32 {
    unsafe fn decode_raw(
        st: *mut OpusDecoder,
        data: *const u8,
        len: i32,
        pcm: *mut f32,
        frame: i32,
    ) -> i32 {
        // SAFETY: forwarded from the caller's contract.
        unsafe { opus_decode_float(st, data, len, pcm, frame, 0) }
    }
    unsafe fn encode_raw(
        st: *mut OpusEncoder,
        pcm: *const f32,
        frame: i32,
        out: *mut u8,
        max: i32,
    ) -> i32 {
        // SAFETY: forwarded from the caller's contract.
        unsafe { opus_encode_float(st, pcm, frame, out, max) }
    }
}

/// Why an Opus operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// libopus returned an error code.
    #[error("libopus error {code}: {message}")]
    Codec {
        /// The negative libopus error code.
        code: i32,
        /// libopus's description of the code.
        message: &'static str,
    },
    /// A packet with no bytes.
    #[error("empty opus packet")]
    EmptyPacket,
    /// A packet longer than [`MAX_PACKET_BYTES`].
    #[error("opus packet of {0} bytes exceeds {MAX_PACKET_BYTES}")]
    PacketTooLarge(usize),
    /// A packet whose duration is not one 20 ms frame.
    #[error("opus packet lasts {0} samples, expected {FRAME_SAMPLES}")]
    WrongDuration(usize),
    /// PCM input that is not exactly one frame.
    #[error("pcm frame has {0} samples, expected {FRAME_SAMPLES}")]
    BadFrameLength(usize),
    /// An output buffer too small for the result.
    #[error("buffer of {got} is too small, need {need}")]
    BufferTooSmall {
        /// Required length.
        need: usize,
        /// Provided length.
        got: usize,
    },
    /// A setting outside its allowed range.
    #[error("invalid opus setting: {0}")]
    InvalidSetting(&'static str),
}

impl OpusError {
    /// Wraps a libopus error code.
    pub fn from_code(code: i32) -> Self {
        OpusError::Codec {
            code,
            message: opus_strerror(code),
        }
    }
}

/// Turns a libopus return value into a count or an error.
fn check(rc: i32) -> Result<usize, OpusError> {
    usize::try_from(rc).map_err(|_| OpusError::from_code(rc))
}

/// Duration of a packet in samples at 48 kHz, after fully parsing its frame layout.
pub fn packet_samples(packet: &[u8]) -> Result<usize, OpusError> {
    if packet.is_empty() {
        return Err(OpusError::EmptyPacket);
    }
    let len = i32::try_from(packet.len()).map_err(|_| OpusError::PacketTooLarge(packet.len()))?;
    let mut toc = 0u8;
    // libopus writes one size per frame; 48 is the most frames a packet can hold.
    let mut sizes = [0i16; 48];
    // SAFETY: `packet` is valid for `len` bytes, `sizes` holds 48 entries (the parser's maximum)
    // and the frame and offset outputs are null, which the parser accepts.
    let frames = unsafe {
        opus_packet_parse(
            packet.as_ptr(),
            len,
            &mut toc,
            std::ptr::null_mut(),
            sizes.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    let frames = check(frames)?;
    let per_frame = samples_per_frame(toc);
    let total = frames * per_frame;
    if total > MAX_PACKET_SAMPLES {
        return Err(OpusError::from_code(unsafe_libopus::OPUS_INVALID_PACKET));
    }
    Ok(total)
}

/// Samples per frame at 48 kHz encoded in a TOC byte (RFC 6716 section 3.1).
fn samples_per_frame(toc: u8) -> usize {
    if toc & 0x80 != 0 {
        // CELT-only: 2.5, 5, 10 or 20 ms.
        120 << ((toc >> 3) & 0x3)
    } else if toc & 0x60 == 0x60 {
        // Hybrid: 10 or 20 ms.
        if toc & 0x08 != 0 {
            960
        } else {
            480
        }
    } else {
        // SILK-only: 10, 20, 40 or 60 ms.
        match (toc >> 3) & 0x3 {
            3 => 2880,
            n => 480 << n,
        }
    }
}

/// Checks that untrusted bytes are one well-formed Opus packet lasting exactly 20 ms.
pub fn validate_packet(packet: &[u8]) -> Result<(), OpusError> {
    if packet.is_empty() {
        return Err(OpusError::EmptyPacket);
    }
    if packet.len() > MAX_PACKET_BYTES {
        return Err(OpusError::PacketTooLarge(packet.len()));
    }
    match packet_samples(packet)? {
        FRAME_SAMPLES => Ok(()),
        other => Err(OpusError::WrongDuration(other)),
    }
}

/// A mono 48 kHz Opus encoder producing one packet per 20 ms frame.
pub struct Encoder {
    st: NonNull<OpusEncoder>,
}

// SAFETY: the encoder state is one heap block owned exclusively by this value, libopus keeps no
// thread-local or shared mutable state, and every access goes through `&mut self`.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Creates an encoder (application AUDIO) at the given bitrate.
    pub fn new(bitrate_bps: u32) -> Result<Self, OpusError> {
        Self::with_application(bitrate_bps, OPUS_APPLICATION_AUDIO)
    }

    /// Creates a CELT-only encoder (application RESTRICTED_LOWDELAY): 2.5 ms of look-ahead
    /// instead of 6.5 ms and no speech model, so it is cheaper per frame; for return feeds of a
    /// conversation, where delay and cost matter more than the last bit of quality.
    pub fn low_delay(bitrate_bps: u32) -> Result<Self, OpusError> {
        Self::with_application(bitrate_bps, OPUS_APPLICATION_RESTRICTED_LOWDELAY)
    }

    fn with_application(bitrate_bps: u32, application: i32) -> Result<Self, OpusError> {
        let mut err = OPUS_OK;
        // SAFETY: plain constructor call; `err` is a valid out-pointer.
        let st = unsafe {
            opus_encoder_create(SAMPLE_RATE as i32, CHANNELS as i32, application, &mut err)
        };
        let st = NonNull::new(st).ok_or_else(|| OpusError::from_code(err))?;
        let mut enc = Encoder { st };
        enc.set_bitrate(bitrate_bps)?;
        enc.set_complexity(DEFAULT_COMPLEXITY)?;
        Ok(enc)
    }

    /// Sets the target bitrate in bits per second (libopus clamps it to 500..=300000).
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), OpusError> {
        if bitrate_bps == 0 {
            return Err(OpusError::InvalidSetting("bitrate must be positive"));
        }
        let value = i32::try_from(bitrate_bps).unwrap_or(i32::MAX);
        self.ctl(OPUS_SET_BITRATE_REQUEST, value)
    }

    /// Sets the encoder complexity, 0 (cheapest) to 10 (best).
    pub fn set_complexity(&mut self, complexity: u8) -> Result<(), OpusError> {
        if complexity > 10 {
            return Err(OpusError::InvalidSetting("complexity must be 0..=10"));
        }
        self.ctl(OPUS_SET_COMPLEXITY_REQUEST, i32::from(complexity))
    }

    fn ctl(&mut self, request: i32, value: i32) -> Result<(), OpusError> {
        // SAFETY: `st` is a live encoder; the request takes exactly one i32 argument.
        let rc = unsafe {
            opus_encoder_ctl_impl(
                self.st.as_ptr(),
                request,
                VarArgs::new(vec![VarArg::I32(value)]),
            )
        };
        check(rc).map(|_| ())
    }

    /// Encodes exactly one frame of [`FRAME_SAMPLES`] samples into `out`, returning its length.
    pub fn encode<T: Sample>(&mut self, pcm: &[T], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(OpusError::BadFrameLength(pcm.len()));
        }
        if out.is_empty() {
            return Err(OpusError::BufferTooSmall { need: 1, got: 0 });
        }
        let max = out.len().min(MAX_ENCODED_BYTES) as i32;
        // SAFETY: `pcm` holds one full frame, `out` is writable for `max` bytes.
        let rc = unsafe {
            T::encode_raw(
                self.st.as_ptr(),
                pcm.as_ptr(),
                FRAME_SAMPLES as i32,
                out.as_mut_ptr(),
                max,
            )
        };
        check(rc)
    }

    /// Encodes one frame into a freshly allocated packet.
    pub fn encode_vec(&mut self, pcm: &[i16]) -> Result<Vec<u8>, OpusError> {
        let mut buf = [0u8; MAX_ENCODED_BYTES];
        let n = self.encode(pcm, &mut buf)?;
        Ok(buf[..n].to_vec())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from `opus_encoder_create` and is freed exactly once, here.
        unsafe { opus_encoder_destroy(self.st.as_ptr()) }
    }
}

/// A mono 48 kHz Opus decoder (stereo packets are downmixed by libopus).
pub struct Decoder {
    st: NonNull<OpusDecoder>,
}

// SAFETY: same reasoning as for `Encoder`: exclusively owned heap state, no shared globals.
unsafe impl Send for Decoder {}

impl Decoder {
    /// Creates a decoder.
    pub fn new() -> Result<Self, OpusError> {
        let mut err = OPUS_OK;
        // SAFETY: plain constructor call; `err` is a valid out-pointer.
        let st = unsafe { opus_decoder_create(SAMPLE_RATE as i32, CHANNELS as i32, &mut err) };
        let st = NonNull::new(st).ok_or_else(|| OpusError::from_code(err))?;
        Ok(Decoder { st })
    }

    /// Sets the output gain in Q7.8 dB (the unit of the Ogg Opus header's gain field).
    pub fn set_gain_q8(&mut self, gain: i16) -> Result<(), OpusError> {
        // SAFETY: `st` is a live decoder; the request takes exactly one i32 argument.
        let rc = unsafe {
            opus_decoder_ctl_impl(
                self.st.as_ptr(),
                OPUS_SET_GAIN_REQUEST,
                VarArgs::new(vec![VarArg::I32(i32::from(gain))]),
            )
        };
        check(rc).map(|_| ())
    }

    /// Decodes one packet into `pcm`, returning the number of samples written.
    ///
    /// `pcm` must hold at least [`FRAME_SAMPLES`]; up to [`MAX_PACKET_SAMPLES`] are used so
    /// longer packets (e.g. from Ogg files) fit.
    pub fn decode<T: Sample>(&mut self, packet: &[u8], pcm: &mut [T]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            // libopus would treat this as a loss; callers must ask for that via `conceal`.
            return Err(OpusError::EmptyPacket);
        }
        if pcm.len() < FRAME_SAMPLES {
            return Err(OpusError::BufferTooSmall {
                need: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        let len =
            i32::try_from(packet.len()).map_err(|_| OpusError::PacketTooLarge(packet.len()))?;
        let frame = pcm.len().min(MAX_PACKET_SAMPLES) as i32;
        // SAFETY: `packet` is readable for `len` bytes and `pcm` writable for `frame` samples.
        let rc = unsafe {
            T::decode_raw(
                self.st.as_ptr(),
                packet.as_ptr(),
                len,
                pcm.as_mut_ptr(),
                frame,
            )
        };
        check(rc)
    }

    /// Synthesises one 20 ms frame for a lost packet (packet loss concealment).
    pub fn conceal<T: Sample>(&mut self, pcm: &mut [T]) -> Result<usize, OpusError> {
        if pcm.len() < FRAME_SAMPLES {
            return Err(OpusError::BufferTooSmall {
                need: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        // SAFETY: a null packet asks libopus for concealment; `pcm` holds one frame.
        let rc = unsafe {
            T::decode_raw(
                self.st.as_ptr(),
                std::ptr::null(),
                0,
                pcm.as_mut_ptr(),
                FRAME_SAMPLES as i32,
            )
        };
        check(rc)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from `opus_decoder_create` and is freed exactly once, here.
        unsafe { opus_decoder_destroy(self.st.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{dominant_frequency, rms};
    use crate::testutil::XorShift;
    use crate::tone::ToneGenerator;

    fn encode_tone(freq: f32, frames: usize) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(32_000).unwrap();
        let mut tone = ToneGenerator::new(freq, 0.5);
        (0..frames)
            .map(|_| enc.encode_vec(&tone.next_frame()).unwrap())
            .collect()
    }

    #[test]
    fn round_trip_keeps_tone_frequency_and_level() {
        let packets = encode_tone(440.0, 50);
        let mut dec = Decoder::new().unwrap();
        let mut out = Vec::new();
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        for p in &packets {
            validate_packet(p).unwrap();
            let n = dec.decode(p, &mut pcm).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
            out.extend_from_slice(&pcm[..n]);
        }
        let steady = &out[FRAME_SAMPLES * 5..];
        let f = dominant_frequency(steady, SAMPLE_RATE).unwrap();
        assert!((f - 440.0).abs() < 5.0, "dominant {f}");
        // A 0.5 amplitude sine has RMS 0.5/sqrt(2) ~ 0.354.
        let level = rms(steady);
        assert!((level - 0.354).abs() < 0.05, "rms {level}");
    }

    #[test]
    fn encode_rejects_wrong_frame_length() {
        let mut enc = Encoder::new(32_000).unwrap();
        let mut out = [0u8; 100];
        assert_eq!(
            enc.encode(&[0i16; 480], &mut out),
            Err(OpusError::BadFrameLength(480))
        );
        assert!(enc.encode(&[0i16; FRAME_SAMPLES], &mut []).is_err());
        assert!(enc.set_complexity(11).is_err());
        assert!(enc.set_bitrate(0).is_err());
        enc.set_complexity(10).unwrap();
    }

    #[test]
    fn conceal_yields_one_frame() {
        let packets = encode_tone(440.0, 10);
        let mut dec = Decoder::new().unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        for p in &packets {
            dec.decode(p, &mut pcm).unwrap();
        }
        assert_eq!(dec.conceal(&mut pcm).unwrap(), FRAME_SAMPLES);
        // Concealment extrapolates the tone rather than going silent.
        assert!(rms(&pcm) > 0.05);
        assert!(dec.conceal(&mut [0i16; 10]).is_err());
        assert!(dec.decode(&packets[0], &mut [0i16; 10]).is_err());
        assert_eq!(dec.decode(&[], &mut pcm), Err(OpusError::EmptyPacket));
    }

    #[test]
    fn validate_packet_checks_duration_and_size() {
        let packets = encode_tone(440.0, 2);
        validate_packet(&packets[1]).unwrap();
        assert_eq!(validate_packet(&[]), Err(OpusError::EmptyPacket));
        assert_eq!(
            validate_packet(&[0u8; MAX_PACKET_BYTES + 1]),
            Err(OpusError::PacketTooLarge(MAX_PACKET_BYTES + 1))
        );
        // TOC 0xF8: CELT fullband 20 ms, one frame: valid.
        validate_packet(&[0xF8, 0xFF, 0xFE]).unwrap();
        // TOC 0xF0: CELT fullband 10 ms, one frame: wrong duration.
        assert_eq!(
            validate_packet(&[0xF0, 0x00]),
            Err(OpusError::WrongDuration(480))
        );
        // TOC 0xF1: two equal 10 ms frames = 20 ms, but an odd payload cannot split in two.
        assert!(matches!(
            validate_packet(&[0xF1, 1, 2, 3]),
            Err(OpusError::Codec { .. })
        ));
        validate_packet(&[0xF1, 1, 2]).unwrap();
        // TOC 0xE8: CELT fullband 5 ms.
        assert_eq!(
            validate_packet(&[0xE8, 0x00]),
            Err(OpusError::WrongDuration(240))
        );
        // Code 3 with zero frames is malformed.
        assert!(validate_packet(&[0xFB, 0x00]).is_err());
        // SILK 60 ms.
        assert_eq!(
            validate_packet(&[0x18, 0]),
            Err(OpusError::WrongDuration(2880))
        );
        assert_eq!(packet_samples(&[0x18, 0]), Ok(2880));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift::new(0x5eed_1234_abcd_0001);
        let mut dec = Decoder::new().unwrap();
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        let valid = encode_tone(523.0, 20);
        let mut accepted = 0;
        for i in 0..4000 {
            let mut bytes = if i % 2 == 0 {
                let len = rng.below(if i % 8 == 0 { 4000 } else { 200 });
                rng.bytes(len)
            } else {
                // Mutated real packets reach deeper into the decoder than pure noise.
                let mut p = valid[rng.below(valid.len())].clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(p.len());
                    p[at] = rng.next() as u8;
                }
                p
            };
            if i % 5 == 0 && !bytes.is_empty() {
                bytes.truncate(rng.below(bytes.len()));
            }
            if validate_packet(&bytes).is_ok() {
                accepted += 1;
            }
            // Decode whatever arrives; errors are fine, panics are not.
            if let Ok(n) = dec.decode(&bytes, &mut pcm) {
                assert!(n <= MAX_PACKET_SAMPLES);
            }
            if i % 97 == 0 {
                dec.conceal(&mut pcm).unwrap();
            }
        }
        assert!(accepted > 100, "mutations should keep many packets valid");
    }
}
