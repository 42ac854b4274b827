//! The unit of fan-out: one audio batch, serialized once and shared by every listener.

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
}
