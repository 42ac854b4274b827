//! The node: its state (the room registry, keys, settings), admission, who may create rooms,
//! and the count of open connections.

pub mod admission;
pub(crate) mod cluster;
pub(crate) mod connections;
pub mod creation;
pub(crate) mod pulls;
pub(crate) mod state;
pub(crate) mod takeover;
