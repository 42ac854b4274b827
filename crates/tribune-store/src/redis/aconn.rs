//! The admission gate's connection: one multiplexed connection that every join's decision
//! shares, calls back to back on one socket (redis-rs's connection manager; the async cluster
//! connection for `redis+cluster://`). Measured against pooled synchronous connections on the
//! same script it made 1.9× the decisions a second at a sixth of the p99 (docs/BENCHMARKS.md
//! §11). Made from the same settings as [`Conn`]: a Sentinel-named primary is asked for when
//! the link is made. Every call has the deadline and is sent once (a decision that timed out
//! may have run); a link that failed, or that reached a server that is no longer the primary or
//! the slot's owner, is dropped, and the next call makes a new one.

use std::future::Future;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tribune_core::StoreError;

use super::conn::{Conn, Failed, Made};
use super::RedisConfig;

/// A multiplexed connection: cheap to clone, every clone sends on the same socket.
#[derive(Clone)]
pub(crate) enum Link {
    /// One server (or the primary the Sentinels named).
    One(ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::One(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::One(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::One(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

/// The gate's link to Redis, made on first use.
pub(crate) struct AsyncConn {
    /// The settings, and where links go (its own synchronous connections are not used).
    conn: Conn,
    link: tokio::sync::Mutex<Option<Link>>,
}

impl AsyncConn {
    /// Checks the settings; Redis is reached on the first call.
    pub(crate) fn new(cfg: RedisConfig) -> Result<AsyncConn, StoreError> {
        Ok(AsyncConn {
            conn: Conn::new(cfg)?,
            link: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings.
    pub(crate) fn cfg(&self) -> &RedisConfig {
        &self.conn.cfg
    }

    /// The link, made if there is none (one caller makes it; the others wait for it).
    async fn link(&self) -> Result<Link, RedisError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_ref() {
            return Ok(link.clone());
        }
        let timeout = self.conn.cfg.timeout;
        let made = match self.conn.made() {
            Made::Cluster(client) => Link::Cluster(client.get_async_connection().await?),
            Made::One(target) => {
                // Asking the Sentinels is blocking (each within the deadline).
                let client = tokio::task::spawn_blocking(target).await.map_err(|e| {
                    RedisError::from((redis::ErrorKind::Io, "no primary", e.to_string()))
                })??;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                Link::One(ConnectionManager::new_with_config(client, config).await?)
            }
        };
        *slot = Some(made.clone());
        Ok(made)
    }

    /// Runs `op` once on the link, within the deadline (making the link counts against it).
    pub(crate) async fn call_once<T, F, Fut>(&self, op: F) -> Result<T, Failed>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let attempt = async {
            let link = self.link().await.map_err(Failed::Broken)?;
            op(link).await.map_err(|e| {
                if Conn::is_broken(&e) {
                    Failed::Broken(e)
                } else {
                    Failed::Refused(e)
                }
            })
        };
        let outcome = match tokio::time::timeout(self.conn.cfg.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(Failed::Broken(RedisError::from((
                redis::ErrorKind::Io,
                "no answer within the deadline",
            )))),
        };
        if let Err(Failed::Broken(_)) = &outcome {
            // A new link next time (through the Sentinels again, or learning the slots again).
            *self.link.lock().await = None;
        }
        outcome
    }

    /// A failed call as a store error naming the deployment.
    pub(crate) fn backend(&self, e: RedisError) -> StoreError {
        self.conn.backend(e)
    }
}
