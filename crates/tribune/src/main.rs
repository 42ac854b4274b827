//! The `tribune` command: run a node (`serve`, `demo`), manage rooms, speak, listen, and replay
//! a crowd of listeners (`crowd`).

mod config_file;
mod crowd;
mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tribune_core::admission::GateConfig;
use tribune_server::admission::AdmissionConfig;
use tribune_server::config::{ClusterConfig, LimitsConfig, NodeRole};

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tribune_client::{Api, AudioSource, ListenOptions, SpeakOptions};
use tribune_core::Keyring;
use tribune_server::{Server, ServerConfig};

#[derive(Parser)]
#[command(
    name = "tribune",
    version,
    about = "Live audio rooms: a host and speakers on stage, an audience of any size."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve(ServeArgs),
    /// Run a node with a room in which a synthetic speaker talks, and print how to listen.
    Demo(ServeArgs),
    /// Manage rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Publish audio into a room.
    Speak(SpeakArgs),
    /// Listen to a room and report what arrived.
    Listen(ListenArgs),
    /// Replay a crowd of listeners against a node and report what they experienced.
    Crowd(crowd::CrowdArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// A TOML file with any of these settings (same names, `_` for `-`); flags given here win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Shortest interval between a listener connection's audio writes, ms (the latency floor).
    #[arg(long, default_value_t = 20)]
    batch_ms: u64,
    /// Longest interval between a listener's writes, ms: the interval grows with the node's
    /// listeners up to this (set it to --batch-ms for a fixed interval).
    #[arg(long, default_value_t = 400)]
    batch_max_ms: u64,
    /// Listener writes per second the node aims at: the batch interval is listeners / this,
    /// between --batch-ms and --batch-max-ms (writes per second set a node's CPU cost).
    #[arg(long, default_value_t = 30_000)]
    batch_writes: u32,
    /// Secret that signs tokens and tickets (nodes sharing it accept each other's); random if unset.
    #[arg(long, env = "TRIBUNE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// UDP address for WebRTC (WHIP) media; default: the --listen address (same IP and port
    /// number, over UDP; port 0 picks a free one).
    #[arg(long)]
    udp: Option<SocketAddr>,
    /// IP advertised to WHIP clients in the ICE candidate (e.g. the public IP behind NAT or when
    /// --udp is 0.0.0.0); default: the UDP socket's own IP.
    #[arg(long)]
    public_ip: Option<std::net::IpAddr>,
    /// Read buffer of each listener WebSocket, bytes: most of what an idle listener costs.
    #[arg(long, default_value_t = 1024)]
    ws_read_buffer: usize,
    /// Directory for durable data: rooms and their stages (back after a restart), the signing
    /// secret, and every room's recording (replay, download, clips).
    #[arg(long, default_value = "tribune-data", env = "TRIBUNE_DATA_DIR")]
    data_dir: PathBuf,
    /// Keep nothing on disk: rooms live in memory only, no recordings (ignores --data-dir).
    #[arg(long)]
    no_data: bool,
    /// Days a recording is kept after its room ended (fractions allowed); 0 keeps it forever.
    #[arg(long, default_value_t = 0.0)]
    retention_days: f64,
    /// Most listeners this node holds; joins beyond wait in the queue (202).
    #[arg(long, default_value_t = 100_000)]
    max_listeners: u64,
    /// Most listeners playing the program over WebRTC (WHEP) on this node; more are answered
    /// 503 with Retry-After (each costs more than a WebSocket listener: its own encryption).
    #[arg(long, default_value_t = 500)]
    max_webrtc_listeners: usize,
    /// New listeners admitted per second (the waiting room drains at this rate).
    #[arg(long, default_value_t = 5_000)]
    join_rate: u32,
    /// Joins per second without proof of work above which the node asks for one; 0: never.
    #[arg(long, default_value_t = 0)]
    pow_threshold: u32,
    /// Most TCP connections open at once (HTTP and WebSocket); at most the open-file limit
    /// minus a reserve.
    #[arg(long, default_value_t = 110_000)]
    max_connections: usize,
    /// Most connections open at once from one address (IPv6: one /64); 0: no cap.
    #[arg(long, default_value_t = 0)]
    max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers (also the keep-alive idle timeout).
    #[arg(long, default_value_t = 5)]
    header_timeout: u64,
    /// Joins per second from one address (IPv6: one /64); 0: no limit.
    #[arg(long, default_value_t = 0)]
    join_rate_per_ip: u32,
    /// Joins per second from one /24 (IPv6: one /56); 0: no limit.
    #[arg(long, default_value_t = 0)]
    join_rate_per_subnet: u32,
    /// A proxy (address or CIDR network) whose X-Forwarded-For names the client; repeatable.
    #[arg(long = "trusted-proxy", value_parser = parse_net)]
    trusted_proxies: Vec<tribune_server::config::IpNet>,
    /// An operator key that may create rooms (`Authorization: Bearer KEY`); repeatable, or
    /// comma-separated in TRIBUNE_API_KEY. Without one (and without --open-rooms) the node makes
    /// its own on first start, keeps it in DATA_DIR/api-key and prints it once.
    #[arg(
        long = "api-key",
        env = "TRIBUNE_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_key: Vec<String>,
    /// Let anyone create rooms (community nodes): a few per address, within --max-rooms.
    #[arg(long)]
    open_rooms: bool,
    /// Most rooms (live or scheduled) this node holds; more are refused 503.
    #[arg(long, default_value_t = 1000)]
    max_rooms: usize,
    /// A room with no host or speaker connected for this long ends by itself ("30m", "90s",
    /// "2h" or seconds).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    idle_end: Duration,
    /// What this node does: `all` (a lone node), `origin` (owns rooms: stage, mixing,
    /// recording) or `edge` (serves listeners of rooms it pulls from --upstream). Nodes of one
    /// cluster share --secret.
    #[arg(long, value_enum, default_value_t = Role::All)]
    role: Role,
    /// The node an edge pulls rooms from (`http://host:port`: an origin or another edge).
    #[arg(long)]
    upstream: Option<String>,
    /// The URL clients reach this node at (default: http:// and the --listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// The Redis the cluster shares (`redis://host:port/db`, `redis+unix:///path`, or
    /// `redis+sentinel://HOST:PORT[,HOST:PORT]/NAME` for the primary Sentinel names): the
    /// registry of nodes, rooms' origins and the cluster's admission gate.
    #[arg(long, env = "TRIBUNE_REDIS", hide_env_values = true)]
    redis: Option<String>,
    /// Prefix of this cluster's Redis keys (clusters may share a server).
    #[arg(long, default_value = "tribune")]
    redis_prefix: String,
    /// Share --listen with other processes (SO_REUSEPORT): run one edge per core on one port.
    /// Each process then takes its own UDP port for WebRTC unless --udp is given.
    #[arg(long)]
    reuse_port: bool,
    /// How long an edge keeps pulling a room nobody on it listens to ("30s", "2m", …).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pull_grace: Duration,
}

