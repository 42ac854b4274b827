//! The cluster's admission gate in Redis: one Lua script per decision, so every node's joins
//! are decided in one order against one set of counters (`PREFIX:gate:{gate}`, a hash:
//! numbers issued and called, the rate's tokens) and one set of held seats
//! (`PREFIX:gate:{gate}:held`, a sorted set by expiry: seats of listeners admitted but not yet
//! counted by the registry, and of called numbers whose holders have not come back). The clock
//! is the Redis server's (`TIME`), so nodes' clocks do not matter.

use tribune_core::admission::{eta_at_rate, Decision, GateConfig, SharedGate};
use tribune_core::StoreError;

use super::conn::Conn;
use super::RedisConfig;

/// ARGV: listeners, max, rate, burst, call hold ms, connect hold ms, op (`join`/`rejoin`),
/// number, a unique id for a seat. Returns `{admitted (0/1), number, position}`.
const DECIDE: &str = r#"
local gate, held = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local listeners, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local call_hold, connect_hold = tonumber(ARGV[5]), tonumber(ARGV[6])
local op, number, id = ARGV[7], tonumber(ARGV[8]), ARGV[9]
redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
local g = redis.call('HMGET', gate, 'issued', 'serving', 'tokens', 'ts')
local issued = tonumber(g[1] or '0')
local serving = tonumber(g[2] or '0')
local tokens = tonumber(g[3] or tostring(burst))
local ts = tonumber(g[4] or tostring(now))
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local function room() return listeners + redis.call('ZCARD', held) < max end
local function take()
  if tokens >= 1 then tokens = tokens - 1 return true end
  return false
end
local function tick()
  local n = 0
  while serving < issued and n < 10000 and room() and take() do
    redis.call('ZADD', held, now + call_hold, 'c' .. serving)
    serving = serving + 1
    n = n + 1
  end
end
local function admit()
  redis.call('ZADD', held, now + connect_hold, 'a' .. id)
  return {1, 0, 0}
end
local function decide(k)
  if k < serving then
    if redis.call('ZREM', held, 'c' .. k) == 1 or room() then return admit() end
    return {0, k, 1}
  end
  return {0, k, k - serving + 1}
end
tick()
local out
if op == 'rejoin' and number < issued then
  out = decide(number)
elseif serving == issued and room() and take() then
  out = admit()
else
  local k = issued
  issued = issued + 1
  tick()
  out = decide(k)
end
redis.call('HSET', gate, 'issued', issued, 'serving', serving, 'tokens', tostring(tokens), 'ts', now)
return out
"#;

/// The cluster's admission gate in Redis.
pub struct RedisGate {
    conn: Conn,
    config: GateConfig,
    script: redis::Script,
}

impl std::fmt::Debug for RedisGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGate")
            .field("prefix", &self.conn.cfg.prefix)
            .field("config", &self.config)
            .finish()
    }
}

impl RedisGate {
    /// A gate with these settings; Redis is reached on the first decision.
    pub fn new(cfg: RedisConfig, config: GateConfig) -> Result<RedisGate, StoreError> {
        Ok(RedisGate {
            conn: Conn::new(cfg)?,
            config,
            script: redis::Script::new(DECIDE),
        })
    }

    fn decide(&self, listeners: u64, op: &str, number: u64) -> Result<Decision, StoreError> {
        let prefix = &self.conn.cfg.prefix;
        let (gate, held) = (
            format!("{prefix}:gate:{{gate}}"),
            format!("{prefix}:gate:{{gate}}:held"),
        );
        let c = &self.config;
        let id = format!("{:016x}", rand_id());
        let (admitted, number, position): (u64, u64, u64) = self.conn.call(|conn| {
            self.script
                .key(&gate)
                .key(&held)
                .arg(listeners)
                .arg(c.max_listeners)
                .arg(c.join_rate)
                .arg(c.join_burst.max(1))
                .arg(u64::from(c.call_hold_s) * 1000)
                .arg(u64::from(c.connect_hold_s) * 1000)
                .arg(op)
                .arg(number)
                .arg(&id)
                .invoke(conn)
        })?;
        Ok(if admitted == 1 {
            Decision::Admit
        } else {
            Decision::Queue {
                number,
                position,
                eta_s: eta_at_rate(position, c.join_rate),
            }
        })
    }
}

/// A seat's id: unique enough among the seats held at once (from the process's randomness).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl SharedGate for RedisGate {
    fn config(&self) -> &GateConfig {
        &self.config
    }

    fn join(&self, listeners: u64) -> Result<Decision, StoreError> {
        self.decide(listeners, "join", 0)
    }

    fn rejoin(&self, listeners: u64, number: u64) -> Result<Decision, StoreError> {
        self.decide(listeners, "rejoin", number)
    }
}
