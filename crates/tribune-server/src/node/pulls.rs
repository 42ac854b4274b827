//! An edge's pulls: which rooms are being pulled from its upstream right now, and which the
//! upstream said it does not have (so a burst of requests for one room makes one pull, and
//! requests for rooms that do not exist do not each cost the upstream a connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tribune_core::RoomId;

use crate::room::relay::{Pull, PullError, Source};
use crate::room::LiveRoom;

/// How long an edge remembers that its upstream has no such room (or that it ended).
const MISSING_FOR: Duration = Duration::from_secs(2);
/// Most pulls being opened at once: requests for more rooms than this at the same moment are
/// answered `503` (with `Retry-After`) rather than each costing the upstream a connection.
const MAX_IN_FLIGHT: usize = 64;
/// Most rooms remembered as missing (past this the memory starts over).
const MISSING_MAX: usize = 10_000;

/// The outcome of one pull, shared by everyone who asked for it while it was being made.
type Shared = Arc<OnceCell<Result<Arc<LiveRoom>, PullError>>>;

/// An edge's pulls in flight.
pub struct Pulls {
    upstream: Arc<Source>,
    in_flight: Mutex<HashMap<RoomId, Shared>>,
    missing: Mutex<HashMap<RoomId, (Instant, PullError)>>,
}

/// Takes a room's entry out of the pulls in flight when its opening ends, or is dropped (the
/// request that made it went away).
struct InFlight<'a> {
    pulls: &'a Pulls,
    room: &'a RoomId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.pulls.in_flight.lock().remove(self.room);
    }
}

impl Pulls {
    /// Pulls from `upstream`: one node, or each room's origin as the registry names it.
    pub fn new(upstream: Source) -> Self {
        Pulls {
            upstream: Arc::new(upstream),
            in_flight: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// Where rooms are pulled from.
    pub fn source(&self) -> &Source {
        &self.upstream
    }

    /// The room `room` pulled from upstream and started by `start`, or the one another
    /// request is pulling at the same time.
    pub async fn room(
        &self,
        room: &RoomId,
        start: impl FnOnce(Pull) -> Arc<LiveRoom>,
    ) -> Result<Arc<LiveRoom>, PullError> {
        if let Some((at, e)) = self.missing.lock().get(room) {
            if at.elapsed() < MISSING_FOR {
                return Err(e.clone());
            }
        }
        let shared = {
            let mut in_flight = self.in_flight.lock();
            if in_flight.len() >= MAX_IN_FLIGHT && !in_flight.contains_key(room) {
                return Err(PullError::Unavailable("too many rooms being pulled".into()));
            }
            in_flight.entry(room.clone()).or_default().clone()
        };
        let outcome = shared
            .get_or_init(|| async {
                let _entry = InFlight { pulls: self, room };
                let upstream = self.upstream.resolve(room).await?;
                let pull = upstream.open(room, None).await?;
                // The pull task connects again through the source: after an origin's room
                // moved, the registry names the new one.
                Ok(start(pull.reopened_through(self.upstream.clone())))
            })
            .await
            .clone();
        if let Err(e @ (PullError::NotFound | PullError::Ended)) = &outcome {
            let mut missing = self.missing.lock();
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
            missing.insert(room.clone(), (Instant::now(), e.clone()));
        }
        outcome
    }
}
