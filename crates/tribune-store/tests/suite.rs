//! The room store suite against SQLite, and the file checks at open time.

use std::path::Path;

use tribune_core::store::suite;
use tribune_core::{RoomStore, StoreError};
use tribune_store::{OpenError, SqliteStore, FILE_NAME};

#[test]
fn passes_the_store_suite() {
    let dirs = std::cell::RefCell::new(Vec::new());
    suite::run_all(&|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        dirs.borrow_mut().push(dir);
        Box::new(store)
    });
}

#[test]
fn records_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = suite::busy_room("reapenaaa2", 42);
    {
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        store.put(&room).expect("put");
    }
    let store = SqliteStore::open_dir(dir.path()).expect("reopen");
    assert_eq!(store.get(room.id()), Ok(Some(room.clone())));
    assert_eq!(store.list(), Ok(vec![room]));
}

#[test]
fn a_record_that_does_not_parse_is_reported_not_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let room = suite::busy_room("damagedaa2", 1);
    {
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        store.put(&room).expect("put");
    }
    // Edited behind the store's back, as an operator's tool might.
    let conn = rusqlite::Connection::open(dir.path().join(FILE_NAME)).expect("open");
    conn.execute(
        "UPDATE rooms SET record = '{\"info\": 7}' WHERE id = 'damagedaa2'",
        [],
    )
    .expect("update");
    drop(conn);
    let store = SqliteStore::open_dir(dir.path()).expect("reopen");
    match store.get(room.id()) {
        Err(StoreError::Corrupt { room: key, .. }) => assert_eq!(key, "damagedaa2"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(store.list(), Err(StoreError::Corrupt { .. })));
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(FILE_NAME);
    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &junk).expect("write");
    let err = SqliteStore::open_dir(dir.path()).expect_err("refused");
    assert!(matches!(err, OpenError::NotADatabase { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("not a Tribune room database"), "{msg}");
    assert_eq!(bytes(&path), junk, "the file was changed");
}

#[test]
fn a_damaged_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(FILE_NAME);
    {
        let store = SqliteStore::open_dir(dir.path()).expect("open");
        for i in 0..300u64 {
            let id = format!(
                "dmgaaaa{}{}",
                b"abcdefgh"[(i / 64) as usize] as char,
                suite_id(i)
            );
            store.put(&suite::busy_room(&id, i)).expect("put");
        }
    }
    // Checkpointed into the main file on close; now scribble over the middle of it.
    let mut data = bytes(&path);
    assert!(data.len() > 16 * 4096, "{}", data.len());
    for b in &mut data[8 * 4096..12 * 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &data).expect("write");
    let _ = std::fs::remove_file(dir.path().join(format!("{FILE_NAME}-wal")));
    let err = SqliteStore::open_dir(dir.path()).expect_err("refused");
    assert!(matches!(err, OpenError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(bytes(&path), data, "the file was changed");
}

/// Two id characters for `i` (room ids allow no 0, 1, l or o).
fn suite_id(i: u64) -> String {
    const A: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let i = i as usize;
    format!("{}{}", A[(i / 32) % 32] as char, A[i % 32] as char)
}

#[test]
fn a_database_from_a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(FILE_NAME);
    {
        drop(SqliteStore::open_dir(dir.path()).expect("open"));
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", 9).expect("set");
    }
    let before = bytes(&path);
    let err = SqliteStore::open_dir(dir.path()).expect_err("refused");
    assert!(
        matches!(err, OpenError::NewerSchema { found: 9, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer Tribune"), "{err}");
    assert_eq!(bytes(&path), before, "the file was changed");
}

#[test]
fn a_data_dir_that_cannot_be_written_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A regular file where a directory should be: no one, root included, can create in it.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = SqliteStore::open_dir(&file.join("data")).expect_err("refused");
    assert!(matches!(err, OpenError::DirNotWritable { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
