//! Typed identifiers, so a room id is never confused with a token or a sequence number.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

const ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
const ROOM_ID_LEN: usize = 10;

/// A room's public id: 10 characters from an unambiguous lowercase alphabet.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomId(String);

impl RoomId {
    /// A fresh random room id.
    pub fn random() -> Self {
        let mut rng = rand::rng();
        let s = (0..ROOM_ID_LEN)
            .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
            .collect();
        RoomId(s)
    }

    /// Parses an id, refusing anything that could not have been issued (so it never reaches a
    /// path or a log line unchecked).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == ROOM_ID_LEN && s.bytes().all(|b| ID_ALPHABET.contains(&b)))
            .then(|| RoomId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RoomId::parse(&s).ok_or_else(|| format!("invalid room id {s:?}"))
    }
}

impl From<RoomId> for String {
    fn from(id: RoomId) -> String {
        id.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomId({})", self.0)
    }
}

/// A program-track sequence number: one per 20 ms frame, contiguous while the room is live.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Seq(pub u64);

impl Seq {
    /// The following sequence number.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one listener across reconnects (carried in its ticket).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ListenerId(pub u64);

impl ListenerId {
    /// A fresh random listener id (53 bits, so it survives a JavaScript number).
    pub fn random() -> Self {
        ListenerId(random_js_safe())
    }
}

/// Identifies a participant on stage (host, co-host or speaker).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParticipantId(pub u64);

impl ParticipantId {
    /// A fresh random participant id (53 bits, so it survives a JavaScript number).
    pub fn random() -> Self {
        ParticipantId(random_js_safe())
    }
}

/// Largest integer a JavaScript number holds exactly.
pub const MAX_JS_SAFE: u64 = (1 << 53) - 1;

/// A random id in 1..=2^53-1: browsers parse JSON numbers as doubles.
fn random_js_safe() -> u64 {
    rand::rng().random_range(1..=MAX_JS_SAFE)
}

/// What a participant may do in a room.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the room; full control.
    Host,
    /// Helps the host moderate.
    CoHost,
    /// May publish audio.
    Speaker,
    /// Hears the program.
    Listener,
}

impl Role {
    /// Whether this role may publish audio into the mix.
    pub fn can_speak(self) -> bool {
        !matches!(self, Role::Listener)
    }

    /// Whether this role may moderate (end the room, invite speakers).
    pub fn can_moderate(self) -> bool {
        matches!(self, Role::Host | Role::CoHost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_id_round_trips_and_rejects_foreign_text() {
        let id = RoomId::random();
        assert_eq!(id.as_str().len(), 10);
        assert_eq!(RoomId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(RoomId::parse("../../etc/"), None);
        assert_eq!(RoomId::parse("ABCDEFGHJK"), None);
        assert_eq!(RoomId::parse("abc"), None);
        assert_eq!(
            RoomId::parse("abcdefghi0"),
            None,
            "0 is not in the alphabet"
        );
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RoomId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RoomId>("\"nope\"").is_err());
    }

    #[test]
    fn random_ids_fit_javascript_numbers() {
        for _ in 0..1000 {
            let (l, p) = (ListenerId::random().0, ParticipantId::random().0);
            assert!((1..=MAX_JS_SAFE).contains(&l) && (1..=MAX_JS_SAFE).contains(&p));
        }
    }

    #[test]
    fn roles_know_their_powers() {
        assert!(Role::Host.can_speak() && Role::Host.can_moderate());
        assert!(Role::CoHost.can_moderate());
        assert!(Role::Speaker.can_speak() && !Role::Speaker.can_moderate());
        assert!(!Role::Listener.can_speak() && !Role::Listener.can_moderate());
    }
}
