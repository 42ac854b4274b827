//! A writer process killed (SIGKILL) at arbitrary moments while it rewrites a room in SQLite as
//! fast as it can: every time, the room reads back whole, at the last revision the writer saw
//! stored or the one it was writing, and the writer carries on from there.

mod common;

use tribune_store::SqliteStore;

const ENV: &str = "TRIBUNE_TORN_WRITE_DIR";
const ROOM: &str = "tarnwrte22";

/// The writer (a child process of the test below; does nothing when run on its own).
#[test]
fn writer() {
    let Some(dir) = std::env::var_os(ENV) else {
        return;
    };
    let store = SqliteStore::open_dir(dir.as_ref()).expect("open");
    common::write_until_killed(&store, ROOM);
}

#[test]
fn a_write_killed_midway_leaves_one_revision_or_the_other() {
    if std::env::var_os(ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_str().expect("utf-8 temp dir").to_owned();
    let last = common::kill_writers(
        (ENV, &path),
        &|| Box::new(SqliteStore::open_dir(dir.path()).expect("reopen after kill")),
        ROOM,
        &[60, 170, 290, 410, 530, 650, 770, 890],
    );
    assert!(last > 8, "the writer wrote {last} revisions in all");
}
