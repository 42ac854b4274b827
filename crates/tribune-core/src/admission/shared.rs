//! One admission gate for a whole cluster: one capacity, one join rate and one FIFO waiting
//! room whose numbers come from one counter, so a place in line means the same on every node.
//! It lives where every node reaches it (Redis, in `tribune-store`); a node that cannot reach
//! it decides with its own [`super::Gate`] meanwhile (and says so).

use super::{Decision, GateConfig};
use crate::store::StoreError;

/// A cluster's gate (see the module docs). `listeners` is what the cluster holds now, as the
/// node asking knows it (its registry's last read): seats admitted since are held by the gate
/// itself until their listeners are counted.
pub trait SharedGate: Send + Sync + std::fmt::Debug {
    /// The settings.
    fn config(&self) -> &GateConfig;
    /// A fresh join: the decision, and the epoch of the line (a queue ticket keeps it).
    fn join(&self, listeners: u64) -> Decided<'_>;
    /// A return with `number` from the line of `epoch` (another epoch's number: a fresh join).
    fn rejoin(&self, listeners: u64, number: u64, epoch: u64) -> Decided<'_>;
}

/// A decision being made: the gate is asked over the network, so a join awaits it.
pub type Decided<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(Decision, u64), StoreError>> + Send + 'a>,
>;

/// Seconds until `position` is called at `rate` admissions a second (at least 1).
pub fn eta_at_rate(position: u64, rate: u32) -> u64 {
    position.div_ceil(u64::from(rate.max(1))).max(1)
}
