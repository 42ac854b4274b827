//! Connections to Redis (up to four per component, made as calls overlap) with a deadline on
//! every call: made when first needed, dropped when they fail (the next call makes a new one).
//!
//! `redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER` names a primary through its Sentinels:
//! each new connection asks them (in order, each within the deadline) where `MASTER` is now
//! and checks that the server there says it is a primary, so after a failover the next
//! connection goes to the new primary. Configuration alone: no other setting changes.
//!
//! `redis+cluster://HOST:PORT[,HOST:PORT…]` speaks to a Redis Cluster through those seed
//! nodes (redis-rs's cluster client, which learns the slots and follows them). Every key a
//! script touches shares one hash tag, so each script runs on one shard; batches over several
//! rooms go as a cluster pipeline (one per shard). The client retries nothing itself: a script
//! that timed out may have run, and a decision or a write must not run twice; a connection that
//! failed is made again by the next call, which learns the slots afresh. Each connect, read and
//! write has the deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::{ConnectionLike, RedisError};
use tribune_core::StoreError;

use super::RedisConfig;

/// Where connections go.
enum Target {
    /// One server (or a primary's fixed address).
    Direct(redis::Client),
    /// The primary its Sentinels name.
    Sentinel {
        /// The Sentinels, in the order they are asked.
        sentinels: Vec<redis::Client>,
        /// The monitored primary's name.
        master: String,
    },
    /// A Redis Cluster, through its seed nodes (boxed: the largest by far).
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection of any target.
enum Connection {
    /// To one server.
    One(redis::Connection),
    /// To a cluster's shards (boxed: it is several times the size of one connection).
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Connection {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Connection::One(c) => c,
            Connection::Cluster(c) => c.as_mut(),
        }
    }
}

/// A connection to Redis (shared by the store and the registry).
pub(crate) struct Conn {
    target: Target,
    /// A few connections, made as calls need them: a call takes a free one that is open, else
    /// a free slot (and connects), else waits its turn on one (so calls made at once do not
    /// queue behind one connection; a component that calls one at a time keeps one). Each is
    /// dropped when it fails, or answers that it is not the primary or not the slot's owner,
    /// and made again (through the Sentinels, or learning the slots) by its next call.
    conns: [Mutex<Option<Connection>>; POOL],
    /// Which slot a call that found none free waits on next.
    turn: AtomicUsize,
    pub(crate) cfg: RedisConfig,
}

/// Connections one component may hold. Measured (docs/BENCHMARKS.md §11): 16 callers on one
/// connection made about 12 000 gate decisions a second with a p99 of 10 ms (callers waiting
/// on the lock); on a connection each, about 32 000 (Redis's own limit here) at 1 ms.
const POOL: usize = 4;

impl Conn {
    /// Checks the settings and reaches the server once (`PING`).
    pub(crate) fn open(cfg: RedisConfig) -> Result<Conn, StoreError> {
        let conn = Conn::new(cfg)?;
        conn.call(|c| redis::cmd("PING").query::<String>(c))?;
        Ok(conn)
    }

