//! Counts open WebSocket connections so shutdown can wait until they have closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts connections; `wait_idle` resolves when the count reaches zero.
#[derive(Default, Clone)]
pub struct ConnectionCounter {
    inner: Arc<(AtomicUsize, Notify)>,
}

/// Held by a connection while it is open.
pub struct ConnectionToken {
    inner: Arc<(AtomicUsize, Notify)>,
}

impl ConnectionCounter {
    /// Counts a connection in until the token drops.
    pub fn track(&self) -> ConnectionToken {
        self.inner.0.fetch_add(1, Ordering::SeqCst);
        ConnectionToken {
            inner: self.inner.clone(),
        }
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Resolves once no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnectionToken {
    fn drop(&mut self) {
        if self.inner.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.1.notify_waiters();
        }
    }
}
