//! The cluster's admission gate in Redis: one Lua script per decision, so every node's joins
//! are decided in one order against one set of counters (`PREFIX:gate:{gate}`, a hash:
//! numbers issued and called, the rate's tokens) and one set of held seats
//! (`PREFIX:gate:{gate}:held`, a sorted set by expiry: seats of listeners admitted but not yet
//! counted by the registry, and of called numbers whose holders have not come back). The clock
//! is the Redis server's (`TIME`), so nodes' clocks do not matter. The line has an epoch, made
//! when its hash is: a Redis that lost its data starts a new line, and a number from the old
//! one comes back as a fresh join instead of taking someone else's place.
//!
//! A decision runs once (never repeated after a timeout: it may have taken effect), and an
//! admitted listener's seat is held 2 s at most: by then the registry counts it (beats every
//! second), and holding it longer would count it twice.

use tribune_core::admission::{eta_at_rate, Decided, Decision, GateConfig, SharedGate};
use tribune_core::StoreError;

use super::aconn::AsyncConn;
use super::RedisConfig;

/// ARGV: listeners, max, rate, burst, call hold ms, connect hold ms, op (`join`/`rejoin`),
/// number, a unique id for a seat, a fresh epoch (used if the line has none), the epoch of the
/// number. Returns `{admitted (0/1), number, position, epoch}`.
const DECIDE: &str = r#"
local gate, held = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local listeners, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local call_hold, connect_hold = tonumber(ARGV[5]), tonumber(ARGV[6])
local op, number, id = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local epoch = redis.call('HGET', gate, 'epoch')
if not epoch then
  epoch = ARGV[10]
  redis.call('HSET', gate, 'epoch', epoch)
end
if ARGV[11] ~= epoch then op = 'join' end
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
  return {1, 0, 0, epoch}
end
local function decide(k)
  if k < serving then
    if redis.call('ZREM', held, 'c' .. k) == 1 or room() then return admit() end
    return {0, k, 1, epoch}
  end
  return {0, k, k - serving + 1, epoch}
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

/// Longest hold of an admitted listener's seat (see the module docs).
const ADMITTED_HOLD_MS: u64 = 2_000;

/// The cluster's admission gate in Redis.
pub struct RedisGate {
    conn: AsyncConn,
    config: GateConfig,
    script: redis::Script,
}

impl std::fmt::Debug for RedisGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisGate")
            .field("prefix", &self.conn.cfg().prefix)
            .field("config", &self.config)
            .finish()
    }
}

impl RedisGate {
    /// A gate with these settings; Redis is reached on the first decision.
    pub fn new(cfg: RedisConfig, config: GateConfig) -> Result<RedisGate, StoreError> {
        // A join waits for this at most a second: a slower answer is no answer.
        let cfg = RedisConfig {
            timeout: cfg.timeout.min(std::time::Duration::from_millis(900)),
            ..cfg
        };
        Ok(RedisGate {
            conn: AsyncConn::new(cfg)?,
            config,
            script: redis::Script::new(DECIDE),
        })
    }

    async fn decide(
        &self,
        listeners: u64,
        op: &str,
        number: u64,
        epoch: u64,
    ) -> Result<(Decision, u64), StoreError> {
        let (gate, held) = self.keys();
        let c = &self.config;
        let id = format!("{:016x}", rand_id());
        let fresh = (rand_id() >> 1).max(1).to_string();
        let call = self.invocation(&gate, &held, listeners, op, number, &id, &fresh, epoch);
        let (admitted, number, position, epoch) = self
            .conn
            .call_once(|mut link| async move {
                call.invoke_async::<(u64, u64, u64, String)>(&mut link)
                    .await
            })
            .await
            .map_err(|e| self.conn.backend(e.into()))?;
        let epoch = epoch.parse().unwrap_or(0);
        let decision = if admitted == 1 {
            Decision::Admit
        } else {
            Decision::Queue {
                number,
                position,
                eta_s: eta_at_rate(position, c.join_rate),
            }
        };
        Ok((decision, epoch))
    }
}

impl RedisGate {
    /// The line's hash and its held seats (one hash tag: one shard).
    fn keys(&self) -> (String, String) {
        let prefix = &self.conn.cfg().prefix;
        (
            format!("{prefix}:gate:{{gate}}"),
            format!("{prefix}:gate:{{gate}}:held"),
        )
    }

    /// One decision's script call, its keys and arguments (see [`DECIDE`]).
    #[allow(clippy::too_many_arguments)]
    fn invocation<'s>(
        &'s self,
        gate: &str,
        held: &str,
        listeners: u64,
        op: &str,
        number: u64,
        id: &str,
        fresh: &str,
        epoch: u64,
    ) -> redis::ScriptInvocation<'s> {
        let c = &self.config;
        let connect_hold_ms = (u64::from(c.connect_hold_s) * 1000).min(ADMITTED_HOLD_MS);
        let mut call = self.script.prepare_invoke();
        call.key(gate)
            .key(held)
            .arg(listeners)
            .arg(c.max_listeners)
            .arg(c.join_rate)
            .arg(c.join_burst.max(1))
            .arg(u64::from(c.call_hold_s) * 1000)
            .arg(connect_hold_ms)
            .arg(op)
            .arg(number)
            .arg(id)
            .arg(fresh)
            .arg(epoch.to_string());
        call
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

    fn join(&self, listeners: u64) -> Decided<'_> {
        Box::pin(self.decide(listeners, "join", 0, 0))
    }

    fn rejoin(&self, listeners: u64, number: u64, epoch: u64) -> Decided<'_> {
        Box::pin(self.decide(listeners, "rejoin", number, epoch))
    }
}
