//! A node never starts empty over rooms it cannot read: a data directory it cannot write, a
//! room database that is not one, is damaged, or comes from a newer Tribune stops it with a
//! message naming the file and the reason, and the file is left as it was.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_addr, tribune};

/// Starts a node on `data`; it must exit by itself with an error: its stderr.
fn refused(data: &Path) -> String {
    let mut child = tribune(&[
        "serve",
        "--listen",
        &free_addr().to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
    .stderr(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started on {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    err
}

/// Runs a node on `data` until it serves, then stops it: the room database exists.
fn first_start(data: &Path) {
    drop(common::serve(free_addr(), data));
}

#[test]
fn a_data_dir_that_cannot_be_written_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: nobody, root included, can write in it.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = refused(&file.join("data"));
    assert!(err.contains("not-a-dir"), "{err}");
}

#[test]
fn a_room_database_that_is_not_one_stops_the_node_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rooms.sqlite3");
    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&db, &junk).unwrap();
    let err = refused(dir.path());
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("not a Tribune room database"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), junk);
}

#[test]
fn a_room_database_from_a_newer_tribune_stops_the_node_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    first_start(dir.path());
    let db = dir.path().join("rooms.sqlite3");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let err = refused(dir.path());
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("newer Tribune"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn a_damaged_room_database_stops_the_node_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    first_start(dir.path());
    let db = dir.path().join("rooms.sqlite3");
    {
        // Enough rows for several pages, checkpointed into the main file.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE filler(x BLOB); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) \
             INSERT INTO filler SELECT randomblob(300) FROM n; \
             PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }
    let mut data = std::fs::read(&db).unwrap();
    assert!(data.len() > 16 * 4096, "{}", data.len());
    for b in &mut data[8 * 4096..12 * 4096] {
        *b ^= 0x5a;
    }
    std::fs::write(&db, &data).unwrap();
    let _ = std::fs::remove_file(dir.path().join("rooms.sqlite3-wal"));
    let err = refused(dir.path());
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), data);
}
