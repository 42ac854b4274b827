//! Rooms shared among origins (their records in Redis, each held by one origin's lease): at
//! start an origin runs only the rooms no other origin holds; while it runs it takes over the
//! rooms whose origin died (their lease ran out and nobody renewed it), and it lets go of the
//! rooms another origin took from it.

use std::collections::HashSet;
use std::time::Duration;

use tribune_core::{RoomId, RoomRecord, RoomState};

use super::state::AppState;

/// How often an origin looks for rooms nobody holds.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// Most ended rooms remembered as not worth reading again (past this the memory starts over).
const ENDED_MAX: usize = 10_000;

/// Of the records read at start, those this origin runs: ended ones (the restore lets them
/// go) and open ones no other origin holds, which it claims now. A node on its own runs all.
pub async fn claim_restorable(
    app: &AppState,
    records: Vec<RoomRecord>,
) -> std::io::Result<Vec<RoomRecord>> {
    let Some(cluster) = app
        .cluster()
        .filter(|_| app.config().cluster.shared_rooms().is_some())
    else {
        return Ok(records);
    };
    let open: Vec<RoomId> = records
        .iter()
        .filter(|r| r.info.state != RoomState::Ended)
        .map(|r| r.id().clone())
        .collect();
    if open.is_empty() {
        return Ok(records);
    }
    let held: HashSet<RoomId> = cluster
        .claim_now(open)
        .await
        .map_err(|e| std::io::Error::other(format!("claiming rooms at start: {e}")))?
        .into_iter()
        .collect();
    if !held.is_empty() {
        tracing::info!(
            rooms = held.len(),
            "rooms run by other origins left to them"
        );
    }
    Ok(records
        .into_iter()
        .filter(|r| r.info.state == RoomState::Ended || !held.contains(r.id()))
        .collect())
}

/// Until shutdown: every two seconds, finds the stored rooms no origin holds, and takes over
/// each one found so twice in a row (its own origin, back after a restart of Redis, had a
/// whole look's time to claim it first). A room taken over goes on from its record: its id,
/// roster and blocks, its numbers past the old origin's; edges pulling it find it here.
pub async fn adopt_orphans(app: AppState) {
    let Some(cluster) = app.cluster().cloned() else {
        return;
    };
    let mut shutdown = app.shutdown();
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashSet<RoomId> = HashSet::new();
    let mut ended: HashSet<RoomId> = HashSet::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        let here: HashSet<RoomId> = app.rooms().into_iter().map(|r| r.id.clone()).collect();
        let (store, registry) = (app.store().clone(), cluster.registry());
        let (skip, known) = (here.clone(), ended.clone());
        let looked = tokio::task::spawn_blocking(move || {
            let stored = store.ids()?;
            let ids: Vec<RoomId> = stored
                .iter()
                .filter(|id| !skip.contains(*id) && !known.contains(*id))
                .cloned()
                .collect();
            let origins = registry.room_origins(&ids)?;
            let orphans = ids
                .into_iter()
                .zip(origins)
                .filter(|(_, o)| o.is_none())
                .map(|(id, _)| id)
                .collect::<HashSet<RoomId>>();
            Ok::<_, tribune_core::StoreError>((stored.into_iter().collect::<HashSet<_>>(), orphans))
        });
        let (stored, orphans) = match tokio::time::timeout(LOOK_EVERY, looked).await {
            Ok(Ok(Ok(o))) => o,
            Ok(Ok(Err(e))) => {
                tracing::debug!("rooms without an origin not looked for: {e}");
                continue;
            }
            _ => continue,
        };
        rewrite_missing(&app, &stored);
        let adopt: Vec<RoomId> = orphans.intersection(&seen).cloned().collect();
        seen = orphans;
        if adopt.is_empty() {
            continue;
        }
        let held: HashSet<RoomId> = match cluster.claim_now(adopt.clone()).await {
            Ok(h) => h.into_iter().collect(),
            Err(e) => {
                tracing::debug!("rooms without an origin not claimed: {e}");
                continue;
            }
        };
        for id in adopt.into_iter().filter(|id| !held.contains(id)) {
            let store = app.store().clone();
            let read = {
                let id = id.clone();
                tokio::task::spawn_blocking(move || store.get(&id)).await
            };
            let record = match read {
                Ok(Ok(Some(r))) if r.info.state != RoomState::Ended => r,
                Ok(Ok(Some(_))) => {
                    // Ended where it ran: nothing to take over (its origin lets it go).
                    if ended.len() >= ENDED_MAX {
                        ended.clear();
                    }
                    ended.insert(id);
                    continue;
                }
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(room = %id, "room without an origin not read: {e}");
                    continue;
                }
                Err(_) => continue,
            };
            // Its lease is not renewed unless the room runs here: a failed restore lets it
            // run out, for this or another origin to try again.
            match app.restore(vec![record]).await {
                Ok(_) => {
                    app.metrics().rooms_taken_over.inc();
                    tracing::warn!(room = %id, "room taken over: its origin stopped renewing it");
                }
                Err(e) => tracing::error!(room = %id, "room without an origin not taken over: {e}"),
            }
        }
    }
}

/// Writes again the record of every room running here that the store no longer lists (a Redis
/// restarted without its data): the room's next write would, but a room with no change for
/// hours would not come back after this origin's own restart.
fn rewrite_missing(app: &AppState, stored: &HashSet<RoomId>) {
    for room in app.rooms() {
        if stored.contains(&room.id) || room.is_relayed() || room.unsaved() {
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
