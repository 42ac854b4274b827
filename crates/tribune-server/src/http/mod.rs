//! The HTTP API: one module per resource (rooms, joins, moderation, reactions, LL-HLS, the web
//! app), request helpers, response headers, and the layers: body deadline, same-origin, and
//! stage requests sent on from an edge to the room's origin.

pub(crate) mod body_deadline;
pub(crate) mod extract;
pub(crate) mod forward;
pub(crate) mod hls;
pub(crate) mod join;
pub(crate) mod moderation;
pub(crate) mod reactions;
pub(crate) mod recording;
pub(crate) mod responses;
pub(crate) mod rooms;
pub(crate) mod same_origin;
pub(crate) mod web;
