//! Recordings: every room's program written to `--data-dir` as it is produced, served back as a
//! replay (`replay.m3u8`, an `.m4a` download) and cut into clips.
//!
//! One writer task per recording ([`recorder`]) drains the room's completed segments (never
//! blocking the mixer) and does every write of that recording, in order, on the blocking pool:
//! segments, index lines, meta changes. [`Recordings`] is the node's registry: the recordings
//! of rooms live here and those found on disk at start (recovered after a crash), and the
//! retention sweeper.

pub mod clips;
mod recorder;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, watch};
use tribune_core::{unix_micros, RoomId};
use tribune_media::cmaf::Segment;
use tribune_media::hls::{render_replay, ReplaySegment};
use tribune_media::record::IndexEntry;

use crate::metrics::Metrics;
pub use store::Meta;

/// Sub-directory of the data directory that holds recordings.
const RECORDINGS_DIR: &str = "recordings";

/// A change the recording's writer applies, in order with the segments.
#[derive(Debug)]
enum Command {
    /// Start or stop recording new audio.
    SetEnabled(bool),
}

/// The in-memory view of one recording.
#[derive(Debug)]
struct View {
    meta: Meta,
    entries: Vec<IndexEntry>,
    /// Clips made so far (bounded by [`clips::MAX_CLIPS_PER_ROOM`]).
    clips: usize,
}

/// One room's recording.
#[derive(Debug)]
pub struct Recording {
    dir: PathBuf,
    view: RwLock<View>,
    /// Commands to the writer task (closed once the recording has ended).
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

/// A consistent copy of what a recording holds.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Its meta.
    pub meta: Meta,
    /// Its segments in order.
    pub entries: Vec<IndexEntry>,
}

impl Snapshot {
    /// Recorded duration in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.entries.iter().map(IndexEntry::duration_ms).sum()
    }

    /// Whether the recording is complete (the room ended, or the node stopped under it).
    pub fn ended(&self) -> bool {
        self.meta.ended_at.is_some()
    }

    /// `replay.m3u8`: an EVENT playlist while recording, VOD after.
    pub fn playlist(&self) -> Result<String, tribune_media::hls::HlsError> {
        let segments: Vec<ReplaySegment> = self.entries.iter().map(Into::into).collect();
        render_replay(&segments, self.ended())
    }

    /// Size of the whole recording as one `.m4a` file (init segment + segments).
    pub fn m4a_len(&self, init_len: u64) -> u64 {
        init_len + self.entries.iter().map(|e| e.bytes).sum::<u64>()
    }
}

impl Recording {
    /// The recording's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether its index lists segment `msn`.
    pub fn lists(&self, msn: u64) -> bool {
        self.view
            .read()
            .entries
            .binary_search_by_key(&msn, |e| e.msn)
            .is_ok()
    }

    /// What it holds now.
    pub fn snapshot(&self) -> Snapshot {
        let v = self.view.read();
        Snapshot {
            meta: v.meta.clone(),
            entries: v.entries.clone(),
        }
    }

    /// Turns recording of new audio on or off; false if the recording has already ended.
    pub fn set_enabled(&self, on: bool) -> bool {
        let sent = self
            .commands
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.send(Command::SetEnabled(on)).is_ok());
        if sent {
            // Reflected at once; the writer persists it before the next segment.
            self.view.write().meta.enabled = on;
        }
        sent
    }

    /// Reserves one of the room's clip slots; false when they are used up. A clip that is
    /// then not made gives its slot back ([`Recording::release_clip`]).
    pub fn reserve_clip(&self) -> bool {
        let mut v = self.view.write();
        if v.clips >= clips::MAX_CLIPS_PER_ROOM {
            return false;
        }
        v.clips += 1;
        true
    }

    /// Gives back a reserved clip slot (the clip was not made).
    pub fn release_clip(&self) {
        let mut v = self.view.write();
        v.clips = v.clips.saturating_sub(1);
    }

    /// Clips made (or being made) so far.
    pub fn clip_count(&self) -> usize {
        self.view.read().clips
    }
}

/// Every recording this node knows: of its live rooms and found on disk.
#[derive(Debug)]
pub struct Recordings {
    root: Option<PathBuf>,
    by_room: RwLock<HashMap<RoomId, Arc<Recording>>>,
    init: Bytes,
    metrics: Arc<Metrics>,
}

impl Recordings {
    /// Recordings under `data_dir` (none at all without one), after recovering what a previous
    /// run left: half-written files removed, indexes rebuilt, unfinished recordings ended.
    pub fn open(
        data_dir: Option<&Path>,
        init: Bytes,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let root = data_dir.map(|d| d.join(RECORDINGS_DIR));
        let mut by_room = HashMap::new();
        if let Some(root) = &root {
            std::fs::create_dir_all(root)?;
            for room in store::list(root)? {
                let dir = store::room_dir(root, &room);
                match recover_one(&dir) {
                    Ok(Some(rec)) => {
                        by_room.insert(room, Arc::new(rec));
                    }
                    Ok(None) => tracing::warn!(dir = %dir.display(), "not a recording, skipped"),
                    Err(e) => tracing::error!(dir = %dir.display(), "recording not recovered: {e}"),
                }
            }
            tracing::info!(count = by_room.len(), root = %root.display(), "recordings opened");
        }
        Ok(Recordings {
            root,
            by_room: RwLock::new(by_room),
            init,
            metrics,
        })
    }

