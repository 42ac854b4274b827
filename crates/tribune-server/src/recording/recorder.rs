//! The writer of one recording: the only task that writes its files, so segments, index lines
//! and meta changes land in the order they happened.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tribune_core::unix_micros;
use tribune_media::cmaf::Segment;
use tribune_media::record::IndexEntry;

use super::{store, Command, Meta, Recording};
use crate::metrics::Metrics;

/// How the writer finds its recording.
pub(super) enum Open {
    /// New: its files are created, starting with this init segment.
    Create(Bytes),
    /// On disk from an earlier run (ended by the restart): it goes on at the next segment.
    Reopen,
}

/// Writes `segments` until the room's packager drops the channel (the room ended), then marks
/// the recording ended. A failed write is logged and counted; the recording goes on (the replay
/// shows the hole as a discontinuity) rather than stopping for good.
pub(super) async fn run(
    rec: Arc<Recording>,
    mut meta: Meta,
    open: Open,
    mut segments: mpsc::UnboundedReceiver<Segment>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    metrics: Arc<Metrics>,
) {
    let dir = rec.dir.clone();
    if let Open::Create(init) = open {
        let created = {
            let (dir, meta) = (dir.clone(), meta.clone());
            blocking(move || store::create(&dir, &meta, &init)).await
        };
        if let Err(e) = created {
            metrics.recording_write_errors.inc();
            tracing::error!(dir = %dir.display(), "recording not created, room not recorded: {e}");
            *rec.commands.lock() = None;
            return;
        }
    }
    loop {
        tokio::select! {
            // Commands first: a toggle sent before a segment was cut applies to it.
            biased;
            Some(cmd) = commands.recv() => match cmd {
                Command::SetEnabled(on) if on != meta.enabled => {
                    meta.enabled = on;
                    save_meta(&rec, &meta, &metrics).await;
                    tracing::info!(room = %meta.room, on, "recording switched");
                }
                Command::SetEnabled(_) => {}
            },
            segment = segments.recv() => match segment {
                Some(mut s) if meta.enabled => {
                    if meta.ended_at.take().is_some() {
                        // Reopened after a restart: no longer ended, and its audio does not
                        // continue what came before.
                        save_meta(&rec, &meta, &metrics).await;
                        s.discontinuity = true;
                        tracing::info!(room = %meta.room, "recording goes on after a restart");
                    }
                    write_segment(&rec, s, &metrics).await
                }
                Some(_) => metrics.recording_segments_skipped.inc(),
                None => break,
            },
        }
    }
    *rec.commands.lock() = None;
    meta.enabled = rec.view.read().meta.enabled;
    meta.ended_at = Some(unix_micros() / 1_000_000);
    save_meta(&rec, &meta, &metrics).await;
    tracing::info!(room = %meta.room, segments = rec.view.read().entries.len(), "recording ended");
}

async fn write_segment(rec: &Arc<Recording>, segment: Segment, metrics: &Metrics) {
    let entry = IndexEntry::from(&segment);
    let dir = rec.dir.clone();
    let bytes = segment.bytes;
    match blocking(move || store::append_segment(&dir, &entry, &bytes)).await {
        Ok(()) => {
            metrics.recording_segments.inc();
            metrics.recording_bytes.add(entry.bytes);
            rec.view.write().entries.push(entry);
        }
        Err(e) => {
            metrics.recording_write_errors.inc();
            tracing::error!(msn = entry.msn, "segment not recorded: {e}");
        }
    }
}

async fn save_meta(rec: &Recording, meta: &Meta, metrics: &Metrics) {
    let (dir, m) = (rec.dir.clone(), meta.clone());
    if let Err(e) = blocking(move || store::write_meta(&dir, &m)).await {
        metrics.recording_write_errors.inc();
        tracing::error!("recording meta not saved: {e}");
    }
    rec.view.write().meta = meta.clone();
}

/// Runs file I/O on the blocking pool.
async fn blocking(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> std::io::Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}
