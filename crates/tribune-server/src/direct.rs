//! Direct fan-out writes. A listener socket that is at the live edge is written by its phase
//! group's writer task, which sends each published batch (one pre-framed WebSocket message,
//! shared by the group) to every socket of the group in one loop. No listener task wakes for its
//! audio: on a crowd, the per-listener task wake-up, future poll and WebSocket framing cost more
//! than the write itself (docs/BENCHMARKS.md §6).
//!
//! The listener's own task keeps the connection: the handshake, the room events, what the client
//! sends, closing, and any catch-up from the ring. Both write to one byte stream, so a small lock
//! on the socket decides who may: the group writer only while the socket is `direct`, and every
//! write of the task's (through [`SharedSocket`]'s `AsyncWrite`) first takes the socket out of
//! direct mode and sends what the writer left unsent. A full socket (a slow listener), a partial
//! write or a cursor that is not at the batch's start hands the listener back to its task, which
//! catches up (or is told to resume) exactly as before.

use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tribune_core::Seq;

use crate::live_room::Batch;
use crate::metrics::Metrics;

/// A TCP stream shared by a connection's task and, once it listens at the live edge, its phase
/// group's writer.
#[derive(Debug)]
pub struct SharedSocket {
    stream: TcpStream,
    state: Mutex<WireState>,
    handback: Notify,
}

#[derive(Debug)]
struct WireState {
    /// The group writer may write to this socket.
    direct: bool,
    /// The next frame the listener needs (kept by the group writer while `direct`).
    cursor: Seq,
    /// The unsent rest of a message the group writer started: it goes out before anything else.
    tail: Bytes,
    /// The connection's task has ended: writers drop the socket.
    closed: bool,
}

/// The connection's socket, in each request's extensions (the node's accept loop puts it
/// there; the listener endpoint hands it to its phase group's writer).
#[derive(Clone, Debug)]
pub struct ConnectionSocket(pub Arc<SharedSocket>);

/// What a group writer did with one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The whole batch was written.
    Sent,
    /// Not in direct mode: the connection's task serves it.
    Skipped,
    /// Handed back to the connection's task (socket full, partial write, cursor elsewhere).
    HandedBack,
    /// The connection is over: drop it.
    Closed,
}

impl SharedSocket {
    /// Wraps an accepted stream (not in direct mode).
    pub fn new(stream: TcpStream) -> Arc<SharedSocket> {
        Arc::new(SharedSocket {
            stream,
            state: Mutex::new(WireState {
                direct: false,
                cursor: Seq(0),
                tail: Bytes::new(),
                closed: false,
            }),
            handback: Notify::new(),
        })
    }

