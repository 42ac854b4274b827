//! Helpers of the binary's tests: free loopback ports, child processes that die with the test,
//! and the `tribune` command with its data directory kept out of the source tree.
#![allow(dead_code)]

pub mod live;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tribune");

/// A loopback address with a free port.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Waits (at most 10 s) until something accepts connections at `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child on drop so a failing test never leaves a server behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node serving on `addr` with its data in `data`, once it accepts connections.
pub fn serve(addr: SocketAddr, data: &std::path::Path) -> Proc {
    let p = Proc(
        tribune(&[
            "serve",
            "--listen",
            &addr.to_string(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .spawn()
        .unwrap(),
    );
    wait_listening(addr);
    p
}

/// The operator key servers started by these tests take, and room creations present.
pub const API_KEY: &str = "cli-test-operator-key-0123456789";

/// `tribune ARGS`; a server it starts keeps its data in a per-process temporary directory
/// unless the test passes `--data-dir`, and takes (like `room create`) the test operator key.
pub fn tribune(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    let data = std::env::temp_dir().join(format!("tribune-cli-test-{}", std::process::id()));
    c.args(args)
        .env("RUST_LOG", "warn")
        .env("TRIBUNE_DATA_DIR", data)
        .env("TRIBUNE_API_KEY", API_KEY);
    c
}

/// Runs `tribune ARGS` to success and parses its JSON output.
pub fn run_json(args: &[&str]) -> Value {
    let out = tribune(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain HTTP/1.1 GET over loopback: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = buf[split + 4..].to_vec();
    // Chunked bodies are not decoded: tests only read JSON and playlists sent with a length.
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, body)
}

/// `http_get` of a JSON document.
pub fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_get(addr, path);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// A plain HTTP/1.1 POST of a JSON body over loopback: (status, JSON answer).
pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    post_json_as(addr, path, None, body)
}

/// [`post_json`] with an `Authorization: Bearer` credential.
pub fn post_json_as(
    addr: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_slice(&buf[split + 4..]).unwrap_or(Value::Null),
    )
}

/// One gauge or counter from a node's `/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("tribune_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}