/// A node's role in a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    All,
    Origin,
    Edge,
}

/// A duration: a number of seconds, or a number with `s`, `m` or `h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 90s, 30m or 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    if !(1..=30 * 86_400).contains(&secs) {
        return Err(format!("{s:?}: must be between 1 s and 30 days"));
    }
    Ok(Duration::from_secs(secs))
}

/// A network in CIDR notation, or one address.
fn parse_net(s: &str) -> Result<tribune_server::config::IpNet, String> {
    s.parse()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(Into::into))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR network"))
}

impl ServeArgs {
    fn config(&self) -> Result<ServerConfig> {
        if !(20..=1000).contains(&self.batch_ms) {
            bail!("--batch-ms must be between 20 and 1000");
        }
        if !(self.batch_ms..=1000).contains(&self.batch_max_ms) {
            bail!("--batch-max-ms must be between --batch-ms and 1000");
        }
        if self.batch_writes < 100 {
            bail!("--batch-writes must be at least 100");
        }
        if !(256..=1 << 20).contains(&self.ws_read_buffer) {
            bail!("--ws-read-buffer must be between 256 and 1048576 bytes");
        }
        if !(self.retention_days.is_finite() && (0.0..=36_500.0).contains(&self.retention_days)) {
            bail!("--retention-days must be between 0 and 36500");
        }
        let retention = (self.retention_days > 0.0)
            .then(|| Duration::from_secs_f64(self.retention_days * 86_400.0));
        if self.join_rate == 0 {
            bail!("--join-rate must be at least 1");
        }
        if !(1..=3600).contains(&self.header_timeout) {
            bail!("--header-timeout must be between 1 and 3600 seconds");
        }
        let defaults = LimitsConfig::default();
        if self.max_rooms == 0 {
            bail!("--max-rooms must be at least 1");
        }
        if let Some(k) = self.api_key.iter().find(|k| k.trim().len() < 16) {
            bail!(
                "an --api-key must be at least 16 characters ({} given)",
                k.trim().len()
            );
        }
        let role = match self.role {
            Role::All => NodeRole::All,
            Role::Origin => NodeRole::Origin,
            Role::Edge => NodeRole::Edge,
        };
        if role != NodeRole::All && self.secret.is_none() {
            bail!("--role origin and --role edge need --secret (the same on every node of the cluster)");
        }
        match (role, &self.upstream) {
            (NodeRole::Edge, None) if self.redis.is_none() => {
                bail!("--role edge needs --upstream http://host:port, or --redis (each room's origin)")
            }
            (NodeRole::Edge, None) => {}
            (NodeRole::Edge, Some(u)) => {
                tribune_server::relay::Upstream::new(u, Keyring::random(), Duration::ZERO)
                    .map_err(|e| anyhow::anyhow!("--upstream {e}"))?;
            }
            (_, Some(_)) => bail!("--upstream is for --role edge"),
            _ => {}
        }
        if self.redis.is_some() && self.advertise.is_none() && self.listen.ip().is_unspecified() {
            bail!(
                "--listen {} is every address: give --advertise http://HOST:PORT, the URL other \
                 nodes' joins send listeners to",
                self.listen
            );
        }
        let advertise = self
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        let keys = match &self.secret {
            Some(s) if s.len() < 16 => bail!("the secret must be at least 16 characters"),
            Some(s) => Keyring::new("k1", s.as_bytes().to_vec()),
            // Kept under the data directory, so tokens and tickets outlive a restart.
            None if !self.no_data => tribune_server::creation::own_signing_key(&self.data_dir)
                .with_context(|| {
                    format!(
                        "{}: cannot read or write the node's signing key",
                        self.data_dir
                            .join(tribune_server::creation::SIGNING_KEY_FILE)
                            .display()
                    )
                })?,
            None => Keyring::random(),
        };
        Ok(ServerConfig {
            listen: self.listen,
            keys,
            batch_interval: Duration::from_millis(self.batch_ms),
            batch_interval_max: Duration::from_millis(self.batch_max_ms),
            batch_writes_per_s: self.batch_writes,
            // Processes sharing a TCP port each need a UDP port of their own: WebRTC sessions
            // are bound to the process that answered their offer.
            udp_listen: self.udp.unwrap_or(if self.reuse_port {
                SocketAddr::new(self.listen.ip(), 0)
            } else {
                self.listen
            }),
            public_ip: self.public_ip,
            ws_read_buffer_bytes: self.ws_read_buffer,
            max_webrtc_listeners: self.max_webrtc_listeners,
            admission: AdmissionConfig {
                gate: GateConfig {
                    max_listeners: self.max_listeners,
                    join_rate: self.join_rate,
                    join_burst: self.join_rate,
                    ..GateConfig::default()
                },
                pow_threshold: self.pow_threshold,
                ..AdmissionConfig::default()
            },
            data_dir: (!self.no_data).then(|| self.data_dir.clone()),
            recording_retention: retention,
            limits: LimitsConfig {
                max_connections: self.max_connections.max(1),
                max_connections_per_ip: self.max_connections_per_ip,
                header_read_timeout: Duration::from_secs(self.header_timeout),
                join_rate_per_ip: self.join_rate_per_ip,
                join_burst_per_ip: defaults.join_burst_per_ip.max(self.join_rate_per_ip),
                join_rate_per_subnet: self.join_rate_per_subnet,
                join_burst_per_subnet: defaults
                    .join_burst_per_subnet
                    .max(self.join_rate_per_subnet),
                trusted_proxies: self.trusted_proxies.clone(),
                ..defaults
            },
            rooms: tribune_server::config::RoomPolicy {
                api_keys: self.api_key.iter().map(|k| k.trim().to_owned()).collect(),
                open: self.open_rooms,
                max_rooms: self.max_rooms,
                idle_end: self.idle_end,
                ..Default::default()
            },
            cluster: ClusterConfig {
                role,
                upstream: self.upstream.clone(),
                advertise: Some(advertise),
                pull_grace: self.pull_grace,
                reuse_port: self.reuse_port,
                redis: self.redis.as_ref().map(|url| tribune_store::RedisConfig {
                    prefix: self.redis_prefix.clone(),
                    ..tribune_store::RedisConfig::new(url)
                }),
                ..ClusterConfig::default()
            },
            ..ServerConfig::default()
        })
    }
}

