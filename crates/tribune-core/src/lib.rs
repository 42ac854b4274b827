//! Tribune's domain, free of I/O: typed ids, the room lifecycle, signed tokens and tickets, the
//! fan-out ring that every listener connection reads the program track from, roles and
//! permissions, the stage roster, and aggregated reactions.

pub mod admission;
pub mod event;
pub mod ids;
pub mod permissions;
pub mod reactions;
pub mod registry;
pub mod ring;
pub mod room;
pub mod stage;
pub mod store;
pub mod text;
pub mod token;

pub use event::RoomEvent;
pub use ids::{ListenerId, ParticipantId, Role, RoomId, Seq};
pub use permissions::{allowed, Action};
pub use reactions::{ReactionKind, Reactions, Reactor};
pub use ring::{Frame, Ring, RingRead};
pub use room::{RoomError, RoomInfo, RoomState};
pub use stage::{Roster, RosterRecord, StageError, StageLimits};
pub use store::{MemoryStore, Reserved, RoomRecord, RoomStore, StoreError};
pub use token::{Claims, Keyring, SignedPayload, TokenError, TokenKind};

/// Microseconds since the Unix epoch: the clock that capture timestamps use.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
