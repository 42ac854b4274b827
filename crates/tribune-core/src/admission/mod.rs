//! Admission control, free of I/O: the gate (capacity, admission rate, and a FIFO waiting room
//! made of counters), signed queue tickets, and proof of work for joins under attack.
//! The server calls these with the clock and its listener count; see ARCHITECTURE §5.

mod bucket;
mod gate;
mod holds;
mod pow;
mod shared;
mod ticket;

pub use bucket::TokenBucket;
pub use gate::{Decision, Gate, GateConfig, GateStats};
pub use holds::{Holds, MAX_HOLD_S};
pub use pow::{solve, work_bits, AttackMeter, PowChallenge, PowError, ReplayGuard, MAX_BITS};
pub use shared::{eta_at_rate, Decided, SharedGate};
pub use ticket::QueueTicket;
