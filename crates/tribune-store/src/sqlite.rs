//! Room records in SQLite: the durable store a node keeps under `--data-dir`.
//!
//! One file (`rooms.sqlite3`) in WAL mode with `synchronous = FULL`, so a `put` that returns
//! has reached the disk; each write is one transaction, so a process killed mid-write leaves
//! the room at the revision before or after it, never between. SQLite is compiled in (no
//! system library). A file that is not ours, damaged, or from a newer schema is refused with
//! a message naming it, and never touched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};
use tribune_core::store::{check_next, sort_records};
use tribune_core::{RoomId, RoomRecord, RoomStore, StoreError};

use crate::parse;

/// The database's file name inside the data directory.
pub const FILE_NAME: &str = "rooms.sqlite3";
/// The schema this build writes (SQLite's `user_version`); newer files are refused.
pub const SCHEMA_VERSION: i64 = 1;

/// Why a store could not be opened. Each names the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory cannot be created or written.
    #[error("{path}: the data directory cannot be written ({source}); pick another --data-dir or fix its permissions")]
    DirNotWritable {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file exists but is not an SQLite database.
    #[error("{path}: not a Tribune room database ({reason}); it was left as it is: move it aside or pick another --data-dir")]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The database fails its integrity check.
    #[error("{path}: the room database is damaged ({reason}); it was left as it is: restore a backup, or move it aside to start without the stored rooms")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The first problem found.
        reason: String,
    },
    /// Written by a newer Tribune.
    #[error("{path}: written by a newer Tribune (schema {found}; this build reads up to {SCHEMA_VERSION}); run that version or newer")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// Any other failure opening or preparing it.
    #[error("{path}: cannot open the room database: {reason}")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
}

/// Room records in one SQLite file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or creates) [`FILE_NAME`] in `dir`, creating the directory if needed.
    pub fn open_dir(dir: &Path) -> Result<SqliteStore, OpenError> {
        let not_writable = |source| OpenError::DirNotWritable {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(not_writable)?;
        // SQLite would only fail at the first write (or open read-only); say so up front.
        let probe = dir.join(".tribune-write-probe");
        std::fs::write(&probe, b"").map_err(not_writable)?;
        let _ = std::fs::remove_file(&probe);
        SqliteStore::open(&dir.join(FILE_NAME))
    }

    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, OpenError> {
        let fail = |e: rusqlite::Error| classify(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(fail)?;
        // SQLite falls back to read-only on a file it may not write, and every change would
        // then fail: refuse it now.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(fail)? {
            return Err(OpenError::Sqlite {
                path: path.to_path_buf(),
                reason: "the file cannot be written (read-only); fix its permissions".into(),
            });
        }
        // The first read of the header: a file that is not SQLite fails here, untouched.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(fail)?;
        if check != "ok" {
            return Err(OpenError::Corrupt {
                path: path.to_path_buf(),
                reason: check,
            });
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(fail)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Sqlite {
                path: path.to_path_buf(),
                reason: format!("journal mode {mode}, not WAL"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        if version == 0 {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS rooms (
                     id TEXT PRIMARY KEY NOT NULL,
                     rev INTEGER NOT NULL,
                     created_at INTEGER NOT NULL,
                     record TEXT NOT NULL
                 ) STRICT;
                 PRAGMA user_version = 1;
                 COMMIT;",
            )
            .map_err(fail)?;
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn backend(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Backend(format!("{}: {e}", self.path.display()))
    }
}

/// Sorts an SQLite failure at open time into what the operator is told.
fn classify(path: &Path, e: rusqlite::Error) -> OpenError {
    let path = path.to_path_buf();
    let reason = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path, reason },
        Some(ErrorCode::DatabaseCorrupt) => OpenError::Corrupt { path, reason },
        _ => OpenError::Sqlite { path, reason },
    }
}

impl RoomStore for SqliteStore {
    fn get(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let conn = self.conn.lock();
        let json: Option<String> = conn
            .query_row(
                "SELECT record FROM rooms WHERE id = ?1",
                params![room.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.backend(e))?;
        json.map(|j| parse(room.as_str(), &j)).transpose()
    }

    fn list(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare("SELECT id, record FROM rooms")
            .map_err(|e| self.backend(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.backend(e))?;
        let mut all = Vec::new();
        for row in rows {
            let (key, json) = row.map_err(|e| self.backend(e))?;
            all.push(parse(&key, &json)?);
        }
        sort_records(&mut all);
        Ok(all)
    }

    fn put(&self, record: &RoomRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Backend(format!("encoding room {}: {e}", record.id())))?;
        let rev = i64::try_from(record.rev)
            .map_err(|_| StoreError::Backend(format!("revision {} out of range", record.rev)))?;
        let created = i64::try_from(record.info.created_at).unwrap_or(i64::MAX);
        let mut conn = self.conn.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.backend(e))?;
        let stored: Option<i64> = tx
            .query_row(
                "SELECT rev FROM rooms WHERE id = ?1",
                params![record.id().as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.backend(e))?;
        check_next(
            record.id(),
            stored.map_or(0, |r| r.max(0) as u64),
            record.rev,
        )?;
        tx.execute(
            "INSERT INTO rooms (id, rev, created_at, record) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, created_at = excluded.created_at,
                 record = excluded.record",
            params![record.id().as_str(), rev, created, json],
        )
        .map_err(|e| self.backend(e))?;
        tx.commit().map_err(|e| self.backend(e))
    }

    fn remove(&self, room: &RoomId) -> Result<bool, StoreError> {
        let conn = self.conn.lock();
        let n = conn
            .execute("DELETE FROM rooms WHERE id = ?1", params![room.as_str()])
            .map_err(|e| self.backend(e))?;
        Ok(n > 0)
    }
}
