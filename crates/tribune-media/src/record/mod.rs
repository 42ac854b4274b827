//! Recordings as plain data: the index of recorded segments (written line by line, rebuilt
//! from the segment files after a crash) and clips cut from it. The recorder that writes files
//! lives in the server; everything here is decided without touching a disk.

mod clip;
mod index;

pub use clip::{clip_file, select, ClipError, ClipPiece, MAX_CLIP_MS};
pub use index::{
    parse_index, reconcile, render_index, IndexEntry, Reconciled, SegmentFile, INDEX_HEADER,
};
