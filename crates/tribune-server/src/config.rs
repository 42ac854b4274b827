//! Settings of one Tribune node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tribune_core::reactions::ReactionLimits;

use crate::admission::AdmissionConfig;
use crate::batching::Batching;
pub use ipnet::IpNet;
use tribune_core::{Keyring, StageLimits};

/// How a node runs; every field has a sensible default.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Keys that sign and verify tokens and tickets.
    pub keys: Keyring,
    /// Shortest interval between a listener connection's writes (the latency floor). Server
    /// cost is set by writes per second, so the interval is the main dial between latency and
    /// listeners per core; it grows with the node's listeners up to `batch_interval_max`.
    pub batch_interval: Duration,
    /// Longest batch interval (the latency ceiling); equal to `batch_interval` for a fixed one.
    pub batch_interval_max: Duration,
    /// Listener writes per second the node aims at: the interval is listeners / this, within
    /// the bounds (see [`crate::batching`]).
    pub batch_writes_per_s: u32,
    /// How much program audio the fan-out ring keeps for resuming and lagging readers.
    pub ring_duration: Duration,
    /// Program bitrate (Opus), bits per second.
    pub program_bitrate: u32,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest accepted WebSocket message from a client.
    pub max_ws_message_bytes: usize,
    /// Read buffer of each listener WebSocket: the largest part of the memory a listener costs
    /// (listeners send only small JSON; a larger message still arrives, over several reads).
    pub ws_read_buffer_bytes: usize,
    /// A listener whose socket accepts no data for this long is disconnected (told to resume).
    pub send_timeout: Duration,
    /// How long listen tickets stay valid (the window to resume in).
    pub ticket_ttl: Duration,
    /// How long stage (host and speaker) tokens stay valid.
    pub stage_token_ttl: Duration,
    /// How long shutdown waits for connections to close after telling them to.
    pub shutdown_grace: Duration,
    /// Stage limits per room: co-hosts, speakers, pending requests, invitations, blocks.
    pub stage_limits: StageLimits,
    /// Reaction limits per room: per reactor per window, distinct reactors per window.
    pub reaction_limits: ReactionLimits,
    /// UDP address of the one socket every WHIP (WebRTC) session shares.
    pub udp_listen: SocketAddr,
    /// IP advertised in WHIP answers' ICE candidate (default: the UDP socket's own IP).
    pub public_ip: Option<IpAddr>,
    /// A WHIP session that receives no audio for this long (or never connects) is closed.
    pub whip_idle_timeout: Duration,
    /// Most WHIP sessions open at once on this node (more are answered 503).
    pub whip_max_sessions: usize,
    /// Capacity, admission rate, waiting room and proof-of-work settings.
    pub admission: AdmissionConfig,
    /// Where durable data lives (recordings); `None` keeps nothing on disk.
    pub data_dir: Option<PathBuf>,
    /// How long a recording is kept after its room ended; `None` keeps it forever.
    pub recording_retention: Option<Duration>,
    /// Connection-level limits: connection caps, header timeout and size, per-client join rates.
    pub limits: LimitsConfig,
}

/// Connection-level limits of a node (ARCHITECTURE §5): what a flood of connections or joins
/// from few addresses may cost it. "Per IP" means per /64 for IPv6, since one host usually gets
/// a whole /64 and could otherwise take a fresh address for every attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most TCP connections (HTTP and WebSocket) open at once. When reached, the node stops
    /// accepting until one closes (new ones wait in the kernel's backlog), so a flood cannot
    /// exhaust file descriptors. Must exceed the listener capacity.
    pub max_connections: usize,
    /// Most connections open at once from one client address; the excess is closed at once.
    /// Trusted proxies are exempt (they carry many clients). 0: no cap.
    pub max_connections_per_ip: usize,
    /// Time a client has to send a complete request head, from when the node starts waiting
    /// for it; this is also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones are answered `431`.
    pub max_header_bytes: usize,
    /// Joins per second per client address (token bucket refill); 0: no limit.
    pub join_rate_per_ip: u32,
    /// Joins one client address may make at once before the rate applies.
    pub join_burst_per_ip: u32,
    /// Joins per second per /24 (IPv4) or /56 (IPv6); 0: no limit.
    pub join_rate_per_subnet: u32,
    /// Joins one subnet may make at once before the rate applies.
    pub join_burst_per_subnet: u32,
    /// Proxies (a CDN, our own edges) whose `X-Forwarded-For` is believed: requests through
    /// them are limited by the client address they forward. Empty: no proxy is trusted.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 110_000,
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            // The per-client limits are off by default: load tools and tests drive a node from
            // one loopback address, and the right values depend on how many listeners share an
            // address (NAT). README.md gives values for a public node.
            max_connections_per_ip: 0,
            join_rate_per_ip: 0,
            join_burst_per_ip: 20,
            join_rate_per_subnet: 0,
            join_burst_per_subnet: 200,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            keys: Keyring::random(),
            batch_interval: Duration::from_millis(20),
            batch_interval_max: Duration::from_millis(360),
            batch_writes_per_s: 30_000,
            ring_duration: Duration::from_secs(30),
            program_bitrate: 32_000,
            max_body_bytes: 16 * 1024,
            max_ws_message_bytes: 64 * 1024,
            ws_read_buffer_bytes: 1024,
            send_timeout: Duration::from_secs(10),
            ticket_ttl: Duration::from_secs(6 * 3600),
            stage_token_ttl: Duration::from_secs(24 * 3600),
            shutdown_grace: Duration::from_secs(5),
            stage_limits: StageLimits::default(),
            reaction_limits: ReactionLimits::default(),
            udp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_ip: None,
            whip_idle_timeout: Duration::from_secs(30),
            whip_max_sessions: 1000,
            admission: AdmissionConfig::default(),
            data_dir: None,
            recording_retention: None,
            limits: LimitsConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The batch-interval rule.
    pub fn batching(&self) -> Batching {
        Batching::new(
            self.batch_interval,
            self.batch_interval_max,
            self.batch_writes_per_s,
        )
    }

    /// Frames the ring holds.
    pub fn ring_frames(&self) -> usize {
        (self.ring_duration.as_millis() as usize / tribune_media::FRAME_MS as usize).max(1)
    }
}
