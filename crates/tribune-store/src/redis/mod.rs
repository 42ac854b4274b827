//! Room records in Redis: the store nodes share when rooms must be found from any of them.
//!
//! One hash per room, `PREFIX:room:{ID}` (fields `rev` and `record`, the record as JSON). The
//! braces are a Redis Cluster hash tag: whatever else is kept for a room (its origin's lease)
//! goes under keys with the same tag and lands on the same shard. The rooms' ids are also in a
//! set, `PREFIX:rooms:{index}` (added before a record is first written, taken out after it is
//! removed), so a listing reads that set rather than scanning every key of the server or of
//! every shard; an id whose record is not there (a write that failed) is passed over. A `put` is one Lua script
//! (compare the revision, then write), so two nodes racing on one room cannot both win and a
//! client that dies mid-write leaves the room at one revision or the other. A `put` whose reply
//! was lost with the connection is looked up on a new one: if the record it wrote is there, the
//! write succeeded.
//!
//! What "durable" means here is the server's setting, written down in docs/DEPLOY.md: with
//! `appendonly yes` and `appendfsync always` a `put` that returns has reached the server's
//! disk; with `wait_replicas` set, it has also reached that many replicas (`WAIT`). Every call
//! has a deadline (`timeout`): a Redis that hangs costs the caller an error, never a hang.

use std::time::Duration;

use tribune_core::store::sort_records;
use tribune_core::{RoomId, RoomRecord, RoomStore, StoreError};

mod aconn;
mod conn;
mod gate;
mod registry;

pub use gate::RedisGate;
pub use registry::RedisRegistry;

use crate::parse;
use conn::{Conn, Failed};

/// Compares the stored revision with the offered one (`ARGV[1]`) and writes the record
/// (`ARGV[2]`) if it is the next. Returns -1 when written, else the stored revision. With an
/// owner (`ARGV[3]`, not empty) it first checks the room's origin lease (`KEYS[2]`, the same
/// hash tag): -2 when another node holds it, so an origin that lost a room cannot overwrite the
/// record of the origin that took it over (a fenced write).
const PUT: &str = r#"
if ARGV[3] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if holder and holder ~= ARGV[3] then
    return -2
  end
end
local stored = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
local offered = tonumber(ARGV[1])
if stored + 1 ~= offered then
  return stored
end
redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'record', ARGV[2])
return -1
"#;

/// Keys fetched per round trip when listing.
const LIST_CHUNK: usize = 500;

/// Where and how to reach Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db`, `rediss://…` or `redis+unix:///path/to/socket`.
    pub url: String,
    /// Prefix of every key (letters, digits, `_`, `-`, `.`, `:`), so deployments can share a
    /// server.
    pub prefix: String,
    /// Deadline of every call (connect, read, write).
    pub timeout: Duration,
    /// Replicas that must hold a write before `put` returns (0: the primary's reply).
    pub wait_replicas: u32,
}

impl RedisConfig {
    /// `url` with the defaults: prefix `tribune`, 2 s deadline, no replica wait.
    pub fn new(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_owned(),
            prefix: "tribune".to_owned(),
            timeout: Duration::from_secs(2),
            wait_replicas: 0,
        }
    }
}

/// Room records in Redis.
pub struct RedisStore {
    conn: Conn,
    put: redis::Script,
    /// The node whose writes are fenced by rooms' origin leases (its URL), if any.
    owner: Option<String>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.conn.cfg.prefix)
            .finish()
    }
}

impl RedisStore {
    /// Checks the settings and reaches the server once (`PING`), so a wrong address or a
    /// server that is down stops a node at start with the reason.
    pub fn open(cfg: RedisConfig) -> Result<RedisStore, StoreError> {
        Ok(RedisStore {
            conn: Conn::open(cfg)?,
            put: redis::Script::new(PUT),
            owner: None,
        })
    }

    /// The same store writing for the origin at `url`: a write to a room whose origin lease
    /// names another node is refused ([`StoreError::Moved`]); a room with no lease (new, or
    /// lost with a Redis restarted empty) is written.
    pub fn fenced_by(self, url: &str) -> RedisStore {
        RedisStore {
            owner: Some(url.to_owned()),
            ..self
        }
    }

    /// The key naming a room's origin (written by the registry; beside the room's record).
    pub(crate) fn origin_key(prefix: &str, room: &str) -> String {
        format!("{prefix}:room:{{{room}}}:origin")
    }

    /// The key of a room's record.
    fn key(&self, room: &str) -> String {
        format!("{}:room:{{{room}}}", self.conn.cfg.prefix)
    }

    /// The set of the rooms' ids.
    fn index(&self) -> String {
        format!("{}:rooms:{{index}}", self.conn.cfg.prefix)
    }

    /// The ids in the index, sorted (one not a room id is damage: reported).
    fn ids(&self) -> Result<Vec<String>, StoreError> {
        let index = self.index();
        let mut ids: Vec<String> = self
            .conn
            .call(|c| redis::cmd("SMEMBERS").arg(&index).query(c))?;
        ids.sort();
        Ok(ids)
    }
}

impl RoomStore for RedisStore {
    fn get(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        let key = self.key(room.as_str());
        let json: Option<String> = self
            .conn
            .call(|c| redis::cmd("HGET").arg(&key).arg("record").query(c))?;
        json.map(|j| parse(room.as_str(), &j)).transpose()
    }

