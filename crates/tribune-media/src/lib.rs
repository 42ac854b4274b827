//! Sans-IO audio for Tribune: a safe Opus codec wrapper, a per-speaker jitter buffer, the
//! program mixer, Ogg Opus and WAV containers, CMAF packaging and LL-HLS playlists, a test-tone
//! generator and spectrum analysis.
//!
//! Audio is mono, 48 kHz, signed 16-bit, cut into 20 ms frames everywhere. Nothing here touches
//! sockets, files or clocks: callers push bytes and timestamps in and take bytes out.

pub mod analysis;
pub mod cmaf;
pub mod error;
pub mod hls;
pub mod jitter;
pub mod mixer;
pub mod oggopus;
pub mod opus;
pub mod record;
pub mod resample;
pub mod softclip;
pub mod tone;
pub mod wav;
pub mod wire;

#[cfg(test)]
mod testutil;

pub use error::{ContainerError, MediaError};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
pub use mixer::{MixMinus, Mixer, MixerConfig, ProgramFrame};
pub use oggopus::{decode_ogg_to_pcm, OggOpusReader, OggOpusWriter};
pub use opus::{validate_packet, Decoder, Encoder, OpusError};
pub use tone::ToneGenerator;
pub use wav::{read_wav, wav_bytes, write_wav, Wav};

/// Sample rate of all audio handled by Tribune, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Number of audio channels (mono).
pub const CHANNELS: usize = 1;
/// Duration of one audio frame, in milliseconds.
pub const FRAME_MS: u32 = 20;
/// Samples in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

// Keep the constants consistent with each other at compile time.
const _: () = assert!(FRAME_SAMPLES == (SAMPLE_RATE / 1000 * FRAME_MS) as usize);