    /// Whether this node records at all (it has a data directory).
    pub fn is_enabled(&self) -> bool {
        self.root.is_some()
    }

    /// The CMAF init segment every recording starts with.
    pub fn init(&self) -> &Bytes {
        &self.init
    }

    /// The recording of `room`, if there is one.
    pub fn get(&self, room: &RoomId) -> Option<Arc<Recording>> {
        self.by_room.read().get(room).cloned()
    }

    /// Starts recording a new room from its segment stream; `None` without a data directory.
    pub fn start(
        &self,
        room: RoomId,
        title: String,
        created_at: u64,
        enabled: bool,
        segments: mpsc::UnboundedReceiver<Segment>,
    ) -> Option<Arc<Recording>> {
        let root = self.root.as_ref()?;
        let meta = Meta {
            room: room.clone(),
            title,
            created_at,
            ended_at: None,
            enabled,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let rec = Arc::new(Recording {
            dir: store::room_dir(root, &room),
            view: RwLock::new(View {
                meta: meta.clone(),
                entries: Vec::new(),
                clips: 0,
            }),
            commands: Mutex::new(Some(tx)),
        });
        self.by_room.write().insert(room, rec.clone());
        tokio::spawn(recorder::run(
            rec.clone(),
            meta,
            recorder::Open::Create(self.init.clone()),
            segments,
            rx,
            self.metrics.clone(),
        ));
        Some(rec)
    }

    /// Goes on with the recording of a room brought back after a restart: the writer opens it
    /// again at its first recorded segment (marked as a discontinuity), so a room nobody speaks
    /// in again leaves its recording as the restart ended it. A room without one starts one.
    pub fn resume(
        &self,
        room: RoomId,
        title: String,
        created_at: u64,
        enabled: bool,
        segments: mpsc::UnboundedReceiver<Segment>,
    ) -> Option<Arc<Recording>> {
        let Some(rec) = self.get(&room) else {
            return self.start(room, title, created_at, enabled, segments);
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let meta = {
            let mut view = rec.view.write();
            view.meta.enabled = enabled;
            view.meta.clone()
        };
        *rec.commands.lock() = Some(tx);
        tokio::spawn(recorder::run(
            rec.clone(),
            meta,
            recorder::Open::Reopen,
            segments,
            rx,
            self.metrics.clone(),
        ));
        Some(rec)
    }

    /// Deletes the recordings that ended more than `retention` ago; answers how many.
    pub async fn sweep(&self, retention: Duration) -> usize {
        let now_s = unix_micros() / 1_000_000;
        let expired: Vec<(RoomId, Arc<Recording>)> = self
            .by_room
            .read()
            .iter()
            // A recording with a writer belongs to a live room (one reopened after a restart
            // still carries the end the restart gave it): never swept.
            .filter(|(_, r)| r.commands.lock().is_none())
            .filter(|(_, r)| {
                r.view
                    .read()
                    .meta
                    .ended_at
                    .is_some_and(|end| end.saturating_add(retention.as_secs()) <= now_s)
            })
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
        let mut removed = 0;
        for (room, rec) in expired {
            self.by_room.write().remove(&room);
            let dir = rec.dir.clone();
            match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await {
                Ok(Ok(())) => {
                    removed += 1;
                    tracing::info!(room = %room, "recording deleted (retention)");
                }
                Ok(Err(e)) => tracing::error!(room = %room, "recording not deleted: {e}"),
                Err(e) => tracing::error!(room = %room, "recording deletion failed: {e}"),
            }
        }
        removed
    }

    /// Runs [`Recordings::sweep`] now and then until `shutdown`.
    pub async fn sweep_forever(
        self: Arc<Self>,
        retention: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        // Often enough that a recording outlives its retention by at most a quarter of it
        // (between 1 s and 10 min).
        let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600));
        loop {
            self.sweep(retention).await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Reads one recording back, ending it if a crash left it open.
fn recover_one(dir: &Path) -> std::io::Result<Option<Recording>> {
    let Some(mut found) = store::recover(dir)? else {
        return Ok(None);
    };
    if found.report.rebuilt > 0 || !found.report.unreadable.is_empty() || found.report.dropped > 0 {
        tracing::warn!(
            dir = %dir.display(),
            rebuilt = found.report.rebuilt,
            unreadable = ?found.report.unreadable,
            dropped = found.report.dropped,
            "recording index repaired"
        );
    }
    if found.meta.ended_at.is_none() {
        // The node stopped while the room was live: the recording ends where the files end.
        let end_us = found
            .entries
            .last()
            .and_then(|e| e.program_date_us.map(|p| p + e.duration_ms() * 1000))
            .unwrap_or_else(unix_micros);
        found.meta.ended_at = Some(end_us / 1_000_000);
        store::write_meta(dir, &found.meta)?;
    }
    Ok(Some(Recording {
        dir: dir.to_path_buf(),
        view: RwLock::new(View {
            meta: found.meta,
            entries: found.entries,
            clips: count_clips(dir),
        }),
        commands: Mutex::new(None),
    }))
}

fn count_clips(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("clips"))
        .map(|d| d.filter_map(Result::ok).count())
        .unwrap_or(0)
}
