//! What the store tests share: the torn-write check, run the same way against every backend. A
//! writer process rewrites one room as fast as it can and is killed (SIGKILL) at set moments;
//! every time, the room must read back whole, at the last revision the writer saw stored or the
//! one it was writing, and the next writer carries on from there.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tribune_core::store::suite;
use tribune_core::{RoomRecord, RoomStore};

/// The record of `room` at revision `rev`: every part of it says which revision it is.
pub fn at(room: &str, rev: u64) -> RoomRecord {
    let mut r = suite::busy_room(room, 1);
    r.rev = rev;
    r.info.title = format!("revision {rev}");
    r.recording = rev.is_multiple_of(2);
    r.roster.rev = rev;
    r.roster.invites.truncate((rev % 2) as usize);
    r
}

/// The writer's loop (in the child process): from the stored revision on, writes the next one
/// and prints `stored N`, for up to 20 s.
pub fn write_until_killed(store: &dyn RoomStore, room: &str) {
    let mut rev = store
        .get(&at(room, 1).info.id)
        .expect("get")
        .map_or(0, |r| r.rev);
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && rev < 1_000_000 {
        rev += 1;
        store.put(&at(room, rev)).expect("put");
        writeln!(out, "stored {rev}").expect("stdout");
        out.flush().expect("flush");
    }
}

/// Runs this test binary's test `writer` with `env` set, kills it `delays_ms` after it started
/// writing (one writer per delay), and checks the room through a store from `open` after each
/// kill. Returns the last revision read back.
pub fn kill_writers(
    env: (&str, &str),
    open: &dyn Fn() -> Box<dyn RoomStore>,
    room: &str,
    delays_ms: &[u64],
) -> u64 {
    let exe = std::env::current_exe().expect("test binary");
    let mut last_seen = 0u64;
    for (round, delay_ms) in delays_ms.iter().enumerate() {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer", "--nocapture", "--test-threads", "1"])
            .env(env.0, env.1)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(n) = line
                    .strip_prefix("stored ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let _ = tx.send(n);
                }
            }
        });
        // Wait for the writer to be writing, then kill it at some moment of its loop.
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("writer started");
        std::thread::sleep(Duration::from_millis(*delay_ms));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        reader.join().expect("reader");
        let acked = rx.try_iter().last().unwrap_or(first);
        assert!(
            first > last_seen,
            "round {round}: carried on from {last_seen}, wrote {first}"
        );
        let store = open();
        let got = store
            .get(&at(room, 1).info.id)
            .expect("readable")
            .expect("stored");
        assert!(
            got.rev == acked || got.rev == acked + 1,
            "round {round}: stored revision {} after the writer saw {acked} stored",
            got.rev
        );
        assert_eq!(
            got,
            at(room, got.rev),
            "round {round}: a record mixing revisions"
        );
        last_seen = got.rev;
    }
    last_seen
}