    /// Reads like `TcpStream::poll_read`.
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.stream.poll_read_ready(cx))?;
            match self.stream.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes `buf` for the connection's task: leaves direct mode and sends the writer's unsent
    /// rest first, so messages never interleave.
    pub fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_take_over(cx))?;
        self.poll_io(cx, |s| s.try_write(buf))
    }

    /// Vectored form of [`SharedSocket::poll_write`].
    pub fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_take_over(cx))?;
        self.poll_io(cx, |s| s.try_write_vectored(bufs))
    }

    /// Flushes the writer's unsent rest, if any (TCP itself has nothing to flush).
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        self.poll_tail(&mut st, cx)
    }

    /// Sends what is pending, then shuts the write side down.
    pub fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_take_over(cx))?;
        Poll::Ready(socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write))
    }

    /// Shuts both directions down at once (the peer sees the end even while a writer still
    /// holds the socket).
    pub fn shutdown_now(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Both)
    }

    fn poll_take_over(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        st.direct = false;
        self.poll_tail(&mut st, cx)
    }

    fn poll_tail(&self, st: &mut WireState, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !st.tail.is_empty() {
            let n = ready!(self.poll_io(cx, |s| s.try_write(&st.tail)))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            st.tail.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match op(&self.stream) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Writes `batch` for the group writer, if the socket is direct and its listener needs
    /// exactly this batch next.
    pub fn write_batch(&self, batch: &Batch) -> Written {
        let mut st = self.state.lock();
        if st.closed {
            return Written::Closed;
        }
        if !st.direct {
            return Written::Skipped;
        }
        if st.cursor != batch.start {
            st.direct = false;
            drop(st);
            self.handback.notify_one();
            return Written::HandedBack;
        }
        let written = match self.stream.try_write(&batch.frame) {
            Ok(n) if n == batch.frame.len() => {
                st.cursor = batch.end;
                return Written::Sent;
            }
            Ok(n) => {
                // The rest goes out first when the task takes over.
                st.tail = batch.frame.slice(n..);
                st.cursor = batch.end;
                Written::HandedBack
            }
            // Full (a slow listener) or broken: the task finds out which.
            Err(_) => Written::HandedBack,
        };
        st.direct = false;
        drop(st);
        self.handback.notify_one();
        written
    }

    /// Hands the socket to the group writer with the listener at `cursor`, if `cursor` is the
    /// group's published edge `edge` and nothing of the writer's is pending. Returns whether it
    /// is direct now.
    pub fn go_direct(&self, cursor: Seq, edge: Seq) -> bool {
        let mut st = self.state.lock();
        if st.closed || !st.tail.is_empty() || cursor != edge {
            return false;
        }
        st.cursor = cursor;
        st.direct = true;
        true
    }

    /// Takes the socket back for the task: returns the listener's cursor as the writer left it.
    pub fn take_back(&self) -> Seq {
        let mut st = self.state.lock();
        st.direct = false;
        st.cursor
    }

    /// Whether the group writer holds it now.
    pub fn is_direct(&self) -> bool {
        self.state.lock().direct
    }

    /// Resolves when the group writer hands the socket back.
    pub async fn handed_back(&self) {
        self.handback.notified().await
    }

    /// The connection's task ended: writers let go of the socket.
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.direct = false;
    }
}

/// Sockets that joined a phase group since its writer last looked.
#[derive(Debug, Default)]
pub struct Joining(Mutex<Vec<Arc<SharedSocket>>>);

impl Joining {
    /// Adds a socket to the group (its writer picks it up on the next batch).
    pub fn push(&self, socket: Arc<SharedSocket>) {
        self.0.lock().push(socket);
    }
}

/// A phase group's writer: on every batch published to the group, writes it to each of the
/// group's direct sockets in turn. Ends when the room's fan-out is dropped.
pub async fn write_group(
    mut batches: watch::Receiver<Batch>,
    joining: Arc<Joining>,
    metrics: Arc<Metrics>,
) {
    let mut sockets: Vec<Arc<SharedSocket>> = Vec::new();
    while batches.changed().await.is_ok() {
        let batch = batches.borrow_and_update().clone();
        sockets.append(&mut joining.0.lock());
        if batch.end <= batch.start {
            continue;
        }
        let mut sent = 0u64;
        sockets.retain(|s| match s.write_batch(&batch) {
            Written::Sent => {
                sent += 1;
                true
            }
            Written::Closed => false,
            Written::Skipped | Written::HandedBack => true,
        });
        if sent > 0 {
            metrics.batches_sent.add(sent);
            metrics
                .frames_sent
                .add(sent * (batch.end.0 - batch.start.0));
            metrics.direct_writes.add(sent);
        }
    }
}

/// One unmasked binary WebSocket message (server to client) carrying `payload`.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x82); // FIN, binary
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Length of [`binary_frame`]'s header for a payload of `len` bytes.
pub fn binary_header_len(len: usize) -> usize {
    match len {
        n if n < 126 => 2,
        n if n <= usize::from(u16::MAX) => 4,
        _ => 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_length_in_the_shortest_form() {
        for len in [0usize, 1, 125, 126, 1000, 65_535, 65_536, 70_000] {
            let payload = vec![7u8; len];
            let f = binary_frame(&payload);
            let h = binary_header_len(len);
            assert_eq!(f.len(), h + len, "{len}");
            assert_eq!(f[0], 0x82);
            let decoded = match f[1] {
                126 => u64::from(u16::from_be_bytes([f[2], f[3]])),
                127 => u64::from_be_bytes(f[2..10].try_into().unwrap()),
                n => u64::from(n),
            };
            assert_eq!(decoded, len as u64);
            assert_eq!(&f[h..], &payload[..]);
        }
    }
}
