//! One connection to Redis with a deadline on every call: made when first needed, dropped
//! when it fails (the next call makes a new one).

use parking_lot::Mutex;
use redis::{Connection, RedisError};
use tribune_core::StoreError;

use super::RedisConfig;

/// A connection to Redis (shared by the store and the registry).
pub(crate) struct Conn {
    client: redis::Client,
    conn: Mutex<Option<Connection>>,
    pub(crate) cfg: RedisConfig,
}

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
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| StoreError::Backend(format!("redis address {:?}: {e}", cfg.url)))?;
        Ok(Conn {
            client,
            conn: Mutex::new(None),
            cfg,
        })
    }

    fn connect(&self) -> Result<Connection, RedisError> {
        let conn = self.client.get_connection_with_timeout(self.cfg.timeout)?;
        conn.set_read_timeout(Some(self.cfg.timeout))?;
        conn.set_write_timeout(Some(self.cfg.timeout))?;
        Ok(conn)
    }

    /// Runs `op` on the connection, connecting first if needed. A connection that failed is
    /// dropped and `op` tried once more on a new one (for reads: they may be repeated).
    pub(crate) fn call<T>(
        &self,
        op: impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, StoreError> {
        match self.call_once(&op) {
            Err(Failed::Broken(_)) => self.call_once(&op).map_err(|e| self.backend(e.into())),
            other => other.map_err(|e| self.backend(e.into())),
        }
    }

    /// Runs `op` once; a connection that failed is dropped (the next call makes a new one).
    pub(crate) fn call_once<T>(
        &self,
        op: &impl Fn(&mut Connection) -> Result<T, RedisError>,
    ) -> Result<T, Failed> {
        let mut slot = self.conn.lock();
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => slot.insert(self.connect().map_err(Failed::Broken)?),
        };
        op(conn).map_err(|e| {
            let broken = e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout();
            if broken {
                *slot = None;
                Failed::Broken(e)
            } else {
                Failed::Refused(e)
            }
        })
    }

    /// A failed call as a store error naming the deployment.
    pub(crate) fn backend(&self, e: RedisError) -> StoreError {
        StoreError::Backend(format!("redis ({}): {e}", self.cfg.prefix))
    }
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