#[derive(Subcommand)]
enum RoomCommand {
    /// Create a room; prints its id and the host token.
    Create {
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Title.
        #[arg(long)]
        title: String,
        /// The node's operator key (not needed on a node with open rooms).
        #[arg(long, env = "TRIBUNE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SpeakArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Room id.
    #[arg(long)]
    room: String,
    /// Stage token (host, co-host or speaker).
    #[arg(long, env = "TRIBUNE_TOKEN", hide_env_values = true)]
    token: String,
    /// Speak a WAV or Ogg Opus file.
    #[arg(long, conflicts_with = "tone", required_unless_present = "tone")]
    file: Option<PathBuf>,
    /// Speak a sine tone of this frequency (Hz).
    #[arg(long)]
    tone: Option<f32>,
    /// Stop after this many seconds.
    #[arg(long)]
    seconds: Option<f64>,
    /// Repeat the file until stopped.
    #[arg(long = "loop")]
    looped: bool,
    /// Opus bitrate, bits per second.
    #[arg(long, default_value_t = 48_000)]
    bitrate: u32,
    /// Write what the stage sends back (everyone else on it, not this speaker) to this WAV file.
    #[arg(long, value_name = "FILE.wav")]
    hear: Option<PathBuf>,
    /// Print the report as JSON (frames sent and heard, receive latency of the stage audio).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ListenArgs {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Room id.
    #[arg(long)]
    room: String,
    /// Listen this many seconds (or until the room ends).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Write what was heard to this file: WAV (decoded), or Ogg Opus if it ends in .ogg or .opus.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Serve(args) | Command::Demo(args) = &mut cli.command {
        if let (Some(path), Some((_, sub))) = (args.config.clone(), matches.subcommand()) {
            config_file::FileConfig::read(&path)?.apply(args, sub)?;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args.config()?).await,
        Command::Demo(args) => demo::run(args.config()?).await,
        Command::Room(RoomCommand::Create {
            server,
            title,
            api_key,
            json,
        }) => {
            // TRIBUNE_API_KEY may list several keys for `serve`; any one of them will do here.
            let key = api_key.and_then(|k| k.split(',').next().map(|k| k.trim().to_owned()));
            let room = Api::new(&server)?
                .with_api_key(key)
                .create_room(&title)
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": room.id, "host_token": room.host_token})
                );
            } else {
                println!("room:       {}", room.id);
                println!("host token: {}", room.host_token);
            }
            Ok(())
        }
        Command::Speak(args) => speak(args).await,
        Command::Listen(args) => listen(args).await,
        Command::Crowd(args) => crowd::run(args).await,
    }
}

