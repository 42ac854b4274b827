//! Rooms shared among origins (their records in Redis, each room held by one origin's lease):
//! at start an origin runs the stored rooms whose lease names it; while it runs it takes over
//! the rooms no origin holds (their origin died, or stayed away past its lease), and it lets go
//! of the rooms another origin took from it. Writes to a room's record are fenced by its lease
//! (`RedisStore::fenced_by`), so an origin that lost a room cannot overwrite it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tribune_core::registry::NodeRegistry;
use tribune_core::{RoomId, RoomRecord, RoomState, RoomStore, StoreError};

use super::state::AppState;

/// How often an origin looks for rooms nobody holds (plus up to half a second at random, so
/// origins started together do not look at the same moments).
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Most rooms one look takes over: a dead origin's rooms spread over the origins that look.
const ADOPT_MAX: usize = 32;
/// Rooms claimed and restored at a time at start (well within a lease).
const START_CHUNK: usize = 100;
/// Most ended rooms remembered as not worth reading again (past this the memory starts over).
const ENDED_MAX: usize = 10_000;
/// Every this many looks, two in a row read every stored room (rooms never claimed: imported,
/// or whose origin died before its first claim); the others read only the rooms whose lease
/// ran out, as the registry indexes them (about 54 s between full looks).
const FULL_EVERY: u64 = 24;
/// Most rooms with a lapsed lease one look reads.
const LAPSED_MAX: usize = 1_024;

/// Brings back the rooms of `records` this node runs and answers how many: all of them on a
/// node with its own store; with a shared one, those whose lease names this origin (claimed a
/// chunk at a time, just before each is restored). The others are left to their origin, or to
/// whichever origin finds them without one (see [`adopt_orphans`]).
pub async fn restore_at_start(app: &AppState, records: Vec<RoomRecord>) -> std::io::Result<usize> {
    if app.config().cluster.shared_rooms().is_none() {
        return app.restore(records).await;
    }
    let Some(cluster) = app.cluster() else {
        return Err(std::io::Error::other(
            "rooms shared in Redis need the cluster registry: check --redis",
        ));
    };
    let (ended, open): (Vec<RoomRecord>, Vec<RoomRecord>) = records
        .into_iter()
        .partition(|r| r.info.state == RoomState::Ended);
    let mut back = app.restore(ended).await?;
    let ids: Vec<RoomId> = open.iter().map(|r| r.id().clone()).collect();
    let registry = cluster.registry();
    let origins = tokio::task::spawn_blocking(move || registry.room_origins(&ids))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|e| std::io::Error::other(format!("reading rooms' origins at start: {e}")))?;
    let mine: Vec<RoomRecord> = open
        .into_iter()
        .zip(origins)
        .filter(|(_, o)| o.as_deref() == Some(cluster.url()))
        .map(|(r, _)| r)
        .collect();
    let mut chunks = mine.into_iter().peekable();
    while chunks.peek().is_some() {
        let chunk: Vec<RoomRecord> = chunks.by_ref().take(START_CHUNK).collect();
        let ids = chunk.iter().map(|r| r.id().clone()).collect();
        let held: HashSet<RoomId> = cluster
            .claim_now(ids)
            .await
            .map_err(|e| std::io::Error::other(format!("claiming rooms at start: {e}")))?
            .into_iter()
            .collect();
        let chunk = chunk.into_iter().filter(|r| !held.contains(r.id()));
        back += app.restore(chunk.collect()).await?;
    }
    Ok(back)
}

