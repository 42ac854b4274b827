//! The binary audio message of Tribune's WebSocket protocol (docs/PROTOCOL.md), version 1.
//!
//! One message is a batch: a 2-byte header (version, kind) followed by one or more records, each
//! `seq: u64 BE, capture_us: u64 BE, len: u16 BE, payload: len bytes` (one Opus frame). Records
//! are self-delimiting, so a batch is a plain concatenation of records: a server builds it once
//! and shares the same bytes with every listener.

use bytes::{BufMut, Bytes, BytesMut};

/// Protocol version carried in every binary message.
pub const WIRE_VERSION: u8 = 1;
/// Message kind: a batch of audio records.
pub const KIND_AUDIO: u8 = 1;
/// Bytes before the first record.
pub const MESSAGE_HEADER_LEN: usize = 2;
/// Bytes before each record's payload.
pub const RECORD_HEADER_LEN: usize = 18;
/// Largest accepted payload: an Opus packet is at most 1275 bytes per frame, 3 frames per packet.
pub const MAX_PAYLOAD_LEN: usize = 3 * 1275;

/// Why a binary message was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than a message header.
    #[error("message too short")]
    Short,
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {0}")]
    Version(u8),
    /// A message kind this build does not know.
    #[error("unknown message kind {0}")]
    Kind(u8),
    /// A record runs past the end of the message.
    #[error("truncated record at byte {0}")]
    Truncated(usize),
    /// A record with an empty or oversized payload.
    #[error("bad payload length {0}")]
    PayloadLen(usize),
    /// A message with a header and no record.
    #[error("message holds no record")]
    Empty,
}

/// Appends one record to `out`.
pub fn put_record(out: &mut BytesMut, seq: u64, capture_us: u64, payload: &[u8]) {
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.put_u64(seq);
    out.put_u64(capture_us);
    out.put_u16(payload.len() as u16);
    out.put_slice(payload);
}

/// One record as its own bytes (no message header).
pub fn record(seq: u64, capture_us: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(RECORD_HEADER_LEN + payload.len());
    put_record(&mut out, seq, capture_us, payload);
    out.freeze()
}

/// A message holding the given records, in order.
pub fn message<'a>(records: impl IntoIterator<Item = &'a [u8]> + Clone) -> Bytes {
    let len: usize = records.clone().into_iter().map(<[u8]>::len).sum();
    let mut out = BytesMut::with_capacity(MESSAGE_HEADER_LEN + len);
    out.put_u8(WIRE_VERSION);
    out.put_u8(KIND_AUDIO);
    for r in records {
        out.put_slice(r);
    }
    out.freeze()
}

/// A message holding one frame.
pub fn single_frame_message(seq: u64, capture_us: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MESSAGE_HEADER_LEN + RECORD_HEADER_LEN + payload.len());
    out.put_u8(WIRE_VERSION);
    out.put_u8(KIND_AUDIO);
    put_record(&mut out, seq, capture_us, payload);
    out.freeze()
}

/// One audio record read from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Program or speaker sequence number.
    pub seq: u64,
    /// Capture time, microseconds since the Unix epoch.
    pub capture_us: u64,
    /// The Opus packet (a sub-slice of the message, so `Bytes::slice_ref` can share it).
    pub payload: &'a [u8],
}

/// Validated records of one message.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;
    fn next(&mut self) -> Option<RecordRef<'a>> {
        // Layout was checked by `parse_message`, so plain indexing cannot go out of bounds.
        if self.rest.len() < RECORD_HEADER_LEN {
            return None;
        }
        let seq = u64::from_be_bytes(self.rest[0..8].try_into().ok()?);
        let capture_us = u64::from_be_bytes(self.rest[8..16].try_into().ok()?);
        let len = u16::from_be_bytes(self.rest[16..18].try_into().ok()?) as usize;
        let end = RECORD_HEADER_LEN + len;
        let payload = self.rest.get(RECORD_HEADER_LEN..end)?;
        self.rest = &self.rest[end..];
        Some(RecordRef {
            seq,
            capture_us,
            payload,
        })
    }
}

/// Checks a whole binary message and returns its records.
pub fn parse_message(msg: &[u8]) -> Result<Records<'_>, WireError> {
    if msg.len() < MESSAGE_HEADER_LEN {
        return Err(WireError::Short);
    }
    if msg[0] != WIRE_VERSION {
        return Err(WireError::Version(msg[0]));
    }
    if msg[1] != KIND_AUDIO {
        return Err(WireError::Kind(msg[1]));
    }
    let body = &msg[MESSAGE_HEADER_LEN..];
    if body.is_empty() {
        return Err(WireError::Empty);
    }
    let mut at = 0;
    while at < body.len() {
        let header = body
            .get(at..at + RECORD_HEADER_LEN)
            .ok_or(WireError::Truncated(at + MESSAGE_HEADER_LEN))?;
        let len = u16::from_be_bytes([header[16], header[17]]) as usize;
        if len == 0 || len > MAX_PAYLOAD_LEN {
            return Err(WireError::PayloadLen(len));
        }
        at += RECORD_HEADER_LEN + len;
        if at > body.len() {
            return Err(WireError::Truncated(at + MESSAGE_HEADER_LEN));
        }
    }
    Ok(Records { rest: body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_in_order() {
        let r1 = record(7, 1_000, b"abc");
        let r2 = record(8, 21_000, &[9u8; 300]);
        let msg = message([r1.as_ref(), r2.as_ref()]);
        assert_eq!(msg.len(), 2 + 2 * 18 + 3 + 300);
        let recs: Vec<_> = parse_message(&msg).unwrap().collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].seq, recs[0].capture_us, recs[0].payload),
            (7, 1_000, &b"abc"[..])
        );
        assert_eq!((recs[1].seq, recs[1].capture_us), (8, 21_000));
        assert_eq!(recs[1].payload, &[9u8; 300][..]);
        assert_eq!(msg.slice_ref(recs[0].payload), &b"abc"[..]);
        let single = single_frame_message(7, 1_000, b"abc");
        assert_eq!(&single[2..], &r1[..]);
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        assert_eq!(parse_message(b"").unwrap_err(), WireError::Short);
        assert_eq!(
            parse_message(&[2, 1, 0]).unwrap_err(),
            WireError::Version(2)
        );
        assert_eq!(parse_message(&[1, 9]).unwrap_err(), WireError::Kind(9));
        assert_eq!(parse_message(&[1, 1]).unwrap_err(), WireError::Empty);
        let msg = single_frame_message(1, 2, b"hello");
        assert!(matches!(
            parse_message(&msg[..msg.len() - 1]).unwrap_err(),
            WireError::Truncated(_)
        ));
        assert!(matches!(
            parse_message(&msg[..10]).unwrap_err(),
            WireError::Truncated(_)
        ));
        let mut zero = msg.to_vec();
        zero[18] = 0;
        zero[19] = 0;
        assert_eq!(parse_message(&zero).unwrap_err(), WireError::PayloadLen(0));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for n in 0..20_000usize {
            let len = n % 200;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut b = buf.clone();
            if b.len() >= 2 {
                b[0] = 1;
                b[1] = 1;
            }
            for m in [&buf, &b] {
                if let Ok(recs) = parse_message(m) {
                    let total: usize = recs.map(|r| RECORD_HEADER_LEN + r.payload.len()).sum();
                    assert_eq!(total + MESSAGE_HEADER_LEN, m.len());
                }
            }
        }
    }
}
