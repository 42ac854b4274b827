//! The cluster's node registry in Redis: a hash of entries (`PREFIX:registry:{nodes}`, node id
//! → its entry as JSON) and a sorted set of leases (`PREFIX:registry:{nodes}:lease`, node id →
//! expiry on the Redis server's clock). A beat writes both; a listing first drops the entries
//! whose lease ran out. One hash tag: one shard in a Redis Cluster, and no key scan (a shared
//! server's other keys cost a listing nothing). Each origin also names itself as the origin of
//! the rooms it runs (`PREFIX:room:{ID}:origin`, a lease renewed with its beat), so an edge
//! finds any room's origin. The rooms' leases are also indexed in a sorted set
//! (`PREFIX:rooms:{leases}`, room id → when its lease runs out, on the Redis server's clock),
//! so a look for rooms without an origin reads only the ones whose lease ran out, not every
//! stored room. The index is a hint: a room's own lease key decides.

use std::time::Duration;

use tribune_core::registry::{NodeEntry, NodeRegistry};
use tribune_core::{RoomId, StoreError};

use super::conn::Conn;
use super::RedisConfig;

/// Writes node `ARGV[1]`'s entry `ARGV[2]` with a lease of `ARGV[3]` ms.
const BEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
"#;

/// Drops the entries whose lease ran out and returns the others.
const LIST: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[1], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return redis.call('HVALS', KEYS[1])
"#;

/// Names `ARGV[1]` the origin of the room whose lease is `KEYS[1]` for `ARGV[2]` ms, unless
/// another origin holds it: 1 if it does now, 0 if another does.
const CLAIM: &str = r#"
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// Notes in the lease index `KEYS[1]` that rooms `ARGV[2..]` run out `ARGV[1]` ms from now.
const INDEX: &str = r#"
local t = redis.call('TIME')
local untl = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], untl, ARGV[i]) end
return #ARGV - 1
"#;

/// The rooms in the lease index `KEYS[1]` whose lease ran out, the oldest first, at most
/// `ARGV[1]`.
const LAPSED: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"#;

/// The node registry in Redis.
pub struct RedisRegistry {
    conn: Conn,
    beat: redis::Script,
    list: redis::Script,
    lapsed: redis::Script,
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
        Ok(Self::with(Conn::open(cfg)?))
    }

    /// Checks the settings only: a node starts while Redis is away, and beats once it is back.
    pub fn lazy(cfg: RedisConfig) -> Result<RedisRegistry, StoreError> {
        Ok(Self::with(Conn::new(cfg)?))
    }

    fn with(conn: Conn) -> RedisRegistry {
        RedisRegistry {
            conn,
            beat: redis::Script::new(BEAT),
            lapsed: redis::Script::new(LAPSED),
            list: redis::Script::new(LIST),
        }
    }

    /// Where a room's origin is named (the room's own hash tag, beside its record).
    fn origin_key(&self, room: &RoomId) -> String {
        super::RedisStore::origin_key(&self.conn.cfg.prefix, room.as_str())
    }

    /// Takes `members` out of the lease index.
    fn unindex<'a>(&self, members: impl IntoIterator<Item = &'a str>) -> Result<(), StoreError> {
        let index = self.lease_index();
        let rems = per_chunk(
            || {
                let mut c = redis::cmd("ZREM");
                c.arg(&index);
                c
            },
            members,
        );
        self.conn.each::<()>(&rems)?;
        Ok(())
    }

    /// The sorted set indexing the rooms' leases by when they run out.
    fn lease_index(&self) -> String {
        format!("{}:rooms:{{leases}}", self.conn.cfg.prefix)
    }

    /// The entries' hash and the leases' sorted set.
    fn keys(&self) -> (String, String) {
        let prefix = &self.conn.cfg.prefix;
        (
            format!("{prefix}:registry:{{nodes}}"),
            format!("{prefix}:registry:{{nodes}}:lease"),
        )
    }
}