/// Until shutdown: every two seconds or so, finds the stored rooms no origin holds, and takes
/// over (at most [`ADOPT_MAX`] per look) each one found so twice in a row: its own origin, back
/// after a restart of Redis, had a whole look's time to claim it first. A room taken over goes
/// on from its record (its id, roster and blocks, its numbers past the old origin's); edges
/// pulling it find it here at their next reconnect. Also writes again the record of a room
/// running here that the store lost, and forgets ids with no record and rooms long ended.
///
/// Most looks read only the rooms whose lease ran out, as the registry indexes them, so a
/// look's cost follows the rooms in trouble rather than every stored room; two looks in a row
/// every [`FULL_EVERY`] read them all (rooms never claimed). See docs/BENCHMARKS.md §11.
pub async fn adopt_orphans(app: AppState) {
    let Some(cluster) = app.cluster().cloned() else {
        return;
    };
    let mut shutdown = app.shutdown();
    let mut seen: HashSet<RoomId> = HashSet::new();
    let mut ended: HashSet<RoomId> = HashSet::new();
    // Ids found without a record, and at which look (a first write that failed, a removal).
    let mut empty: HashMap<RoomId, u64> = HashMap::new();
    let mut failing = false;
    for n in 0u64.. {
        let wait = LOOK_EVERY + Duration::from_millis(rand::random::<u64>() % 500);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let here: Vec<RoomId> = app.rooms().into_iter().map(|r| r.id.clone()).collect();
        let (store, registry) = (app.store().clone(), cluster.registry());
        let known = ended.clone();
        let full = n % FULL_EVERY < 2;
        let looked =
            tokio::task::spawn_blocking(move || look(&*store, &*registry, here, &known, full));
        let Looked { unlisted, orphans } = match tokio::time::timeout(LOOK_EVERY, looked).await {
            Ok(Ok(Ok(looked))) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("looking for rooms without an origin again");
                }
                looked
            }
            other => {
                if !std::mem::replace(&mut failing, true) {
                    let why = match other {
                        Ok(Ok(Err(e))) => e.to_string(),
                        _ => "no answer in time".into(),
                    };
                    tracing::warn!(
                        "rooms without an origin not looked for ({why}): no takeover until \
                         the store and the registry answer again"
                    );
                }
                continue;
            }
        };
        rewrite_missing(&app, &unlisted);
        let mut adopt: Vec<RoomId> = orphans.intersection(&seen).cloned().collect();
        seen = orphans;
        adopt.truncate(ADOPT_MAX);
        // An id is forgotten when two examinations close together (within two full looks)
        // found no record; a lapsed-lease look passes over ids never claimed, so a mark waits.
        empty.retain(|_, at| n - *at <= FULL_EVERY + 2);
        for id in adopt {
            match adopt_one(&app, &cluster, &id).await {
                Adopted::Ended { at } => {
                    let keep = app.config().rooms.ended_keep.as_secs();
                    let now = tribune_core::unix_micros() / 1_000_000;
                    if at.is_some_and(|at| at.saturating_add(keep) <= now) {
                        // Ended long ago where it ran, and its origin is gone: nobody else
                        // would ever remove it.
                        forget(&app, &id).await;
                    } else {
                        // Nobody runs an ended room: out of the lease index, so lapsed-lease
                        // looks do not read it again (a full look by an origin that has not
                        // read it, or has forgotten it, still finds it).
                        unindex(&cluster, vec![id.clone()]).await;
                        if ended.len() >= ENDED_MAX {
                            ended.clear();
                        }
                        ended.insert(id);
                    }
                }
                Adopted::NoRecord if empty.remove(&id).is_some() => forget(&app, &id).await,
                Adopted::NoRecord => {
                    if empty.len() >= ENDED_MAX {
                        empty.clear();
                    }
                    empty.insert(id, n);
                }
                // Not taken here (unreadable, not restored, or another origin was quicker): out
                // of the lease index, so it does not hold the head of every look; whoever
                // holds it indexes it again, and full looks still find it.
                Adopted::No => unindex(&cluster, vec![id]).await,
                Adopted::Yes => {}
            }
        }
    }
}

/// What one look found.
struct Looked {
    /// Rooms running here that the store does not list (their records were lost).
    unlisted: HashSet<RoomId>,
    /// Rooms no origin holds.
    orphans: HashSet<RoomId>,
}

/// One look (blocking calls): the rooms whose lease ran out as the registry indexes them, or
/// every stored room when `full` (or when the index cannot answer), less the rooms running
/// `here` and those `known` to have ended; which of them no origin holds.
fn look(
    store: &dyn RoomStore,
    registry: &dyn NodeRegistry,
    here: Vec<RoomId>,
    known: &HashSet<RoomId>,
    full: bool,
) -> Result<Looked, StoreError> {
    let unlisted = match store.unlisted(&here) {
        Ok(u) => u.into_iter().collect(),
        Err(e) => {
            tracing::debug!("rooms running here not checked in the store: {e}");
            HashSet::new()
        }
    };
    let lapsed = if full {
        None
    } else {
        registry.lapsed_rooms(LAPSED_MAX).unwrap_or_else(|e| {
            tracing::debug!("the lease index did not answer, reading every room: {e}");
            None
        })
    };
    let candidates = match lapsed {
        Some(lapsed) => {
            // Ended rooms this origin already read: out of the index, not read again.
            let stale: Vec<RoomId> = lapsed
                .iter()
                .filter(|id| known.contains(*id))
                .cloned()
                .collect();
            if !stale.is_empty() {
                let _ = registry.unindex_rooms(&stale);
            }
            lapsed
        }
        None => store.ids()?,
    };
    let skip: HashSet<RoomId> = here.into_iter().collect();
    let ids: Vec<RoomId> = candidates
        .into_iter()
        .filter(|id| !skip.contains(id) && !known.contains(id))
        .collect();
    let origins = registry.room_origins(&ids)?;
    let orphans = ids
        .into_iter()
        .zip(origins)
        .filter(|(_, o)| o.is_none())
        .map(|(id, _)| id)
        .collect();
    Ok(Looked { unlisted, orphans })
}

