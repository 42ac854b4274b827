//! What one origin's look for rooms without an origin costs as the stored rooms grow, timed on
//! the caller and as Redis's own CPU time, for 1 000, 10 000 and 100 000 stored rooms of which
//! 1 % have no origin: a full look (the ids in the index set, then the origin lease of each,
//! pipelined) and a lapsed-lease look (the rooms the lease index says ran out, then their
//! leases). An origin makes one look every 2–2.5 s, two full ones in every 24. Against a
//! `redis-server` of its own on a Unix socket. Also what noting every room's lease in the index
//! costs (each origin does it for its rooms every 4 s). Prints JSON lines per size and kind.
//! `bench/orphan-look.sh` runs it.
//!
//! `cargo run --release -p tribune-store --example orphan_look -- [looks per size]`

use std::time::{Duration, Instant};

use tribune_core::registry::NodeRegistry;
use tribune_core::{RoomId, RoomStore};
use tribune_store::{RedisConfig, RedisRegistry, RedisStore};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn main() {
    let looks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let redis = tribune_testkit::Redis::start();
    for (i, &rooms) in SIZES.iter().enumerate() {
        let prefix = format!("look{i}");
        let cfg = RedisConfig {
            prefix: prefix.clone(),
            ..RedisConfig::new(&redis.url())
        };
        fill(&redis.url(), &prefix, rooms);
        let store = RedisStore::open(cfg.clone()).expect("store");
        let registry = RedisRegistry::open(cfg).expect("registry");
        let mut per_look = [0.0; 2];
        for (k, full) in [true, false].into_iter().enumerate() {
            let cpu_before = redis_cpu_ms(&redis);
            let mut took = Vec::with_capacity(looks);
            let mut orphans = 0;
            for _ in 0..looks {
                let started = Instant::now();
                orphans = look(&store, &registry, full);
                took.push(started.elapsed());
            }
            per_look[k] = (redis_cpu_ms(&redis) - cpu_before) / looks as f64;
            took.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{{\"rooms\":{rooms},\"look\":\"{}\",\"orphans\":{orphans},\"looks\":{looks},\
                 \"look_ms_p50\":{:.2},\"look_ms_max\":{:.2},\"redis_cpu_ms_per_look\":{:.3}}}",
                if full { "full" } else { "lapsed" },
                ms(took[looks / 2]),
                ms(took[looks - 1]),
                per_look[k],
            );
            assert_eq!(orphans, rooms / 100, "the look found the orphans");
        }
        // The write side: the origins running these rooms note their leases in the index every
        // 4 s (here all of them through one registry, as if one origin ran every room).
        let all = RoomStore::ids(&store).expect("ids");
        let origins = registry.room_origins(&all).expect("origins");
        let ids: Vec<RoomId> = all
            .into_iter()
            .zip(origins)
            .filter(|(_, o)| o.is_some())
            .map(|(id, _)| id)
            .collect();
        let cpu_before = redis_cpu_ms(&redis);
        let mut took = Vec::with_capacity(looks);
        for _ in 0..looks {
            let started = Instant::now();
            registry
                .index_leases(&ids, Duration::from_secs(600))
                .expect("index");
            took.push(started.elapsed());
        }
        let index_ms = (redis_cpu_ms(&redis) - cpu_before) / looks as f64;
        took.sort();
        println!(
            "{{\"rooms\":{rooms},\"index_write_ms_p50\":{:.2},\"redis_cpu_ms_per_index_write\":{index_ms:.3},\
             \"redis_share_of_index_writes\":{:.5}}}",
            took[looks / 2].as_secs_f64() * 1000.0,
            index_ms / 4_000.0,
        );
        assert_eq!(
            look(&store, &registry, false),
            rooms / 100,
            "still the same orphans"
        );
        // An origin's share of Redis's one core: 2 full and 22 lapsed looks per 24 × 2.25 s.
        let share = (2.0 * per_look[0] + 22.0 * per_look[1]) / (24.0 * 2_250.0);
        let full_only = per_look[0] / 2_250.0;
        println!(
            "{{\"rooms\":{rooms},\"redis_share_per_origin\":{share:.5},\
             \"redis_share_per_origin_full_looks_only\":{full_only:.5}}}"
        );
    }
}

/// A look as an origin makes it (running no room itself): how many rooms have no origin.
fn look(store: &RedisStore, registry: &RedisRegistry, full: bool) -> usize {
    let ids = if full {
        RoomStore::ids(store).expect("ids")
    } else {
        registry
            .lapsed_rooms(1_024)
            .expect("lapsed")
            .expect("indexed")
    };
    let origins = registry.room_origins(&ids).expect("origins");
    origins.iter().filter(|o| o.is_none()).count()
}

/// `rooms` ids in the index set; every one but each hundredth with an origin lease (indexed as
/// running out in 10 minutes); each hundredth indexed as run out a minute ago.
fn fill(url: &str, prefix: &str, rooms: usize) {
    let client = redis::Client::open(url).expect("client");
    let mut conn = client.get_connection().expect("connection");
    let ids: Vec<RoomId> = (0..rooms).map(|_| RoomId::random()).collect();
    for (n, chunk) in ids.chunks(5_000).enumerate() {
        let mut pipe = redis::pipe();
        for (k, id) in chunk.iter().enumerate() {
            pipe.cmd("SADD")
                .arg(format!("{prefix}:rooms:{{index}}"))
                .arg(id.as_str())
                .ignore();
            let now_ms = tribune_core::unix_micros() / 1_000;
            let until = if (n * 5_000 + k) % 100 != 0 {
                pipe.cmd("SET")
                    .arg(format!("{prefix}:room:{{{}}}:origin", id.as_str()))
                    .arg("http://10.0.0.1:8080")
                    .arg("PX")
                    .arg(600_000)
                    .ignore();
                now_ms + 600_000
            } else {
                now_ms - 60_000
            };
            pipe.cmd("ZADD")
                .arg(format!("{prefix}:rooms:{{leases}}"))
                .arg(until)
                .arg(id.as_str())
                .ignore();
        }
        let () = pipe.query(&mut conn).expect("fill");
    }
}

/// Redis's user and system CPU time so far, in ms.
fn redis_cpu_ms(redis: &tribune_testkit::Redis) -> f64 {
    let info = redis.cli(&["INFO", "cpu"]);
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    (field("used_cpu_user") + field("used_cpu_sys")) * 1000.0
}