impl NodeRegistry for RedisRegistry {
    fn beat(&self, me: &NodeEntry, lease: Duration) -> Result<(), StoreError> {
        let (entries, leases) = self.keys();
        let json = serde_json::to_string(me).map_err(|e| StoreError::Backend(e.to_string()))?;
        let ms = lease.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        self.conn.call(|c| {
            self.beat
                .key(&entries)
                .key(&leases)
                .arg(&me.id)
                .arg(&json)
                .arg(ms)
                .invoke::<u64>(c)
        })?;
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeEntry>, StoreError> {
        let (entries, leases) = self.keys();
        let values: Vec<String> = self
            .conn
            .call(|c| self.list.key(&entries).key(&leases).invoke(c))?;
        // One that does not parse (another version, damage) is skipped, not fatal.
        let mut out: Vec<NodeEntry> = values
            .iter()
            .filter_map(|j| serde_json::from_str(j).ok())
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn claim_rooms(
        &self,
        url: &str,
        rooms: &[RoomId],
        lease: Duration,
    ) -> Result<Vec<RoomId>, StoreError> {
        let ms = lease.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        // EVAL, not EVALSHA: one script per room in one round trip (the server caches it).
        let claims: Vec<redis::Cmd> = rooms
            .iter()
            .map(|r| {
                let mut c = redis::cmd("EVAL");
                c.arg(CLAIM).arg(1).arg(self.origin_key(r)).arg(url).arg(ms);
                c
            })
            .collect();
        let won: Vec<u8> = self.conn.each(&claims)?;
        Ok(rooms
            .iter()
            .zip(won)
            .filter(|(_, w)| *w == 0)
            .map(|(r, _)| r.clone())
            .collect())
    }

    fn index_leases(&self, rooms: &[RoomId], lease: Duration) -> Result<(), StoreError> {
        let ms = lease.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        let index = self.lease_index();
        // One script per chunk (Redis's clock, one key: any shard of a cluster).
        let writes = per_chunk(
            || {
                let mut c = redis::cmd("EVAL");
                c.arg(INDEX).arg(1).arg(&index).arg(ms);
                c
            },
            rooms.iter().map(RoomId::as_str),
        );
        self.conn.each::<()>(&writes)?;
        Ok(())
    }

    fn lapsed_rooms(&self, limit: usize) -> Result<Option<Vec<RoomId>>, StoreError> {
        let index = self.lease_index();
        let ids: Vec<String> = self
            .conn
            .call(|c| self.lapsed.key(&index).arg(limit).invoke(c))?;
        let (mut rooms, mut junk) = (Vec::new(), Vec::new());
        for id in &ids {
            match RoomId::parse(id) {
                Some(room) => rooms.push(room),
                None => junk.push(id.as_str()),
            }
        }
        // Not a room id (another version's, damage): out, or it would stay at the head.
        let _ = self.unindex(junk);
        Ok(Some(rooms))
    }

    fn unindex_rooms(&self, rooms: &[RoomId]) -> Result<(), StoreError> {
        self.unindex(rooms.iter().map(RoomId::as_str))
    }

    fn room_origins(&self, rooms: &[RoomId]) -> Result<Vec<Option<String>>, StoreError> {
        let reads: Vec<redis::Cmd> = rooms
            .iter()
            .map(|r| {
                let mut c = redis::cmd("GET");
                c.arg(self.origin_key(r));
                c
            })
            .collect();
        self.conn.each(&reads)
    }

    fn leave(&self, id: &str) -> Result<(), StoreError> {
        let (entries, leases) = self.keys();
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&entries).arg(id);
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&leases).arg(id);
        self.conn.each::<()>(&[hdel, zrem])?;
        Ok(())
    }
}

/// One command per 1 000 of `members`, each `head()` followed by its members (`each` sends
/// them as one pipeline; none when there are no members).
fn per_chunk<'a>(
    head: impl Fn() -> redis::Cmd,
    members: impl IntoIterator<Item = &'a str>,
) -> Vec<redis::Cmd> {
    let members: Vec<&str> = members.into_iter().collect();
    members
        .chunks(1_000)
        .map(|chunk| {
            let mut c = head();
            for m in chunk {
                c.arg(*m);
            }
            c
        })
        .collect()
}