    fn list(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let ids = self.ids()?;
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(LIST_CHUNK) {
            let reads: Vec<redis::Cmd> = chunk
                .iter()
                .map(|id| {
                    let mut c = redis::cmd("HGET");
                    c.arg(self.key(id)).arg("record");
                    c
                })
                .collect();
            let values: Vec<Option<String>> = self.conn.each(&reads)?;
            for (room, json) in chunk.iter().zip(values) {
                // Indexed but not written (a first write that failed), or removed meanwhile.
                let Some(json) = json else { continue };
                let record = parse(room, &json)?;
                if record.id().as_str() != room {
                    return Err(StoreError::Corrupt {
                        room: room.to_owned(),
                        reason: format!("holds the record of room {}", record.id()),
                    });
                }
                all.push(record);
            }
        }
        sort_records(&mut all);
        Ok(all)
    }

    fn ids(&self) -> Result<Vec<RoomId>, StoreError> {
        Ok(self
            .ids()?
            .iter()
            .filter_map(|id| RoomId::parse(id))
            .collect())
    }

    fn unlisted(&self, rooms: &[RoomId]) -> Result<Vec<RoomId>, StoreError> {
        // Asked of the index set per room (one pipeline), not by listing it: a node asks about
        // its own rooms. SISMEMBER, not SMISMEMBER: every Redis version has it.
        let index = self.index();
        let asks: Vec<redis::Cmd> = rooms
            .iter()
            .map(|r| {
                let mut c = redis::cmd("SISMEMBER");
                c.arg(&index).arg(r.as_str());
                c
            })
            .collect();
        let listed: Vec<bool> = self.conn.each(&asks)?;
        Ok(rooms
            .iter()
            .zip(listed)
            .filter(|(_, l)| !l)
            .map(|(r, _)| r.clone())
            .collect())
    }

    fn put(&self, record: &RoomRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(record)
            .map_err(|e| StoreError::Backend(format!("encoding room {}: {e}", record.id())))?;
        let key = self.key(record.id().as_str());
        if record.rev == 1 {
            // Indexed first: a record is never written where a listing cannot find it.
            let index = self.index();
            let id = record.id().as_str();
            self.conn
                .call(|c| redis::cmd("SADD").arg(&index).arg(id).query::<()>(c))?;
        }
        let lease = Self::origin_key(&self.conn.cfg.prefix, record.id().as_str());
        let owner = self.owner.as_deref().unwrap_or("");
        let replicas = self.conn.cfg.wait_replicas;
        // WAIT's own limit is below the connection's read deadline, so its answer comes back.
        let wait_ms =
            (self.conn.cfg.timeout.as_millis() * 3 / 4).clamp(1, u128::from(u32::MAX)) as u64;
        // The script, then (when written and asked for) WAIT on the same connection: WAIT
        // counts the replicas that have this connection's writes.
        let write = |c: &mut dyn redis::ConnectionLike| {
            let stored = self
                .put
                .key(&key)
                .key(&lease)
                .arg(record.rev)
                .arg(&json)
                .arg(owner)
                .invoke::<i64>(c)?;
            let acked = if stored == -1 && replicas > 0 {
                Some(
                    redis::cmd("WAIT")
                        .arg(replicas)
                        .arg(wait_ms)
                        .query::<u64>(c)?,
                )
            } else {
                None
            };
            Ok((stored, acked))
        };
        let (stored, acked) = match self.conn.call_once(&write) {
            Ok(done) => done,
            Err(Failed::Broken(e)) => {
                // The reply was lost: the write may or may not have happened. Look.
                let (rev, stored): (Option<u64>, Option<String>) = self.conn.call(|c| {
                    redis::cmd("HMGET")
                        .arg(&key)
                        .arg("rev")
                        .arg("record")
                        .query(c)
                })?;
                if rev != Some(record.rev) || stored.as_deref() != Some(json.as_str()) {
                    return Err(self.conn.backend(e));
                }
                // Written; how many replicas have it cannot be asked on another connection.
                (-1, (replicas > 0).then_some(0))
            }
            Err(Failed::Refused(e)) => return Err(self.conn.backend(e)),
        };
        if stored == -2 {
            let holder: Option<String> =
                self.conn.call(|c| redis::cmd("GET").arg(&lease).query(c))?;
            return Err(StoreError::Moved {
                room: record.id().clone(),
                holder: holder.unwrap_or_default(),
            });
        }
        if stored >= 0 {
            return tribune_core::store::check_next(record.id(), stored as u64, record.rev);
        }
        if let Some(acked) = acked.filter(|&a| a < u64::from(replicas)) {
            return Err(StoreError::Backend(format!(
                "room {}: written on the primary, but {acked} of {replicas} replicas confirmed it in time",
                record.id(),
            )));
        }
        Ok(())
    }

    fn remove(&self, room: &RoomId) -> Result<bool, StoreError> {
        let key = self.key(room.as_str());
        let n: u64 = self.conn.call(|c| redis::cmd("DEL").arg(&key).query(c))?;
        let index = self.index();
        self.conn.call(|c| {
            redis::cmd("SREM")
                .arg(&index)
                .arg(room.as_str())
                .query::<()>(c)
        })?;
        Ok(n > 0)
    }
}
