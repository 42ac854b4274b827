//! Load tool: joins a room N times, opens N listen WebSockets and holds them, reading and
//! discarding (or timing) what arrives, then prints one JSON line.
//!
//! ```text
//! cargo run --release -p tribune-client --example hold_listeners -- \
//!     --server http://127.0.0.1:8090 (--room ID | --create live|scheduled) --count 10000 \
//!     --seconds 20 [--pid SERVER_PID] [--latency] [--per-addr 5000] [--concurrency 128] \
//!     [--warm SECONDS] [--settle SECONDS] [--connect-budget SECONDS]
//! ```
//!
//! * Only loopback servers are accepted: all traffic stays in 127.0.0.0/8.
//! * Client sockets are bound to 127.0.0.2, 127.0.0.3, … (`--per-addr` connections each, at
//!   most 20 000) so the ephemeral ports of one source address never run out.
//! * Raises its own RLIMIT_NOFILE soft limit to the hard limit.
//! * With `--pid`, samples the server's VmRSS and RssAnon (from /proc/PID/status) before the
//!   listeners connect, while they are held and after they have all disconnected, plus the
//!   server's CPU time during the hold, and reports KiB per listener. `tribune_listeners` is
//!   read from /metrics at each of those points.
//! * With `--latency`, records the glass-to-ear latency of every received frame (capture
//!   timestamp vs arrival, same host clock) and reports percentiles over all listeners.
//! * Every phase is bounded in time; the tool always stops by itself.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tribune_client::{unix_micros, Percentiles};
use tribune_media::wire;

/// Most listeners one run may ask for.
const MAX_COUNT: usize = 100_000;
/// Most connections bound to one source address (its ephemeral ports are 32768–60999).
const MAX_PER_ADDR: usize = 20_000;
/// Time allowed for one join request or one WebSocket handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    server: String,
    room: Option<String>,
    create: Option<String>,
    count: usize,
    seconds: f64,
    per_addr: usize,
    concurrency: usize,
    pid: Option<u32>,
    latency: bool,
    warm: f64,
    settle: f64,
    connect_budget: f64,
}

const USAGE: &str = "usage: hold_listeners --server http://127.0.0.1:PORT (--room ID | --create live|scheduled) \
--count N --seconds S [--pid PID] [--latency] [--per-addr K] [--concurrency C] [--warm S] [--settle S] \
[--connect-budget S]";

fn parse_opts() -> Result<Opts, AnyError> {
    let mut o = Opts {
        server: "http://127.0.0.1:8080".into(),
        room: None,
        create: None,
        count: 100,
        seconds: 10.0,
        per_addr: 5_000,
        concurrency: 128,
        pid: None,
        latency: false,
        warm: 0.0,
        settle: 3.0,
        connect_budget: 300.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--server" => o.server = val()?,
            "--room" => o.room = Some(val()?),
            "--create" => o.create = Some(val()?),
            "--count" => o.count = val()?.parse()?,
            "--seconds" => o.seconds = val()?.parse()?,
            "--per-addr" => o.per_addr = val()?.parse()?,
            "--concurrency" => o.concurrency = val()?.parse()?,
            "--pid" => o.pid = Some(val()?.parse()?),
            "--warm" => o.warm = val()?.parse()?,
            "--settle" => o.settle = val()?.parse()?,
            "--connect-budget" => o.connect_budget = val()?.parse()?,
            "--latency" => o.latency = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if o.room.is_some() == o.create.is_some() {
        return Err(format!("give exactly one of --room and --create\n{USAGE}").into());
    }
    if !matches!(o.create.as_deref(), None | Some("live") | Some("scheduled")) {
        return Err("--create takes live or scheduled".into());
    }
    if !(1..=MAX_COUNT).contains(&o.count) {
        return Err(format!("--count must be 1..={MAX_COUNT}").into());
    }
    if !(1..=MAX_PER_ADDR).contains(&o.per_addr) {
        return Err(format!("--per-addr must be 1..={MAX_PER_ADDR}").into());
    }
    if o.count.div_ceil(o.per_addr) > 250 {
        return Err("more than 250 source addresses needed: raise --per-addr".into());
    }
    for (name, v, max) in [
        ("--seconds", o.seconds, 3600.0),
        ("--warm", o.warm, 600.0),
        ("--settle", o.settle, 60.0),
        ("--connect-budget", o.connect_budget, 3600.0),
    ] {
        if !(0.0..=max).contains(&v) {
            return Err(format!("{name} must be 0..={max}").into());
        }
    }
    o.concurrency = o.concurrency.clamp(1, 4096);
    Ok(o)
}

/// The server's socket address, refused unless it is on loopback.
fn loopback_addr(server: &str) -> Result<SocketAddr, AnyError> {
    let url = url::Url::parse(server)?;
    if url.scheme() != "http" {
        return Err("only http:// servers on loopback are supported".into());
    }
    let ip: IpAddr = match url.host_str() {
        Some("localhost") => Ipv4Addr::LOCALHOST.into(),
        Some(h) => h.trim_matches(['[', ']']).parse()?,
        None => return Err("server URL has no host".into()),
    };
    if !ip.is_loopback() || !ip.is_ipv4() {
        return Err(format!("{ip} is not an IPv4 loopback address: refusing").into());
    }
    Ok(SocketAddr::new(
        ip,
        url.port_or_known_default().unwrap_or(80),
    ))
}

/// Source address of connection `i`: 127.0.0.2, 127.0.0.3, … `per_addr` each.
fn source_addr(i: usize, per_addr: usize) -> IpAddr {
    let k = 2 + (i / per_addr) as u8;
    Ipv4Addr::new(127, 0, 0, k).into()
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `RssAnon`, …).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a process, seconds (/proc reports clock ticks of USER_HZ = 100).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Kernel memory of all TCP sockets, in pages (`TCP: … mem N` of /proc/net/sockstat).
fn tcp_mem_pages() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "mem" {
            return words.next()?.parse().ok();
        }
    }
    None
}

