//! The node's own accept loop (instead of `axum::serve`), so connection-level limits apply
//! before a request reaches the router: a bound on open connections, a per-address cap, the
//! request-head read timeout (which is also the idle keep-alive timeout) and the head size.
//!
//! HTTP/1.1 only, as before. (hyper-util's `auto` builder would add HTTP/2 with prior knowledge,
//! which no browser or proxy here uses, and it sniffs the protocol with no timeout, so a silent
//! connection would escape the header timeout.)

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::Service;

use crate::config::LimitsConfig;
use crate::metrics::Metrics;
use crate::net::direct::{ConnectionSocket, SharedSocket};
use crate::net::limits::{is_trusted, IpSlot, PerIpConnections};

/// hyper's smallest allowed read buffer.
const MIN_BUF: usize = 8192;

/// A TCP stream that holds its connection slots: they are released when the socket closes,
/// also after it was upgraded to a WebSocket (hyper hands this same object to the upgrade).
struct Tracked {
    socket: Arc<SharedSocket>,
    _slot: OwnedSemaphorePermit,
    _ip: IpSlot,
    _open: OpenGauge,
}

/// Keeps `connections_open` in step with the sockets that exist.
struct OpenGauge(Arc<Metrics>);

impl OpenGauge {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.inc();
        OpenGauge(metrics)
    }
}

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A phase group's writer stops writing to it.
        self.socket.close();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.socket.poll_read(cx, buf)
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.socket.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.socket.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }
}

/// The accept loop's settings and shared counters.
pub(crate) struct Acceptor {
    limits: LimitsConfig,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    max_slots: u32,
    per_ip: Arc<PerIpConnections>,
    http: http1::Builder,
}

impl Acceptor {
    pub(crate) fn new(limits: &LimitsConfig, metrics: Arc<Metrics>) -> Self {
        // The semaphore's ceiling; far above any file-descriptor limit.
        let max_slots = limits.max_connections.clamp(1, u32::MAX as usize >> 4) as u32;
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_header_bytes)
            // hyper answers 431 when the head exceeds max_header_size once complete, or when the
            // unfinished head fills the read buffer: keeping the buffer near the head limit
            // bounds the memory a slow, never-finished head can hold.
            .max_buf_size(limits.max_header_bytes.saturating_mul(2).max(MIN_BUF))
            .keep_alive(true);
        Acceptor {
            limits: limits.clone(),
            metrics,
            slots: Arc::new(Semaphore::new(max_slots as usize)),
            max_slots,
            per_ip: PerIpConnections::new(limits.max_connections_per_ip),
            http,
        }
    }

    /// Accepts until `stop` resolves; each connection is served on its own task, which starts a
    /// graceful shutdown of its connection when `shutdown` turns true.
    pub(crate) async fn run(
        &self,
        listener: TcpListener,
        router: Router,
        shutdown: watch::Receiver<bool>,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            // Waiting for a free slot before accepting: when full, new connections queue in the
            // kernel's backlog instead of costing a descriptor and a task here.
            let slot = tokio::select! {
                _ = &mut stop => return,
                slot = self.slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let (stream, peer) = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
            };
            let trusted = is_trusted(&self.limits.trusted_proxies, peer.ip());
            let ip_slot = if trusted {
                // A proxy carries many clients: its connections are not capped per address.
                Some(self.per_ip.exempt())
            } else {
                self.per_ip.try_open(peer.ip())
            };
            let Some(ip_slot) = ip_slot else {
                // Closed at once: dropping the stream sends FIN before any byte is read.
                self.metrics.connections_refused.inc();
                continue;
            };
            // Audio goes out in small writes that must not wait for the previous one's ACK
            // (Nagle would hold a speaker's return frame or a listener's batch for up to 40 ms).
            let _ = stream.set_nodelay(true);
            let socket = SharedSocket::new(stream);
            let io = Tracked {
                socket: socket.clone(),
                _slot: slot,
                _ip: ip_slot,
                _open: OpenGauge::new(self.metrics.clone()),
            };
            tokio::spawn(serve_connection(
                self.http.clone(),
                io,
                ConnectionSocket(socket),
                peer,
                router.clone(),
                shutdown.clone(),
                self.metrics.clone(),
            ));
        }
    }

    /// Waits until every connection (HTTP and upgraded WebSocket) has closed.
    pub(crate) async fn wait_closed(&self) {
        let _ = self.slots.acquire_many(self.max_slots).await;
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.max_slots as usize - self.slots.available_permits()
    }
}

async fn serve_connection(
    http: http1::Builder,
    io: Tracked,
    socket: ConnectionSocket,
    peer: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) {
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        // Handlers that ask for `ConnectInfo<SocketAddr>` get the TCP peer.
        req.extensions_mut().insert(ConnectInfo(peer));
        // The listener endpoint hands the socket to its phase group's writer.
        req.extensions_mut().insert(socket.clone());
        let mut router = router.clone();
        router.call(req.map(axum::body::Body::new))
    });
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    // The watch's `Ref` guard is not `Send`: drop it inside the future, keep only the fact.
    let shutting_down = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutting_down => {
            // Finish the request in flight (if any), then close; idle connections close now.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            metrics.header_timeouts.inc();
        }
        tracing::trace!(%peer, "connection ended: {e}");
    }
}

/// Connection-level accept errors (the peer gave up) are skipped; others (out of descriptors)
/// pause accepting briefly instead of spinning on the same error.
async fn accept_error(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
