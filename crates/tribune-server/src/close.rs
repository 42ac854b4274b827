//! WebSocket close codes Tribune uses, and why (documented in docs/PROTOCOL.md).

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};

/// Normal end: the room ended or the client left.
pub const NORMAL: u16 = 1000;
/// The client sent a kind of message this endpoint does not take.
pub const UNSUPPORTED: u16 = 1003;
/// The client sent a malformed message.
pub const INVALID: u16 = 1007;
/// The node is restarting or shutting down: reconnect (resume with the same ticket).
pub const RESTART: u16 = 1012;
/// The listener fell too far behind: reconnect and resume at the live edge.
pub const RESUME: u16 = 4000;

/// Moderation removed this participant (or their seat); the reason says why.
pub const REMOVED: u16 = 4001;
/// The same credential opened a newer connection, which replaces this one: do not reconnect
/// (a ticket is one listener; a participant holds few publishing seats).
pub const REPLACED: u16 = 4002;
/// The client sent messages faster than this endpoint allows.
pub const POLICY: u16 = 1008;

/// A close message with a code and a human-readable reason (truncated to fit a control frame).
pub fn message(code: u16, reason: &str) -> Message {
    let mut reason = reason.to_owned();
    // A close frame's reason must fit in 123 bytes.
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }))
}
