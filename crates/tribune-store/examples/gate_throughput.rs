//! How many admission decisions a node gets from the cluster's gate in Redis: `callers` at once
//! (a node allows 16 in flight) for `seconds`, through one `RedisGate` the way a node holds it
//! (one multiplexed connection), then through one gate per caller (a connection each), against
//! a `redis-server` of its own on a Unix socket, on a 2-thread runtime. Prints one JSON line per
//! way: decisions per second and the p50/p99 of one decision. `bench/redis-gate.sh` runs it.
//!
//! `cargo run --release -p tribune-store --example gate_throughput -- [callers] [seconds]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tribune_core::admission::{GateConfig, SharedGate};
use tribune_store::{RedisConfig, RedisGate};

fn main() {
    let mut args = std::env::args().skip(1);
    let callers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
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
    let open = |prefix: &str| -> Arc<dyn SharedGate> {
        Arc::new(
            RedisGate::new(
                RedisConfig {
                    prefix: prefix.to_owned(),
                    ..RedisConfig::new(&redis.url())
                },
                gate,
            )
            .expect("gate"),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shared = open("shared");
    let one = rt.block_on(run(callers, seconds, |_| shared.clone()));
    print("one gate (the node's)", callers, &one, seconds);
    let own: Vec<Arc<dyn SharedGate>> = (0..callers).map(|i| open(&format!("own{i}"))).collect();
    let each = rt.block_on(run(callers, seconds, |i| own[i].clone()));
    print("a gate per caller", callers, &each, seconds);
}

/// Runs `callers` tasks for `seconds`, task `i` deciding through `gate(i)`: every decision's
/// duration, sorted.
async fn run(
    callers: usize,
    seconds: f64,
    gate: impl Fn(usize) -> Arc<dyn SharedGate>,
) -> Vec<Duration> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let gate = gate(i);
            tokio::spawn(async move {
                let mut took = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    gate.join(0).await.expect("decision");
                    took.push(t.elapsed());
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("caller"));
    }
    all.sort_unstable();
    all
}

fn print(way: &str, callers: usize, took: &[Duration], seconds: f64) {
    let at = |q: f64| {
        took.get(((took.len() as f64 * q) as usize).min(took.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "{{\"way\":\"{way}\",\"callers\":{callers},\"decisions_per_s\":{:.0},\"p50_us\":{:.0},\"p99_us\":{:.0}}}",
        took.len() as f64 / seconds,
        at(0.5),
        at(0.99)
    );
}
