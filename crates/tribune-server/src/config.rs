//! Settings of one Tribune node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tribune_core::admission::GateConfig;
use tribune_core::reactions::ReactionLimits;

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
    /// the bounds (see the room's `batching`).
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
    /// Most WHEP sessions playing the program to listeners on this node (WebRTC listeners cost
    /// more than WebSocket ones: each is encrypted on its own). Stage sessions are not counted.
    pub max_webrtc_listeners: usize,
    /// Capacity, admission rate, waiting room and proof-of-work settings.
    pub admission: AdmissionConfig,
    /// Where durable data lives (recordings); `None` keeps nothing on disk.
    pub data_dir: Option<PathBuf>,
    /// How long a recording is kept after its room ended; `None` keeps it forever.
    pub recording_retention: Option<Duration>,
    /// Connection-level limits: connection caps, header timeout and size, per-client join rates.
    pub limits: LimitsConfig,
    /// Who may create rooms, how many a node holds, and when idle rooms end.
    pub rooms: RoomPolicy,
    /// Limits on what one participant or one client may use: seats, sessions, frame and
    /// message rates, requests to speak.
    pub abuse: AbuseLimits,
    /// The node's place in a cluster (a lone node by default).
    pub cluster: ClusterConfig,
}

/// What a node does in a cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeRole {
    /// A lone node: rooms, mixing and listeners in one process.
    #[default]
    All,
    /// Owns rooms: ingest, mixing, packaging, recording; edges pull from it.
    Origin,
    /// Serves listeners of rooms it pulls from its upstream (an origin or another edge).
    Edge,
}

/// A node's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// What this node does.
    pub role: NodeRole,
    /// Base URL (`http://host:port`) an edge pulls rooms from.
    pub upstream: Option<String>,
    /// The base URL others reach this node at (in listen URLs handed to clients).
    pub advertise: Option<String>,
    /// How long an edge keeps pulling a room nobody on it listens to.
    pub pull_grace: Duration,
    /// How long an edge waits for its upstream to answer a pull (then the join is `503`).
    pub pull_timeout: Duration,
    /// The Redis the cluster shares (its node registry); `None`: a node on its own.
    pub redis: Option<tribune_store::RedisConfig>,
    /// Share the listening port with other processes (`SO_REUSEPORT`): several edge processes
    /// on one machine and one port, the kernel spreading connections among them (the way past
    /// one process's open-file limit).
    pub reuse_port: bool,
}

impl ServerConfig {
    /// The base URL others reach this node at: `--advertise`, else its listening address.
    pub fn own_url(&self) -> String {
        self.cluster
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

impl ClusterConfig {
    /// Where this node keeps its rooms' records if not on its own disk: an origin with a
    /// Redis keeps them there, shared with the cluster's other origins (any of them can take
    /// over a room whose origin died).
    pub fn shared_rooms(&self) -> Option<&tribune_store::RedisConfig> {
        self.redis
            .as_ref()
            .filter(|_| self.role == NodeRole::Origin)
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            role: NodeRole::All,
            upstream: None,
            advertise: None,
            pull_grace: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(3),
            redis: None,
            reuse_port: false,
        }
    }
}

/// Who may create rooms and how many a node holds (ARCHITECTURE §5: operators own creation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomPolicy {
    /// Operator keys accepted as `Authorization: Bearer KEY` on `POST /api/rooms`. When empty
    /// and `open` is off, `Server::bind` generates one (kept under the data dir).
    pub api_keys: Vec<String>,
    /// Anonymous room creation (community nodes), bounded per address and node-wide.
    pub open: bool,
    /// Most rooms (live or scheduled) a node holds; more are refused `503`.
    pub max_rooms: usize,
    /// Open mode: most rooms one address (IPv6: one /64) may hold at once; more are `429`.
    pub open_rooms_per_ip: usize,
    /// Open mode: rooms one address may create per hour (a token bucket of this size).
    pub open_creations_per_ip_per_hour: u32,
    /// A room with no host or speaker connected for this long ends by itself.
    pub idle_end: Duration,
    /// How long an ended room stays in memory (for its last listeners, its final playlist)
    /// before only its recording remains.
    pub ended_keep: Duration,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        RoomPolicy {
            api_keys: Vec::new(),
            open: false,
            max_rooms: 1000,
            open_rooms_per_ip: 3,
            open_creations_per_ip_per_hour: 10,
            idle_end: Duration::from_secs(30 * 60),
            ended_keep: Duration::from_secs(60),
        }
    }
}

