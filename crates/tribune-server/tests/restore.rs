//! What a node does with the room records it finds at start: live and scheduled rooms come back
//! with their rosters, past every program number their record reserved (whatever the clock
//! says), and the reservation is renewed in the store before the room runs; ended rooms leave
//! the store.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tribune_core::store::suite::busy_room;
use tribune_core::{MemoryStore, Reserved, RoomId, RoomState, RoomStore};
use tribune_server::metrics::Metrics;
use tribune_server::recording::Recordings;
use tribune_server::{AppState, ServerConfig};
use tribune_server::{MSN_AHEAD, SEQ_AHEAD};

fn now_s() -> u64 {
    tribune_core::unix_micros() / 1_000_000
}

fn node(store: Arc<MemoryStore>) -> AppState {
    let (_tx, rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::default());
    let recordings = Recordings::open(None, Bytes::new(), metrics.clone()).unwrap();
    AppState::with_parts(
        ServerConfig::default(),
        rx,
        metrics,
        Arc::new(recordings),
        store,
    )
}

#[tokio::test]
async fn restored_rooms_start_past_their_reserved_numbers_and_ended_ones_leave_the_store() {
    let store = Arc::new(MemoryStore::default());
    // A live room whose clock says ~0 frames, but which reserved numbers far ahead (the wall
    // clock stepped back since it ran, say).
    let mut live = busy_room("rstrdnumbr", now_s());
    live.info.go_live(now_s()).unwrap();
    live.reserved = Reserved {
        seq: 5_000_000,
        msn: 70_000,
    };
    store.put(&live).unwrap();
    let mut ended = busy_room("endedrmxyz", now_s());
    ended.info.end(now_s());
    store.put(&ended).unwrap();

    let app = node(store.clone());
    let back = app.restore(store.list().unwrap()).await.unwrap();
    assert_eq!(back, 1);

    let room = app.room("rstrdnumbr").unwrap();
    assert_eq!(room.info().state, RoomState::Live);
    assert!(room.head().0 >= 5_000_000, "head {}", room.head().0);
    assert!(room.hls().next_msn() >= 70_000, "{}", room.hls().next_msn());
    // Listeners arriving before its first batch wait at the ring's head, not at 0 (a cursor
    // at 0 would take every listener off the direct path, past a skip of the whole gap).
    assert_eq!(room.subscribe_batches().batches.borrow().start, room.head());
    // The roster is the stored one (roles, mutes, requests, invitations, blocks).
    assert_eq!(room.record(0).roster, live.roster);
    assert_eq!(room.creator(), live.creator);

    // Renewed in the store before the room ran.
    let id = RoomId::parse("rstrdnumbr").unwrap();
    let stored = store.get(&id).unwrap().unwrap();
    assert_eq!(stored.rev, live.rev + 1);
    assert!(
        stored.reserved.seq >= 5_000_000 + SEQ_AHEAD,
        "{:?}",
        stored.reserved
    );
    assert!(
        stored.reserved.msn >= 70_000 + MSN_AHEAD,
        "{:?}",
        stored.reserved
    );

    assert!(app.room("endedrmxyz").is_err());
    let gone = RoomId::parse("endedrmxyz").unwrap();
    assert_eq!(store.get(&gone).unwrap(), None);
}
