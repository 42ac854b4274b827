//! Admission costs: microseconds to verify a listen ticket, a queue ticket and a proof of work,
//! and to decide a join; and the node's memory per queued listener (the gate keeps counters).
//!
//! `cargo bench -p tribune-core --bench admission [-- --iters N --rounds R --queued Q]`
//!
//! Plain `harness = false` bench timed with `std::time::Instant`; operations are run in
//! interleaved rounds so drift in machine speed hits them all alike. Memory is the process's
//! resident size (from /proc/self/statm) before and after queueing Q listeners, compared with
//! what a list of waiting listeners (id + arrival time per entry) costs for the same Q.

use std::hint::black_box;
use std::time::Instant;

use tribune_core::admission::{
    solve, Decision, Gate, GateConfig, PowChallenge, QueueTicket, ReplayGuard,
};
use tribune_core::{Claims, Keyring, Role, RoomId, TokenKind};

struct Args {
    iters: usize,
    rounds: usize,
    queued: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        iters: 50_000,
        rounds: 3,
        queued: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok());
        match k.as_str() {
            "--iters" => a.iters = num().unwrap_or(a.iters as u64) as usize,
            "--rounds" => a.rounds = num().unwrap_or(a.rounds as u64) as usize,
            "--queued" => a.queued = num().unwrap_or(a.queued),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

/// Resident memory of this process in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Mean µs per call of `f` over `iters` calls.
fn time(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

fn main() {
    let args = parse_args();
    let keys = Keyring::new("k1", b"bench-secret-bench-secret".to_vec());
    let room = RoomId::random();
    let exp = u64::MAX / 2;
    let listen = keys.sign(&Claims {
        kid: String::new(),
        kind: TokenKind::Listen,
        room: room.clone(),
        role: Role::Listener,
        sub: 123_456_789,
        exp,
    });
    let queue = QueueTicket::issue(&keys, &room, 987_654, exp);
    // Proofs: pre-solved 8-bit challenges, one per redemption (each is accepted once).
    let n_pow = args.iters.min(5_000);
    let proofs: Vec<(String, u64)> = (0..n_pow * args.rounds)
        .map(|_| {
            let c = PowChallenge::issue(&keys, &room, 8, exp);
            let n = solve(&c, 8, 1 << 24).expect("8 bits");
            (c, n)
        })
        .collect();

    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("verify listen ticket", vec![]),
        ("verify queue ticket", vec![]),
        ("redeem proof of work (8 bits)", vec![]),
        ("gate decision (fresh join)", vec![]),
    ];
    for round in 0..args.rounds {
        rows[0].1.push(time(args.iters, |_| {
            black_box(
                keys.verify_for(black_box(&listen), TokenKind::Listen, &room, 1)
                    .is_ok(),
            );
        }));
        rows[1].1.push(time(args.iters, |_| {
            black_box(QueueTicket::verify(&keys, black_box(&queue), &room, 1).is_ok());
        }));
        let mut guard = ReplayGuard::new(usize::MAX);
        let batch = &proofs[round * n_pow..(round + 1) * n_pow];
        rows[2].1.push(time(n_pow, |i| {
            let (c, n) = &batch[i];
            black_box(guard.redeem(&keys, &room, c, *n, 1).is_ok());
        }));
        let mut gate = Gate::new(
            GateConfig {
                max_listeners: u64::MAX,
                join_rate: u32::MAX,
                join_burst: u32::MAX,
                ..GateConfig::default()
            },
            0,
        );
        rows[3].1.push(time(args.iters, |i| {
            black_box(gate.join(i as u64, 0));
        }));
    }
    println!("## Admission costs ({} rounds)", args.rounds);
    println!();
    println!("| operation | µs per call (rounds) | best |");
    println!("|---|---|---|");
    for (name, v) in &rows {
        let best = v.iter().copied().fold(f64::INFINITY, f64::min);
        let all: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
        println!("| {name} | {} | {best:.3} |", all.join(", "));
    }
    let best = |i: usize| rows[i].1.iter().copied().fold(f64::INFINITY, f64::min);
    println!();
    println!(
        "queue ticket / listen ticket verification: {:.2}×",
        best(1) / best(0)
    );

    // Memory per queued listener: the gate (counters) against a list of waiters.
    let mut gate = Gate::new(
        GateConfig {
            max_listeners: 0,
            ..GateConfig::default()
        },
        0,
    );
    let before = rss_bytes();
    for _ in 0..args.queued {
        assert!(matches!(gate.join(0, 0), Decision::Queue { .. }));
    }
    let gate_bytes = rss_bytes().saturating_sub(before);
    assert_eq!(gate.waiting(), args.queued);
    let before = rss_bytes();
    let mut list: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
    let now = Instant::now();
    for i in 0..args.queued {
        list.push_back((i, now));
    }
    let list_bytes = rss_bytes().saturating_sub(before);
    black_box(&list);
    println!();
    println!("## Memory per queued listener ({} queued)", args.queued);
    println!();
    println!("| waiting room | RSS growth | bytes per queued listener |");
    println!("|---|---|---|");
    println!(
        "| gate (counters), `size_of::<Gate>()` = {} B | {} KiB | {:.3} |",
        std::mem::size_of::<Gate>(),
        gate_bytes / 1024,
        gate_bytes as f64 / args.queued as f64
    );
    println!(
        "| a list of (id, arrival) | {} KiB | {:.1} |",
        list_bytes / 1024,
        list_bytes as f64 / args.queued as f64
    );
}
