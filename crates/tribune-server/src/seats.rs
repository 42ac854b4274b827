//! The speaker seats of a room: one per publishing connection, whatever its transport
//! (WebSocket or WHIP), so moderation can find, mute and remove a participant's connections.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;
use tribune_core::{ParticipantId, Role};

#[derive(Debug)]
struct Entry {
    participant: ParticipantId,
    role: Role,
    removed: watch::Sender<Option<String>>,
}

/// Seats by mixer slot.
#[derive(Debug, Default)]
pub struct Seats {
    inner: Mutex<HashMap<u64, Entry>>,
}

impl Seats {
    /// Registers a seat; the receiver learns the reason if it is removed.
    pub fn add(
        &self,
        slot: u64,
        participant: ParticipantId,
        role: Role,
    ) -> watch::Receiver<Option<String>> {
        let (removed, rx) = watch::channel(None);
        self.inner.lock().insert(
            slot,
            Entry {
                participant,
                role,
                removed,
            },
        );
        rx
    }

    /// Forgets a seat whose connection closed.
    pub fn remove_slot(&self, slot: u64) {
        self.inner.lock().remove(&slot);
    }

    /// Removes all seats of a participant, telling each why. Returns how many.
    pub fn remove_participant(&self, participant: ParticipantId, reason: &str) -> usize {
        let mut seats = self.inner.lock();
        let mut n = 0;
        seats.retain(|_, e| {
            if e.participant != participant {
                return true;
            }
            e.removed.send_replace(Some(reason.to_owned()));
            n += 1;
            false
        });
        n
    }

    /// Mixer slots of a participant.
    pub fn slots_of(&self, participant: ParticipantId) -> Vec<u64> {
        self.inner
            .lock()
            .iter()
            .filter(|(_, e)| e.participant == participant)
            .map(|(&s, _)| s)
            .collect()
    }

    /// All seats: (slot, participant, role).
    pub fn list(&self) -> Vec<(u64, ParticipantId, Role)> {
        self.inner
            .lock()
            .iter()
            .map(|(&s, e)| (s, e.participant, e.role))
            .collect()
    }
}
