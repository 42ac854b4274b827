//! The task that owns the WebRTC UDP socket's receive side: it reads every datagram, routes it
//! with the [`Router`](super::demux::Router) and hands it to its session's queue. Unroutable,
//! malformed and overflowing datagrams are dropped and counted; nothing here can panic on input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{Datagram, WhipHub};
use crate::metrics::Metrics;

/// Largest datagram read (str0m's MTU is ~1200; larger ones are truncated and then refused).
const RECV_BUFFER: usize = 2048;

/// Reads the socket until the node shuts down.
pub(super) async fn run(
    socket: Arc<UdpSocket>,
    hub: WhipHub,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    // A socket bound to loopback serves only this machine: answering a peer's non-loopback
    // candidate would send traffic out of 127.0.0.0/8, so such sources are dropped and the ICE
    // agent settles on its loopback candidate.
    let loopback_only = socket.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let received = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, src) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here (connection refused/reset); they
                // concern one peer, not the socket. Anything else: back off briefly.
                tracing::debug!("WebRTC UDP receive: {e}");
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        metrics.udp_datagrams.inc();
        if loopback_only && !src.ip().is_loopback() {
            metrics.udp_dropped.inc();
            continue;
        }
        let data = &buf[..n];
        let mut router = hub.inner.router.lock();
        let delivered = match router.route(src, data) {
            Ok((_, tx)) => tx
                .try_send(Datagram {
                    src,
                    at: Instant::now(),
                    data: data.to_vec(),
                })
                .map_err(|_| "session queue full"),
            Err(reason) => {
                tracing::trace!(%src, len = n, "UDP datagram dropped: {reason}");
                Err("unroutable")
            }
        };
        drop(router);
        if delivered.is_err() {
            metrics.udp_dropped.inc();
        }
    }
    tracing::debug!("WebRTC UDP task stopped");
}