/// What became of a room found without an origin.
enum Adopted {
    Yes,
    No,
    /// Its record says it ended (when).
    Ended {
        at: Option<u64>,
    },
    /// Listed, but no record is stored.
    NoRecord,
}

/// Reads `id`'s record, claims it and restores it here. The claim comes just before the
/// restore, so an edge the registry sends here finds the room at once.
async fn adopt_one(app: &AppState, cluster: &super::cluster::Cluster, id: &RoomId) -> Adopted {
    let store = app.store().clone();
    let read = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || store.get(&id)).await
    };
    let record = match read {
        Ok(Ok(Some(r))) if r.info.state != RoomState::Ended => r,
        Ok(Ok(Some(r))) => {
            return Adopted::Ended {
                at: r.info.ended_at,
            }
        }
        Ok(Ok(None)) => return Adopted::NoRecord,
        Ok(Err(e)) => {
            tracing::warn!(room = %id, "room without an origin not read: {e}");
            return Adopted::No;
        }
        Err(_) => return Adopted::No,
    };
    match cluster.claim_now(vec![id.clone()]).await {
        Ok(held) if held.is_empty() => {}
        Ok(_) => return Adopted::No,
        Err(e) => {
            tracing::debug!(room = %id, "room without an origin not claimed: {e}");
            return Adopted::No;
        }
    }
    // Its lease is renewed only while the room runs here: a failed restore lets it run out,
    // for this or another origin to try again.
    match app.restore(vec![record]).await {
        Ok(1) => {
            app.metrics().rooms_taken_over.inc();
            tracing::warn!(room = %id, "room taken over: its origin stopped renewing it");
            Adopted::Yes
        }
        Ok(_) => Adopted::No,
        Err(e) => {
            tracing::error!(room = %id, "room without an origin not taken over: {e}");
            Adopted::No
        }
    }
}

/// Takes a room nobody runs out of the store (record and index) and out of the lease index.
async fn forget(app: &AppState, id: &RoomId) {
    let (store, id) = (app.store().clone(), id.clone());
    let gone = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || store.remove(&id)).await
    };
    if let Ok(Err(e)) = gone {
        tracing::debug!("stale room not removed from the store: {e}");
    }
    if let Some(cluster) = app.cluster() {
        unindex(cluster, vec![id]).await;
    }
}

/// Takes `rooms` out of the registry's lease index (a hint: a failure costs only a re-read).
async fn unindex(cluster: &super::cluster::Cluster, rooms: Vec<RoomId>) {
    let registry = cluster.registry();
    let _ = tokio::task::spawn_blocking(move || registry.unindex_rooms(&rooms)).await;
}

/// Writes again the record of every room running here that the store no longer lists (a Redis
/// restarted without its data): the room's next write would, but a room with no change for
/// hours would not come back after this origin's own restart.
fn rewrite_missing(app: &AppState, unlisted: &HashSet<RoomId>) {
    for room in app.rooms() {
        if !unlisted.contains(&room.id) || room.is_relayed() || room.unsaved() {
            continue;
        }
        if room.state().0 == RoomState::Ended {
            continue;
        }
        tracing::warn!(room = %room.id, "room record missing from the store: written again");
        room.changed();
        room.save_soon();
    }
}

/// Lets go of `rooms`: another origin holds them now (see `LiveRoom::hand_over`).
pub fn let_go(app: &AppState, rooms: Vec<RoomId>) {
    for id in rooms {
        if let Ok(room) = app.room(id.as_str()) {
            app.metrics().rooms_handed_over.inc();
            tokio::spawn(async move { room.hand_over().await });
        }
    }
}
