//! A cluster of separate node processes on loopback: one origin and edges that pull its rooms.
//!
//! - 1 origin + 2 edges: a speaker on the origin at 440 Hz; a listener joined through each
//!   edge hears it with no frame lost; every node's room API counts both listeners; a block on
//!   the origin closes that listener's connection on its edge within 1 s and refuses its ticket
//!   on the other edge; stage actions on an edge are sent to the origin (421).
//! - A tree: origin → edge → edge; a listener on the second tier hears the room.
//! - The origin killed (`kill -9`) and started again: the edge keeps its listener connected,
//!   and the audio comes back.
//! - Two origins sharing their rooms in Redis: one killed, the other takes its room over from
//!   its record (blocks included) once its lease runs out; the edge's listener stays connected
//!   and hears the room again from the new origin; the old origin, back, leaves it there.
//! - The relay endpoint refuses anyone without a relay token.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live::{ffmpeg_decode, listener, speaker, tone_hz, tone_seconds, wait_for, Api, Heard};
use common::{free_addr, tribune, wait_listening, Proc, API_KEY};
use serde_json::{json, Value};
use tribune_testkit::Redis;

/// The secret every node of the test cluster shares.
const SECRET: &str = "cluster-test-secret-0123456789";

fn origin(addr: SocketAddr, data: Option<&std::path::Path>) -> Proc {
    origin_with(addr, data, &[])
}

fn origin_with(addr: SocketAddr, data: Option<&std::path::Path>, extra: &[&str]) -> Proc {
    let mut args = vec![
        "serve".to_owned(),
        "--role".into(),
        "origin".into(),
        "--secret".into(),
        SECRET.into(),
        "--listen".into(),
        addr.to_string(),
    ];
    match data {
        Some(d) => args.extend(["--data-dir".into(), d.to_str().unwrap().to_owned()]),
        None => args.push("--no-data".into()),
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = Proc(tribune(&args).spawn().unwrap());
    wait_listening(addr);
    p
}

fn edge(addr: SocketAddr, upstream: SocketAddr) -> Proc {
    edge_with(addr, upstream, &[])
}

fn edge_with(addr: SocketAddr, upstream: SocketAddr, extra: &[&str]) -> Proc {
    let up = format!("http://{upstream}");
    let listen = addr.to_string();
    let mut args = vec![
        "serve",
        "--role",
        "edge",
        "--upstream",
        &up,
        "--secret",
        SECRET,
        "--no-data",
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let p = Proc(tribune(&args).spawn().unwrap());
    wait_listening(addr);
    p
}

/// An edge with no `--upstream`: it pulls every room from the origin the registry names.
fn edge_via_registry(addr: SocketAddr, redis_url: &str) -> Proc {
    let listen = addr.to_string();
    let mut args = vec!["serve", "--role", "edge", "--secret", SECRET, "--no-data"];
    args.extend(["--listen", listen.as_str(), "--redis", redis_url]);
    let p = Proc(tribune(&args).spawn().unwrap());
    wait_listening(addr);
    p
}

fn api(addr: SocketAddr) -> Api {
    Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        base: format!("http://{addr}"),
    }
}

/// Creates a live room on `origin`: (id, host token).
async fn create_room(origin: &Api) -> (String, String) {
    let (code, room) = origin
        .call(
            "POST",
            "/api/rooms",
            Some(API_KEY),
            json!({"title": "cluster"}),
        )
        .await;
    assert_eq!(code, 201, "{room}");
    (
        room["id"].as_str().unwrap().to_owned(),
        room["host_token"].as_str().unwrap().to_owned(),
    )
}

/// Joins `room` through `node`: the join's answer (ticket, listener id).
async fn join(node: &Api, room: &str) -> Value {
    let (code, answer) = node
        .call("POST", &format!("/api/rooms/{room}/join"), None, json!({}))
        .await;
    assert_eq!(code, 200, "{answer}");
    answer
}

fn listen_url(addr: SocketAddr, room: &str, joined: &Value) -> String {
    format!(
        "ws://{addr}/api/rooms/{room}/listen?ticket={}",
        joined["ticket"].as_str().unwrap()
    )
}

/// Frames missing between the first and the last sequence number heard.
fn lost(seqs: &[u64]) -> u64 {
    let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else {
        return 0;
    };
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    (last - first + 1) - sorted.len() as u64
}

/// The status a WebSocket upgrade at `url` is refused with (0 if it was accepted).
async fn upgrade_status(url: &str, bearer: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    if let Some(b) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {b}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Ok(_) => 0,
        Err(e) => panic!("{e}"),
    }
}