#[derive(Default, Clone, Copy)]
struct Rss {
    vm_rss: u64,
    rss_anon: u64,
}

fn rss(pid: Option<u32>) -> Option<Rss> {
    let pid = pid?;
    Some(Rss {
        vm_rss: status_kib(pid, "VmRSS")?,
        rss_anon: status_kib(pid, "RssAnon")?,
    })
}

/// A client whose connections close after each request, so no idle keep-alive connection
/// lingers on the server while its memory is measured.
fn http_client() -> Result<reqwest::Client, AnyError> {
    Ok(reqwest::Client::builder()
        .timeout(STEP_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()?)
}

async fn listeners_metric(http: &reqwest::Client, server: &str) -> Option<u64> {
    let text = http
        .get(format!("{server}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("tribune_listeners "))
        .and_then(|v| v.trim().parse().ok())
}

async fn create_room(
    http: &reqwest::Client,
    server: &str,
    kind: &str,
) -> Result<(String, String), AnyError> {
    let mut body = json!({"title": format!("hold_listeners {kind}")});
    if kind == "scheduled" {
        body["scheduled_for"] = json!(unix_micros() / 1_000_000 + 24 * 3600);
    }
    let mut req = http.post(format!("{server}/api/rooms")).json(&body);
    // The node's operator key, if it needs one.
    if let Ok(key) = std::env::var("TRIBUNE_API_KEY") {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("create room: {status}: {v}").into());
    }
    let id = v["id"].as_str().ok_or("no room id")?.to_owned();
    let state = v["state"].as_str().unwrap_or("?").to_owned();
    Ok((id, state))
}

async fn join(http: &reqwest::Client, server: &str, room: &str) -> Result<String, AnyError> {
    let resp = http
        .post(format!("{server}/api/rooms/{room}/join"))
        .json(&json!({}))
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("join: {status}: {v}").into());
    }
    let url = v["listen_url"].as_str().ok_or("no listen_url")?;
    Ok(if url.starts_with("ws") {
        url.to_owned()
    } else {
        format!("ws://{}{url}", server.trim_start_matches("http://"))
    })
}

/// What one listener connection saw.
#[derive(Default)]
struct ConnReport {
    connected: bool,
    error: Option<String>,
    /// The server closed (or the connection broke) before the hold ended.
    closed_early: Option<String>,
    frames: u64,
    lost: u64,
    stale: u64,
    events: u64,
    bytes: u64,
    latencies_ms: Vec<f32>,
}

