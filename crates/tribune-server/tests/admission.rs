//! Admission over real HTTP: the waiting room beyond capacity (FIFO, positions that never go
//! up, admission in order as seats free), queue tickets that cannot be forged, resumes that skip
//! the queue, and proof of work under attack.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_core::admission::{solve, GateConfig, QueueTicket};
use tribune_core::{Keyring, RoomId};
use tribune_server::admission::AdmissionConfig;
use tribune_server::{RunningServer, ServerConfig};

const SECRET: &[u8] = b"admission-test-secret";

async fn node(admission: AdmissionConfig) -> RunningServer {
    common::start_with(ServerConfig {
        keys: Keyring::new("k1", SECRET.to_vec()),
        admission,
        ..ServerConfig::default()
    })
    .await
}

fn capacity(max_listeners: u64) -> AdmissionConfig {
    AdmissionConfig {
        gate: GateConfig {
            max_listeners,
            join_rate: 1000,
            join_burst: 1000,
            call_hold_s: 10,
            connect_hold_s: 5,
        },
        ..AdmissionConfig::default()
    }
}

/// `POST …/join` with a JSON body: (status, Retry-After, body).
async fn join_with(base: &str, room: &str, body: Value) -> (u16, Option<u64>, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/rooms/{room}/join"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn wait_listeners(base: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while common::metric(base, "listeners").await != n {
        assert!(Instant::now() < deadline, "listeners never reached {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_capacity_joins_wait_in_order_and_enter_as_seats_free() {
    let server = node(capacity(3)).await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let mut seated = Vec::new();
    for _ in 0..3 {
        seated.push(common::open_listener(&server, &room).await);
    }
    wait_listeners(&base, 3).await;

    // Five more: each queued, in arrival order, told when to come back.
    let mut queue = Vec::new();
    for want in 1..=5u64 {
        let (status, retry, v) = join_with(&base, &room, json!({})).await;
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["position"], want, "{v}");
        assert!(v["eta_s"].is_u64());
        assert!(retry.is_some_and(|s| (1..=5).contains(&s)));
        queue.push(v["queue_ticket"].as_str().unwrap().to_owned());
    }
    // Coming back changes nothing while the node is full: positions never go up.
    for round in 0..3 {
        for (i, q) in queue.iter().enumerate() {
            let (status, _, v) = join_with(&base, &room, json!({"queue_ticket": q})).await;
            assert_eq!(
                (status, v["position"].as_u64()),
                (202, Some(i as u64 + 1)),
                "round {round}"
            );
        }
    }
    let before = server.state.admission().stats();

    // Two leave: the first two in line are let in, in order; the third is now first.
    seated.truncate(1);
    wait_listeners(&base, 1).await;
    let (status, _, v) = join_with(&base, &room, json!({"queue_ticket": queue[2]})).await;
    assert_eq!((status, v["position"].as_u64()), (202, Some(1)), "{v}");
    for q in &queue[..2] {
        let (status, _, v) = join_with(&base, &room, json!({"queue_ticket": q})).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["listen_url"].is_string());
    }
    let after = server.state.admission().stats();
    assert_eq!(after.admitted, before.admitted + 2);
    // A fresh join goes behind those still waiting.
    let (status, _, v) = join_with(&base, &room, json!({})).await;
    assert_eq!((status, v["position"].as_u64()), (202, Some(4)), "{v}");
    assert!(common::metric(&base, "joins_queued_total").await >= 5 + 15 + 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_tickets_are_refused_without_touching_the_queue() {
    let server = node(capacity(0)).await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let (status, _, v) = join_with(&base, &room, json!({})).await;
    assert_eq!(status, 202);
    let good = v["queue_ticket"].as_str().unwrap().to_owned();
    let before = server.state.admission().stats();

    let room_id = RoomId::parse(&room).unwrap();
    let keys = Keyring::new("k1", SECRET.to_vec());
    let far = u64::MAX / 2;
    let (body, sig) = good.split_once('.').unwrap();
    let forged = format!("{}A.{sig}", &body[..body.len() - 1]);
    let cases = [
        ("forged", forged),
        ("expired", QueueTicket::issue(&keys, &room_id, 0, 1)),
        (
            "wrong room",
            QueueTicket::issue(&keys, &RoomId::random(), 0, far),
        ),
        (
            "wrong key",
            QueueTicket::issue(&Keyring::new("k1", b"another".to_vec()), &room_id, 0, far),
        ),
        (
            "unknown key",
            QueueTicket::issue(&Keyring::new("k9", SECRET.to_vec()), &room_id, 0, far),
        ),
        ("garbage", "not a ticket".to_owned()),
    ];
    for (what, ticket) in cases {
        let (status, _, v) = join_with(&base, &room, json!({"queue_ticket": ticket})).await;
        assert_eq!(status, 403, "{what}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A listen ticket is not a queue ticket either.
    let (status, _, _) =
        join_with(&base, &room, json!({"queue_ticket": good.clone(), "x": 1})).await;
    assert_eq!(status, 400);
    assert_eq!(server.state.admission().stats(), before);
    // The real one still holds its place.
    let (status, _, v) = join_with(&base, &room, json!({"queue_ticket": good})).await;
    assert_eq!((status, v["position"].as_u64()), (202, Some(1)));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_with_a_listen_ticket_skips_the_queue() {
    let server = node(capacity(1)).await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let (id, ticket, _) = common::join(&base, &room).await;
    let (status, _, _) = join_with(&base, &room, json!({})).await;
    assert_eq!(status, 202, "the node is full");
    let (status, _, v) = join_with(&base, &room, json!({"ticket": ticket})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["listener_id"].to_string(), id, "same listener");
    // Someone else's listen ticket for another room is refused.
    let (other, _) = common::create_room(&base).await;
    let (status, _, _) = join_with(&base, &other, json!({"ticket": ticket})).await;
    assert_eq!(status, 403);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_attack_joins_need_proof_of_work() {
    let server = node(AdmissionConfig {
        pow_threshold: 5,
        pow_cool_down_s: 2,
        ..AdmissionConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    // A burst beyond the threshold within one second turns proof of work on.
    let mut challenge = None;
    for _ in 0..20 {
        let (status, _, v) = join_with(&base, &room, json!({})).await;
        if status == 401 {
            assert_eq!(v["error"], "proof_of_work_required");
            challenge = Some((
                v["challenge"].as_str().unwrap().to_owned(),
                v["bits"].as_u64().unwrap(),
            ));
            break;
        }
        assert_eq!(status, 200);
    }
    let (c, bits) = challenge.expect("a challenge under attack");
    assert!((8..=24).contains(&bits), "{bits} bits");
    let nonce = solve(&c, bits as u8, 1 << 26).expect("solvable");
    let proof = json!({"pow": {"challenge": c, "nonce": nonce}});
    let (status, _, v) = join_with(&base, &room, proof.clone()).await;
    assert_eq!(status, 200, "{v}");
    // The same proof again, and a wrong nonce: refused.
    let (status, _, v) = join_with(&base, &room, proof).await;
    assert_eq!(status, 403, "{v}");
    let wrong = (0..)
        .find(|&n| tribune_core::admission::work_bits(&c, n) < bits as u32)
        .unwrap();
    let (status, _, _) = join_with(
        &base,
        &room,
        json!({"pow": {"challenge": c, "nonce": wrong}}),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(common::metric(&base, "pow_accepted_total").await, 1);
    assert_eq!(common::metric(&base, "pow_refused_total").await, 2);
    // After the attack (calm for the cool-down), joins need no proof again.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let (status, _, v) = join_with(&base, &room, json!({})).await;
    assert_eq!(status, 200, "{v}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_waits_in_line_and_solves_proofs() {
    let server = node(capacity(1)).await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let seated = common::open_listener(&server, &room).await;
    wait_listeners(&base, 1).await;
    let api = tribune_client::Api::new(&base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    let waiting = tokio::spawn({
        let (api, room) = (api.clone(), room.clone());
        async move {
            let mut steps = Vec::new();
            let t = api
                .join_with(&room, &tribune_client::JoinPolicy::default(), |s| {
                    steps.push(s)
                })
                .await;
            (t, steps)
        }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(!waiting.is_finished(), "the node is full: the client waits");
    drop(seated);
    let (ticket, steps) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("admitted once the seat frees")
        .unwrap();
    assert!(ticket.unwrap().listen_url.contains("ticket="));
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, tribune_client::JoinStep::Queued { position: 1, .. })),
        "{steps:?}"
    );
    server.shutdown().await.unwrap();

    let server = node(AdmissionConfig {
        pow_threshold: 1,
        ..AdmissionConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let api = tribune_client::Api::new(&base)
        .unwrap()
        .with_api_key(Some(common::API_KEY.to_owned()));
    for _ in 0..4 {
        api.join(&room)
            .await
            .expect("admitted, with a proof when asked");
    }
    assert!(common::metric(&base, "pow_accepted_total").await >= 2);
    server.shutdown().await.unwrap();
}
