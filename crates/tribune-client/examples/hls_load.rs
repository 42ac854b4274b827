//! Load tool: N LL-HLS players doing blocking playlist reloads against one live playlist, then
//! one JSON line with the responses per second, the CPU of the processes named with `--pid`
//! and how late the collapsed answers came.
//!
//! ```text
//! cargo run --release -p tribune-client --example hls_load -- \
//!     --url http://127.0.0.1:8080/hls/ROOM/live.m3u8 --clients 1000 --seconds 20 \
//!     [--ramp 2] [--warm 3] [--pid origin:PID]... [--metrics http://127.0.0.1:8080]
//! ```
//!
//! * Each client is one keep-alive connection playing like an LL-HLS player that only follows
//!   the playlist: a plain request, then `?_HLS_msn=M&_HLS_part=P` for the part the previous
//!   answer's `EXT-X-PRELOAD-HINT` names, again and again. It fetches no media, so the figure is
//!   the playlist path alone. On an error or a non-200 it waits 200 ms and starts over.
//! * Clients start spread over `--ramp` seconds; counting starts `--warm` seconds after the last
//!   one started and lasts `--seconds`.
//! * `--pid LABEL:PID` (repeatable): CPU time (utime + stime from /proc) over the window, summed
//!   per label, as a share of one core. The tool's own share is reported too.
//! * `--metrics BASE`: the origin's `tribune_hls_playlist_requests_total` over the window, i.e.
//!   what reached the origin (less than the responses when a cache answers).
//! * `spread_ms`: for every part, how long after the first answer naming it each other client's
//!   answer came. At the origin every waiter is woken by the same change; a cache that polls
//!   its lock shows up here.
//! * Only loopback URLs are accepted; every phase is bounded in time.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_client::Percentiles;

/// Most clients one run may ask for (one connection each, from 127.0.0.1).
const MAX_CLIENTS: usize = 20_000;
/// Longer than the origin's 6 s hold and nginx's 8 s lock.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    url: String,
    clients: usize,
    seconds: f64,
    ramp: f64,
    warm: f64,
    pids: Vec<(String, u32)>,
    metrics: Option<String>,
}

const USAGE: &str = "usage: hls_load --url http://127.0.0.1:PORT/hls/ROOM/live.m3u8 --clients N \
--seconds S [--ramp S] [--warm S] [--pid LABEL:PID]... [--metrics http://127.0.0.1:PORT]";

fn parse_opts() -> Result<Opts, AnyError> {
    let mut o = Opts {
        url: String::new(),
        clients: 100,
        seconds: 10.0,
        ramp: 2.0,
        warm: 3.0,
        pids: Vec::new(),
        metrics: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--url" => o.url = val()?,
            "--clients" => o.clients = val()?.parse()?,
            "--seconds" => o.seconds = val()?.parse()?,
            "--ramp" => o.ramp = val()?.parse()?,
            "--warm" => o.warm = val()?.parse()?,
            "--pid" => {
                let v = val()?;
                let (label, pid) = v.split_once(':').ok_or("--pid takes LABEL:PID")?;
                o.pids.push((label.to_owned(), pid.parse()?));
            }
            "--metrics" => o.metrics = Some(val()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    check_loopback(&o.url)?;
    if let Some(m) = &o.metrics {
        check_loopback(m)?;
    }
    if !(1..=MAX_CLIENTS).contains(&o.clients) {
        return Err(format!("--clients must be 1..={MAX_CLIENTS}").into());
    }
    for (name, v, max) in [
        ("--seconds", o.seconds, 600.0),
        ("--ramp", o.ramp, 60.0),
        ("--warm", o.warm, 60.0),
    ] {
        if !(0.0..=max).contains(&v) {
            return Err(format!("{name} must be 0..={max}").into());
        }
    }
    Ok(o)
}

/// Refuses any URL whose host is not a loopback IP (or localhost).
fn check_loopback(u: &str) -> Result<(), AnyError> {
    let url = url::Url::parse(u)?;
    if url.scheme() != "http" {
        return Err(format!("{u}: only http:// on loopback").into());
    }
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(format!("{u} is not on loopback: refusing").into())
    }
}

/// utime + stime of a process, seconds (/proc counts USER_HZ = 100 ticks per second).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// `(msn, part)` of the playlist's `EXT-X-PRELOAD-HINT`.
fn preload_hint(playlist: &str) -> Option<(u64, u32)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let name = line.split("URI=\"part/").nth(1)?.split(".m4s").next()?;
    let (msn, part) = name.split_once('.')?;
    Some((msn.parse().ok()?, part.parse().ok()?))
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    non_200: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> [u64; 3] {
        [
            self.ok.load(Ordering::Relaxed),
            self.non_200.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        ]
    }
}