/// Waits (at most 10 s) until joins on `node` name two edges: the registry lists both.
async fn both_edges_registered(node: &Api, room: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = join(node, room).await;
        if j["alternates"].as_array().is_some_and(|a| a.len() == 1) {
            return;
        }
        assert!(Instant::now() < deadline, "edges not registered: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` on `node`: (status, body).
async fn get_bytes(node: &Api, path: &str) -> (u16, Vec<u8>) {
    let resp = node
        .http
        .get(format!("{}{path}", node.base))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// The LL-HLS of `room` is the same bytes on every node: the next part (asked of all at once,
/// each answering when it has it), the playlist up to that part, and the last whole segment.
async fn same_hls_everywhere(room: &str, nodes: &[&Api]) {
    let (status, playlist) = get_bytes(nodes[0], &format!("/hls/{room}/live.m3u8")).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(playlist).unwrap();
    let hint = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no preload hint in {text}"))
        .to_owned();
    let (msn, index) = hint
        .strip_prefix("part/")
        .and_then(|p| p.strip_suffix(".m4s"))
        .and_then(|p| p.split_once('.'))
        .unwrap();
    let blocking = format!("/hls/{room}/live.m3u8?_HLS_msn={msn}&_HLS_part={index}");
    let playlists =
        futures_util::future::join_all(nodes.iter().map(|n| get_bytes(n, &blocking))).await;
    let upto = |body: &[u8]| {
        let text = String::from_utf8(body.to_vec()).unwrap();
        let end = text
            .find(&format!("URI=\"{hint}\""))
            .unwrap_or_else(|| panic!("{hint} not listed in {text}"));
        let end = end + text[end..].find('\n').unwrap();
        text[..end].to_owned()
    };
    let first = upto(&playlists[0].1);
    for (i, (status, body)) in playlists.iter().enumerate() {
        if *status != 200 {
            for n in nodes {
                let (_, p) = get_bytes(n, &format!("/hls/{room}/live.m3u8")).await;
                println!("{}:\n{}", n.base, String::from_utf8_lossy(&p));
            }
        }
        assert_eq!(*status, 200, "{hint} on node {i}");
        assert_eq!(upto(body), first, "node {i}'s playlist");
    }
    let last_segment = first
        .lines()
        .rfind(|l| l.starts_with("seg/"))
        .unwrap_or_else(|| panic!("no whole segment in {first}"))
        .to_owned();
    for uri in [hint.as_str(), last_segment.as_str()] {
        let path = format!("/hls/{room}/{uri}");
        let bodies =
            futures_util::future::join_all(nodes.iter().map(|n| get_bytes(n, &path))).await;
        for (i, (status, body)) in bodies.iter().enumerate() {
            assert_eq!(*status, 200, "node {i}: {uri}");
            assert!(!body.is_empty());
            assert_eq!(body, &bodies[0].1, "node {i}: {uri} differs");
        }
    }
    println!(
        "LL-HLS identical on {} nodes: {hint}, {last_segment}, playlist up to the part",
        nodes.len()
    );
}

/// Listeners the room API of `node` counts.
async fn counted(node: &Api, room: &str) -> u64 {
    let (_, info) = node
        .call("GET", &format!("/api/rooms/{room}"), None, Value::Null)
        .await;
    info["listeners"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_carry_a_room_from_its_origin() {
    let (oa, ea, eb) = (free_addr(), free_addr(), free_addr());
    let _origin = origin(oa, None);
    let _ea = edge(ea, oa);
    let _eb = edge(eb, oa);
    let (o, a, b) = (api(oa), api(ea), api(eb));
    let (room, host) = create_room(&o).await;

    // Refused before anything is pulled: no relay token, or a listener's ticket as one.
    let relay = format!("ws://{oa}/api/rooms/{room}/relay");
    assert_eq!(upgrade_status(&relay, None).await, 401);
    let ticket = join(&o, &room).await;
    assert_eq!(upgrade_status(&relay, ticket["ticket"].as_str()).await, 403);
    // An edge creates no rooms.
    let (code, answer) = a
        .call("POST", "/api/rooms", Some(API_KEY), json!({"title": "x"}))
        .await;
    assert_eq!(code, 421, "{answer}");

    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    let la = join(&a, &room).await;
    let lb = join(&b, &room).await;
    let heard_a = Arc::new(Mutex::new(Heard::default()));
    let heard_b = Arc::new(Mutex::new(Heard::default()));
    tokio::spawn(listener(
        listen_url(ea, &room, &la),
        heard_a.clone(),
        stop.clone(),
    ));
    tokio::spawn(listener(
        listen_url(eb, &room, &lb),
        heard_b.clone(),
        stop.clone(),
    ));
    wait_for("3 s of tone on both edges", 20, || {
        tone_seconds(&heard_a.lock().unwrap().pcm) >= 3.0
            && tone_seconds(&heard_b.lock().unwrap().pcm) >= 3.0
    })
    .await;

    // Every node counts the listeners of both edges (the origin has none of its own).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = [
            counted(&o, &room).await,
            counted(&a, &room).await,
            counted(&b, &room).await,
        ];
        if n == [2, 2, 2] {
            break;
        }
        assert!(Instant::now() < deadline, "listeners counted: {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    same_hls_everywhere(&room, &[&o, &a, &b]).await;

    // A listener's reaction on an edge counts at the origin (sent up with the edge's report).
    let (code, answer) = a
        .call(
            "POST",
            &format!("/api/rooms/{room}/reactions"),
            lb["ticket"].as_str(),
            json!({"kind": "clap"}),
        )
        .await;
    assert_eq!(code, 202, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while common::metric(oa, "reactions_total") < 1 {
        assert!(
            Instant::now() < deadline,
            "the reaction never reached the origin"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Stage actions belong to the origin: an edge sends them on, and the origin's answer is
    // the client's (here a speaker's token, good for publishing on the origin).
    let (code, answer) = a
        .call(
            "POST",
            &format!("/api/rooms/{room}/speakers"),
            Some(&host),
            json!({"role": "speaker", "name": "S"}),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        upgrade_status(
            &format!("ws://{oa}/api/rooms/{room}/speak"),
            answer["token"].as_str()
        )
        .await,
        0,
        "the speaker's token was refused by the origin"
    );
    assert!(common::metric(ea, "forwarded_total") >= 1);
    // Publishing itself is not relayed: the origin's address is where media goes.
    assert_eq!(
        upgrade_status(&format!("ws://{ea}/api/rooms/{room}/speak"), Some(&host)).await,
        421
    );

    // A block on the origin: the listener on edge A is closed (4001) within 1 s, and its
    // ticket is refused on edge B.
    let blocked_at = Instant::now();
    let (code, answer) = o
        .call(
            "POST",
            &format!("/api/rooms/{room}/listeners/{}/remove", la["listener_id"]),
            Some(&host),
            json!({"block": true}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    wait_for("the blocked listener closed", 5, || {
        heard_a.lock().unwrap().closed.is_some()
    })
    .await;
    let took = blocked_at.elapsed();
    assert_eq!(heard_a.lock().unwrap().closed, Some(4001));
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    assert_eq!(upgrade_status(&listen_url(eb, &room, &la), None).await, 403);

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for (name, heard) in [("A", &heard_a), ("B", &heard_b)] {
        let h = heard.lock().unwrap();
        let hz = tone_hz(&h.pcm);
        assert!((hz - 440.0).abs() <= 10.0, "edge {name}: {hz} Hz");
        assert_eq!(lost(&h.seqs), 0, "edge {name}: frames lost");
        println!(
            "edge {name}: {} frames, {:.1} s of tone at {hz:.0} Hz, 0 lost",
            h.seqs.len(),
            tone_seconds(&h.pcm)
        );
    }
    println!("block to close on the edge: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tier_edge_hears_the_room() {
    let (oa, ea, eb) = (free_addr(), free_addr(), free_addr());
    let _origin = origin(oa, None);
    let _ea = edge(ea, oa);
    // B pulls from A, not from the origin.
    let _eb = edge(eb, ea);
    let (o, a, b) = (api(oa), api(ea), api(eb));
    let (room, host) = create_room(&o).await;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    // One listener on each tier: the origin, the first edge, the second.
    let mut tiers = Vec::new();
    for (addr, node) in [(oa, &o), (ea, &a), (eb, &b)] {
        let j = join(node, &room).await;
        let h = Arc::new(Mutex::new(Heard::default()));
        tokio::spawn(listener(
            listen_url(addr, &room, &j),
            h.clone(),
            stop.clone(),
        ));
        tiers.push(h);
    }
    let heard = tiers[2].clone();
    wait_for("3 s of tone two tiers down", 20, || {
        tone_seconds(&heard.lock().unwrap().pcm) >= 3.0
    })
    .await;
    for (tier, h) in tiers.iter().enumerate() {
        let mut d = h.lock().unwrap().delays_us.clone();
        d.sort_unstable();
        let p = |q: f64| d[((d.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "tier {tier}: glass-to-ear p50 {:.1} ms, p99 {:.1} ms ({} frames)",
            p(0.5),
            p(0.99),
            d.len()
        );
    }
    // The origin counts the listener two tiers down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counted(&o, &room).await != 3 {
        assert!(Instant::now() < deadline, "not counted at the origin");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    same_hls_everywhere(&room, &[&o, &a, &b]).await;
    stop.store(true, Ordering::Relaxed);
    let h = heard.lock().unwrap();
    let hz = tone_hz(&h.pcm);
    assert!((hz - 440.0).abs() <= 10.0, "{hz} Hz");
    assert_eq!(lost(&h.seqs), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_keeps_its_listeners_through_an_origin_restart() {
    let data = tempfile::tempdir().unwrap();
    let (oa, ea) = (free_addr(), free_addr());
    let mut node = origin(oa, Some(data.path()));
    let _ea = edge(ea, oa);
    let (o, a) = (api(oa), api(ea));
    let (room, host) = create_room(&o).await;
    let stop = Arc::new(AtomicBool::new(false));
    let speak = format!("ws://{oa}/api/rooms/{room}/speak?token={host}");
    tokio::spawn(speaker(speak.clone(), stop.clone()));
    let la = join(&a, &room).await;
    let heard = Arc::new(Mutex::new(Heard::default()));
    tokio::spawn(listener(
        listen_url(ea, &room, &la),
        heard.clone(),
        stop.clone(),
    ));
    wait_for("2 s of tone before the kill", 20, || {
        tone_seconds(&heard.lock().unwrap().pcm) >= 2.0
    })
    .await;

    node.0.kill().unwrap();
    node.0.wait().unwrap();
    drop(node);
    let before = heard.lock().unwrap().seqs.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _node = origin(oa, Some(data.path()));
    // The speaker publishes again (its old socket died with the origin).
    let stop_again = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(speak, stop_again.clone()));
    let tone_before = tone_seconds(&heard.lock().unwrap().pcm);
    wait_for("tone again after the restart", 20, || {
        tone_seconds(&heard.lock().unwrap().pcm) >= tone_before + 2.0
    })
    .await;
    // Numbered past the restart by the origin, the edge's LL-HLS is still the origin's.
    same_hls_everywhere(&room, &[&o, &a]).await;
    stop.store(true, Ordering::Relaxed);
    stop_again.store(true, Ordering::Relaxed);
    // The recording went on: the replay plays the tone from before the kill and after it.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (code, answer) = o
        .call(
            "POST",
            &format!("/api/rooms/{room}/end"),
            Some(&host),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let replay = ffmpeg_decode(&format!("http://{oa}/hls/{room}/replay.m3u8"));
    let replayed = tone_seconds(&replay);
    println!("replay across the origin's restart: {replayed:.1} s of tone");
    assert!(replayed >= 3.5, "{replayed} s");
    assert!((tone_hz(&replay) - 440.0).abs() <= 10.0);
    let h = heard.lock().unwrap();
    // The edge never closed the listener's connection.
    assert_eq!(h.closed, None);
    assert!(h.seqs.len() > before);
    let hz = tone_hz(&h.pcm);
    assert!((hz - 440.0).abs() <= 10.0, "{hz} Hz");
    // Numbers only go up across the restart.
    assert!(h.seqs.windows(2).all(|w| w[1] > w[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_under_a_crowd_loses_none_of_its_listeners() {
    let redis = Redis::start();
    let redis_url = redis.url();
    let (oa, ea, eb) = (free_addr(), free_addr(), free_addr());
    let with_redis = ["--redis", redis_url.as_str()];
    let _origin = origin_with(oa, None, &with_redis);
    let edges = Arc::new(Mutex::new(vec![
        (ea, Some(edge_with(ea, oa, &with_redis))),
        (eb, Some(edge_with(eb, oa, &with_redis))),
    ]));
    let o = api(oa);
    let (room, host) = create_room(&o).await;
    // Joins on the origin send listeners to the edges once both are in the registry.
    both_edges_registered(&o, &room).await;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2 000 listeners joined through the origin, spread over both edges; at 6 s the edge with
    // the most of them is killed (SIGKILL).
    let killed: Arc<Mutex<Option<(SocketAddr, u64, f64)>>> = Arc::default();
    let (k, e) = (killed.clone(), edges.clone());
    let plan = tribune_crowd::PlanConfig {
        scenario: tribune_crowd::Scenario::Flash,
        listeners: 2_000,
        ramp_per_s: 1_000.0,
        run: Duration::from_secs(14),
        stay: Duration::from_secs(60),
        churn_every: Duration::from_secs(10),
        churn_gap: Duration::from_millis(500),
        flood: tribune_crowd::FloodPlan::default(),
    };
    let mut timeline = Vec::new();
    let report = tribune_crowd::run(
        tribune_crowd::CrowdConfig {
            server: format!("http://{oa}"),
            room: room.clone(),
            plan,
            server_pid: None,
            allow_remote: false,
            grace: Duration::from_secs(5),
        },
        |p| {
            timeline.push((p.t_s, p.connected));
            let mut k = k.lock().unwrap();
            if p.t_s >= 6.0 && k.is_none() {
                let mut edges = e.lock().unwrap();
                let held: Vec<u64> = edges
                    .iter()
                    .map(|(a, _)| common::metric(*a, "listeners"))
                    .collect();
                let i = if held[0] >= held[1] { 0 } else { 1 };
                if let Some(mut p) = edges[i].1.take() {
                    p.0.kill().unwrap();
                    p.0.wait().unwrap();
                }
                *k = Some((edges[i].0, held[i], p.t_s));
            }
        },
    )
    .await
    .expect("crowd runs");
    stop.store(true, Ordering::Relaxed);
    eprintln!("{}", tribune_crowd::report::table(&report));
    let (dead, held, at) = killed.lock().unwrap().expect("an edge was killed");
    println!("killed {dead} holding {held} listeners at {at:.1} s");
    assert!(held >= 900, "the killed edge held {held}");
    assert_eq!(report.listeners_connected, 2_000);
    assert_eq!(report.joins_failed, 0);
    // Every listener of the killed edge resumed on the other one, with no frame lost.
    assert!(report.resumes >= held, "{} resumes", report.resumes);
    assert_eq!(report.frames_lost, 0, "{:?}", report.errors);
    assert_eq!(report.nodes.len(), 2, "{:?}", report.nodes.keys());
    // Back to 2 000 connected within 5 s of the kill (per-second samples).
    let back = timeline
        .iter()
        .find(|(t, c)| *t > at && *c == 2_000)
        .map(|(t, _)| t - at);
    println!("all connected again {back:?} s after the kill");
    assert!(back.is_some_and(|s| s <= 5.0), "{timeline:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_for_10_s_costs_listeners_nothing_and_joins_are_answered() {
    let mut redis = Redis::start();
    let redis_url = redis.url();
    let (oa, ea) = (free_addr(), free_addr());
    let with_redis = ["--redis", redis_url.as_str()];
    let _origin = origin_with(oa, None, &with_redis);
    let _ea = edge_with(ea, oa, &with_redis);
    let (o, a) = (api(oa), api(ea));
    let (room, host) = create_room(&o).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !join(&o, &room).await["listen_url"]
        .as_str()
        .is_some_and(|u| u.contains(&ea.to_string()))
    {
        assert!(Instant::now() < deadline, "the edge never registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    let heard = Arc::new(Mutex::new(Heard::default()));
    let joined = join(&o, &room).await;
    tokio::spawn(listener(
        joined["listen_url"].as_str().unwrap().to_owned(),
        heard.clone(),
        stop.clone(),
    ));
    wait_for("tone before the outage", 20, || {
        tone_seconds(&heard.lock().unwrap().pcm) >= 1.0
    })
    .await;

    // Redis goes away for 10 s. Joins on either node are answered at once meanwhile.
    redis.kill();
    let went = Instant::now();
    let mut answered = 0;
    while went.elapsed() < Duration::from_secs(10) {
        for node in [&o, &a] {
            let asked = Instant::now();
            let (code, answer) = node
                .call("POST", &format!("/api/rooms/{room}/join"), None, json!({}))
                .await;
            assert!(code == 200 || code == 503, "{code} {answer}");
            assert!(
                asked.elapsed() < Duration::from_secs(2),
                "{:?}",
                asked.elapsed()
            );
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(common::metric(oa, "registry_up"), 0);
    assert!(common::metric(ea, "registry_errors_total") > 0);
    // Decided by each node's own gate meanwhile, and counted.
    assert!(common::metric(oa, "admission_fallbacks_total") > 0);
    assert!(common::metric(ea, "admission_fallbacks_total") > 0);
    // Back: the nodes register again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::metric(oa, "registry_up") != 1 || common::metric(ea, "registry_up") != 1 {
        assert!(Instant::now() < deadline, "never back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // This Redis came back without its data: the origin writes its room's record again (so
    // the room would survive the origin's own restart), and lists it in the index.
    wait_for("the room's record written again", 10, || {
        redis.cli(&["EXISTS", &format!("tribune:room:{{{room}}}")]) == "1"
    })
    .await;
    assert_eq!(redis.cli(&["SMEMBERS", "tribune:rooms:{index}"]), room);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let h = heard.lock().unwrap();
    assert_eq!(h.closed, None);
    assert_eq!(lost(&h.seqs), 0);
    let secs = h.seqs.len() as f64 * 0.02;
    println!("{answered} joins answered during the outage; the listener heard {secs:.1} s, 0 lost");
    assert!(secs >= 11.0, "{secs} s heard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_capacity_and_one_line_across_two_edges() {
    let redis = Redis::start();
    let redis_url = redis.url();
    let (oa, ea, eb) = (free_addr(), free_addr(), free_addr());
    let shared = ["--redis", redis_url.as_str(), "--max-listeners", "1000"];
    let _origin = origin_with(oa, None, &shared);
    let _ea = edge_with(ea, oa, &shared);
    let _eb = edge_with(eb, oa, &shared);
    let (o, a, b) = (api(oa), api(ea), api(eb));
    let (room, _) = create_room(&o).await;
    // 1 500 joins, one after the other, alternating between the edges.
    let mut admitted = 0;
    let mut line = Vec::new();
    for i in 0..1_500 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (code, answer) = node
            .call("POST", &format!("/api/rooms/{room}/join"), None, json!({}))
            .await;
        match code {
            200 => admitted += 1,
            202 => line.push(answer["position"].as_u64().unwrap()),
            _ => panic!("{code} {answer}"),
        }
    }
    assert_eq!(admitted, 1_000);
    assert_eq!(line.len(), 500);
    // Positions follow arrival order across both edges: 1, 2, 3, … 500.
    assert!(
        line.iter().enumerate().all(|(i, &p)| p == i as u64 + 1),
        "{line:?}"
    );
    assert_eq!(common::metric(ea, "admission_fallbacks_total"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_listener_moves_to_an_alternate_edge() {
    let redis = Redis::start();
    let redis_url = redis.url();
    let (oa, ea, eb) = (free_addr(), free_addr(), free_addr());
    let with_redis = ["--redis", redis_url.as_str()];
    let _origin = origin_with(oa, None, &with_redis);
    let mut edges = [
        (ea, Some(edge_with(ea, oa, &with_redis))),
        (eb, Some(edge_with(eb, oa, &with_redis))),
    ];
    let o = api(oa);
    let (room, host) = create_room(&o).await;
    both_edges_registered(&o, &room).await;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    let client = tribune_client::Api::new(&format!("http://{oa}")).unwrap();
    let opts = tribune_client::ListenOptions {
        room: room.clone(),
        duration: Duration::from_secs(8),
        decode: true,
        keep_packets: false,
    };
    let listening = tokio::spawn(async move { tribune_client::listen(&client, opts).await });
    wait_for("the listener on an edge", 10, || {
        edges
            .iter()
            .any(|(a, _)| common::metric(*a, "listeners") == 1)
    })
    .await;
    // A moment of listening before the kill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let i = edges
        .iter()
        .position(|(a, _)| common::metric(*a, "listeners") == 1)
        .expect("the listener is on an edge");
    if let Some(mut p) = edges[i].1.take() {
        p.0.kill().unwrap();
        p.0.wait().unwrap();
    }
    let report = listening.await.unwrap().expect("listened");
    stop.store(true, Ordering::Relaxed);
    println!(
        "CLI listener across an edge kill: {} frames, {} lost, {} reconnects",
        report.frames_received, report.frames_lost, report.reconnects
    );
    assert!(report.reconnects >= 1);
    assert_eq!(report.frames_lost, 0);
    assert!(report.frames_received >= 300, "{}", report.frames_received);
    let hz = tone_hz(&report.pcm);
    assert!((hz - 440.0).abs() <= 10.0, "{hz} Hz");
}

/// TCP sockets listening on `port` (any address, IPv4), from `/proc/net/tcp`.
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let mut cols = l.split_whitespace().skip(1);
            let (addr, state) = (cols.next(), cols.nth(1));
            addr.is_some_and(|a| a.ends_with(&local)) && state == Some("0A")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edge_processes_share_one_port() {
    let (oa, ea) = (free_addr(), free_addr());
    let _origin = origin(oa, None);
    let _e1 = edge_with(ea, oa, &["--reuse-port"]);
    let _e2 = edge_with(ea, oa, &["--reuse-port"]);
    // The port answers as soon as the first process listens: wait for the second's socket.
    wait_for("both processes listening on the port", 10, || {
        listening_sockets(ea.port()) == 2
    })
    .await;
    let o = api(oa);
    let (room, host) = create_room(&o).await;
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{oa}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    // 40 listeners on the shared port (tickets from the origin are good on every node).
    let mut heard = Vec::new();
    for _ in 0..40 {
        let j = join(&o, &room).await;
        let h = Arc::new(Mutex::new(Heard::default()));
        tokio::spawn(listener(listen_url(ea, &room, &j), h.clone(), stop.clone()));
        heard.push(h);
    }
    wait_for("every listener hearing the tone", 20, || {
        heard
            .iter()
            .all(|h| tone_seconds(&h.lock().unwrap().pcm) >= 1.0)
    })
    .await;
    // Both processes hold some of them: /metrics asked over fresh connections is answered by
    // either, and the two counts add up to 40.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(common::metric(ea, "listeners"));
    }
    stop.store(true, Ordering::Relaxed);
    println!("listeners per process, as /metrics answered: {seen:?}");
    let counts: Vec<u64> = seen.into_iter().collect();
    let both = match counts.as_slice() {
        [a, b] => a + b == 40 && *a > 0,
        [a] => *a == 20,
        _ => false,
    };
    assert!(both, "{counts:?}");
    for h in &heard {
        assert_eq!(lost(&h.lock().unwrap().seqs), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_finds_each_rooms_origin_in_the_registry() {
    // On a Redis Cluster of three servers: configuration alone (`redis+cluster://`).
    let redis = tribune_testkit::RedisCluster::start(3);
    let redis_url = redis.url();
    let (o1, o2, ea) = (free_addr(), free_addr(), free_addr());
    let with_redis = ["--redis", redis_url.as_str()];
    let _first = origin_with(o1, None, &with_redis);
    let _second = origin_with(o2, None, &with_redis);
    let _edge = edge_via_registry(ea, &redis_url);
    let a = api(ea);
    let stop = Arc::new(AtomicBool::new(false));
    let mut heard = Vec::new();
    let mut rooms = Vec::new();
    for origin in [o1, o2] {
        let (room, host) = create_room(&api(origin)).await;
        rooms.push((room.clone(), host.clone()));
        tokio::spawn(speaker(
            format!("ws://{origin}/api/rooms/{room}/speak?token={host}"),
            stop.clone(),
        ));
        // The origin named itself when it created the room: the edge finds it at once.
        let joined = join(&a, &room).await;
        let h = Arc::new(Mutex::new(Heard::default()));
        tokio::spawn(listener(
            listen_url(ea, &room, &joined),
            h.clone(),
            stop.clone(),
        ));
        heard.push(h);
    }
    wait_for("both rooms heard through the one edge", 20, || {
        heard
            .iter()
            .all(|h| tone_seconds(&h.lock().unwrap().pcm) >= 2.0)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for h in &heard {
        let h = h.lock().unwrap();
        assert_eq!(lost(&h.seqs), 0);
        assert!((tone_hz(&h.pcm) - 440.0).abs() <= 10.0);
    }
    // A join asked of the origin that does not run the room is sent on to the one that does:
    // any node answers a join. So is a stage request (a speaker minted there).
    let (first_room, first_host) = rooms[0].clone();
    let other = api(o2);
    let joined = join(&other, &first_room).await;
    assert!(
        joined["listen_url"]
            .as_str()
            .is_some_and(|u| u.contains(&first_room)),
        "{joined}"
    );
    let (code, minted) = other
        .call(
            "POST",
            &format!("/api/rooms/{first_room}/speakers"),
            Some(&first_host),
            json!({}),
        )
        .await;
    assert_eq!(code, 201, "{minted}");
    assert!(common::metric(o2, "forwarded_total") >= 2);
    // A room no origin runs: 404 from the edge and from an origin, not a hang.
    let (code, _) = a
        .call("POST", "/api/rooms/abcdefghjk/join", None, json!({}))
        .await;
    assert_eq!(code, 404);
    let (code, _) = other
        .call("POST", "/api/rooms/abcdefghjk/join", None, json!({}))
        .await;
    assert_eq!(code, 404);
    assert_eq!(common::metric(ea, "rooms_pulled"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_takes_over_the_room_of_an_origin_that_died() {
    let redis = Redis::start();
    let redis_url = redis.url();
    let (o1, o2, ea) = (free_addr(), free_addr(), free_addr());
    let with_redis = ["--redis", redis_url.as_str()];
    let mut first = origin_with(o1, None, &with_redis);
    let _second = origin_with(o2, None, &with_redis);
    let _edge = edge_via_registry(ea, &redis_url);
    let (one, two, a) = (api(o1), api(o2), api(ea));
    let (room, host) = create_room(&one).await;
    // A listener blocked on the first origin: the block must survive the move.
    let blocked = join(&a, &room).await;
    let (code, answer) = one
        .call(
            "POST",
            &format!(
                "/api/rooms/{room}/listeners/{}/remove",
                blocked["listener_id"]
            ),
            Some(&host),
            json!({"block": true}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{o1}/api/rooms/{room}/speak?token={host}"),
        stop.clone(),
    ));
    let joined = join(&a, &room).await;
    let heard = Arc::new(Mutex::new(Heard::default()));
    tokio::spawn(listener(
        listen_url(ea, &room, &joined),
        heard.clone(),
        stop.clone(),
    ));
    wait_for("tone through the edge", 20, || {
        tone_seconds(&heard.lock().unwrap().pcm) >= 1.0
    })
    .await;
    // The second origin does not run a room the first one holds.
    assert_eq!(get_bytes(&two, &format!("/api/rooms/{room}")).await.0, 404);

    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let killed = Instant::now();
    // Its lease (10 s) runs out, then the second origin finds the room without an origin
    // twice (2 s apart) and takes it over from its record in Redis.
    wait_for("the room taken over by the other origin", 30, || {
        common::metric(o2, "rooms_taken_over_total") == 1
    })
    .await;
    let took = killed.elapsed();
    println!(
        "room taken over {:.1} s after its origin died",
        took.as_secs_f64()
    );
    assert!(
        took >= Duration::from_secs(9),
        "{took:?}: before the lease ran out"
    );
    let (code, info) = two
        .call("GET", &format!("/api/rooms/{room}"), None, json!({}))
        .await;
    assert_eq!(code, 200, "{info}");
    assert_eq!(info["title"], "cluster");
    assert_eq!(info["state"], "live");
    assert_eq!(
        upgrade_status(&listen_url(o2, &room, &blocked), None).await,
        403
    );
    // The host's token (signed with the cluster's secret) speaks on the new origin.
    let again = Arc::new(AtomicBool::new(false));
    tokio::spawn(speaker(
        format!("ws://{o2}/api/rooms/{room}/speak?token={host}"),
        again.clone(),
    ));
    let (tone_before, frames_before) = {
        let h = heard.lock().unwrap();
        (tone_seconds(&h.pcm), h.seqs.len())
    };
    wait_for(
        "tone again through the edge, from the new origin",
        20,
        || tone_seconds(&heard.lock().unwrap().pcm) >= tone_before + 2.0,
    )
    .await;
    // The first origin back: the room stays where it is now.
    let _first_back = origin_with(o1, None, &with_redis);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(get_bytes(&one, &format!("/api/rooms/{room}")).await.0, 404);
    assert_eq!(common::metric(o1, "rooms"), 0);
    stop.store(true, Ordering::Relaxed);
    again.store(true, Ordering::Relaxed);
    let h = heard.lock().unwrap();
    // The edge kept the listener's connection through the move; numbers only went up.
    assert_eq!(h.closed, None);
    assert!(h.seqs.len() > frames_before);
    assert!(h.seqs.windows(2).all(|w| w[1] > w[0]));
    let hz = tone_hz(&h.pcm);
    assert!((hz - 440.0).abs() <= 10.0, "{hz} Hz");
    assert!(common::metric(ea, "pull_reconnects_total") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_lets_go_of_a_room_another_origin_holds() {
    let redis = Redis::start();
    let redis_url = redis.url();
    let oa = free_addr();
    let _origin = origin_with(oa, None, &["--redis", redis_url.as_str()]);
    let o = api(oa);
    let (room, host) = create_room(&o).await;
    // A speaker on stage: told to reconnect when the room moves, not left talking to nobody.
    let (mut speaking, _) =
        tokio_tungstenite::connect_async(format!("ws://{oa}/api/rooms/{room}/speak?token={host}"))
            .await
            .expect("speak");
    let closed = tokio::spawn(async move {
        use futures_util::StreamExt;
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            match tokio::time::timeout(Duration::from_millis(500), speaking.next()).await {
                Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f)))) => {
                    return f.map(|f| u16::from(f.code));
                }
                Ok(None | Some(Err(_))) => return None,
                _ => {}
            }
        }
        None
    });
    let cli = |args: &[&str]| redis.cli(args);
    let record = format!("tribune:room:{{{room}}}");
    wait_for("the room's record stored", 10, || {
        cli(&["EXISTS", &record]) == "1"
    })
    .await;
    // Another origin holds the room now (as if this one's lease had run out while it could not
    // reach Redis, and the other had taken the room over).
    let lease = format!("{record}:origin");
    assert_eq!(
        cli(&["SET", &lease, "http://127.0.0.9:1", "PX", "60000"]),
        "OK"
    );
    let rev = cli(&["HGET", &record, "rev"]);
    wait_for("the room let go", 10, || {
        common::metric(oa, "rooms_handed_over_total") == 1
    })
    .await;
    assert_eq!(get_bytes(&o, &format!("/api/rooms/{room}")).await.0, 404);
    // It writes nothing more to the record, and does not claim the room back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cli(&["HGET", &record, "rev"]), rev);
    assert_eq!(cli(&["GET", &lease]), "http://127.0.0.9:1");
    assert_eq!(closed.await.unwrap(), Some(1012));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_moves_its_rooms_from_its_disk_into_redis_once() {
    let data = tempfile::tempdir().unwrap();
    let oa = free_addr();
    // Rooms kept on the origin's own disk (a lone origin, before the cluster shared them).
    let mut alone = origin(oa, Some(data.path()));
    let (room, _host) = create_room(&api(oa)).await;
    alone.0.kill().unwrap();
    alone.0.wait().unwrap();
    drop(alone);
    let redis = Redis::start();
    let _shared = origin_with(oa, Some(data.path()), &["--redis", redis.url().as_str()]);
    let o = api(oa);
    assert_eq!(redis.cli(&["SMEMBERS", "tribune:rooms:{index}"]), room);
    // No origin holds it yet: taken up as any such room is, after two looks (until then its
    // recording answers for it, as an ended room's does).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, info) = o
            .call("GET", &format!("/api/rooms/{room}"), None, json!({}))
            .await;
        if code == 200 && info["state"] == "live" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the imported room never ran: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        redis.cli(&["GET", &format!("tribune:room:{{{room}}}:origin")]),
        format!("http://{oa}")
    );
    // Once: the file is set aside, so a room later removed from Redis never comes back from it.
    assert!(!data.path().join("rooms.sqlite3").exists());
    assert!(data.path().join("rooms.sqlite3.imported").exists());
}

/// An `Api` whose requests leave from `ip` (one of loopback's many addresses).
fn api_from(addr: SocketAddr, ip: [u8; 4]) -> Api {
    Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap(),
        base: format!("http://{addr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_raises_through_an_edge_count_per_listener_address_at_the_origin() {
    let (oa, ea) = (free_addr(), free_addr());
    let _origin = origin(oa, None);
    let _edge = edge(ea, oa);
    let (room, _host) = create_room(&api(oa)).await;
    // Listeners from one address ask to speak through the edge: the origin allows an address
    // three at once (six a minute), so the fourth from it is refused, although it claims another
    // address in the header edges use (it has no relay token to vouch for it).
    let crowded = api_from(ea, [127, 0, 0, 2]);
    for i in 0..4 {
        let joined = join(&crowded, &room).await;
        let ticket = joined["ticket"].as_str().unwrap().to_owned();
        let mut ask = crowded
            .http
            .post(format!("http://{ea}/api/rooms/{room}/requests"))
            .bearer_auth(&ticket)
            .json(&json!({"name": format!("L{i}")}));
        if i == 3 {
            ask = ask.header("x-tribune-client", "127.0.0.9");
        }
        let status = ask.send().await.unwrap().status().as_u16();
        assert_eq!(status, if i < 3 { 202 } else { 429 }, "ask {i}");
    }
    // A listener on the same edge from another address is not held back by them: the origin
    // counts the client, not the edge all of them came through.
    let other = api_from(ea, [127, 0, 0, 3]);
    let joined = join(&other, &room).await;
    let (code, answer) = other
        .call(
            "POST",
            &format!("/api/rooms/{room}/requests"),
            joined["ticket"].as_str(),
            json!({"name": "other"}),
        )
        .await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(common::metric(ea, "forwarded_total"), 5);
    // The listener's own view of its request, through the edge, is the origin's.
    let (code, answer) = other
        .call(
            "GET",
            &format!("/api/rooms/{room}/requests/me"),
            joined["ticket"].as_str(),
            json!({}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["state"], "pending");
}