/// Raises this process's open-file limit to its hard limit: every listener is a socket.
pub fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

async fn serve(mut config: ServerConfig) -> Result<()> {
    raise_fd_limit();
    // Past the open-file limit, accept() fails instead of waiting for a free slot; keep a
    // reserve for recordings, the UDP socket and outgoing connections.
    if let Ok((soft, _)) = rlimit::Resource::NOFILE.get() {
        let usable = usize::try_from(soft.saturating_sub(256))
            .unwrap_or(usize::MAX)
            .max(1);
        if config.limits.max_connections > usable {
            tracing::info!(
                max_connections = usable,
                "--max-connections lowered to the open-file limit"
            );
            config.limits.max_connections = usable;
        }
    }
    let server = Server::bind(config.clone())
        .await
        .with_context(|| format!("starting the node on {}", config.listen))?;
    tell_generated_key(&server);
    tracing::info!(addr = %server.local_addr()?, udp = %server.udp_addr()?, "tribune serving");
    server.run(shutdown_signal()).await?;
    Ok(())
}

/// Prints, once, the operator key a node made for itself.
pub fn tell_generated_key(server: &Server) {
    let Some(g) = server.generated_key() else {
        return;
    };
    eprintln!();
    eprintln!("  Operator API key (needed to create rooms): {}", g.key);
    match &g.path {
        Some(p) => eprintln!(
            "  Kept in {} (mode 0600); it is printed only this once.",
            p.display()
        ),
        None => eprintln!("  No data directory: this key lasts until the node stops."),
    }
    eprintln!(
        "  Create a room: tribune room create --api-key KEY --title T   (or pass --api-key to serve)"
    );
    eprintln!();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

async fn speak(args: SpeakArgs) -> Result<()> {
    let api = Api::new(&args.server)?;
    let source = match (&args.file, args.tone) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            AudioSource::from_file_bytes(&bytes, args.looped)?
        }
        (None, Some(hz)) if hz > 0.0 && hz < 24_000.0 => AudioSource::Tone(hz),
        (None, Some(hz)) => bail!("--tone {hz}: must be between 0 and 24000 Hz"),
        (None, None) => bail!("give --file or --tone"),
    };
    let report = tribune_client::speak(
        &api,
        SpeakOptions {
            room: args.room,
            token: args.token,
            source,
            duration: args.seconds.map(Duration::from_secs_f64),
            bitrate_bps: args.bitrate,
            hear: args.hear.is_some(),
        },
    )
    .await?;
    if let Some(out) = &args.hear {
        let bytes = tribune_media::wav_bytes(tribune_media::SAMPLE_RATE, 1, &report.heard);
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "spoke {} frames ({:.1} s); heard {} stage frames ({} lost), receive latency p50 \
             {:.1} ms, p99 {:.1} ms",
            report.frames_sent,
            report.frames_sent as f64 * 0.02,
            report.frames_heard,
            report.frames_heard_lost,
            report.hear_latency_ms.p50,
            report.hear_latency_ms.p99,
        );
    }
    Ok(())
}