/// What one participant or client may use, whatever its credential (ARCHITECTURE §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Publishing seats (speak sockets, WHIP sessions) one participant holds at once; a new one
    /// replaces the oldest.
    pub seats_per_participant: usize,
    /// WHIP sessions one room holds at once (connected or still negotiating).
    pub whip_sessions_per_room: usize,
    /// A WHIP session whose ICE has not connected within this time is dropped.
    pub whip_connect_timeout: Duration,
    /// Opus frames per second one seat may send into the mix (20 ms frames: 50 is real time);
    /// the excess is dropped from that seat's own share and counted. Barely above real time
    /// (clocks drift by far less than 2 %): a seat that sends faster would only fill its own
    /// jitter buffer, and the program's capture time follows its oldest frame.
    pub seat_frames_per_s: u32,
    /// Frames a seat may send at once above the rate (a burst after network jitter).
    pub seat_frame_burst: u32,
    /// Messages per second a listener socket may send (reactions, pings); past the burst the
    /// socket is closed.
    pub listener_messages_per_s: u32,
    /// Messages a listener may send at once.
    pub listener_message_burst: u32,
    /// Messages per second a speak socket may send (audio batches and controls).
    pub speaker_messages_per_s: u32,
    /// Messages a speak socket may send at once.
    pub speaker_message_burst: u32,
    /// Time a client has to send a request's whole body once its head arrived.
    pub body_timeout: Duration,
    /// Requests to speak per minute from one address (IPv6: /64), per room.
    pub hand_raises_per_ip_per_minute: u32,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        AbuseLimits {
            seats_per_participant: 1,
            whip_sessions_per_room: 32,
            whip_connect_timeout: Duration::from_secs(10),
            seat_frames_per_s: 51,
            seat_frame_burst: 25,
            listener_messages_per_s: 5,
            listener_message_burst: 20,
            speaker_messages_per_s: 100,
            speaker_message_burst: 200,
            body_timeout: Duration::from_secs(10),
            hand_raises_per_ip_per_minute: 6,
        }
    }
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
            batch_interval_max: Duration::from_millis(400),
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
            max_webrtc_listeners: 500,
            admission: AdmissionConfig::default(),
            data_dir: None,
            recording_retention: None,
            limits: LimitsConfig::default(),
            rooms: RoomPolicy::default(),
            abuse: AbuseLimits::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Frames the ring holds.
    pub fn ring_frames(&self) -> usize {
        (self.ring_duration.as_millis() as usize / tribune_media::FRAME_MS as usize).max(1)
    }
}

/// Admission settings of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Capacity, rate and waiting-room settings.
    pub gate: GateConfig,
    /// How long a queue ticket stays valid.
    pub queue_ticket_ttl: Duration,
    /// Joins per second without a proof of work above which the node asks for one (0: never).
    pub pow_threshold: u32,
    /// Seconds of calm after an attack before proofs are no longer asked for.
    pub pow_cool_down_s: u64,
    /// How long a challenge may take to solve.
    pub pow_challenge_ttl: Duration,
    /// Most solved challenges remembered at once (bounds the replay guard's memory).
    pub pow_max_in_flight: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            gate: GateConfig::default(),
            queue_ticket_ttl: Duration::from_secs(30 * 60),
            pow_threshold: 0,
            pow_cool_down_s: 30,
            pow_challenge_ttl: Duration::from_secs(120),
            pow_max_in_flight: 1 << 20,
        }
    }
}
