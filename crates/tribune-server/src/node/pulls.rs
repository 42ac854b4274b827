//! An edge's pulls: which rooms are being pulled from its upstream right now, and which the
//! upstream said it does not have (so a burst of requests for one room makes one pull, and
//! requests for rooms that do not exist do not each cost the upstream a connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tribune_core::RoomId;

use crate::room::relay::{Pull, PullError, Upstream};
use crate::room::LiveRoom;

/// How long an edge remembers that its upstream has no such room.
const MISSING_FOR: Duration = Duration::from_secs(2);
/// Most rooms remembered as missing (past this the memory starts over).
const MISSING_MAX: usize = 10_000;

/// The outcome of one pull, shared by everyone who asked for it while it was being made.
type Shared = Arc<OnceCell<Result<Arc<LiveRoom>, PullError>>>;

/// An edge's pulls in flight.
pub struct Pulls {
    upstream: Upstream,
    in_flight: Mutex<HashMap<RoomId, Shared>>,
    missing: Mutex<HashMap<RoomId, Instant>>,
}

impl Pulls {
    /// Pulls from `upstream`.
    pub fn new(upstream: Upstream) -> Self {
        Pulls {
            upstream,
            in_flight: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The room `room` pulled from upstream and started by `start`, or the one another
    /// request is pulling at the same time.
    pub async fn room(
        &self,
        room: &RoomId,
        start: impl FnOnce(Pull) -> Arc<LiveRoom>,
    ) -> Result<Arc<LiveRoom>, PullError> {
        if let Some(at) = self.missing.lock().get(room) {
            if at.elapsed() < MISSING_FOR {
                return Err(PullError::NotFound);
            }
        }
        let shared = self
            .in_flight
            .lock()
            .entry(room.clone())
            .or_default()
            .clone();
        let mut first = false;
        let outcome = shared
            .get_or_init(|| async {
                first = true;
                self.upstream.open(room, None).await.map(start)
            })
            .await
            .clone();
        if first {
            self.in_flight.lock().remove(room);
        }
        if let Err(PullError::NotFound) = outcome {
            let mut missing = self.missing.lock();
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
            missing.insert(room.clone(), Instant::now());
        }
        outcome
    }
}
