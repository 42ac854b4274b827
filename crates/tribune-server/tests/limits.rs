//! Connection-level limits over real sockets: the request-head timeout against slowloris, head
//! and body size, the bound on open connections, the per-address connection cap, per-address and
//! per-subnet join rates, and client addresses forwarded by trusted proxies.
//!
//! Client sockets are spread over 127.0.0.x source addresses (all of 127/8 is loopback on Linux).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tribune_server::config::LimitsConfig;
use tribune_server::{RunningServer, ServerConfig};

async fn node(limits: LimitsConfig) -> RunningServer {
    common::start_with(ServerConfig {
        limits,
        ..ServerConfig::default()
    })
    .await
}

fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A TCP connection to `addr` from the loopback address `src`.
async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server closes `s` within `within` (EOF or reset), reading and discarding data.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// `POST …/join` from `src`, with an optional `X-Forwarded-For`: (status, Retry-After, body).
async fn join_from(
    base: &str,
    room: &str,
    src: Ipv4Addr,
    forwarded: Option<&str>,
) -> (u16, Option<u64>, Value) {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(src))
        .build()
        .unwrap();
    let mut req = client.post(format!("{base}/api/rooms/{room}/join"));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

/// Sends `request` on a fresh connection from `src` and reads the whole answer: (status, text).
async fn raw_request(addr: SocketAddr, src: Ipv4Addr, request: &[u8]) -> (u16, String) {
    let mut s = connect_from(src, addr).await;
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

fn get_with_header(name: &str, value_len: usize) -> Vec<u8> {
    format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\n{name}: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(value_len)
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_by_the_header_timeout_while_joins_are_answered() {
    const N: usize = 1000;
    let timeout = Duration::from_secs(1);
    let server = node(LimitsConfig {
        header_read_timeout: timeout,
        ..LimitsConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;

    // Half send an unfinished head, half send nothing at all: both must be timed out.
    let started = Instant::now();
    let mut slow = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = connect_from(lo(2 + (i % 8) as u8), server.addr).await;
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(s);
    }
    let opened = started.elapsed();

    // Meanwhile a real listener is answered, and promptly.
    let t = Instant::now();
    let (status, _, v) =
        tokio::time::timeout(Duration::from_secs(1), join_from(&base, &room, lo(1), None))
            .await
            .expect("join answered within 1 s");
    assert_eq!(status, 200, "{v}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The slow connections were accepted (the node held them), not refused.
    // Read first, then checked only if the reading came before any timeout could close them.
    let open = common::metric(&base, "connections_open").await;
    if started.elapsed() < timeout {
        assert!(open > N as u64 / 2, "{open} open");
    }

    // Every one of them is closed by the timeout: not earlier than it, not much later.
    let closes = slow.iter_mut().map(|s| async move {
        let ok = closed_within(s, Duration::from_secs(6)).await;
        (ok, started.elapsed())
    });
    let results = futures_util::future::join_all(closes).await;
    let still_open = results.iter().filter(|(ok, _)| !ok).count();
    assert_eq!(still_open, 0, "{still_open} slow connections never closed");
    let last = results.iter().map(|r| r.1).max().unwrap();
    assert!(
        last >= timeout,
        "closed after {last:?}, before the {timeout:?} timeout"
    );
    assert!(
        last < opened + timeout + Duration::from_secs(3),
        "last closed after {last:?}"
    );
    // They were closed by the header timeout (counted as such), not by some other rule.
    assert!(common::metric(&base, "header_timeouts_total").await >= N as u64);
    assert_eq!(common::metric(&base, "connections_refused_total").await, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_head_is_closed_at_the_deadline_and_so_is_an_idle_keep_alive() {
    let server = node(LimitsConfig {
        header_read_timeout: Duration::from_secs(1),
        ..LimitsConfig::default()
    })
    .await;
    // One byte every 100 ms does not extend the deadline.
    let mut s = connect_from(lo(1), server.addr).await;
    let t = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nX-Trickle: ")
        .await
        .unwrap();
    let closed = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"a").await.is_err() || t.elapsed() > Duration::from_secs(4) {
            break closed_within(&mut s, Duration::from_millis(200)).await;
        }
        if closed_within(&mut s, Duration::from_millis(1)).await {
            break true;
        }
    };
    assert!(closed, "trickled head still open after {:?}", t.elapsed());
    let at = t.elapsed();
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_secs(3),
        "{at:?}"
    );

    // A keep-alive connection that asked once and then idles is closed after the same time.
    let mut s = connect_from(lo(1), server.addr).await;
    // Before the request: the idle time starts later, once the answer is written.
    let t = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    assert!(
        !closed_within(&mut s, Duration::from_millis(500)).await,
        "closed while within the idle timeout"
    );
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_is_431_and_oversized_body_413() {
    let server = node(LimitsConfig {
        max_header_bytes: 8 * 1024,
        ..LimitsConfig::default()
    })
    .await;
    let (status, text) = raw_request(server.addr, lo(1), &get_with_header("X-Big", 9000)).await;
    assert_eq!(status, 431, "{text}");
    // hyper's own answer: no body, and the connection is not kept.
    assert!(text.contains("content-length: 0"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // Just under the limit is served.
    let (status, text) = raw_request(server.addr, lo(1), &get_with_header("X-Big", 7000)).await;
    assert_eq!(status, 200, "{text}");

    // Bodies: the configured 16 KiB limit answers 413 with the API's error body.
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let big = format!("{{\"ticket\": \"{}\"}}", "x".repeat(20 * 1024));
    let r = reqwest::Client::new()
        .post(format!("{base}/api/rooms/{room}/join"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "payload_too_large", "{v}");
    // A body within the limit gets past the limit (and is refused for what it says).
    let small = format!("{{\"ticket\": \"{}\"}}", "x".repeat(8 * 1024));
    let r = reqwest::Client::new()
        .post(format!("{base}/api/rooms/{room}/join"))
        .header("content-type", "application/json")
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_connection_cap_closes_the_excess_at_once() {
    let server = node(LimitsConfig {
        max_connections_per_ip: 3,
        header_read_timeout: Duration::from_secs(30),
        ..LimitsConfig::default()
    })
    .await;
    let base = server.url();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(lo(2), server.addr).await);
    }
    // The fourth from the same address is closed before it could say anything.
    let mut excess = connect_from(lo(2), server.addr).await;
    assert!(closed_within(&mut excess, Duration::from_secs(1)).await);
    assert_eq!(common::metric(&base, "connections_refused_total").await, 1);
    // The three are still open, and another address is served.
    for s in &mut held {
        assert!(!closed_within(s, Duration::from_millis(10)).await);
    }
    let (status, _) = raw_request(
        server.addr,
        lo(3),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);

    // When one closes, the address may connect again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    while common::metric(&base, "connections_open").await > 3 {
        assert!(
            Instant::now() < deadline,
            "closed connection never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = raw_request(
        server.addr,
        lo(2),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(common::metric(&base, "connections_refused_total").await, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_bound_the_node_waits_instead_of_accepting() {
    let server = node(LimitsConfig {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(30),
        ..LimitsConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(connect_from(lo(2 + i), server.addr).await);
    }
    // The fifth completes the TCP handshake (the kernel's backlog) but is not served...
    let mut fifth = connect_from(lo(9), server.addr).await;
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.read_to_end(&mut buf)).await;
    assert!(early.is_err(), "answered beyond the bound: {buf:?}");
    // ...until one of the four closes.
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(3), fifth.read_to_end(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_join_rate_answers_429_and_other_addresses_still_join() {
    let server = node(LimitsConfig {
        join_rate_per_ip: 1,
        join_burst_per_ip: 3,
        ..LimitsConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    for _ in 0..3 {
        let (status, _, v) = join_from(&base, &room, lo(1), None).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, retry, v) = join_from(&base, &room, lo(1), None).await;
    assert_eq!(status, 429, "{v}");
    assert_eq!(v["error"], "rate_limited", "{v}");
    assert_eq!(retry, Some(1));
    // Another address is not affected.
    let (status, _, v) = join_from(&base, &room, lo(2), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(common::metric(&base, "joins_rate_limited_total").await, 1);
    // Retry-After is honest: after it, the address joins again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (status, _, v) = join_from(&base, &room, lo(1), None).await;
    assert_eq!(status, 200, "{v}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subnet_join_rate_covers_every_address_of_the_24() {
    let server = node(LimitsConfig {
        join_rate_per_ip: 1,
        join_burst_per_ip: 3,
        join_rate_per_subnet: 1,
        join_burst_per_subnet: 4,
        ..LimitsConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    for _ in 0..3 {
        assert_eq!(join_from(&base, &room, lo(1), None).await.0, 200);
    }
    assert_eq!(join_from(&base, &room, lo(2), None).await.0, 200);
    // 127.0.0.2 and .3 still have their own tokens, but 127.0.0.0/24 has none left.
    for src in [lo(2), lo(3)] {
        let (status, retry, v) = join_from(&base, &room, src, None).await;
        assert_eq!(status, 429, "{v}");
        assert!(retry.is_some_and(|r| r >= 1), "{retry:?}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_are_limited_per_forwarded_client_and_others_cannot_forward() {
    let server = node(LimitsConfig {
        join_rate_per_ip: 1,
        join_burst_per_ip: 2,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..LimitsConfig::default()
    })
    .await;
    let base = server.url();
    let (room, _) = common::create_room(&base).await;
    let proxy = lo(1);
    // Through the proxy, one client's joins are counted under its own address...
    for _ in 0..2 {
        let (status, _, v) = join_from(&base, &room, proxy, Some("203.0.113.7")).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, _, v) = join_from(&base, &room, proxy, Some("203.0.113.7")).await;
    assert_eq!(status, 429, "{v}");
    // ...and a client cannot escape by writing another address to the left of what the
    // proxy appended.
    let (status, _, v) = join_from(&base, &room, proxy, Some("198.51.100.1, 203.0.113.7")).await;
    assert_eq!(status, 429, "{v}");
    // Other clients of the same proxy are not limited by it.
    for client in ["203.0.113.8", "192.0.2.1", "192.0.2.2"] {
        let (status, _, v) = join_from(&base, &room, proxy, Some(client)).await;
        assert_eq!(status, 200, "{client}: {v}");
    }

    // An untrusted peer's X-Forwarded-For is ignored: it is limited as itself.
    let peer = lo(2);
    let mut statuses = Vec::new();
    for client in ["192.0.2.10", "192.0.2.11", "192.0.2.12"] {
        statuses.push(join_from(&base, &room, peer, Some(client)).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(join_from(&base, &room, peer, None).await.0, 429);
    assert_eq!(common::metric(&base, "joins_rate_limited_total").await, 4);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_are_exempt_from_the_connection_cap() {
    let server = node(LimitsConfig {
        max_connections_per_ip: 1,
        header_read_timeout: Duration::from_secs(30),
        trusted_proxies: vec!["127.0.0.5/32".parse().unwrap()],
        ..LimitsConfig::default()
    })
    .await;
    let _a = connect_from(lo(5), server.addr).await;
    let _b = connect_from(lo(5), server.addr).await;
    let (status, _) = raw_request(
        server.addr,
        lo(5),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    // An ordinary address at the same cap gets one.
    let _c = connect_from(lo(6), server.addr).await;
    let mut d = connect_from(lo(6), server.addr).await;
    assert!(closed_within(&mut d, Duration::from_secs(1)).await);
    assert_eq!(
        common::metric(&server.url(), "connections_refused_total").await,
        1
    );
    server.shutdown().await.unwrap();
}
