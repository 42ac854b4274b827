//! `tribune crowd` in Icecast mode against a fake HTTP stream server written here: Ogg pages
//! every 100 ms, one page missing, then silence (a stall).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tribune_crowd::icecast::{self, ogg, IcecastConfig};
use tribune_crowd::{PlanConfig, Scenario};

/// Audio pages sent per connection (sequence numbers 2..2 + PAGES), of which one is skipped.
const PAGES: u32 = 20;
/// The page left out.
const MISSING: u32 = 11;
/// Opus packets per page (100 ms of 20 ms packets).
const PACKETS: u16 = 5;

/// A flash crowd of `listeners` arriving at `ramp` a second, for `run`.
fn flash(listeners: u32, ramp: f64, run: Duration) -> PlanConfig {
    PlanConfig {
        scenario: Scenario::Flash,
        listeners,
        ramp_per_s: ramp,
        run,
        stay: Duration::from_secs(30),
        churn_every: Duration::from_secs(10),
        churn_gap: Duration::from_secs(1),
        flood: Default::default(),
    }
}

/// One listener of the fake server: the response head, the Opus headers, then `PAGES` audio
/// pages paced at the stream's rate (one missing), then nothing until the client leaves.
async fn serve_one(mut s: TcpStream) {
    let mut req = [0u8; 1024];
    let mut n = 0;
    while n < req.len() {
        match s.read(&mut req[n..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
        if req[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\n".to_vec();
    ogg::write_page(&mut out, ogg::BOS, 0, 42, 0, &[b"OpusHead\x01\x01"]);
    ogg::write_page(&mut out, 0, 0, 42, 1, &[b"OpusTags\0\0\0\0"]);
    if s.write_all(&out).await.is_err() {
        return;
    }
    let packet = [0xfcu8; 78];
    let packets: Vec<&[u8]> = vec![&packet; usize::from(PACKETS)];
    let start = tokio::time::Instant::now();
    for k in 0..PAGES {
        let seq = 2 + k;
        tokio::time::sleep_until(start + Duration::from_millis(100) * k).await;
        if seq == MISSING {
            continue;
        }
        out.clear();
        let granule = 4_800 * u64::from(k + 1);
        ogg::write_page(&mut out, 0, granule, 42, seq, &packets);
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
    // Silence until the listener hangs up.
    let _ = s.read(&mut req).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icecast_mode_counts_frames_loss_and_stalls_exactly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve_one(s));
        }
    });
    let n = 50u32;
    let report = icecast::run(
        IcecastConfig {
            url: format!("http://127.0.0.1:{port}/tribune.opus"),
            plan: flash(n, 100.0, Duration::from_secs(4)),
            server_pid: Some(std::process::id()),
            allow_remote: false,
            grace: Duration::from_secs(3),
        },
        |_| {},
    )
    .await
    .expect("crowd runs");
    server.abort();
    eprintln!("{}", tribune_crowd::report::table(&report));
    let n64 = u64::from(n);
    assert_eq!(report.listeners_connected, n64);
    assert_eq!((report.joins_ok, report.joins_failed), (n64, 0));
    assert_eq!(report.connect_failed, 0);
    // 19 pages of 5 packets each; the missing page is 5 packets lost.
    let pages = u64::from(PAGES - 1);
    assert_eq!(report.frames_received, n64 * pages * u64::from(PACKETS));
    assert_eq!(report.frames_lost, n64 * u64::from(PACKETS));
    assert_eq!(report.listeners_with_loss, n64);
    // Each listener: one sequence gap and one stall (silence after the last page).
    assert_eq!(report.skips, 2 * n64);
    assert_eq!(
        report.errors.get("icecast: stall (no byte for 1 s)"),
        Some(&n64)
    );
    assert_eq!((report.disconnects, report.resumes), (0, 0));
    // Pages are paced at the stream's rate: lateness stays small, and was measured.
    assert!(report.latency_ms.p50 < 100.0, "{:?}", report.latency_ms);
    assert!(report.join_ms.p99 > 0.0);
    assert!(report.server_cpu_pct.is_some());
}

#[tokio::test]
async fn a_mount_that_is_not_there_fails_clearly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let _ = s.write_all(b"HTTP/1.0 404 File Not Found\r\n\r\n").await;
        }
    });
    let err = icecast::run(
        IcecastConfig {
            url: format!("http://127.0.0.1:{port}/nothing.opus"),
            plan: flash(1, 1.0, Duration::from_secs(1)),
            server_pid: None,
            allow_remote: false,
            grace: Duration::from_secs(1),
        },
        |_| {},
    )
    .await
    .expect_err("a 404 mount is refused");
    assert!(err.to_string().contains("404"), "{err}");
    let remote = IcecastConfig {
        url: "http://192.0.2.1:8000/x.opus".into(),
        plan: flash(1, 1.0, Duration::from_secs(1)),
        server_pid: None,
        allow_remote: false,
        grace: Duration::from_secs(1),
    };
    let err = icecast::run(remote, |_| {})
        .await
        .expect_err("remote refused");
    assert!(err.to_string().contains("--icecast"), "{err}");
}
