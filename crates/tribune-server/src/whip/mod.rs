//! WHIP ingest (RFC 9725): speakers publish Opus audio over WebRTC from any standard WHIP client
//! or browser.
//!
//! - `POST /api/rooms/{id}/whip` (SDP offer, stage token) answers `201` with the SDP answer and
//!   the session's `Location`; `DELETE` on that location ends the session.
//! - All sessions share one UDP socket ([`WhipHub`]); one task reads it and hands each datagram
//!   to its session through the sans-IO [`demux::Router`] (STUN by ICE ufrag, the rest by source
//!   address). We are an ICE-lite answerer: the answer carries our one host candidate, the client
//!   runs the checks, so trickle ICE is never needed.
//! - Each session is one task driving a str0m [`Rtc`](str0m::Rtc) (sans-IO): it holds a mixer
//!   seat and offers every depacketized 20 ms Opus frame to the room, like the speak WebSocket.

pub mod demux;
pub mod http;
mod peer;
mod play;
pub mod sdp;
mod session;
mod udp;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use str0m::config::{CryptoProvider, DtlsCert};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tribune_core::{ParticipantId, RoomId};

use crate::config::ServerConfig;
use crate::node::state::AppState;

/// Largest SDP offer accepted (browser offers with audio and video are ~5–10 KB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Datagrams queued for one session before new ones are dropped (about 1 s of audio).
const SESSION_QUEUE: usize = 64;
/// Source addresses one session may learn from STUN.
const MAX_ADDRS_PER_SESSION: usize = 4;

/// One datagram for a session.
#[derive(Debug)]
struct Datagram {
    src: SocketAddr,
    at: std::time::Instant,
    data: Vec<u8>,
}

/// What the HTTP side keeps of a session: enough to find and stop it.
#[derive(Debug)]
struct SessionCtl {
    room: RoomId,
    participant: ParticipantId,
    /// Set to true to end the session; `closed()` resolves once the session task has gone.
    stop: watch::Sender<bool>,
}

/// The node's WHIP ingest: its UDP socket, the datagram router, and the open sessions.
#[derive(Clone)]
pub struct WhipHub {
    inner: Arc<Hub>,
}

struct Hub {
    socket: Arc<UdpSocket>,
    /// The address our ICE candidate advertises (and str0m sees as the destination).
    advertised: SocketAddr,
    router: Mutex<demux::Router<mpsc::Sender<Datagram>>>,
    sessions: Mutex<HashMap<String, SessionCtl>>,
    /// WHEP playback sessions by id.
    players: Mutex<HashMap<String, play::PlayerCtl>>,
    next_id: AtomicU64,
    crypto: Arc<CryptoProvider>,
    cert: DtlsCert,
    idle_timeout: Duration,
    max_sessions: usize,
    max_sessions_per_room: usize,
    max_webrtc_listeners: usize,
}

/// Why the WHIP hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The UDP socket could not be bound.
    #[error("binding the WebRTC UDP socket {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The crypto provider cannot make a DTLS certificate.
    #[error("cannot generate a DTLS certificate")]
    Certificate,
}

impl From<HubError> for std::io::Error {
    fn from(e: HubError) -> Self {
        std::io::Error::other(e)
    }
}

impl WhipHub {
    /// Binds the UDP socket `config.udp_listen`; the candidate advertises `config.public_ip` (or
    /// the socket's own IP; 127.0.0.1 when bound to an unspecified address without one).
    pub async fn bind(config: &ServerConfig) -> Result<WhipHub, HubError> {
        let addr = config.udp_listen;
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| HubError::Bind { addr, source })?;
        let local = socket
            .local_addr()
            .map_err(|source| HubError::Bind { addr, source })?;
        let ip = match config.public_ip {
            Some(ip) => ip,
            None if local.ip().is_unspecified() => {
                tracing::warn!(
                    udp = %local,
                    "WebRTC UDP socket on an unspecified address without --public-ip: \
                     advertising 127.0.0.1, so only local WHIP clients can connect"
                );
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            None => local.ip(),
        };
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or(HubError::Certificate)?;
        Ok(WhipHub {
            inner: Arc::new(Hub {
                socket: Arc::new(socket),
                advertised: SocketAddr::new(ip, local.port()),
                router: Mutex::new(demux::Router::new(MAX_ADDRS_PER_SESSION)),
                sessions: Mutex::new(HashMap::new()),
                players: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                crypto,
                cert,
                idle_timeout: config.whip_idle_timeout,
                max_sessions: config.whip_max_sessions,
                max_sessions_per_room: config.abuse.whip_sessions_per_room,
                max_webrtc_listeners: config.max_webrtc_listeners,
            }),
        })
    }

    /// The address the UDP socket is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// The address advertised in ICE candidates.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.inner.advertised
    }

    /// Open WHIP sessions.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().len()
    }

    /// Starts the task that reads the UDP socket and routes datagrams to sessions. It stops when
    /// the node shuts down.
    pub fn start(&self, app: &AppState) -> tokio::task::JoinHandle<()> {
        app.stage().spawn(udp::run(
            self.inner.socket.clone(),
            self.clone(),
            app.metrics().clone(),
            app.shutdown(),
        ))
    }

    /// A fresh, unguessable session id (128 random bits, hex): the session URL is a capability.
    fn new_session_id() -> String {
        let v: u128 = rand::rng().random();
        format!("{v:032x}")
    }

    /// Ends a session of `room` (asked by DELETE). Waits briefly until it has left the mix.
    /// Returns the participant it belonged to, or `None` if there is no such session.
    async fn stop_session(&self, room: &RoomId, id: &str) -> Option<ParticipantId> {
        let ctl = {
            let mut sessions = self.inner.sessions.lock();
            match sessions.get(id) {
                Some(ctl) if &ctl.room == room => sessions.remove(id),
                _ => None,
            }
        }?;
        ctl.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), ctl.stop.closed()).await;
        Some(ctl.participant)
    }

    /// The participant a session belongs to, if it exists in `room`.
    fn session_participant(&self, room: &RoomId, id: &str) -> Option<ParticipantId> {
        self.inner
            .sessions
            .lock()
            .get(id)
            .filter(|c| &c.room == room)
            .map(|c| c.participant)
    }

    /// Forgets a session everywhere (called by its task as it ends).
    fn forget(&self, id: &str, route_id: u64) {
        self.inner.router.lock().remove(route_id);
        self.inner.sessions.lock().remove(id);
    }
}

/// Random ICE credentials: a 16-character ufrag and a 32-character password (RFC 8839 §5.4:
/// at least 4 and 22 characters from the ice-char set).
fn ice_credentials() -> str0m::IceCreds {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    };
    str0m::IceCreds {
        ufrag: pick(16),
        pass: pick(32),
    }
}

impl Hub {
    fn next_route_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
