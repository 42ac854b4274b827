//! How many admission decisions a node gets from the cluster's gate in Redis: `threads`
//! callers at once (a node allows 16 in flight) for `seconds`, through one `RedisGate` the way
//! a node holds it, then through one gate per caller (a connection each), then the same script
//! through redis-rs's async connection manager (one multiplexed connection, `threads` tasks on
//! a 2-thread runtime), against a `redis-server` of its own on a Unix socket. Prints one JSON
//! line per way: decisions per second and the p50/p99 of one decision. `bench/redis-gate.sh`
//! runs it.
//!
//! `cargo run --release -p tribune-store --example gate_throughput -- [threads] [seconds]`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tribune_core::admission::{GateConfig, SharedGate};
use tribune_store::{RedisConfig, RedisGate};

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5.0);
    let redis = tribune_testkit::Redis::start();
    // Open doors: every decision admits, so each one is the script's whole common path.
    let gate = GateConfig {
        max_listeners: u64::MAX / 4,
        join_rate: 1_000_000_000,
        join_burst: 1_000_000_000,
        call_hold_s: 1,
        connect_hold_s: 1,
    };
    let open = |prefix: &str| {
        RedisGate::new(
            RedisConfig {
                prefix: prefix.to_owned(),
                ..RedisConfig::new(&redis.url())
            },
            gate,
        )
        .expect("gate")
    };
    let shared: Arc<dyn SharedGate> = Arc::new(open("shared"));
    let one = run(threads, seconds, |_| shared.clone());
    print("one gate (the node's)", threads, &one, seconds);
    let own: Vec<Arc<dyn SharedGate>> = (0..threads)
        .map(|i| Arc::new(open(&format!("own{i}"))) as Arc<dyn SharedGate>)
        .collect();
    let each = run(threads, seconds, |i| own[i].clone());
    print("a gate per caller", threads, &each, seconds);
    let managed = managed(&redis.url(), open("managed"), threads, seconds);
    print("async connection manager", threads, &managed, seconds);
}

/// The gate's script through one `redis::aio::ConnectionManager` shared by `tasks` tasks.
fn managed(url: &str, gate: RedisGate, tasks: usize, seconds: f64) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = redis::Client::open(url).expect("client");
    let gate = Arc::new(gate);
    rt.block_on(async move {
        let manager = redis::aio::ConnectionManager::new(client)
            .await
            .expect("connection manager");
        let until = Instant::now() + Duration::from_secs_f64(seconds);
        let callers: Vec<_> = (0..tasks)
            .map(|_| {
                let (gate, mut conn) = (gate.clone(), manager.clone());
                tokio::spawn(async move {
                    let mut took = Vec::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        let call = gate.join_invocation(0);
                        call.invoke_async::<(u64, u64, u64, String)>(&mut conn)
                            .await
                            .expect("decision");
                        took.push(t.elapsed());
                    }
                    took
                })
            })
            .collect();
        let mut all = Vec::new();
        for c in callers {
            all.extend(c.await.expect("caller"));
        }
        all.sort_unstable();
        all
    })
}

/// Runs `threads` callers for `seconds`, caller `i` deciding through `gate(i)`: every
/// decision's duration.
fn run(threads: usize, seconds: f64, gate: impl Fn(usize) -> Arc<dyn SharedGate>) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..threads)
        .map(|i| {
            let (gate, stop) = (gate(i), stop.clone());
            std::thread::spawn(move || {
                let mut took = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    gate.join(0).expect("decision");
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = callers
        .into_iter()
        .flat_map(|c| c.join().expect("caller"))
        .collect();
    all.sort_unstable();
    all
}

fn print(way: &str, threads: usize, took: &[Duration], seconds: f64) {
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"way\":\"{way}\",\"threads\":{threads},\"decisions_per_s\":{:.0},\"p50_us\":{:.0},\"p99_us\":{:.0}}}",
        took.len() as f64 / seconds,
        at(0.5),
        at(0.99)
    );
}
