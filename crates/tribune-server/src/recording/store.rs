//! A recording on disk (blocking file I/O; callers run it on the blocking pool).
//!
//! ```text
//! {data_dir}/recordings/{room_id}/
//!   meta.json        room, title, times, whether recording is on
//!   init.mp4         the CMAF init segment
//!   index.txt        one line per segment (see tribune_media::record)
//!   seg/{msn}.m4s    the segments, exactly the bytes served live
//!   clips/{id}.m4a   clips cut from it
//! ```
//!
//! Every file is written to a temporary name in the same directory, fsynced, renamed into
//! place, and the directory fsynced: after a crash a name either holds its complete bytes or
//! does not exist. The index is appended (and fdatasynced) only after its segment is in place,
//! and [`recover`] rebuilds it from the segment files, so a torn append or a lost line costs
//! nothing. Every path is built from typed values ([`RoomId`], numbers, checked clip ids),
//! never from request text.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tribune_core::RoomId;
use tribune_media::record::{
    parse_index, reconcile, render_index, IndexEntry, Reconciled, SegmentFile,
};

/// Name suffix of files being written.
const TMP_SUFFIX: &str = ".tmp";

/// What a recording knows about its room (`meta.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The room.
    pub room: RoomId,
    /// The room's title when it was created.
    pub title: String,
    /// When the room was created (Unix seconds).
    pub created_at: u64,
    /// When the recording ended (Unix seconds): the room ended, or the node found it
    /// unfinished after a crash.
    pub ended_at: Option<u64>,
    /// Whether new program audio is being recorded.
    pub enabled: bool,
}

/// The directory of `room`'s recording under `root`.
pub fn room_dir(root: &Path, room: &RoomId) -> PathBuf {
    root.join(room.as_str())
}

/// The file of segment `msn`.
pub fn segment_path(dir: &Path, msn: u64) -> PathBuf {
    dir.join("seg").join(format!("{msn}.m4s"))
}

/// The init segment's file.
pub fn init_path(dir: &Path) -> PathBuf {
    dir.join("init.mp4")
}

/// A clip's file (`id` is checked by the caller: 16 lowercase hex digits).
pub fn clip_path(dir: &Path, id: &str) -> PathBuf {
    dir.join("clips").join(format!("{id}.m4a"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old state or all of `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file path without a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("a path without a file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = dir.join(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Makes a directory's entries (a rename) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates the directories of a new recording and writes its meta and init segment.
pub fn create(dir: &Path, meta: &Meta, init: &[u8]) -> io::Result<()> {
    fs::create_dir_all(dir.join("seg"))?;
    fs::create_dir_all(dir.join("clips"))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    write_meta(dir, meta)?;
    write_atomic(&init_path(dir), init)?;
    write_atomic(&dir.join("index.txt"), render_index(&[]).as_bytes())
}

/// Replaces `meta.json`.
pub fn write_meta(dir: &Path, meta: &Meta) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    write_atomic(&dir.join("meta.json"), &json)
}

/// Stores one segment, then its index line.
pub fn append_segment(dir: &Path, entry: &IndexEntry, bytes: &[u8]) -> io::Result<()> {
    write_atomic(&segment_path(dir, entry.msn), bytes)?;
    let mut index = OpenOptions::new()
        .append(true)
        .open(dir.join("index.txt"))?;
    index.write_all(entry.to_line().as_bytes())?;
    index.sync_data()
}

/// A recording read back from disk.
#[derive(Debug)]
pub struct Recovered {
    /// Its meta.
    pub meta: Meta,
    /// Its segments.
    pub entries: Vec<IndexEntry>,
    /// What reconciling the index with the files found.
    pub report: Reconciled,
}

/// Reads the recording in `dir`: removes half-written temporary files, reconciles the index
/// with the segment files (rebuilding entries from the files where needed) and rewrites the
/// index if it changed. `None` if `dir` holds no readable meta (not a recording).
pub fn recover(dir: &Path) -> io::Result<Option<Recovered>> {
    let meta: Meta = match fs::read(dir.join("meta.json")) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(m) => m,
            Err(_) => return Ok(None),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for sub in [dir.to_path_buf(), dir.join("seg"), dir.join("clips")] {
        remove_temporaries(&sub)?;
    }
    let index_text = match fs::read(dir.join("index.txt")) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let index = parse_index(&index_text);
    let files = segment_files(&dir.join("seg"))?;
    let report = reconcile(&index, &files, |msn| fs::read(segment_path(dir, msn)).ok());
    let rendered = render_index(&report.entries);
    if rendered != index_text {
        write_atomic(&dir.join("index.txt"), rendered.as_bytes())?;
    }
    Ok(Some(Recovered {
        meta,
        entries: report.entries.clone(),
        report,
    }))
}

fn remove_temporaries(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The `{msn}.m4s` files of a `seg` directory (other names are ignored).
fn segment_files(seg: &Path) -> io::Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(seg) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(msn) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".m4s"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let meta = entry.metadata()?;
        if meta.is_file() {
            out.push(SegmentFile {
                msn,
                bytes: meta.len(),
            });
        }
    }
    Ok(out)
}

/// The recordings under `root`: every directory named like a room id.
pub fn list(root: &Path) -> io::Result<Vec<RoomId>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if let Some(id) = entry.file_name().to_str().and_then(RoomId::parse) {
            if entry.file_type()?.is_dir() {
                out.push(id);
            }
        }
    }
    Ok(out)
}
