//! The unit of fan-out: one audio batch, serialized once and shared by every listener, and the
//! room event that rides ahead of it.

use bytes::Bytes;
use tribune_core::Seq;

/// The latest audio batch: frames `start..end` as one wire message shared by all listeners.
#[derive(Clone, Debug)]
pub struct Batch {
    /// First sequence number in the message.
    pub start: Seq,
    /// One past the last.
    pub end: Seq,
    /// The wire message (empty when `start == end`).
    pub bytes: Bytes,
    /// The same message as one WebSocket binary frame, header included (what a phase group's
    /// writer sends; `bytes` is its payload).
    pub frame: Bytes,
    /// The room's latest event: a group writer sends it ahead of the audio, in the same write,
    /// to each socket that has not had it (so no listener's task wakes for a new count).
    pub event: Option<Event>,
}

/// A room event as one WebSocket text frame, header included.
#[derive(Clone, Debug)]
pub struct Event {
    /// Its revision: it grows with every new event of the room.
    pub rev: u64,
    /// The frame.
    pub frame: Bytes,
}
