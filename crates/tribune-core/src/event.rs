//! The room event: what every listener and speaker connection is told about its room (a text
//! message `{"type":"room",…}` on the listen and speak WebSockets, docs/PROTOCOL.md), built in
//! one place from the room's state and read back by clients with the same type.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Role, RoomId};
use crate::reactions::WindowCounts;
use crate::room::RoomState;
use crate::stage::Member;

/// The state of a room as its audience sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "room")]
pub struct RoomEvent {
    /// The room.
    pub id: RoomId,
    /// Its title.
    pub title: String,
    /// Where it is in its life.
    pub state: RoomState,
    /// Open listener connections on this node.
    pub listeners: u64,
    /// Publishing seats (mixer slots) and whether each spoke in the last window.
    pub speakers: Vec<OnAir>,
    /// The roster's revision (it moves with every stage change).
    pub rev: u64,
    /// Who is on stage.
    pub participants: Vec<Participant>,
    /// Pending requests to speak.
    pub requests: usize,
    /// Listener ids invited on stage (decimal strings).
    pub invited: Vec<String>,
    /// The last complete reactions window, if any.
    pub reactions: Option<ReactionWindow>,
}

/// A publishing seat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnAir {
    /// The seat's mixer slot.
    pub id: u64,
    /// Whether it spoke in the last window.
    pub speaking: bool,
}

/// A stage member as the room event shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Participant id (a decimal string: 64-bit ids do not fit JavaScript numbers).
    pub id: String,
    /// Their role now.
    pub role: Role,
    /// Display name, if given.
    pub name: Option<String>,
    /// Kept out of the mix (by themself or a moderator).
    pub muted: bool,
    /// Muted by a moderator (only a moderator lifts it).
    pub muted_by_moderator: bool,
    /// Holds a publishing seat now.
    pub connected: bool,
    /// Spoke in the last window.
    pub speaking: bool,
}

impl Participant {
    /// `member` as shown; `on_air` is `Some(speaking)` while it holds a seat.
    pub fn of(member: &Member, on_air: Option<bool>) -> Self {
        Participant {
            id: member.id.0.to_string(),
            role: member.role,
            name: member.name.clone(),
            muted: member.muted(),
            muted_by_moderator: member.moderator_muted,
            connected: on_air.is_some(),
            speaking: on_air == Some(true),
        }
    }
}

/// Reaction counts of one window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionWindow {
    /// The window's number (clients count each window once).
    pub window: u64,
    /// Count per kind (kinds with at least one reaction).
    pub counts: BTreeMap<String, u64>,
}

impl From<&WindowCounts> for ReactionWindow {
    fn from(w: &WindowCounts) -> Self {
        ReactionWindow {
            window: w.window,
            counts: w
                .counts
                .iter()
                .map(|&(k, n)| (k.as_str().to_owned(), n))
                .collect(),
        }
    }
}

impl RoomEvent {
    /// The event as the JSON text sent on the wire.
    pub fn to_text(&self) -> String {
        // A struct of strings, numbers and maps with string keys always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an event back from a text message; `None` for any other message.
    pub fn parse(text: &str) -> Option<RoomEvent> {
        serde_json::from_str(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ParticipantId;
    use crate::reactions::ReactionKind;

    fn event() -> RoomEvent {
        let member = Member {
            id: ParticipantId(18_446_744_073_709_551_000),
            role: Role::CoHost,
            name: Some("Ada".into()),
            listener: None,
            self_muted: false,
            moderator_muted: true,
        };
        RoomEvent {
            id: RoomId::parse("abcdefghij").unwrap(),
            title: "t".into(),
            state: RoomState::Live,
            listeners: 7,
            speakers: vec![OnAir {
                id: 3,
                speaking: true,
            }],
            rev: 4,
            participants: vec![Participant::of(&member, Some(false))],
            requests: 2,
            invited: vec!["9".into()],
            reactions: Some(ReactionWindow::from(&WindowCounts {
                window: 5,
                counts: vec![(ReactionKind::Clap, 3)],
            })),
        }
    }

    #[test]
    fn the_wire_form_is_the_documented_one() {
        let v: serde_json::Value = serde_json::from_str(&event().to_text()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "room", "id": "abcdefghij", "title": "t", "state": "live",
                "listeners": 7, "speakers": [{"id": 3, "speaking": true}], "rev": 4,
                "participants": [{"id": "18446744073709551000", "role": "co_host", "name": "Ada",
                    "muted": true, "muted_by_moderator": true, "connected": true,
                    "speaking": false}],
                "requests": 2, "invited": ["9"],
                "reactions": {"window": 5, "counts": {"clap": 3}},
            })
        );
    }

    #[test]
    fn it_reads_back_and_other_messages_are_not_events() {
        let e = event();
        assert_eq!(RoomEvent::parse(&e.to_text()), Some(e));
        assert_eq!(
            RoomEvent::parse(r#"{"type":"reaction","kind":"clap"}"#),
            None
        );
        assert_eq!(RoomEvent::parse("not json"), None);
    }
}
