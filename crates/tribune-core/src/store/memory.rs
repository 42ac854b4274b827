//! Room records in process memory: for tests and nodes run without a data directory.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{check_next, sort_records, RoomRecord, RoomStore, StoreError};
use crate::ids::RoomId;

/// A [`RoomStore`] that forgets everything with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    rooms: Mutex<HashMap<RoomId, RoomRecord>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<RoomId, RoomRecord>> {
        // A panic elsewhere while holding the lock leaves whole records behind (each write is
        // one insert), so the map is still sound.
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RoomStore for MemoryStore {
    fn get(&self, room: &RoomId) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.rooms().get(room).cloned())
    }

    fn list(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let mut all: Vec<RoomRecord> = self.rooms().values().cloned().collect();
        sort_records(&mut all);
        Ok(all)
    }

    fn put(&self, record: &RoomRecord) -> Result<(), StoreError> {
        let mut rooms = self.rooms();
        let stored = rooms.get(record.id()).map_or(0, |r| r.rev);
        check_next(record.id(), stored, record.rev)?;
        rooms.insert(record.id().clone(), record.clone());
        Ok(())
    }

    fn remove(&self, room: &RoomId) -> Result<bool, StoreError> {
        Ok(self.rooms().remove(room).is_some())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_the_store_suite() {
        super::super::suite::run_all(&|| Box::new(super::MemoryStore::new()));
    }
}