struct Shared {
    connected: AtomicUsize,
    failed: AtomicUsize,
    open: AtomicUsize,
}

#[allow(clippy::too_many_arguments)]
async fn hold_one(
    i: usize,
    url: String,
    server: SocketAddr,
    per_addr: usize,
    connect_slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
    latency: bool,
) -> ConnReport {
    let mut rep = ConnReport::default();
    let permit = connect_slots.acquire_owned().await;
    let connect = async {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(source_addr(i, per_addr), 0))?;
        let stream = sock.connect(server).await?;
        stream.set_nodelay(true)?;
        // Small buffers: the tool holds thousands of connections that only read.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(cfg)).await?;
        Ok::<_, AnyError>(ws)
    };
    let ws = match tokio::time::timeout(STEP_TIMEOUT, connect).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            rep.error = Some(e.to_string());
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return rep;
        }
        Err(_) => {
            rep.error = Some("connect timed out".into());
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return rep;
        }
    };
    drop(permit);
    rep.connected = true;
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.open.fetch_add(1, Ordering::Relaxed);
    let (mut tx, mut rx) = ws.split();
    let mut next_seq: Option<u64> = None;
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            m = rx.next() => m,
        };
        match msg {
            Some(Ok(Message::Binary(data))) => {
                let now = unix_micros();
                rep.bytes += data.len() as u64;
                let Ok(records) = wire::parse_message(&data) else {
                    rep.closed_early = Some("bad audio message".into());
                    break;
                };
                for r in records {
                    match next_seq {
                        Some(n) if r.seq < n => {
                            rep.stale += 1;
                            continue;
                        }
                        Some(n) => rep.lost += r.seq - n,
                        None => {}
                    }
                    next_seq = Some(r.seq + 1);
                    rep.frames += 1;
                    if latency {
                        rep.latencies_ms
                            .push(now.saturating_sub(r.capture_us) as f32 / 1000.0);
                    }
                }
            }
            Some(Ok(Message::Text(_))) => rep.events += 1,
            Some(Ok(Message::Close(frame))) => {
                rep.closed_early = Some(frame.map_or("close without code".into(), |f| {
                    format!("{} {}", u16::from(f.code), f.reason)
                }));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                rep.closed_early = Some(format!("error: {e}"));
                break;
            }
            None => {
                rep.closed_early = Some("connection ended".into());
                break;
            }
        }
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
    if rep.closed_early.is_none() {
        // Say goodbye properly, but do not wait long for the server's answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = tx.send(Message::Close(None)).await;
            while let Some(Ok(m)) = rx.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
    rep
}

fn kib_per(delta_kib: i64, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    delta_kib as f64 / n as f64
}

