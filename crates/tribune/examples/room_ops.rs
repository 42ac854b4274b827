//! Room creations and moderation actions per second against a running node, through its HTTP
//! API with `concurrency` requests in flight (what `bench/room-ops.sh` runs against a node with
//! its embedded store and one keeping rooms in memory).
//!
//! `cargo run --release -p tribune --example room_ops -- URL API_KEY ROOMS ACTIONS CONCURRENCY`
//! prints one JSON line: `{"rooms_per_s", "actions_per_s", "create_p50_ms", "action_p50_ms"}`.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

fn arg<T: std::str::FromStr>(i: usize, name: &str) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} ({name}) missing or malformed"))
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let base: String = arg(1, "URL");
    let key: String = arg(2, "API_KEY");
    let rooms: usize = arg(3, "ROOMS");
    let actions: usize = arg(4, "ACTIONS");
    let concurrency: usize = arg(5, "CONCURRENCY");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");

    // Room creations: each answered 201 only once the room is stored.
    let started = Instant::now();
    let created: Vec<(f64, Value)> = stream::iter(0..rooms)
        .map(|i| {
            let (http, base, key) = (http.clone(), base.clone(), key.clone());
            async move {
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/rooms"))
                    .bearer_auth(key)
                    .json(&json!({"title": format!("bench {i}")}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(resp.status(), 201);
                let body: Value = resp.json().await.expect("JSON");
                (t.elapsed().as_secs_f64() * 1000.0, body)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let create_s = started.elapsed().as_secs_f64();

    // Each room gets a speaker; then hosts mute and unmute them in turn, spread over the rooms.
    let stage: Vec<(String, String, String)> = stream::iter(created.iter().map(|(_, b)| b.clone()))
        .map(|room| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let id = room["id"].as_str().expect("id").to_owned();
                let host = room["host_token"].as_str().expect("token").to_owned();
                let resp = http
                    .post(format!("{base}/api/rooms/{id}/speakers"))
                    .bearer_auth(&host)
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("add speaker");
                assert_eq!(resp.status(), 201);
                let body: Value = resp.json().await.expect("JSON");
                let pid = body["participant_id"].to_string();
                (id, host, pid)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let started = Instant::now();
    let acted: Vec<f64> = stream::iter(0..actions)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            let (id, host, pid) = stage[i % stage.len()].clone();
            // Each room's actions alternate mute/unmute in order of issue.
            let muted = (i / stage.len()).is_multiple_of(2);
            async move {
                let t = Instant::now();
                let resp = http
                    .post(format!("{base}/api/rooms/{id}/participants/{pid}/mute"))
                    .bearer_auth(host)
                    .json(&json!({"muted": muted}))
                    .send()
                    .await
                    .expect("mute");
                assert_eq!(resp.status(), 200);
                t.elapsed().as_secs_f64() * 1000.0
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let act_s = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "rooms_per_s": rooms as f64 / create_s,
            "actions_per_s": actions as f64 / act_s,
            "create_p50_ms": p50(created.iter().map(|c| c.0).collect()),
            "action_p50_ms": p50(acted),
        })
    );
}
