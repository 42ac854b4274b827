//! How many admission decisions a node gets from the cluster's gate in Redis: `threads`
//! callers at once (a node allows 16 in flight) for `seconds`, through one `RedisGate` the way
//! a node holds it, then through one gate per caller (a connection each), against a
//! `redis-server` of its own on a Unix socket. Prints one JSON line per way: decisions per
//! second and the p50/p99 of one decision. `bench/redis-gate.sh` runs it.
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
