//! Reactions on a real node: many listeners' reactions reach every listener as one summed event
//! per window, not one message per reaction; each reactor is rate limited; a listener may also
//! react over its listen WebSocket.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Reads a listener's events until told to stop (or 30 s): (events received, reaction counts
/// per window).
async fn collect_reactions(
    mut ws: common::Ws,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, HashMap<u64, Value>) {
    let (mut events, mut windows) = (0, HashMap::new());
    let cap = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::select! {
            m = tokio::time::timeout_at(cap, ws.next()) => m,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok(Some(Ok(msg))) = msg else { break };
        if let Message::Text(t) = msg {
            events += 1;
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(w) = v["reactions"]["window"].as_u64() {
                windows.insert(w, v["reactions"]["counts"].clone());
            }
        }
    }
    (events, windows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_aggregated_into_one_event_per_window() {
    let server = common::start().await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let mut tickets = Vec::new();
    let mut readers = Vec::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for _ in 0..20 {
        let (_, ticket, url) = common::join(&base, &room).await;
        let ws = common::try_ws(&url).await.unwrap();
        tickets.push(ticket);
        readers.push(tokio::spawn(collect_reactions(ws, stopped.clone())));
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let posting = std::time::Instant::now();
    let path = format!("/api/rooms/{room}/reactions");
    // 10 reactions per listener, 5 per second (the per-listener limit of a window).
    for _round in 0..2 {
        for (i, ticket) in tickets.iter().enumerate() {
            let kind = if i % 2 == 0 { "clap" } else { "heart" };
            for _ in 0..5 {
                // A window stretched by a loaded machine may still hold this listener's last
                // round: 429 then, and the reaction is sent again in the next window.
                loop {
                    let (s, v) = common::post(&base, &path, ticket, json!({ "kind": kind })).await;
                    match s {
                        202 => break,
                        429 => tokio::time::sleep(Duration::from_millis(200)).await,
                        _ => panic!("{s} {v}"),
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1_300)).await;
    }
    // About 2.6 s on a quiet machine; a loaded one may take longer, and spread the reactions
    // over more windows (each a second).
    let slack = posting.elapsed().as_secs().saturating_sub(3) as usize;
    // Every window holding a reaction has closed and gone out 2 s later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.send(true).unwrap();
    for (i, reader) in readers.into_iter().enumerate() {
        let (events, windows) = reader.await.unwrap();
        if i == 0 {
            println!(
                "200 reactions: {events} events, {} reaction windows",
                windows.len()
            );
        }
        let mut sum: HashMap<String, u64> = HashMap::new();
        for counts in windows.values() {
            for (k, n) in counts.as_object().unwrap() {
                *sum.entry(k.clone()).or_default() += n.as_u64().unwrap();
            }
        }
        assert_eq!(
            sum,
            HashMap::from([("clap".to_owned(), 100), ("heart".to_owned(), 100)])
        );
        assert!(
            (2..=4 + slack).contains(&windows.len()),
            "{} windows",
            windows.len()
        );
        assert!(
            events <= 12 + slack,
            "200 reactions cost {events} events per listener, not 200"
        );
    }
    assert_eq!(common::metric(&base, "reactions_total").await, 200);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_rate_limited_and_also_taken_over_the_listen_socket() {
    let server = common::start().await;
    let base = server.url();
    let (room, host) = common::create_room(&base).await;
    let (_, ticket, url) = common::join(&base, &room).await;
    let path = format!("/api/rooms/{room}/reactions");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(
            common::post(&base, &path, &ticket, json!({"kind": "laugh"}))
                .await
                .0,
        );
    }
    let accepted = statuses.iter().filter(|&&s| s == 202).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    // At most 5 per window, and 12 quick requests span at most two windows.
    assert_eq!(accepted + refused, 12, "{statuses:?}");
    assert!((5..=10).contains(&accepted), "{statuses:?}");
    assert_eq!(
        common::metric(&base, "reactions_refused_total").await,
        refused as u64
    );
    let (s, v) = common::post(&base, &path, &host, json!({"kind": "boo"})).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_request")));

    let mut ws = common::try_ws(&url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ws.send(Message::Text(r#"{"type":"reaction","kind":"fire"}"#.into()))
        .await
        .unwrap();
    let e = common::wait_event(&mut ws, |e| e["reactions"]["counts"]["fire"] == 1).await;
    assert!(e["reactions"]["window"].is_u64());
    server.shutdown().await.unwrap();
}
