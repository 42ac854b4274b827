//! The checks every [`RoomStore`] backend must pass, run by each backend's own tests:
//! `suite::run_all(&|| Box::new(MyStore::open(..)))`. Each check gets a fresh, empty store and
//! panics with what went wrong.

use super::{RoomRecord, RoomStore, StoreError};
use crate::ids::{ListenerId, ParticipantId, Role, RoomId};
use crate::room::{RoomInfo, RoomState};
use crate::stage::{Muter, Roster, StageLimits};

/// Room id characters, in order.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a dyn Fn() -> Box<dyn RoomStore>;

/// Runs every check, each on a fresh store.
pub fn run_all(make: MakeStore<'_>) {
    round_trip(&*make());
    revisions(&*make());
    remove(&*make());
    many_rooms(&*make());
    roster_round_trip(&*make());
}

/// A room with something in every part of its roster.
pub fn busy_room(id: &str, created_at: u64) -> RoomRecord {
    let id = RoomId::parse(id).expect("a valid room id");
    let mut roster = Roster::new(StageLimits::default());
    let host = ParticipantId(1);
    roster
        .add(host, Role::Host, Some("Hôte 🎙".into()), None)
        .expect("host");
    roster
        .add(ParticipantId(2), Role::CoHost, None, None)
        .expect("co-host");
    roster
        .add(
            ParticipantId(3),
            Role::Speaker,
            Some("guest".into()),
            Some(ListenerId(3)),
        )
        .expect("speaker");
    roster
        .set_muted(ParticipantId(3), Muter::Moderator, true)
        .expect("mute");
    roster
        .request(ListenerId(10), Some("asks".into()))
        .expect("request");
    roster.request(ListenerId(11), None).expect("request");
    roster.decline_request(ListenerId(11)).expect("decline");
    roster.invite(ListenerId(12)).expect("invite");
    roster.block_listener(ListenerId(13)).expect("block");
    roster.block_participant(ParticipantId(14)).expect("block");
    let info = RoomInfo::new(id, "A room \"quoted\" ✓".into(), created_at, None);
    let mut record = RoomRecord::new(info, true, roster.to_record());
    record.reserved = super::Reserved {
        seq: 90_000 + created_at,
        msn: 1_000,
    };
    record.creator = Some(std::net::IpAddr::from([192, 0, 2, 7]));
    record
}

fn next(mut r: RoomRecord) -> RoomRecord {
    r.rev += 1;
    r
}

/// What is put is what is got and listed.
pub fn round_trip(store: &dyn RoomStore) {
    let live = busy_room("rndtrpaaa3", 100);
    let mut scheduled = RoomRecord::new(
        RoomInfo::new(
            RoomId::parse("rndtrpaaa2").expect("id"),
            "later".into(),
            200,
            Some(900),
        ),
        false,
        Default::default(),
    );
    assert_eq!(scheduled.info.state, RoomState::Scheduled);
    assert_eq!(store.get(live.id()), Ok(None));
    store.put(&live).expect("put");
    store.put(&scheduled).expect("put");
    assert_eq!(store.get(live.id()), Ok(Some(live.clone())));
    assert_eq!(store.list(), Ok(vec![live.clone(), scheduled.clone()]));
    scheduled = next(scheduled);
    scheduled.info.go_live(300).expect("go live");
    store.put(&scheduled).expect("put rev 2");
    assert_eq!(store.get(scheduled.id()), Ok(Some(scheduled.clone())));
}

/// Only the next revision is written; anything else is a conflict that changes nothing.
pub fn revisions(store: &dyn RoomStore) {
    let first = busy_room("revisnsaa2", 1);
    let id = first.id().clone();
    let conflict = |stored, offered| {
        Err(StoreError::Conflict {
            room: id.clone(),
            stored,
            offered,
        })
    };
    assert_eq!(store.put(&next(first.clone())), conflict(0, 2));
    store.put(&first).expect("rev 1");
    assert_eq!(store.put(&first), conflict(1, 1));
    let mut second = next(first.clone());
    second.recording = false;
    assert_eq!(store.put(&next(second.clone())), conflict(1, 3));
    assert_eq!(store.get(&id), Ok(Some(first.clone())));
    store.put(&second).expect("rev 2");
    assert_eq!(store.put(&next(first)), conflict(2, 2));
    assert_eq!(store.get(&id), Ok(Some(second)));
}

/// A removed room is gone, and may be stored again from revision 1.
pub fn remove(store: &dyn RoomStore) {
    let r = busy_room("remvemeaa2", 5);
    store.put(&r).expect("put");
    assert_eq!(store.remove(r.id()), Ok(true));
    assert_eq!(store.get(r.id()), Ok(None));
    assert_eq!(store.list(), Ok(vec![]));
    assert_eq!(store.remove(r.id()), Ok(false));
    store.put(&r).expect("put again from revision 1");
}

/// Many rooms list oldest first, ties by id.
pub fn many_rooms(store: &dyn RoomStore) {
    let mut want = Vec::new();
    for i in 0..200u64 {
        // Ids against creation order, so the tie-break by id is checked too.
        let n = (199 - i) as usize;
        let id = format!(
            "manyaaaa{}{}",
            ALPHABET[n / 32] as char,
            ALPHABET[n % 32] as char
        );
        let r = busy_room(&id, i / 2);
        store.put(&r).expect("put");
        want.push(r);
    }
    want.sort_by(|a, b| (a.info.created_at, a.id()).cmp(&(b.info.created_at, b.id())));
    let got = store.list().expect("list");
    assert_eq!(got.len(), 200);
    assert!(got == want, "list order differs");
    // Which of some rooms the store does not list: the ones never stored or removed.
    let never = RoomId::parse("neverstrd2").expect("id");
    let removed = want[7].id().clone();
    assert!(store.remove(&removed).expect("remove"));
    let asked = [want[3].id().clone(), never.clone(), removed.clone()];
    assert_eq!(
        store.unlisted(&asked).expect("unlisted"),
        vec![never, removed]
    );
}

/// A roster restored from a stored record behaves as the one recorded.
pub fn roster_round_trip(store: &dyn RoomStore) {
    let r = busy_room("rsteraaaa2", 7);
    store.put(&r).expect("put");
    let back = store.get(r.id()).expect("get").expect("stored");
    let roster = Roster::from_record(StageLimits::default(), back.roster.clone());
    assert_eq!(roster.admit(ParticipantId(1)), Ok(Role::Host));
    assert_eq!(roster.admit(ParticipantId(2)), Ok(Role::CoHost));
    assert_eq!(roster.admit(ParticipantId(3)), Ok(Role::Speaker));
    assert!(roster.is_muted(ParticipantId(3)));
    assert!(roster.is_listener_blocked(ListenerId(13)));
    assert!(roster.admit(ParticipantId(14)).is_err());
    assert_eq!(roster.invites(), &[ListenerId(12)]);
    assert_eq!(roster.requests().count(), 1);
    assert_eq!(roster.rev(), back.roster.rev);
    // The restored roster records what it was restored from.
    assert_eq!(roster.to_record(), back.roster);
}