/// One player until `stop`: returns when each blocking answer inside `[from, stop)` came, by
/// the part it waited for.
async fn player(
    http: reqwest::Client,
    url: String,
    start: Instant,
    from: Instant,
    stop: Instant,
    counters: Arc<Counters>,
) -> Vec<((u64, u32), Instant)> {
    tokio::time::sleep_until(start.into()).await;
    let mut answers = Vec::new();
    let mut want: Option<(u64, u32)> = None;
    while Instant::now() < stop {
        let u = match want {
            Some((msn, part)) => format!("{url}?_HLS_msn={msn}&_HLS_part={part}"),
            None => url.clone(),
        };
        let left = stop.saturating_duration_since(Instant::now());
        let sent = tokio::time::timeout(left, async {
            let r = http.get(&u).send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        })
        .await;
        let answer = match sent {
            Err(_) => break, // the window ended while waiting
            Ok(a) => a,
        };
        let now = Instant::now();
        match answer {
            Ok((200, text)) => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                if let Some(w) = want {
                    if now >= from {
                        answers.push((w, now));
                    }
                }
                want = preload_hint(&text);
                if want.is_none() {
                    // An ended playlist has no hint: nothing more to wait for.
                    break;
                }
                continue;
            }
            Ok(_) => counters.non_200.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
        };
        want = None;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    answers
}

async fn origin_requests(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("tribune_hls_playlist_requests_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU seconds of every `--pid` that can be read now.
fn cpu_sample(pids: &[(String, u32)]) -> HashMap<u32, f64> {
    pids.iter()
        .filter_map(|(_, pid)| Some((*pid, cpu_seconds(*pid)?)))
        .collect()
}

/// CPU seconds used between two samples, summed per label; a process missing from either
/// sample (nginx's cache loader exits after its first minute) is left out.
fn cpu_by_label(
    pids: &[(String, u32)],
    before: &HashMap<u32, f64>,
    after: &HashMap<u32, f64>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (label, pid) in pids {
        let used = match (before.get(pid), after.get(pid)) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        *out.entry(label.clone()).or_default() += used;
    }
    out
}

async fn run(o: Opts) -> Result<Value, AnyError> {
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(o.clients)
        .build()?;
    // The playlist must be there before the players start.
    let ready_by = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(&o.url).send().await {
            if r.status() == 200 {
                break;
            }
        }
        if Instant::now() > ready_by {
            return Err(format!("{} did not answer 200 within 10 s", o.url).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let begin = Instant::now();
    let from = begin + Duration::from_secs_f64(o.ramp + o.warm);
    let stop = from + Duration::from_secs_f64(o.seconds);
    let counters = Arc::new(Counters::default());
    let tasks: Vec<_> = (0..o.clients)
        .map(|i| {
            let start = begin + Duration::from_secs_f64(o.ramp * i as f64 / o.clients as f64);
            tokio::spawn(player(
                http.clone(),
                o.url.clone(),
                start,
                from,
                stop,
                counters.clone(),
            ))
        })
        .collect();

    tokio::time::sleep_until(from.into()).await;
    let c0 = counters.snapshot();
    let cpu0 = cpu_sample(&o.pids);
    let self0 = cpu_seconds(std::process::id());
    let origin0 = match &o.metrics {
        Some(m) => origin_requests(&http, m).await,
        None => None,
    };
    let t0 = Instant::now();
    tokio::time::sleep_until(stop.into()).await;
    let wall = t0.elapsed().as_secs_f64();
    let c1 = counters.snapshot();
    let cpu1 = cpu_sample(&o.pids);
    let self1 = cpu_seconds(std::process::id());
    let origin1 = match &o.metrics {
        Some(m) => origin_requests(&http, m).await,
        None => None,
    };

    // Every player stops by itself at `stop` (its request is cut by the timeout above).
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await?);
    }
    let mut first: HashMap<(u64, u32), Instant> = HashMap::new();
    for (part, at) in &answers {
        let e = first.entry(*part).or_insert(*at);
        if at < e {
            *e = *at;
        }
    }
    let mut spread: Vec<f64> = answers
        .iter()
        .map(|(part, at)| at.duration_since(first[part]).as_secs_f64() * 1000.0)
        .collect();
    let spread = Percentiles::of(&mut spread);

    let per_s = |i: usize| (c1[i] - c0[i]) as f64 / wall;
    let cpu: BTreeMap<String, f64> = cpu_by_label(&o.pids, &cpu0, &cpu1)
        .into_iter()
        .map(|(k, used)| (k, round3(used / wall)))
        .collect();
    Ok(json!({
        "url": o.url,
        "clients": o.clients,
        "window_s": round3(wall),
        "responses_ok": c1[0] - c0[0],
        "responses_per_s": round3(per_s(0)),
        "non_200": c1[1] - c0[1],
        "errors": c1[2] - c0[2],
        "origin_playlist_requests_per_s": match (origin0, origin1) {
            (Some(a), Some(b)) => json!(round3(b.saturating_sub(a) as f64 / wall)),
            _ => Value::Null,
        },
        "parts_answered": first.len(),
        "answers_per_part": round3(answers.len() as f64 / first.len().max(1) as f64),
        "spread_ms": {"p50": round3(spread.p50), "p99": round3(spread.p99), "max": round3(spread.max)},
        "cpu_share": cpu,
        "load_tool_cpu_share": match (self0, self1) {
            (Some(a), Some(b)) => json!(round3((b - a) / wall)),
            _ => Value::Null,
        },
    }))
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
    // A hard stop past every phase's own budget, in case something hangs anyway.
    let limit = Duration::from_secs_f64(opts.ramp + opts.warm + opts.seconds + 60.0);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("hls_load: overall time limit reached, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(opts)) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("hls_load: {e}");
            std::process::exit(1);
        }
    }
}
