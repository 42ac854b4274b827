//! `tribune crowd --icecast` from the command line: the flag set, and a short run against a
//! fake Ogg stream server (a thread per connection writing a few pages, then holding on).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::tribune;
use serde_json::Value;
use tribune_crowd::icecast::ogg;

/// Serves every connection: the response head, the Opus headers, 10 audio pages of 5 packets
/// (sequence 2..=11), then nothing until the listener leaves (at most 30 s).
fn fake_stream_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                let mut out = b"HTTP/1.0 200 OK\r\nContent-Type: audio/ogg\r\n\r\n".to_vec();
                ogg::write_page(&mut out, ogg::BOS, 0, 5, 0, &[b"OpusHead\x01\x01"]);
                ogg::write_page(&mut out, 0, 0, 5, 1, &[b"OpusTags\0\0\0\0"]);
                let packet = [0xfcu8; 60];
                let packets: Vec<&[u8]> = vec![&packet; 5];
                for k in 0..10u32 {
                    ogg::write_page(&mut out, 0, 4_800 * u64::from(k + 1), 5, 2 + k, &packets);
                }
                let _ = s.write_all(&out);
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let _ = s.read(&mut req);
            });
        }
    });
    addr
}

#[test]
fn crowd_icecast_flags_and_a_short_run() {
    let base = ["crowd", "--listeners", "1", "--seconds", "1"];
    let fails_with = |extra: &[&str], text: &str| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = tribune(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
    };
    let url = "http://127.0.0.1:9/tribune.opus";
    fails_with(&["--icecast", url, "--room", "r"], "cannot be used with");
    fails_with(
        &["--icecast", url, "--server", "http://127.0.0.1:1"],
        "cannot be used with",
    );
    fails_with(&[], "--room");
    fails_with(&["--icecast", "http://192.0.2.1:8000/x"], "--allow-remote");

    let addr = fake_stream_server();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("icecast.json");
    let out = tribune(&[
        "crowd",
        "--icecast",
        &format!("http://{addr}/tribune.opus"),
        "--listeners",
        "5",
        "--ramp",
        "50",
        "--seconds",
        "2",
        "--json",
        json.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("without --server-pid"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("stream lateness ms"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["listeners_connected"], 5);
    assert_eq!(r["joins_failed"], 0);
    assert_eq!(r["frames_received"], 5 * 10 * 5);
    assert_eq!(r["frames_lost"], 0);
    assert!(r["server_cpu_pct"].is_null());
}
