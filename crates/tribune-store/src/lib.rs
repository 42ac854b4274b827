//! Durable room stores: the [`RoomStore`](tribune_core::RoomStore) backends a node keeps its
//! rooms in. SQLite under `--data-dir` for a single node ([`SqliteStore`]); Redis for nodes that
//! share their rooms ([`RedisStore`]).

mod redis;
mod sqlite;

pub use crate::redis::{RedisConfig, RedisGate, RedisRegistry, RedisStore};
pub use sqlite::{OpenError, SqliteStore, FILE_NAME, SCHEMA_VERSION};

use tribune_core::{RoomRecord, StoreError};

/// Reads a stored record back; `key` names it in the error.
fn parse(key: &str, json: &str) -> Result<RoomRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        room: key.to_owned(),
        reason: e.to_string(),
    })
}