/// An Ogg stream serial number; any value works for a single-stream file.
fn rand_serial() -> u32 {
    std::process::id() ^ 0x7472_6962
}

async fn listen(args: ListenArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds < 1e7) {
        bail!("--seconds must be positive");
    }
    let api = Api::new(&args.server)?;
    let ogg = args.out.as_ref().is_some_and(|p| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ogg") || e.eq_ignore_ascii_case("opus"))
    });
    let report = tribune_client::listen(
        &api,
        ListenOptions {
            room: args.room,
            duration: Duration::from_secs_f64(args.seconds),
            decode: args.out.is_some() && !ogg,
            keep_packets: ogg,
        },
    )
    .await?;
    if let Some(out) = &args.out {
        let bytes = if ogg {
            let mut w = tribune_media::OggOpusWriter::new(Vec::new(), rand_serial())?;
            for p in &report.packets {
                w.write_packet(p)?;
            }
            w.finish()?
        } else {
            tribune_media::wav_bytes(tribune_media::SAMPLE_RATE, 1, &report.pcm)
        };
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("frames received: {}", report.frames_received);
        println!("frames lost:     {}", report.frames_lost);
        println!(
            "glass-to-ear:    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            report.latency_ms.p50, report.latency_ms.p99, report.latency_ms.max
        );
        if report.reconnects > 0 {
            println!("reconnects:      {}", report.reconnects);
        }
        if let Some(out) = &args.out {
            println!("audio written to {}", out.display());
        }
    }
    Ok(())
}
