//! The node's own counts that its control decisions read (admission, the batch interval): kept
//! apart from the metrics, which only report.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of one node.
#[derive(Debug, Default)]
pub struct NodeCounters {
    listeners: AtomicU64,
}

impl NodeCounters {
    /// A listener connection opened.
    pub fn listener_joined(&self) {
        self.listeners.fetch_add(1, Ordering::Relaxed);
    }

    /// A listener connection closed.
    pub fn listener_left(&self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open listener connections on this node.
    pub fn listeners(&self) -> u64 {
        self.listeners.load(Ordering::Relaxed)
    }
}