async fn run(o: Opts) -> Result<Value, AnyError> {
    let fd_limit = rlimit::increase_nofile_limit(u64::MAX)?;
    if (fd_limit as usize) < o.count + 64 {
        return Err(format!(
            "open-file limit is {fd_limit}, too low for {} connections",
            o.count
        )
        .into());
    }
    let server_addr = loopback_addr(&o.server)?;
    let server = o.server.trim_end_matches('/').to_owned();
    let http = http_client()?;
    let (room, room_state) = match (&o.room, &o.create) {
        (Some(r), _) => (r.clone(), None),
        (None, Some(kind)) => {
            let (id, state) = create_room(&http, &server, kind).await?;
            eprintln!("created {kind} room {id} (state {state})");
            (id, Some(state))
        }
        (None, None) => unreachable!("checked in parse_opts"),
    };
    if o.warm > 0.0 {
        eprintln!("warming up {:.0} s", o.warm);
        tokio::time::sleep(Duration::from_secs_f64(o.warm)).await;
    }

    let t_join = Instant::now();
    // Joins first, with connections that close after each request, so that the "before"
    // sample is taken with no HTTP connection open.
    let join_slots = Arc::new(Semaphore::new(32));
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..o.count {
        let (http, server, room, slots) = (
            http.clone(),
            server.clone(),
            room.clone(),
            join_slots.clone(),
        );
        joins.spawn(async move {
            let _permit = slots.acquire_owned().await;
            (
                i,
                join(&http, &server, &room).await.map_err(|e| e.to_string()),
            )
        });
    }
    let mut urls: Vec<Option<String>> = vec![None; o.count];
    let mut join_errors: BTreeMap<String, usize> = BTreeMap::new();
    let join_deadline = tokio::time::Instant::now() + Duration::from_secs_f64(o.connect_budget);
    loop {
        match tokio::time::timeout_at(join_deadline, joins.join_next()).await {
            Ok(Some(Ok((i, Ok(url))))) => urls[i] = Some(url),
            Ok(Some(Ok((_, Err(e))))) => *join_errors.entry(e).or_default() += 1,
            Ok(Some(Err(e))) => *join_errors.entry(e.to_string()).or_default() += 1,
            Ok(None) => break,
            Err(_) => {
                joins.abort_all();
                *join_errors
                    .entry("join phase timed out".into())
                    .or_default() += 1;
                break;
            }
        }
    }
    let joined = urls.iter().filter(|u| u.is_some()).count();
    eprintln!("{joined} joins in {:.1} s", t_join.elapsed().as_secs_f64());

    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
    let rss_before = rss(o.pid);
    let tcp_before = tcp_mem_pages();
    let metric_before = listeners_metric(&http, &server).await;

    // Connect everyone.
    let shared = Arc::new(Shared {
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        open: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let connect_slots = Arc::new(Semaphore::new(o.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let t_connect = Instant::now();
    for (i, url) in urls.into_iter().enumerate() {
        let Some(url) = url else { continue };
        tasks.spawn(hold_one(
            i,
            url,
            server_addr,
            o.per_addr,
            connect_slots.clone(),
            stop_rx.clone(),
            shared.clone(),
            o.latency,
        ));
    }
    let connect_deadline = Instant::now() + Duration::from_secs_f64(o.connect_budget);
    let mut last_report = Instant::now();
    loop {
        let (c, f) = (
            shared.connected.load(Ordering::Relaxed),
            shared.failed.load(Ordering::Relaxed),
        );
        if c + f >= joined || Instant::now() >= connect_deadline {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            eprintln!("connecting: {c} connected, {f} failed");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seconds = t_connect.elapsed().as_secs_f64();
    let connected_at_hold = shared.connected.load(Ordering::Relaxed);
    eprintln!(
        "{connected_at_hold} connected, {} failed in {connect_seconds:.1} s; holding {:.0} s",
        shared.failed.load(Ordering::Relaxed),
        o.seconds
    );

    // Hold: sample the server once things settle, then every second.
    let hold_start = Instant::now();
    let hold_end = hold_start + Duration::from_secs_f64(o.seconds);
    let settle_until = hold_start + Duration::from_secs_f64(o.settle.min(o.seconds));
    tokio::time::sleep_until(settle_until.into()).await;
    let rss_held = rss(o.pid);
    let tcp_held = tcp_mem_pages();
    let cpu_start = o.pid.and_then(cpu_seconds);
    let cpu_t0 = Instant::now();
    let metric_held = listeners_metric(&http, &server).await;
    let open_held = shared.open.load(Ordering::Relaxed);
    let mut rss_held_max = rss_held.map_or(0, |r| r.vm_rss);
    while Instant::now() < hold_end {
        let left = hold_end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if let Some(r) = rss(o.pid) {
            rss_held_max = rss_held_max.max(r.vm_rss);
        }
    }
    let rss_held_end = rss(o.pid);
    let cpu_hold = match (cpu_start, o.pid.and_then(cpu_seconds)) {
        (Some(a), Some(b)) => Some((b - a, cpu_t0.elapsed().as_secs_f64())),
        _ => None,
    };
    let open_at_end = shared.open.load(Ordering::Relaxed);
    let client_rss = rss(Some(std::process::id()));

    // Disconnect everyone and wait (bounded) for the tasks to finish.
    let _ = stop_tx.send(true);
    let mut reports = Vec::with_capacity(joined);
    let drain_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(drain_deadline, tasks.join_next()).await {
            Ok(Some(Ok(r))) => reports.push(r),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                eprintln!("some connections did not close in 60 s; aborting them");
                tasks.abort_all();
                break;
            }
        }
    }
    drop(tasks);
    tokio::time::sleep(Duration::from_secs_f64(o.settle)).await;
    let rss_after = rss(o.pid);
    let tcp_after = tcp_mem_pages();
    let metric_after = listeners_metric(&http, &server).await;

    // Aggregate.
    let mut errors: BTreeMap<String, usize> = join_errors;
    let mut early: BTreeMap<String, usize> = BTreeMap::new();
    let (mut frames, mut lost, mut stale, mut events, mut bytes) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut lat: Vec<f64> = Vec::new();
    let mut per_listener_p50: Vec<f64> = Vec::new();
    for r in &mut reports {
        if let Some(e) = r.error.take() {
            *errors.entry(e).or_default() += 1;
        }
        if let Some(e) = r.closed_early.take() {
            *early.entry(e).or_default() += 1;
        }
        frames += r.frames;
        lost += r.lost;
        stale += r.stale;
        events += r.events;
        bytes += r.bytes;
        if o.latency && !r.latencies_ms.is_empty() {
            let mut mine: Vec<f64> = r.latencies_ms.iter().map(|&x| f64::from(x)).collect();
            per_listener_p50.push(Percentiles::of(&mut mine).p50);
            lat.extend(mine);
        }
    }
    let connected = reports.iter().filter(|r| r.connected).count();
    let mut out = json!({
        "room": room,
        "room_state": room_state,
        "requested": o.count,
        "joined": joined,
        "connected": connected,
        "failures": o.count - connected,
        "errors": errors,
        "closed_early": early,
        "open_at_hold_start": open_held,
        "open_at_hold_end": open_at_end,
        "source_addrs": o.count.div_ceil(o.per_addr),
        "connect_seconds": (connect_seconds * 10.0).round() / 10.0,
        "hold_seconds": o.seconds,
        "frames_received": frames,
        "frames_lost": lost,
        "frames_stale": stale,
        "events": events,
        "bytes_received": bytes,
        "client_rss_kib": client_rss.map(|r| r.vm_rss),
        "tcp_mem_pages": {"before": tcp_before, "held": tcp_held, "after": tcp_after},
        "listeners_metric": {"before": metric_before, "held": metric_held, "after": metric_after},
    });
    if o.latency {
        let p = Percentiles::of(&mut lat);
        let spread = Percentiles::of(&mut per_listener_p50);
        out["latency_ms"] = json!({"p50": round3(p.p50), "p99": round3(p.p99), "max": round3(p.max), "samples": lat.len()});
        out["listener_p50_ms"] = json!({"median": round3(spread.p50), "p99": round3(spread.p99), "max": round3(spread.max)});
    }
    if let (Some(pid), Some(b), Some(h), Some(a)) = (o.pid, rss_before, rss_held, rss_after) {
        let he = rss_held_end.unwrap_or(h);
        out["server"] = json!({
            "pid": pid,
            "vm_rss_kib": {"before": b.vm_rss, "held": h.vm_rss, "held_end": he.vm_rss,
                           "held_max": rss_held_max, "after": a.vm_rss},
            "rss_anon_kib": {"before": b.rss_anon, "held": h.rss_anon, "held_end": he.rss_anon,
                             "after": a.rss_anon},
            "kib_per_listener": round2(kib_per(h.vm_rss as i64 - b.vm_rss as i64, connected_at_hold)),
            "kib_per_listener_held_end":
                round2(kib_per(he.vm_rss as i64 - b.vm_rss as i64, connected_at_hold)),
            "kib_per_listener_anon": round2(kib_per(h.rss_anon as i64 - b.rss_anon as i64, connected_at_hold)),
            "kib_per_listener_after_close": round2(kib_per(a.vm_rss as i64 - b.vm_rss as i64, connected_at_hold)),
            "cpu_seconds_hold": cpu_hold.map(|(c, _)| round2(c)),
            "cpu_share_hold": cpu_hold.map(|(c, wall)| round2(c / wall.max(1e-3))),
        });
    }
    Ok(out)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // A hard stop well past every phase's own budget, in case something hangs anyway.
    let limit = Duration::from_secs_f64(
        2.0 * opts.connect_budget + opts.seconds + opts.warm + 4.0 * opts.settle + 120.0,
    );
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("hold_listeners: overall time limit reached, exiting");
        std::process::exit(3);
    });
    match rt.block_on(run(opts)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("hold_listeners: {e}");
            std::process::exit(1);
        }
    }
}
