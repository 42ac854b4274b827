//! The network edge: the accept loop with its connection limits, per-address limits, and the
//! direct socket writes that carry shared batches to listener sockets.

pub(crate) mod batch;
pub(crate) mod direct;
pub(crate) mod limits;
pub(crate) mod serve;
