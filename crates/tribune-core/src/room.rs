//! A room's lifecycle: scheduled → live → ended, with the transitions that are allowed.

use serde::{Deserialize, Serialize};

use crate::ids::RoomId;

/// Where a room is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomState {
    /// Announced for a later time; listeners can join and wait.
    Scheduled,
    /// On air.
    Live,
    /// Over; nothing more is produced.
    Ended,
}

/// A transition that the lifecycle does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RoomError {
    /// The room has ended and cannot change any more.
    #[error("room has ended")]
    Ended,
}

/// A room's descriptive state, as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's id.
    pub id: RoomId,
    /// Its title.
    pub title: String,
    /// Lifecycle state.
    pub state: RoomState,
    /// When it was created (seconds since the Unix epoch).
    pub created_at: u64,
    /// When it is scheduled to start, if it was scheduled.
    pub scheduled_for: Option<u64>,
    /// When it went live.
    pub started_at: Option<u64>,
    /// When it ended.
    pub ended_at: Option<u64>,
}

/// Longest accepted title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;

/// Checks and trims a room title: 1 to [`MAX_TITLE_CHARS`] characters, no control or
/// bidirectional formatting characters.
pub fn clean_title(title: &str) -> Result<String, crate::text::TextError> {
    crate::text::clean(title, "a title", MAX_TITLE_CHARS)
}

impl RoomInfo {
    /// A new room: scheduled if `scheduled_for` lies in the future, otherwise live at once.
    pub fn new(id: RoomId, title: String, now_s: u64, scheduled_for: Option<u64>) -> Self {
        let scheduled = scheduled_for.filter(|&t| t > now_s);
        RoomInfo {
            id,
            title,
            state: if scheduled.is_some() {
                RoomState::Scheduled
            } else {
                RoomState::Live
            },
            created_at: now_s,
            scheduled_for: scheduled,
            started_at: scheduled.is_none().then_some(now_s),
            ended_at: None,
        }
    }

    /// Goes live (idempotent when already live). Returns whether the state changed.
    pub fn go_live(&mut self, now_s: u64) -> Result<bool, RoomError> {
        match self.state {
            RoomState::Ended => Err(RoomError::Ended),
            RoomState::Live => Ok(false),
            RoomState::Scheduled => {
                self.state = RoomState::Live;
                self.started_at = Some(now_s);
                Ok(true)
            }
        }
    }

    /// Ends the room (idempotent). Returns whether the state changed.
    pub fn end(&mut self, now_s: u64) -> bool {
        if self.state == RoomState::Ended {
            return false;
        }
        self.state = RoomState::Ended;
        self.ended_at = Some(now_s);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscheduled_room_is_live_at_once() {
        let r = RoomInfo::new(RoomId::random(), "t".into(), 100, None);
        assert_eq!(r.state, RoomState::Live);
        assert_eq!(r.started_at, Some(100));
        let past = RoomInfo::new(RoomId::random(), "t".into(), 100, Some(50));
        assert_eq!(past.state, RoomState::Live);
    }

    #[test]
    fn scheduled_room_goes_live_then_ends_for_good() {
        let mut r = RoomInfo::new(RoomId::random(), "t".into(), 100, Some(200));
        assert_eq!(r.state, RoomState::Scheduled);
        assert_eq!(r.started_at, None);
        assert_eq!(r.go_live(150), Ok(true));
        assert_eq!(r.go_live(160), Ok(false));
        assert_eq!(r.started_at, Some(150));
        assert!(r.end(300));
        assert!(!r.end(301));
        assert_eq!(r.ended_at, Some(300));
        assert_eq!(r.go_live(400), Err(RoomError::Ended));
        assert_eq!(r.state, RoomState::Ended);
    }
}
