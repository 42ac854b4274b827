//! One WebRTC peer connection on the node's shared UDP socket: a str0m `Rtc` (sans-IO) with its
//! route in the demux, fed datagrams through a channel, sending straight out of the socket. WHIP
//! (publish) and WHEP (play) sessions each own one and drive it from their task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::sdp::{self, Flow};
use super::{ice_credentials, Datagram, WhipHub, SESSION_QUEUE};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// An answered offer's peer connection and its route (removed from the demux when the peer is
/// dropped, however its session ends, even if the request that opened it was cancelled).
pub(super) struct Peer {
    /// The session id (also its URL's last segment).
    pub id: String,
    pub route_id: u64,
    pub rtc: Rtc,
    rx: mpsc::Receiver<Datagram>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    hub: WhipHub,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.hub.inner.router.lock().remove(self.route_id);
    }
}

/// What driving the peer turned up.
// Returned and matched at once, never stored: boxing the event would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub(super) enum Polled {
    /// Nothing more to do until this instant (or a datagram).
    Timeout(Instant),
    /// Something happened (connected, media, ...).
    Event(Event),
    /// The connection is over.
    Closed,
}

impl WhipHub {
    /// Answers `offer_text` for `flow` with a fresh ICE-lite peer and routes its datagrams: the
    /// peer and the SDP answer. The offer is checked (`400` with the reason) before any state.
    pub(super) fn open_peer(
        &self,
        offer_text: &str,
        flow: Flow,
    ) -> Result<(Peer, String), ApiError> {
        sdp::parse_offer_for(offer_text, flow).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let creds = ice_credentials();
        let mut rtc = sdp::answerer(
            self.inner.crypto.clone(),
            self.inner.cert.clone(),
            creds.clone(),
        );
        let candidate = Candidate::host(self.inner.advertised, "udp")
            .map_err(|e| ApiError::BadRequest(format!("no usable ICE candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = sdp::negotiate_for(&mut rtc, offer_text, flow)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let route_id = self.inner.next_route_id();
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        if !self.inner.router.lock().insert(route_id, &creds.ufrag, tx) {
            // A 96-bit ufrag collision; the client may simply retry.
            return Err(ApiError::Full {
                message: "ICE credentials collided; offer again".into(),
                retry_after_s: 1,
            });
        }
        let peer = Peer {
            id: WhipHub::new_session_id(),
            route_id,
            rtc,
            rx,
            socket: self.inner.socket.clone(),
            local: self.inner.advertised,
            hub: self.clone(),
        };
        Ok((peer, answer))
    }
}

impl Peer {
    /// Sends what str0m wants sent until it has an event or a timeout for us.
    pub async fn poll(&mut self) -> Result<Polled, String> {
        loop {
            if !self.rtc.is_alive() {
                return Ok(Polled::Closed);
            }
            match self
                .rtc
                .poll_output()
                .map_err(|e| format!("WebRTC error: {e}"))?
            {
                Output::Timeout(t) => return Ok(Polled::Timeout(t)),
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        tracing::debug!(session = %self.id, "UDP send to {}: {e}", t.destination);
                    }
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => return Err("ICE disconnected".to_owned()),
                Output::Event(Event::Closed) => return Err("peer closed".to_owned()),
                Output::Event(e) => return Ok(Polled::Event(e)),
            }
        }
    }

    /// The next datagram routed to this peer (`None`: the router dropped it).
    pub async fn recv(&mut self) -> Option<Datagram> {
        self.rx.recv().await
    }

    /// Feeds a datagram (or, with `None`, the clock) to the peer.
    pub fn input(&mut self, d: Option<Datagram>, metrics: &Metrics) -> Result<(), String> {
        let result = match d {
            Some(d) => match Receive::new(Protocol::Udp, d.src, self.local, &d.data) {
                Ok(r) => self.rtc.handle_input(Input::Receive(d.at, r)),
                // Routed here but unparsable (e.g. a malformed STUN body): drop it.
                Err(_) => {
                    metrics.udp_dropped.inc();
                    return Ok(());
                }
            },
            None => self.rtc.handle_input(Input::Timeout(Instant::now())),
        };
        result.map_err(|e| format!("WebRTC error: {e}"))
    }

    /// Tells the other side we are done (RTCP BYE, DTLS close_notify) without waiting for it.
    pub async fn close(&mut self) {
        if self.rtc.close().is_ok() {
            while let Ok(Polled::Event(_)) = self.poll().await {}
        }
    }
}
