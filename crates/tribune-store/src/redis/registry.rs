//! The cluster's node registry in Redis: one key per node, `PREFIX:node:{ID}`, holding its
//! entry as JSON with an expiry (the lease), renewed by each beat. A node that stops beating
//! (killed, cut off) is gone from every listing once its lease runs out.

use std::time::Duration;

use tribune_core::registry::{NodeEntry, NodeRegistry};
use tribune_core::StoreError;

use super::conn::Conn;
use super::RedisConfig;

/// Keys fetched per round trip when listing.
const LIST_CHUNK: usize = 200;

/// The node registry in Redis.
pub struct RedisRegistry {
    conn: Conn,
}

impl std::fmt::Debug for RedisRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRegistry")
            .field("prefix", &self.conn.cfg.prefix)
            .finish()
    }
}

impl RedisRegistry {
    /// Checks the settings and reaches the server once (`PING`).
    pub fn open(cfg: RedisConfig) -> Result<RedisRegistry, StoreError> {
        Ok(RedisRegistry {
            conn: Conn::open(cfg)?,
        })
    }

    /// Checks the settings only: a node starts while Redis is away, and beats once it is back.
    pub fn lazy(cfg: RedisConfig) -> Result<RedisRegistry, StoreError> {
        Ok(RedisRegistry {
            conn: Conn::new(cfg)?,
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}:node:{{{id}}}", self.conn.cfg.prefix)
    }
}

impl NodeRegistry for RedisRegistry {
    fn beat(&self, me: &NodeEntry, lease: Duration) -> Result<(), StoreError> {
        let key = self.key(&me.id);
        let json = serde_json::to_string(me).map_err(|e| StoreError::Backend(e.to_string()))?;
        let ms = lease.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        self.conn.call(|c| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("PX")
                .arg(ms)
                .query::<()>(c)
        })
    }

    fn nodes(&self) -> Result<Vec<NodeEntry>, StoreError> {
        let pattern = format!("{}:node:*", self.conn.cfg.prefix);
        let keys: Vec<String> = self.conn.call(|c| {
            let mut keys = Vec::new();
            let mut cursor = 0u64;
            loop {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(LIST_CHUNK)
                    .query(c)?;
                keys.extend(batch);
                if next == 0 {
                    return Ok(keys);
                }
                cursor = next;
            }
        })?;
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(LIST_CHUNK) {
            let values: Vec<Option<String>> =
                self.conn.call(|c| redis::cmd("MGET").arg(chunk).query(c))?;
            // An entry that expired between the scan and the read is simply gone; one that
            // does not parse (another version, damage) is skipped, not fatal.
            out.extend(
                values
                    .into_iter()
                    .flatten()
                    .filter_map(|j| serde_json::from_str::<NodeEntry>(&j).ok()),
            );
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn leave(&self, id: &str) -> Result<(), StoreError> {
        let key = self.key(id);
        self.conn
            .call(|c| redis::cmd("DEL").arg(&key).query::<u64>(c))
            .map(|_| ())
    }
}
