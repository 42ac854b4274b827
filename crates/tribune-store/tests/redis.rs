//! The room store suite against a real `redis-server` (Debian's package; scripts/test-all.sh
//! installs it), on a Unix socket in a temporary directory, and what a Redis store does when
//! the server misbehaves: damaged records, a server that goes away and comes back, a writer
//! killed mid-write.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tribune_core::store::suite;
use tribune_core::{RoomStore, StoreError};
use tribune_store::{RedisConfig, RedisStore};

/// A `redis-server` of the test's own (killed when dropped).
type Server = tribune_testkit::Redis;

/// A runtime for the admission gate (its link to Redis is async); it outlives the calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A store with a prefix of its own (a fresh, empty store on a shared server).
fn store(server: &Server, prefix: &str) -> RedisStore {
    RedisStore::open(RedisConfig {
        prefix: prefix.to_owned(),
        ..RedisConfig::new(&server.url())
    })
    .expect("open")
}

fn raw(server: &Server) -> redis::Connection {
    redis::Client::open(server.url().as_str())
        .expect("client")
        .get_connection()
        .expect("connection")
}

#[test]
fn passes_the_store_suite() {
    let server = Server::start();
    let n = AtomicUsize::new(0);
    suite::run_all(&|| {
        let prefix = format!("suite{}", n.fetch_add(1, Ordering::Relaxed));
        Box::new(store(&server, &prefix))
    });
    assert!(
        n.load(Ordering::Relaxed) >= 5,
        "every check ran on a store of its own"
    );
}

