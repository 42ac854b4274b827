//! Tribune's Rust client: the room API over HTTP, speaking (publishing Opus frames over the speak
//! WebSocket) and listening (receiving the program track, measuring loss and glass-to-ear
//! latency, decoding to PCM). The crowd load generator is its own crate (`tribune-crowd`).

pub mod api;
pub mod join;
pub mod listen;
pub mod speak;
pub mod stats;

pub use api::{Api, ClientError, JoinTicket, RoomCreated};
pub use join::{full_jitter, JoinPolicy, JoinStep};
pub use listen::{listen, ListenOptions, ListenReport};
pub use speak::{speak, AudioSource, SpeakOptions, SpeakReport};
pub use stats::{LatencySummary, Percentiles};

/// Microseconds since the Unix epoch (the clock capture timestamps use).
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
