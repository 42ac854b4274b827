//! Error types of the mixer and of the Ogg/WAV containers.

use crate::opus::OpusError;

/// Why a mixer operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The codec refused a packet or failed.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// No speaker with this id was added.
    #[error("unknown speaker {0}")]
    UnknownSpeaker(u64),
}

/// Why reading or writing an Ogg Opus or WAV file failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The underlying reader or writer failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The input ended in the middle of a structure.
    #[error("truncated input: {0}")]
    Truncated(&'static str),
    /// The input is not an Ogg stream.
    #[error("not an Ogg stream")]
    NotOgg,
    /// The Ogg stream does not carry Opus.
    #[error("not an Opus stream")]
    NotOpus,
    /// An Ogg page failed its CRC check.
    #[error("Ogg page checksum mismatch")]
    BadChecksum,
    /// A structure is inconsistent.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// More channels than mono or stereo.
    #[error("{0} channels not supported (only mono or stereo)")]
    TooManyChannels(u16),
    /// A valid but unsupported variant of the format.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The input would decode to more data than allowed.
    #[error("input too large: {0}")]
    TooLarge(&'static str),
    /// The input is not a RIFF/WAVE file.
    #[error("not a WAV file")]
    NotWav,
    /// Encoding or decoding the audio failed.
    #[error(transparent)]
    Opus(#[from] OpusError),
}
