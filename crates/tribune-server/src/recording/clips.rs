//! Cutting clips out of a recording and naming them.

use std::path::Path;

use bytes::Bytes;
use tribune_media::cmaf::read_samples;
use tribune_media::record::{clip_file, select, ClipError, ClipPiece, IndexEntry};

use super::store;

/// Most clips one room may have (a clip costs disk; this bounds what one room can take).
pub const MAX_CLIPS_PER_ROOM: usize = 500;

/// A clip's id: 16 lowercase hex digits (random), the only names a clip path can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClipId(String);

impl ClipId {
    /// A fresh random id.
    pub fn random() -> Self {
        ClipId(format!("{:016x}", rand::random::<u64>()))
    }

    /// Parses `{id}.m4a` as served; anything else (traversal, other names) is `None`.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let id = name.strip_suffix(".m4a")?;
        (id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| ClipId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a clip was not made.
#[derive(Debug, thiserror::Error)]
pub enum MakeClipError {
    /// The range is not one the recording can give.
    #[error(transparent)]
    Range(#[from] ClipError),
    /// Reading the segments or writing the clip failed.
    #[error("recording storage: {0}")]
    Io(#[from] std::io::Error),
}

/// Cuts `start_ms..end_ms` of the recording in `dir` (whose segments are `entries`) into a
/// new clip file; answers its duration in milliseconds. Blocking.
pub fn make(
    dir: &Path,
    entries: &[IndexEntry],
    start_ms: u64,
    end_ms: u64,
    id: &ClipId,
) -> Result<u64, MakeClipError> {
    let pieces = select(entries, start_ms, end_ms)?;
    let mut packets: Vec<Bytes> = Vec::new();
    for ClipPiece { msn, skip, take } in pieces {
        let bytes = Bytes::from(std::fs::read(store::segment_path(dir, msn))?);
        let samples = read_samples(&bytes).map_err(ClipError::from)?;
        let chosen =
            samples
                .get(skip as usize..(skip + take) as usize)
                .ok_or(ClipError::Damaged(
                    tribune_media::cmaf::CmafError::Malformed(
                        "segment shorter than its index entry",
                    ),
                ))?;
        packets.extend(chosen.iter().map(|s| s.packet.clone()));
    }
    let frames = packets.len() as u64;
    let file = clip_file(&packets)?;
    store::write_atomic(&store::clip_path(dir, id.as_str()), &file)?;
    Ok(frames * u64::from(tribune_media::FRAME_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_ids_name_clips() {
        let id = ClipId::random();
        let name = format!("{}.m4a", id.as_str());
        assert_eq!(ClipId::from_file_name(&name), Some(id));
        for bad in [
            "../../meta.json",
            "0123456789abcdef",
            "0123456789ABCDEF.m4a",
            "0123456789abcde.m4a",
            "0123456789abcdef0.m4a",
            "..%2f0123456789a.m4a",
            "/etc/passwd.m4a",
            "",
        ] {
            assert_eq!(ClipId::from_file_name(bad), None, "{bad:?}");
        }
    }
}
