//! A writer process killed (SIGKILL) at arbitrary moments while it rewrites a room as fast as
//! it can: every time, the room reads back whole, at the last revision the writer saw stored
//! or the one it was writing, and the writer carries on from there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tribune_core::store::suite;
use tribune_core::{RoomRecord, RoomStore};
use tribune_store::SqliteStore;

const ENV: &str = "TRIBUNE_TORN_WRITE_DIR";
const ROOM: &str = "tarnwrte22";

/// The record at revision `rev`: every part of it says which revision it is.
fn at(rev: u64) -> RoomRecord {
    let mut r = suite::busy_room(ROOM, 1);
    r.rev = rev;
    r.info.title = format!("revision {rev}");
    r.recording = rev.is_multiple_of(2);
    r.roster.rev = rev;
    r.roster.invites.truncate((rev % 2) as usize);
    r
}

/// The writer (a child process of the test below; does nothing when run on its own).
#[test]
fn writer() {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let store = SqliteStore::open_dir(dir.as_ref()).expect("open");
    let mut rev = store.get(&at(1).info.id).expect("get").map_or(0, |r| r.rev);
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && rev < 1_000_000 {
        rev += 1;
        store.put(&at(rev)).expect("put");
        writeln!(out, "stored {rev}").expect("stdout");
        out.flush().expect("flush");
    }
}

#[test]
fn a_write_killed_midway_leaves_one_revision_or_the_other() {
    if std::env::var_os(ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut last_seen = 0u64;
    for (round, delay_ms) in [60u64, 170, 290, 410, 530, 650, 770, 890]
        .iter()
        .enumerate()
    {
        let mut child = Command::new(&exe)
            .args(["--exact", "writer", "--nocapture", "--test-threads", "1"])
            .env(ENV, dir.path())
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
        let store = SqliteStore::open_dir(dir.path()).expect("reopen after kill");
        let got = store
            .get(&at(1).info.id)
            .expect("readable")
            .expect("stored");
        assert!(
            got.rev == acked || got.rev == acked + 1,
            "round {round}: stored revision {} after the writer saw {acked} stored",
            got.rev
        );
        assert_eq!(got, at(got.rev), "round {round}: a record mixing revisions");
        last_seen = got.rev;
    }
    assert!(
        last_seen > 8,
        "the writer wrote {last_seen} revisions in all"
    );
}
