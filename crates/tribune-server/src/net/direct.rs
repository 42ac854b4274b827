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
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tribune_core::Seq;

use crate::metrics::Metrics;
use crate::net::batch::Batch;

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
    /// The revision of the last room event this socket was sent (by its task or the writer).
    event_rev: u64,
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
    /// The whole batch was written, with the room event ahead of it if `event`.
    Sent {
        /// The batch's room event went out too.
        event: bool,
    },
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
                event_rev: 0,
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

    fn poll_take_over(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        if std::mem::replace(&mut st.direct, false) {
            // A write the task did not plan as one (tungstenite answering a ping while
            // reading): the task must learn it holds the socket again, or nobody serves it.
            self.handback.notify_one();
        }
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
    /// exactly this batch next; the batch's room event goes ahead of it, in the same write, if
    /// this socket has not had it.
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
        let event = batch.event.as_ref().filter(|e| e.rev > st.event_rev);
        let total = event.map_or(0, |e| e.frame.len()) + batch.frame.len();
        if total == 0 {
            return Written::Sent { event: false };
        }
        // A plain send(2) (sendmsg(2) with the event): tokio's readiness is only needed to
        // wait, and the writer never waits (a socket that would block goes back to its task,
        // which does).
        let sock = socket2::SockRef::from(&self.stream);
        let sent = match event {
            Some(e) => {
                sock.send_vectored(&[io::IoSlice::new(&e.frame), io::IoSlice::new(&batch.frame)])
            }
            None => sock.send(&batch.frame),
        };
        let written = match sent {
            Ok(n) => {
                // Sent, or started: the rest goes out first when the task takes over.
                st.cursor = batch.end;
                if let Some(e) = event {
                    st.event_rev = e.rev;
                }
                if n == total {
                    return Written::Sent {
                        event: event.is_some(),
                    };
                }
                st.tail = match event {
                    Some(e) if n < e.frame.len() => {
                        // Rare (a socket that took part of an event): one copy of the rest.
                        let mut rest = Vec::with_capacity(total - n);
                        rest.extend_from_slice(&e.frame[n..]);
                        rest.extend_from_slice(&batch.frame);
                        Bytes::from(rest)
                    }
                    Some(e) => batch.frame.slice(n - e.frame.len()..),
                    None => batch.frame.slice(n..),
                };
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

    /// Hands the socket to the group writer with the listener at `cursor` and its last room
    /// event at `event_rev`, if `cursor` is the group's published edge `edge` and nothing of
    /// the writer's is pending. Returns whether it is direct now.
    pub fn go_direct(&self, cursor: Seq, edge: Seq, event_rev: u64) -> bool {
        let mut st = self.state.lock();
        if st.closed || !st.tail.is_empty() || cursor != edge {
            return false;
        }
        st.cursor = cursor;
        st.event_rev = event_rev;
        st.direct = true;
        true
    }

    /// Takes the socket back for the task: returns the listener's cursor and last room event
    /// as the writer left them.
    pub fn take_back(&self) -> (Seq, u64) {
        let mut st = self.state.lock();
        st.direct = false;
        (st.cursor, st.event_rev)
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

/// Sockets that joined a phase group since its writer last looked. Writers hold sockets
/// weakly: a socket closes when its connection ends, not when its writer next runs (a room
/// that is not live publishes nothing, and its writers do not run).
#[derive(Debug, Default)]
pub struct Joining(Mutex<Vec<Weak<SharedSocket>>>);

impl Joining {
    /// Adds a socket to the group (its writer picks it up on the next batch).
    pub fn push(&self, socket: &Arc<SharedSocket>) {
        let mut list = self.0.lock();
        // Listeners who came and went while no batch was published: forget them, so the list
        // stays as long as the live ones (amortized: only when it doubled).
        if list.len() >= 64 && list.len().is_power_of_two() {
            list.retain(|w| w.strong_count() > 0);
        }
        list.push(Arc::downgrade(socket));
    }
}

/// A phase group's writer: on every batch published to the group, writes it to each of the
/// group's direct sockets in turn. Ends when the room's fan-out is dropped.
pub async fn write_group(
    mut batches: watch::Receiver<Batch>,
    joining: Arc<Joining>,
    metrics: Arc<Metrics>,
) {
    let mut sockets: Vec<Weak<SharedSocket>> = Vec::new();
    while batches.changed().await.is_ok() {
        let batch = batches.borrow_and_update().clone();
        sockets.append(&mut joining.0.lock());
        if batch.end <= batch.start && batch.event.is_none() {
            continue;
        }
        let (mut sent, mut events) = (0u64, 0u64);
        sockets.retain(|s| match s.upgrade().map(|s| s.write_batch(&batch)) {
            Some(Written::Sent { event }) => {
                sent += 1;
                events += u64::from(event);
                true
            }
            None | Some(Written::Closed) => false,
            Some(Written::Skipped | Written::HandedBack) => true,
        });
        let frames = batch.end.0.saturating_sub(batch.start.0);
        if sent > 0 && frames > 0 {
            metrics.batches_sent.add(sent);
            metrics.frames_sent.add(sent * frames);
            metrics.direct_writes.add(sent);
        }
        if events > 0 {
            metrics.direct_events.add(events);
        }
    }
}

/// One unmasked binary WebSocket message (server to client) carrying `payload`, which is its
/// last `payload.len()` bytes.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    frame(0x82, payload) // FIN, binary
}

/// One unmasked text WebSocket message (server to client) carrying `text`.
pub fn text_frame(text: &str) -> Bytes {
    frame(0x81, text.as_bytes()) // FIN, text
}

fn frame(first: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(first);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::batch::Event;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    fn batch(start: u64, end: u64, payload_len: usize) -> Batch {
        let frame = binary_frame(&vec![start as u8; payload_len]);
        let bytes = frame.slice(frame.len() - payload_len..);
        Batch {
            start: Seq(start),
            end: Seq(end),
            bytes,
            frame,
            event: None,
        }
    }

    /// A loopback pair: the server end wrapped (with a small send buffer), the client end.
    async fn pair() -> (Arc<SharedSocket>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&server)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(16 * 1024)
            .unwrap();
        (SharedSocket::new(server), client)
    }

    async fn task_write(s: &SharedSocket, mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = std::future::poll_fn(|cx| s.poll_write(cx, buf))
                .await
                .unwrap();
            buf = &buf[n..];
        }
    }

    /// The task writes "MARK" and shuts the socket down: the client must read `expected`, then
    /// "MARK", every byte in order.
    async fn mark_and_check(s: &SharedSocket, mut client: TcpStream, mut expected: Vec<u8>) {
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        });
        task_write(s, b"MARK").await;
        std::future::poll_fn(|cx| s.poll_shutdown(cx))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .unwrap()
            .unwrap();
        expected.extend_from_slice(b"MARK");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes arrived out of order");
    }

    #[tokio::test]
    async fn a_full_socket_is_handed_back_and_its_unsent_rest_goes_out_before_the_task_writes() {
        let (s, client) = pair().await;
        assert!(s.go_direct(Seq(0), Seq(0), 0));
        // Batches of 8 KiB until the unread socket is full.
        let mut expected = Vec::new();
        let mut start = 0;
        let outcome = loop {
            let b = batch(start, start + 5, 8 * 1024);
            let w = s.write_batch(&b);
            if !matches!(w, Written::Sent { .. }) {
                // A batch the writer started counts whole (its rest is the tail); one that did
                // not fit at all was not written.
                if s.state.lock().tail.is_empty() {
                    start -= 5;
                } else {
                    expected.extend_from_slice(&b.frame);
                }
                break w;
            }
            expected.extend_from_slice(&b.frame);
            start += 5;
            assert!(start < 100_000, "the socket never filled");
        };
        assert_eq!(outcome, Written::HandedBack);
        assert!(!s.is_direct());
        tokio::time::timeout(Duration::from_secs(1), s.handed_back())
            .await
            .expect("the task is told");
        // Nothing more goes direct until the task gives it back.
        assert_eq!(
            s.write_batch(&batch(start + 5, start + 10, 100)),
            Written::Skipped
        );
        // The task writes its own message; the client must read every byte in order.
        mark_and_check(&s, client, expected).await;
        // The cursor the writer left is past the last batch it started.
        assert_eq!(s.take_back().0, Seq(start + 5));
    }

    #[tokio::test]
    async fn a_write_the_task_did_not_plan_hands_the_socket_back_to_it() {
        // tungstenite answers a ping from inside a read: the task writes while it believes
        // the writer holds the socket. It must be told, or nobody serves the listener.
        let (s, mut client) = pair().await;
        assert!(s.go_direct(Seq(0), Seq(0), 0));
        task_write(&s, b"PONG").await;
        assert!(!s.is_direct());
        tokio::time::timeout(Duration::from_secs(1), s.handed_back())
            .await
            .expect("the task is told it holds the socket");
        assert_eq!(s.write_batch(&batch(0, 5, 10)), Written::Skipped);
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"PONG");
    }

    #[tokio::test]
    async fn a_listener_elsewhere_than_the_batch_start_is_handed_back_unwritten() {
        let (s, mut client) = pair().await;
        assert!(
            !s.go_direct(Seq(3), Seq(5), 0),
            "only at the published edge"
        );
        assert!(s.go_direct(Seq(5), Seq(5), 0));
        assert_eq!(s.write_batch(&batch(7, 9, 10)), Written::HandedBack);
        assert_eq!(s.take_back().0, Seq(5));
        task_write(&s, b"MARK").await;
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"MARK", "the off-cursor batch was not written");
        // A task write takes the socket out of direct mode.
        assert!(s.go_direct(Seq(5), Seq(5), 0));
        task_write(&s, b"x").await;
        assert!(!s.is_direct());
        s.close();
        assert!(!s.go_direct(Seq(5), Seq(5), 0));
        assert_eq!(s.write_batch(&batch(5, 6, 10)), Written::Closed);
    }

    #[tokio::test]
    async fn a_room_event_goes_ahead_of_the_audio_once_per_revision_in_the_same_write() {
        let (s, mut client) = pair().await;
        // The task sent event 3 (the hello) before handing the socket over.
        assert!(s.go_direct(Seq(0), Seq(0), 3));
        let event = |rev: u64, text: &str| {
            Some(Event {
                rev,
                frame: text_frame(text),
            })
        };
        let mut expected = Vec::new();
        // Event 3 was had: only the audio.
        let b = Batch {
            event: event(3, "{\"old\":3}"),
            ..batch(0, 5, 40)
        };
        assert_eq!(s.write_batch(&b), Written::Sent { event: false });
        expected.extend_from_slice(&b.frame);
        // Event 4 is new: text frame, then the audio.
        let b = Batch {
            event: event(4, "{\"listeners\":2}"),
            ..batch(5, 10, 40)
        };
        assert_eq!(s.write_batch(&b), Written::Sent { event: true });
        expected.extend_from_slice(&text_frame("{\"listeners\":2}"));
        expected.extend_from_slice(&b.frame);
        // The same event on the next batch is not repeated.
        let b = Batch {
            event: event(4, "{\"listeners\":2}"),
            ..batch(10, 15, 40)
        };
        assert_eq!(s.write_batch(&b), Written::Sent { event: false });
        expected.extend_from_slice(&b.frame);
        // An event with no audio (a room that is not producing) goes out on its own.
        let b = Batch {
            event: event(5, "{\"listeners\":3}"),
            ..batch(15, 15, 0)
        };
        let b = Batch {
            bytes: Bytes::new(),
            frame: Bytes::new(),
            ..b
        };
        assert_eq!(s.write_batch(&b), Written::Sent { event: true });
        expected.extend_from_slice(&text_frame("{\"listeners\":3}"));
        // The task takes the socket back knowing what the writer sent.
        assert_eq!(s.take_back(), (Seq(15), 5));
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == expected, "frames arrived out of order or repeated");
        assert_eq!(got[0], 0x82, "audio first: event 3 was had");
    }

    #[tokio::test]
    async fn an_event_cut_by_a_full_socket_is_finished_before_the_task_writes() {
        let (s, client) = pair().await;
        assert!(s.go_direct(Seq(0), Seq(0), 0));
        // An event larger than the socket's buffers: the write stops inside it.
        let text = "e".repeat(512 * 1024);
        let b = Batch {
            event: Some(Event {
                rev: 1,
                frame: text_frame(&text),
            }),
            ..batch(0, 5, 1024)
        };
        assert_eq!(s.write_batch(&b), Written::HandedBack);
        let tail = s.state.lock().tail.len();
        assert!(
            tail > b.frame.len(),
            "cut inside the event ({tail} bytes left)"
        );
        assert_eq!(
            s.take_back(),
            (Seq(5), 1),
            "the batch and the event count as sent"
        );
        let mut expected = text_frame(&text).to_vec();
        expected.extend_from_slice(&b.frame);
        mark_and_check(&s, client, expected).await;
    }

    #[test]
    fn frames_carry_the_length_in_the_shortest_form() {
        for (len, h) in [
            (0usize, 2),
            (1, 2),
            (125, 2),
            (126, 4),
            (1000, 4),
            (65_535, 4),
            (65_536, 10),
            (70_000, 10),
        ] {
            let payload = vec![7u8; len];
            let f = binary_frame(&payload);
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
