//! The audience's side of a room: the one entry that takes program frames and feeds the ring,
//! LL-HLS (and through it the recorder) and the fan-out to listener connections. The mixer feeds
//! it on a node that mixes; an upstream connection would feed it the same way on a node that
//! only relays.

use std::sync::Arc;

use bytes::Bytes;
use tribune_core::Seq;

use super::LiveRoom;
use crate::metrics::Metrics;
use crate::net::batch::Batch;
use crate::net::direct;
use crate::room::batching::Batching;
use crate::room::fanout::{Due, Phases};

/// Where a room's program frames go.
pub(crate) struct Program {
    room: Arc<LiveRoom>,
    metrics: Arc<Metrics>,
    batching: Batching,
    phases: Phases,
    /// The groups due this tick (kept to reuse its allocation).
    due: Vec<Due>,
}

impl Program {
    /// The program of `room`, its batches sized by `batching`.
    pub(crate) fn new(room: Arc<LiveRoom>, metrics: Arc<Metrics>, batching: Batching) -> Self {
        let groups = room.batches.groups();
        Program {
            phases: Phases::new(groups, room.head()),
            due: Vec::with_capacity(groups),
            room,
            metrics,
            batching,
        }
    }

    /// Takes program frame `n`, captured at `capture_us`; `on_air` says someone was on stage
    /// (only such segments are recorded). Numbers skipped since the last frame stay skipped.
    pub(crate) fn push(&mut self, n: u64, capture_us: u64, payload: &Bytes, on_air: bool) {
        let head = {
            let mut ring = self.room.ring.write();
            ring.skip_to(Seq(n));
            ring.push(capture_us, payload);
            ring.head()
        };
        let seq = head.0 - 1;
        let quiet = self.room.hls.push(seq, capture_us, payload.clone(), on_air);
        self.metrics.recording_segments_quiet.add(quiet);
        // The interval follows the node's listeners (read each tick: one atomic load).
        let batch_frames = self.batching.frames(self.room.counters.listeners());
        let interval_ms = batch_frames * u64::from(tribune_media::FRAME_MS);
        if self.metrics.batch_interval_ms.get() != interval_ms {
            self.metrics.batch_interval_ms.set(interval_ms);
        }
        self.phases.due(n, batch_frames, head, &mut self.due);
        self.publish();
    }

    /// The program pauses (the room went quiet): every group gets what it has not been sent
    /// yet, and the segment being cut is completed (and recorded, if anyone spoke in it).
    pub(crate) fn pause(&mut self) {
        self.flush();
        let quiet = self.room.hls.cut();
        self.metrics.recording_segments_quiet.add(quiet);
    }

    /// The program ends: the last frames go out and the playlist ends.
    pub(crate) fn finish(&mut self) {
        self.flush();
        self.room.hls.finish();
    }

    /// Every group gets what it has not been sent yet (a relayed program that stopped coming:
    /// its segments are cut where the upstream cut them, not here).
    pub(crate) fn flush(&mut self) {
        let head = self.room.head();
        self.phases.flush(head, &mut self.due);
        self.publish();
    }

    /// Publishes the room's latest event to every group on its own (no audio): for a room that
    /// is not producing, whose events have no batch to ride on.
    pub(crate) fn announce(&mut self) {
        let event = Some(self.room.event());
        for (g, at) in self.phases.published() {
            self.room.batches.publish(
                g,
                Batch {
                    start: at,
                    end: at,
                    bytes: Bytes::new(),
                    frame: Bytes::new(),
                    event: event.clone(),
                },
            );
        }
    }

    /// Publishes each due group's range, with the room's latest event; groups due with the same
    /// range share one message.
    fn publish(&self) {
        if self.due.is_empty() {
            return;
        }
        let event = Some(self.room.event());
        let mut last: Option<Batch> = None;
        for &(g, start, end) in &self.due {
            let batch = match &last {
                Some(b) if (b.start, b.end) == (start, end) => b.clone(),
                _ => {
                    let Some(payload) = self.room.ring.read().message(start, end) else {
                        continue;
                    };
                    let frame = direct::binary_frame(&payload);
                    let bytes = frame.slice(frame.len() - payload.len()..);
                    let b = Batch {
                        start,
                        end,
                        bytes,
                        frame,
                        event: event.clone(),
                    };
                    last = Some(b.clone());
                    b
                }
            };
            self.room.batches.publish(g, batch);
        }
    }
}