    /// Checks the settings; the server is reached on the first call.
    pub(crate) fn new(cfg: RedisConfig) -> Result<Conn, StoreError> {
        let prefix_ok = !cfg.prefix.is_empty()
            && cfg
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !prefix_ok {
            return Err(StoreError::Backend(format!(
                "redis key prefix {:?}: use letters, digits, '_', '-', '.' or ':'",
                cfg.prefix
            )));
        }
        if cfg.timeout.is_zero() {
            return Err(StoreError::Backend(
                "redis timeout must be above zero".into(),
            ));
        }
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Backend(format!("redis address {:?}: {e}", cfg.url))
        };
        let target = if let Some(rest) = cfg.url.strip_prefix("redis+cluster://") {
            let seeds: Vec<String> = rest
                .trim_end_matches('/')
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{h}"))
                .collect();
            if seeds.is_empty() || rest.trim_end_matches('/').contains('/') {
                return Err(bad(&"use redis+cluster://HOST:PORT[,HOST:PORT]"));
            }
            if cfg.wait_replicas > 0 {
                return Err(bad(
                    &"waiting for replicas (WAIT) is per shard: not with a cluster",
                ));
            }
            let client = redis::cluster::ClusterClientBuilder::new(seeds)
                .connection_timeout(cfg.timeout)
                .response_timeout(cfg.timeout)
                .retries(0)
                .build()
                .map_err(|e| bad(&e))?;
            Target::Cluster(Box::new(client))
        } else {
            match cfg.url.strip_prefix("redis+sentinel://") {
                Some(rest) => {
                    let (hosts, master) = rest
                        .split_once('/')
                        .filter(|(h, m)| !h.is_empty() && !m.is_empty() && !m.contains('/'))
                        .ok_or_else(|| bad(&"use redis+sentinel://HOST:PORT[,HOST:PORT]/MASTER"))?;
                    let sentinels = hosts
                        .split(',')
                        .map(|h| redis::Client::open(format!("redis://{h}")).map_err(|e| bad(&e)))
                        .collect::<Result<Vec<_>, _>>()?;
                    Target::Sentinel {
                        sentinels,
                        master: master.to_owned(),
                    }
                }
                None => Target::Direct(redis::Client::open(cfg.url.as_str()).map_err(|e| bad(&e))?),
            }
        };
        Ok(Conn {
            target,
            conns: Default::default(),
            turn: AtomicUsize::new(0),
            cfg,
        })
    }

    /// The primary's client: the configured one, or the one the Sentinels name now.
    fn primary(&self) -> Result<redis::Client, RedisError> {
        match &self.target {
            Target::Direct(c) => Ok(c.clone()),
            Target::Sentinel { sentinels, master } => {
                ask_sentinels(sentinels, master, self.cfg.timeout)
            }
            Target::Cluster(_) => Err(RedisError::from((
                redis::ErrorKind::Client,
                "a cluster has no one primary",
            ))),
        }
    }

    /// Where a multiplexed (async) link goes: the cluster, or a server found by a blocking
    /// call (the configured one, or the primary the Sentinels name when it runs).
    pub(crate) fn made(&self) -> Made {
        match &self.target {
            Target::Cluster(c) => Made::Cluster(c.clone()),
            Target::Direct(c) => {
                let c = c.clone();
                Made::One(Box::new(move || Ok(c)))
            }
            Target::Sentinel { sentinels, master } => {
                let (sentinels, master, timeout) =
                    (sentinels.clone(), master.clone(), self.cfg.timeout);
                Made::One(Box::new(move || {
                    ask_sentinels(&sentinels, &master, timeout)
                }))
            }
        }
    }

    /// Whether `e` means the connection should be dropped and made again: it failed or timed
    /// out, or it reached a server that is not the slot's owner or no longer the primary (the
    /// command did not run there).
    pub(crate) fn is_broken(e: &RedisError) -> bool {
        e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_cluster_error()
            || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
    }

    /// A connection to `client` whose every call has the deadline.
    fn with_deadline(&self, client: &redis::Client) -> Result<redis::Connection, RedisError> {
        with_deadline(client, self.cfg.timeout)
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        if let Target::Cluster(client) = &self.target {
            let conn = client.get_connection()?;
            conn.set_read_timeout(Some(self.cfg.timeout))?;
            conn.set_write_timeout(Some(self.cfg.timeout))?;
            return Ok(Connection::Cluster(Box::new(conn)));
        }
        Ok(Connection::One(self.with_deadline(&self.primary()?)?))
    }

    /// Runs `op` on the connection, connecting first if needed. A connection that failed is
    /// dropped and `op` tried once more on a new one (for reads: they may be repeated).
    pub(crate) fn call<T>(
        &self,
        op: impl Fn(&mut dyn ConnectionLike) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        match self.call_once(&op) {
            Err(Failed::Broken(_)) => self.call_once(&op).map_err(|e| self.backend(e.into())),
            other => other.map_err(|e| self.backend(e.into())),
        }
    }

    /// Runs `op` once; a connection that failed is dropped (the next call makes a new one).
    pub(crate) fn call_once<T>(
        &self,
        op: &impl Fn(&mut dyn ConnectionLike) -> Result<T, RedisError>,
    ) -> Result<T, Failed> {
        self.on_link(&|link: &mut Connection| op(link.as_dyn()))
    }

    /// A slot for one call: a free open connection, else a free empty slot, else a turn on one.
    fn slot(&self) -> parking_lot::MutexGuard<'_, Option<Connection>> {
        let free = || self.conns.iter().filter_map(|c| c.try_lock());
        if let Some(open) = free().find(|g| g.is_some()) {
            return open;
        }
        if let Some(empty) = free().next() {
            return empty;
        }
        let i = self.turn.fetch_add(1, Ordering::Relaxed) % POOL;
        self.conns[i].lock()
    }

    /// Runs `op` once on a connection itself (connecting first if needed); a connection that
    /// failed is dropped. Everything `op` sends goes on that one connection (a write and its
    /// `WAIT` must share one).
    fn on_link<T>(
        &self,
        op: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Failed> {
        let mut slot = self.slot();
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(self.connect().map_err(Failed::Broken)?),
        };
        op(conn).map_err(|e| {
            if Conn::is_broken(&e) {
                *slot = None;
                Failed::Broken(e)
            } else {
                Failed::Refused(e)
            }
        })
    }

    /// Runs `cmds` (each a read, or a write that may be repeated) and answers their replies in
    /// order: one pipeline on one server, a cluster pipeline (one per shard) on a cluster.
    pub(crate) fn each<T: redis::FromRedisValue>(
        &self,
        cmds: &[redis::Cmd],
    ) -> Result<Vec<T>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let op = |link: &mut Connection| match link {
            Connection::One(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                pipe.query(c)
            }
            Connection::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd.clone());
                }
                pipe.query(c.as_mut())
            }
        };
        match self.on_link(&op) {
            Err(Failed::Broken(_)) => self.on_link(&op).map_err(|e| self.backend(e.into())),
            other => other.map_err(|e| self.backend(e.into())),
        }
    }

    /// A failed call as a store error naming the deployment.
    pub(crate) fn backend(&self, e: RedisError) -> StoreError {
        StoreError::Backend(format!("redis ({}): {e}", self.cfg.prefix))
    }
}

