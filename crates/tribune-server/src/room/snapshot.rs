//! What a room tells its connections: the latest room event (serialized once for everyone) and
//! the part of it listener connections act on themselves.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::watch;
use tribune_core::event::{OnAir, RoomEvent};
use tribune_core::RoomState;

use super::{Event, LiveRoom, Stage};

/// The latest room-state event.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Lifecycle state.
    pub state: RoomState,
    /// The JSON event, serialized once for everyone.
    pub text: Utf8Bytes,
    /// The same as one WebSocket text frame with its revision (what phase-group writers send).
    pub event: Event,
    /// The roster's ejection revision: listener connections look themselves up (are they
    /// blocked or removed?) only when this moves.
    pub eject_rev: u64,
}

/// What in a room's events a listener connection acts on itself (the room ending, someone
/// removed or blocked): its task follows this, not every event (counts and who speaks reach a
/// listener at the live edge through its phase group's writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Lifecycle state.
    pub state: RoomState,
    /// The roster's ejection revision.
    pub eject_rev: u64,
    /// A pulled room this node let go: its connections reconnect (and pull it again).
    pub retired: bool,
}

impl LiveRoom {
    /// Follows the room-state events.
    pub fn subscribe_snapshots(&self) -> watch::Receiver<Snapshot> {
        self.snapshot.subscribe()
    }

    /// Follows the room's state and ejections only (see [`Control`]).
    pub fn subscribe_control(&self) -> watch::Receiver<Control> {
        self.control.subscribe()
    }

    /// The latest room event as a frame, for the phase-group writers.
    pub(crate) fn event(&self) -> Event {
        self.snapshot.borrow().event.clone()
    }

    /// Publishes the room-state event if its text changed; says whether it did.
    pub(super) fn publish_snapshot(&self, stage: &Stage) -> bool {
        let info = self.info.lock().clone();
        let speaking = |slot| stage.speakers.get(&slot).is_some_and(|s| s.speaking);
        let part = self.stage_part(speaking);
        let state = info.state;
        let event = RoomEvent {
            id: info.id,
            title: info.title,
            state,
            listeners: self.audience(),
            speakers: stage
                .speakers
                .iter()
                .map(|(&id, s)| OnAir {
                    id,
                    speaking: s.speaking,
                })
                .collect(),
            rev: part.rev,
            participants: part.participants,
            requests: part.requests,
            invited: part.invited,
            reactions: self.reaction_window(),
        };
        self.publish_text(state, event.to_text(), part.eject_rev)
    }

    /// Publishes `text` as the room event (if it changed), then the control part; says whether
    /// the event changed.
    pub(super) fn publish_text(&self, state: RoomState, text: String, eject_rev: u64) -> bool {
        let mut changed = false;
        self.snapshot.send_if_modified(|snap| {
            if snap.state == state && snap.text.as_str() == text {
                // Same event; an ejection (a mirrored roster) still reaches the snapshot.
                return std::mem::replace(&mut snap.eject_rev, eject_rev) != eject_rev;
            }
            changed = true;
            *snap = Snapshot {
                state,
                event: Event {
                    rev: snap.event.rev + 1,
                    frame: crate::net::direct::text_frame(&text),
                },
                text: Utf8Bytes::from(text),
                eject_rev,
            };
            true
        });
        // After the event itself: a task woken by this finds the event that goes with it.
        let control = Control {
            state,
            eject_rev,
            retired: self.is_retired(),
        };
        self.control
            .send_if_modified(|c| std::mem::replace(c, control) != control);
        changed
    }
}
