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
    /// A fresh random listener id.
    pub fn random() -> Self {
        ListenerId(rand::rng().random())
    }
}

/// Identifies a participant on stage (host, co-host or speaker).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParticipantId(pub u64);

impl ParticipantId {
    /// A fresh random participant id.
    pub fn random() -> Self {
        ParticipantId(rand::rng().random())
    }
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
    fn roles_know_their_powers() {
        assert!(Role::Host.can_speak() && Role::Host.can_moderate());
        assert!(Role::CoHost.can_moderate());
        assert!(Role::Speaker.can_speak() && !Role::Speaker.can_moderate());
        assert!(!Role::Listener.can_speak() && !Role::Listener.can_moderate());
    }
}