#[test]
fn two_nodes_racing_on_a_room_one_wins_whole() {
    let server = Server::start();
    let s = store(&server, "race");
    let room = suite::busy_room("raceaaaaa2", 3);
    s.put(&room).expect("first write");
    // Another node's write at the same revision is a conflict.
    let mut other = room.clone();
    other.info.title = "another node".into();
    assert!(matches!(
        s.put(&other),
        Err(StoreError::Conflict {
            stored: 1,
            offered: 1,
            ..
        })
    ));
    // Two stores (two nodes) racing on the next revision: exactly one wins.
    let t = store(&server, "race");
    let mut a = room.clone();
    a.rev = 2;
    a.info.title = "node a".into();
    let mut b = a.clone();
    b.info.title = "node b".into();
    let results = std::thread::scope(|sc| {
        let ha = sc.spawn(|| s.put(&a));
        let hb = sc.spawn(|| t.put(&b));
        [ha.join().expect("a"), hb.join().expect("b")]
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let stored = s.get(room.id()).expect("get").expect("stored");
    assert!(stored == a || stored == b, "one whole record: {stored:?}");
}

#[test]
fn a_damaged_record_is_reported_not_skipped() {
    let server = Server::start();
    let s = store(&server, "damage");
    let room = suite::busy_room("damagedaa2", 1);
    s.put(&room).expect("put");
    let mut c = raw(&server);
    redis::cmd("HSET")
        .arg("damage:room:{damagedaa2}")
        .arg("record")
        .arg("{\"info\": 7}")
        .query::<()>(&mut c)
        .expect("edit behind the store's back");
    match s.get(room.id()) {
        Err(StoreError::Corrupt { room: key, .. }) => assert_eq!(key, "damagedaa2"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(s.list(), Err(StoreError::Corrupt { .. })));
    // A record filed under another room's key is damage too.
    let other = suite::busy_room("anywhere22", 1);
    let json = serde_json::to_string(&other).expect("json");
    redis::cmd("HSET")
        .arg("damage:room:{damagedaa2}")
        .arg("record")
        .arg(json)
        .query::<()>(&mut c)
        .expect("misfile");
    match s.list() {
        Err(StoreError::Corrupt { room, reason }) => {
            assert_eq!(room, "damagedaa2");
            assert!(reason.contains("anywhere22"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_that_goes_away_is_an_error_in_time_and_the_store_reconnects() {
    let mut server = Server::start();
    let s = RedisStore::open(RedisConfig {
        prefix: "away".into(),
        timeout: Duration::from_millis(500),
        ..RedisConfig::new(&server.url())
    })
    .expect("open");
    let room = suite::busy_room("awayrumm22", 1);
    s.put(&room).expect("put");
    server.kill();
    let started = Instant::now();
    for op in 0..3 {
        let r = match op {
            0 => s.get(room.id()).map(|_| ()),
            1 => s.list().map(|_| ()),
            _ => s.put(&room),
        };
        assert!(matches!(r, Err(StoreError::Backend(_))), "{op}: {r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "errors, not hangs: {:?}",
        started.elapsed()
    );
    // Back (empty: this server keeps nothing on disk): the same store works again.
    server.restart();
    assert_eq!(s.get(room.id()), Ok(None));
    s.put(&room).expect("put after the server came back");
    assert_eq!(s.list(), Ok(vec![room]));
}

#[test]
fn a_server_that_stalls_past_the_deadline_is_an_error_in_time() {
    let server = Server::start();
    let s = RedisStore::open(RedisConfig {
        prefix: "stall".into(),
        timeout: Duration::from_millis(300),
        ..RedisConfig::new(&server.url())
    })
    .expect("open");
    let room = suite::busy_room("staaaaaaa2", 1);
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &server.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let started = Instant::now();
    let r = s.put(&room);
    let took = started.elapsed();
    signal("-CONT");
    assert!(matches!(r, Err(StoreError::Backend(_))), "{r:?}");
    assert!(
        took < Duration::from_secs(3),
        "an error in time, not a hang: {took:?}"
    );
    // The server may still run the write it had queued: the room is whole at revision 1 or
    // absent, and the next write takes it from there.
    match s.get(room.id()).expect("get after the stall") {
        Some(got) => assert_eq!(got, room),
        None => s.put(&room).expect("write again"),
    }
    let mut next = room.clone();
    next.rev = 2;
    s.put(&next).expect("the next revision");
    assert_eq!(s.get(room.id()), Ok(Some(next)));
}

#[test]
fn settings_that_cannot_work_are_refused_at_open() {
    let server = Server::start();
    for prefix in ["", "a b", "x*", "{tag}"] {
        let cfg = RedisConfig {
            prefix: prefix.into(),
            ..RedisConfig::new(&server.url())
        };
        let err = RedisStore::open(cfg).expect_err(prefix);
        assert!(err.to_string().contains("prefix"), "{prefix:?}: {err}");
    }
    let err = RedisStore::open(RedisConfig::new("http://example.invalid")).expect_err("scheme");
    assert!(err.to_string().contains("redis address"), "{err}");
    let started = Instant::now();
    let nowhere = RedisConfig {
        timeout: Duration::from_millis(300),
        ..RedisConfig::new("redis+unix:///nonexistent/redis.sock")
    };
    assert!(matches!(
        RedisStore::open(nowhere),
        Err(StoreError::Backend(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
}

const ENV: &str = "TRIBUNE_TORN_WRITE_REDIS";
const ROOM: &str = "tarnredis2";

fn torn_store(url: &str) -> RedisStore {
    RedisStore::open(RedisConfig {
        prefix: "torn".into(),
        ..RedisConfig::new(url)
    })
    .expect("open")
}

/// The writer (a child process of the test below; does nothing when run on its own).
#[test]
fn writer() {
    let Some(url) = std::env::var_os(ENV) else {
        return;
    };
    common::write_until_killed(&torn_store(url.to_str().expect("utf-8")), ROOM);
}

#[test]
fn a_writer_killed_midway_leaves_one_revision_or_the_other() {
    if std::env::var_os(ENV).is_some() {
        return;
    }
    let server = Server::start();
    let url = server.url();
    let last = common::kill_writers(
        (ENV, &url),
        &|| Box::new(torn_store(&url)),
        ROOM,
        &[40, 130, 250, 370],
    );
    assert!(last > 4, "the writer wrote {last} revisions in all");
}

#[test]
fn the_registry_lists_live_nodes_and_forgets_silent_ones() {
    use tribune_core::registry::{NodeEntry, NodeKind, NodeRegistry};
    use tribune_store::RedisRegistry;
    let mut server = Server::start();
    let cfg = RedisConfig {
        timeout: Duration::from_millis(500),
        ..RedisConfig::new(&server.url())
    };
    let a = RedisRegistry::open(cfg.clone()).unwrap();
    let b = RedisRegistry::open(RedisConfig {
        prefix: "other".into(),
        ..cfg.clone()
    })
    .unwrap();
    let node = |id: &str, listeners| NodeEntry {
        id: id.into(),
        kind: NodeKind::Edge,
        url: format!("http://{id}:8080"),
        listeners,
        capacity: 100,
    };
    a.beat(&node("e1", 5), Duration::from_secs(30)).unwrap();
    // Short leases are 1.5 s: long enough for a slow machine between two calls.
    a.beat(&node("e2", 7), Duration::from_millis(1_500))
        .unwrap();
    // Another deployment on the same server sees nothing of this one.
    b.beat(&node("x", 1), Duration::from_secs(30)).unwrap();
    assert_eq!(a.nodes().unwrap(), vec![node("e1", 5), node("e2", 7)]);
    // A beat replaces the entry; a node that stops beating is gone after its lease.
    a.beat(&node("e1", 9), Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    assert_eq!(a.nodes().unwrap(), vec![node("e1", 9)]);
    a.leave("e1").unwrap();
    assert!(a.nodes().unwrap().is_empty());
    // Rooms' origins: named with a lease, renewed by the next claim, gone after it.
    let (r1, r2) = (
        tribune_core::RoomId::parse("abcdefghjk").unwrap(),
        tribune_core::RoomId::parse("mnpqrstuvw").unwrap(),
    );
    let held_elsewhere = a
        .claim_rooms(
            "http://o1:8080",
            std::slice::from_ref(&r1),
            Duration::from_secs(30),
        )
        .unwrap();
    assert!(held_elsewhere.is_empty());
    a.claim_rooms(
        "http://o2:8080",
        std::slice::from_ref(&r2),
        Duration::from_millis(1_500),
    )
    .unwrap();
    assert_eq!(
        a.room_origins(&[r1.clone(), r2.clone()]).unwrap(),
        vec![Some("http://o1:8080".into()), Some("http://o2:8080".into())]
    );
    // The lease index, as the claimers note it (on Redis's clock).
    a.index_leases(std::slice::from_ref(&r1), Duration::from_secs(30))
        .unwrap();
    a.index_leases(std::slice::from_ref(&r2), Duration::from_millis(1_500))
        .unwrap();
    // One room, one origin: o2 cannot take r1 while o1 holds it, and o1 renews it freely.
    assert_eq!(
        a.claim_rooms(
            "http://o2:8080",
            &[r1.clone(), r2.clone()],
            Duration::from_millis(1_500)
        )
        .unwrap(),
        vec![r1.clone()]
    );
    assert!(a
        .claim_rooms(
            "http://o1:8080",
            std::slice::from_ref(&r1),
            Duration::from_secs(30)
        )
        .unwrap()
        .is_empty());
    assert_eq!(
        a.room_origin(&r1).unwrap().as_deref(),
        Some("http://o1:8080")
    );
    assert_eq!(b.room_origin(&r1).unwrap(), None);
    // No lease has run out yet.
    assert_eq!(a.lapsed_rooms(10).unwrap(), Some(vec![]));
    std::thread::sleep(Duration::from_millis(2_000));
    // A lease run out: the room has no origin, the index names it (and only it), and the next
    // claim takes it.
    assert_eq!(a.room_origin(&r2).unwrap(), None);
    assert_eq!(a.lapsed_rooms(10).unwrap(), Some(vec![r2.clone()]));
    assert_eq!(b.lapsed_rooms(10).unwrap(), Some(vec![]));
    assert!(a
        .claim_rooms(
            "http://o1:8080",
            std::slice::from_ref(&r2),
            Duration::from_secs(30)
        )
        .unwrap()
        .is_empty());
    assert_eq!(
        a.room_origin(&r2).unwrap().as_deref(),
        Some("http://o1:8080")
    );
    a.index_leases(std::slice::from_ref(&r2), Duration::from_secs(30))
        .unwrap();
    assert_eq!(a.lapsed_rooms(10).unwrap(), Some(vec![]));
    // A room whose short lease ran out is named (an id that is not a room's is dropped);
    // taken out of the index, it is not.
    let r3 = tribune_core::RoomId::parse("2345678922").unwrap();
    a.index_leases(std::slice::from_ref(&r3), Duration::from_millis(1))
        .unwrap();
    let () = redis::cmd("ZADD")
        .arg("tribune:rooms:{leases}")
        .arg(0)
        .arg("not/a room")
        .query(&mut raw(&server))
        .unwrap();
    a.claim_rooms(
        "http://o1:8080",
        std::slice::from_ref(&r3),
        Duration::from_millis(1),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(a.lapsed_rooms(10).unwrap(), Some(vec![r3.clone()]));
    let junk: Option<f64> = redis::cmd("ZSCORE")
        .arg("tribune:rooms:{leases}")
        .arg("not/a room")
        .query(&mut raw(&server))
        .unwrap();
    assert_eq!(junk, None, "not a room id: taken out of the index");
    a.unindex_rooms(std::slice::from_ref(&r3)).unwrap();
    assert_eq!(a.lapsed_rooms(10).unwrap(), Some(vec![]));
    assert_eq!(b.nodes().unwrap(), vec![node("x", 1)]);
    // Redis away: an error within the deadline, never a hang; back: it works again.
    server.kill();
    let started = Instant::now();
    assert!(a.beat(&node("e1", 1), Duration::from_secs(30)).is_err());
    assert!(a.nodes().is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
    server.restart();
    a.beat(&node("e1", 1), Duration::from_secs(30)).unwrap();
    assert_eq!(a.nodes().unwrap(), vec![node("e1", 1)]);
}

#[test]
fn one_gate_for_two_nodes_admits_to_capacity_and_queues_in_arrival_order() {
    use tribune_core::admission::{Decision, GateConfig, SharedGate};
    use tribune_store::RedisGate;
    let mut server = Server::start();
    let rt = runtime();
    let cfg = RedisConfig::new(&server.url());
    let gate = GateConfig {
        max_listeners: 10,
        join_rate: 1_000,
        join_burst: 1_000,
        call_hold_s: 1,
        connect_hold_s: 1,
    };
    let nodes = [
        RedisGate::new(cfg.clone(), gate).unwrap(),
        RedisGate::new(cfg.clone(), gate).unwrap(),
    ];
    // 15 joins alternating between the nodes: 10 in, then 5 in line in arrival order.
    let mut queued = Vec::new();
    let mut admitted = 0;
    let mut epochs = std::collections::BTreeSet::new();
    for i in 0..15 {
        let (d, epoch) = rt.block_on(nodes[i % 2].join(0)).unwrap();
        epochs.insert(epoch);
        match d {
            Decision::Admit => admitted += 1,
            Decision::Queue {
                number, position, ..
            } => queued.push((number, position)),
        }
    }
    assert_eq!(admitted, 10);
    assert_eq!(queued, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]);
    // One line, one epoch.
    assert_eq!(epochs.len(), 1);
    let epoch = *epochs.first().unwrap();
    // Full: coming back early keeps the place.
    assert!(matches!(
        rt.block_on(nodes[1].rejoin(0, 2, epoch)).unwrap().0,
        Decision::Queue {
            number: 2,
            position: 3,
            ..
        }
    ));
    // The registry now counts the 10 (their seats' holds lapse): still full.
    std::thread::sleep(Duration::from_millis(1_100));
    assert!(matches!(
        rt.block_on(nodes[0].rejoin(10, 0, epoch)).unwrap().0,
        Decision::Queue { .. }
    ));
    // Five leave: the first five in line are called, in order, on either node.
    for k in 0..5 {
        let (d, _) = rt
            .block_on(nodes[k % 2].rejoin(5, k as u64, epoch))
            .unwrap();
        assert_eq!(d, Decision::Admit, "{k}");
    }
    // A newcomer waits behind nobody but finds no room.
    assert!(matches!(
        rt.block_on(nodes[0].join(10)).unwrap().0,
        Decision::Queue {
            number: 5,
            position: 1,
            ..
        }
    ));
    // Redis restarts empty: a new line (another epoch), where an old number is a fresh join,
    // not the place of whoever holds that number now.
    server.kill();
    server.restart();
    // A decision is tried once (it may have run), so the first on a dead connection fails.
    let (d, fresh) = (0..3)
        .find_map(|_| rt.block_on(nodes[0].join(10)).ok())
        .expect("the gate answers again");
    assert_ne!(fresh, epoch);
    let Decision::Queue { number: n0, .. } = d else {
        panic!("admitted into a full room: {d:?}")
    };
    let (d, again) = (0..3)
        .find_map(|_| rt.block_on(nodes[1].rejoin(10, 0, epoch)).ok())
        .expect("the gate answers again");
    assert_eq!(again, fresh);
    assert!(
        matches!(d, Decision::Queue { number, .. } if number > n0),
        "{d:?} after {n0}"
    );
    // Redis away: an error, in time.
    drop(server);
    let started = Instant::now();
    assert!(rt.block_on(nodes[0].join(0)).is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// `redis-server` with these arguments in `dir`, once it answers on `port` (killed on drop).
fn redis_tcp(dir: &Path, port: u16, args: &[&str]) -> ChildGuard {
    let child = Command::new("redis-server")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    ChildGuard(child)
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_sentinel_named_primary_is_followed_through_a_failover() {
    use tribune_core::registry::{NodeEntry, NodeKind, NodeRegistry};
    use tribune_store::RedisRegistry;
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2, ps) = (
        tribune_testkit::free_port(),
        tribune_testkit::free_port(),
        tribune_testkit::free_port(),
    );
    let base = ["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"];
    let port = |p: u16| p.to_string();
    let (a, b, s) = (port(p1), port(p2), port(ps));
    let mut primary = redis_tcp(
        dir.path(),
        p1,
        &[&["--port", a.as_str()][..], &base[..]].concat(),
    );
    let _replica = redis_tcp(
        dir.path(),
        p2,
        &[
            &["--port", b.as_str(), "--replicaof", "127.0.0.1", a.as_str()][..],
            &base[..],
        ]
        .concat(),
    );
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {ps}\nbind 127.0.0.1\nsentinel monitor tribune 127.0.0.1 {p1} 1\n\
             sentinel down-after-milliseconds tribune 500\nsentinel failover-timeout tribune 2000\n"
        ),
    )
    .unwrap();
    let _sentinel = redis_tcp(
        dir.path(),
        ps,
        &[conf.to_str().unwrap(), "--sentinel", "--port", s.as_str()],
    );
    let cfg = RedisConfig {
        timeout: Duration::from_millis(500),
        ..RedisConfig::new(&format!("redis+sentinel://127.0.0.1:{ps}/tribune"))
    };
    let registry = RedisRegistry::open(cfg.clone()).unwrap();
    let node = |listeners| NodeEntry {
        id: "e1".into(),
        kind: NodeKind::Edge,
        url: "http://e1:8080".into(),
        listeners,
        capacity: 100,
    };
    registry.beat(&node(1), Duration::from_secs(30)).unwrap();
    assert_eq!(registry.nodes().unwrap(), vec![node(1)]);
    // A store that waits for a replica: a write returns once the replica has it (once the
    // replica is in sync); asking for two replicas where there is one is an error, not a hang.
    let waiting = |n| {
        RedisStore::open(RedisConfig {
            wait_replicas: n,
            prefix: format!("wait{n}"),
            ..cfg.clone()
        })
        .unwrap()
    };
    let one = waiting(1);
    let room = suite::busy_room("waitedrmaa", 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = one.put(&room) {
        // Until the replica is in sync: refused whole, or written and not confirmed.
        one.remove(room.id()).unwrap();
        assert!(
            Instant::now() < deadline,
            "the replica never confirmed: {e}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    match waiting(2).put(&room) {
        Err(StoreError::Backend(why)) => assert!(why.contains("1 of 2 replicas"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // The primary dies: the Sentinel promotes the replica, and the next connection goes there
    // (the entry written before was replicated).
    primary.0.kill().unwrap();
    primary.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if registry.beat(&node(2), Duration::from_secs(30)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reached the promoted replica"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(registry.nodes().unwrap(), vec![node(2)]);
    // The admission gate (one multiplexed link) finds the promoted primary too.
    {
        use tribune_core::admission::{Decision, GateConfig, SharedGate};
        let rt = runtime();
        let gate = tribune_store::RedisGate::new(cfg.clone(), GateConfig::default()).unwrap();
        let decided = (0..10).find_map(|_| {
            let d = rt.block_on(gate.join(0)).ok();
            if d.is_none() {
                std::thread::sleep(Duration::from_millis(200));
            }
            d
        });
        assert!(matches!(decided, Some((Decision::Admit, _))), "{decided:?}");
    }
    // A Sentinel URL without a primary's name is refused at once.
    assert!(RedisRegistry::lazy(RedisConfig::new("redis+sentinel://127.0.0.1:1/")).is_err());
}

#[test]
fn a_redis_cluster_by_configuration_alone() {
    use tribune_core::admission::{Decision, GateConfig, SharedGate};
    use tribune_core::registry::{NodeEntry, NodeKind, NodeRegistry};
    use tribune_store::{RedisGate, RedisRegistry};
    let servers = tribune_testkit::RedisCluster::start(3);
    let url = servers.url();
    let cfg = RedisConfig::new(&url);
    // The store: the whole suite, each check under a prefix of its own.
    let n = AtomicUsize::new(0);
    suite::run_all(&|| {
        Box::new(
            RedisStore::open(RedisConfig {
                prefix: format!("suite{}", n.fetch_add(1, Ordering::Relaxed)),
                ..cfg.clone()
            })
            .expect("open on the cluster"),
        )
    });
    // The registry, and rooms' origins on keys of many slots in one call.
    let reg = RedisRegistry::open(cfg.clone()).unwrap();
    let me = NodeEntry {
        id: "e1".into(),
        kind: NodeKind::Edge,
        url: "http://e1:8080".into(),
        listeners: 3,
        capacity: 100,
    };
    reg.beat(&me, Duration::from_secs(30)).unwrap();
    assert_eq!(reg.nodes().unwrap(), vec![me.clone()]);
    let rooms: Vec<tribune_core::RoomId> = ["abcdefghjk", "mnpqrstuvw", "2345678922"]
        .iter()
        .map(|r| tribune_core::RoomId::parse(r).unwrap())
        .collect();
    assert!(reg
        .claim_rooms("http://o1:8080", &rooms[..2], Duration::from_secs(30))
        .unwrap()
        .is_empty());
    assert_eq!(
        reg.claim_rooms("http://o2:8080", &rooms, Duration::from_secs(30))
            .unwrap(),
        rooms[..2].to_vec()
    );
    assert_eq!(
        reg.room_origins(&rooms).unwrap(),
        vec![
            Some("http://o1:8080".to_owned()),
            Some("http://o1:8080".to_owned()),
            Some("http://o2:8080".to_owned())
        ]
    );
    // The lease index lives on one shard, written on its clock.
    reg.index_leases(&rooms, Duration::from_secs(30)).unwrap();
    assert_eq!(reg.lapsed_rooms(10).unwrap(), Some(vec![]));
    let short = [tribune_core::RoomId::parse("ffffffffff").unwrap()];
    reg.index_leases(&short, Duration::from_millis(1)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(reg.lapsed_rooms(10).unwrap(), Some(short.to_vec()));
    reg.leave("e1").unwrap();
    assert!(reg.nodes().unwrap().is_empty());
    // The gate: one script per decision, on the gate's shard.
    let gate = RedisGate::new(
        cfg,
        GateConfig {
            max_listeners: 2,
            join_rate: 1_000,
            join_burst: 1_000,
            call_hold_s: 1,
            connect_hold_s: 1,
        },
    )
    .unwrap();
    let rt = runtime();
    let decisions: Vec<Decision> = (0..3)
        .map(|_| rt.block_on(gate.join(0)).unwrap().0)
        .collect();
    assert_eq!(decisions[..2], [Decision::Admit, Decision::Admit]);
    assert!(matches!(
        decisions[2],
        Decision::Queue {
            number: 0,
            position: 1,
            ..
        }
    ));
}

#[test]
fn cluster_addresses_that_cannot_work_are_refused() {
    for url in ["redis+cluster://", "redis+cluster://h:1/extra"] {
        assert!(
            RedisStore::open(RedisConfig::new(url)).is_err(),
            "{url} accepted"
        );
    }
}

#[test]
fn writes_are_fenced_by_the_rooms_origin_lease() {
    let server = Server::start();
    let a = store(&server, "fence").fenced_by("http://a:1");
    let b = store(&server, "fence").fenced_by("http://b:1");
    let mut room = suite::busy_room("fencedrmaa", 1);
    // No lease yet (a new room, or one Redis lost): written.
    a.put(&room).expect("first write");
    let lease = "fence:room:{fencedrmaa}:origin";
    assert_eq!(server.cli(&["SET", lease, "http://b:1"]), "OK");
    room.rev = 2;
    // a lost the room to b: a's write is refused and changes nothing; b's goes through.
    match a.put(&room) {
        Err(StoreError::Moved { room: r, holder }) => {
            assert_eq!(r.as_str(), "fencedrmaa");
            assert_eq!(holder, "http://b:1");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.get(room.id()).unwrap().unwrap().rev, 1);
    b.put(&room).expect("the holder writes");
    assert_eq!(a.get(room.id()).unwrap().unwrap().rev, 2);
    // An unfenced store (tools, a lone node's tests) writes regardless.
    room.rev = 3;
    store(&server, "fence").put(&room).expect("unfenced");
}