/// Where an async link goes (see [`Conn::made`]).
pub(crate) enum Made {
    /// A server, found by this (blocking) call.
    One(Box<dyn FnOnce() -> Result<redis::Client, RedisError> + Send>),
    /// A cluster.
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection to `client` whose every call has `timeout`.
fn with_deadline(
    client: &redis::Client,
    timeout: Duration,
) -> Result<redis::Connection, RedisError> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// The primary the Sentinels name `master` now: asks each in turn (each within `timeout`)
/// and checks the server named says it is a primary (a Sentinel's answer can be stale in a
/// failover).
fn ask_sentinels(
    sentinels: &[redis::Client],
    master: &str,
    timeout: Duration,
) -> Result<redis::Client, RedisError> {
    let mut last = None;
    for s in sentinels {
        let asked = with_deadline(s, timeout).and_then(|mut c| {
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query::<Option<(String, u16)>>(&mut c)
        });
        match asked {
            Ok(Some((host, port))) => {
                let client = redis::Client::open(format!("redis://{host}:{port}"))?;
                let mut c = with_deadline(&client, timeout)?;
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
                if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                    return Ok(client);
                }
                last = Some(RedisError::from((
                    redis::ErrorKind::Io,
                    "the server a Sentinel named is not a primary",
                )));
            }
            Ok(None) => {
                last = Some(RedisError::from((
                    redis::ErrorKind::Io,
                    "no Sentinel knows this primary",
                )))
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no Sentinel"))))
}

/// How a call failed.
pub(crate) enum Failed {
    /// The connection failed (dropped, timed out): whether a write took effect is unknown.
    Broken(RedisError),
    /// The server answered with an error.
    Refused(RedisError),
}

impl From<Failed> for RedisError {
    fn from(f: Failed) -> RedisError {
        match f {
            Failed::Broken(e) | Failed::Refused(e) => e,
        }
    }
}
