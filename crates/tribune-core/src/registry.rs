//! Where the nodes of a cluster find each other: each says every second that it is alive, with
//! its role, its address and its load; an entry not renewed within its lease is gone. A join on
//! any node reads it to send the listener to the least-loaded edge (the nodes' own registry
//! backends live in `tribune-store`; [`LocalRegistry`] is a lone node's).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

use crate::ids::RoomId;
use crate::store::StoreError;

/// What a node does in a cluster, as the registry lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A lone node (rooms and listeners).
    All,
    /// Owns rooms: stage, mixing, recording.
    Origin,
    /// Serves listeners of rooms it pulls.
    Edge,
}

/// One node as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Random per process.
    pub id: String,
    /// What it does.
    pub kind: NodeKind,
    /// Where clients reach it (`http://host:port`).
    pub url: String,
    /// Listener connections it holds now.
    pub listeners: u64,
    /// Most listeners it takes.
    pub capacity: u64,
}

impl NodeEntry {
    /// Whether listeners may be sent to it.
    pub fn serves_listeners(&self) -> bool {
        matches!(self.kind, NodeKind::Edge | NodeKind::All)
    }

    /// How full it is, 0 (empty) to 1 (full) and past.
    pub fn load(&self) -> f64 {
        self.listeners as f64 / self.capacity.max(1) as f64
    }
}

/// The nodes that serve listeners, least loaded first (ties by id, so every node orders them
/// alike).
pub fn by_load(nodes: &[NodeEntry]) -> Vec<&NodeEntry> {
    let mut v: Vec<&NodeEntry> = nodes.iter().filter(|n| n.serves_listeners()).collect();
    v.sort_by(|a, b| a.load().total_cmp(&b.load()).then_with(|| a.id.cmp(&b.id)));
    v
}

/// A registry backend.
pub trait NodeRegistry: Send + Sync + std::fmt::Debug {
    /// Says `me` is alive for `lease` (and replaces what it said before).
    fn beat(&self, me: &NodeEntry, lease: Duration) -> Result<(), StoreError>;
    /// Every node alive now.
    fn nodes(&self) -> Result<Vec<NodeEntry>, StoreError>;
    /// Takes `id` out at once (a node shutting down).
    fn leave(&self, id: &str) -> Result<(), StoreError>;
    /// Names the node at `url` the origin of each of `rooms` for `lease` (renewed while they
    /// run), unless another node holds that room's lease: answers the rooms held elsewhere.
    /// Atomic per room: two origins claiming one room cannot both have it.
    fn claim_rooms(
        &self,
        url: &str,
        rooms: &[RoomId],
        lease: Duration,
    ) -> Result<Vec<RoomId>, StoreError>;
    /// The URL of each room's origin, where one holds its lease (in the order asked).
    fn room_origins(&self, rooms: &[RoomId]) -> Result<Vec<Option<String>>, StoreError>;
    /// Notes in the index of leases that `rooms`' leases (claimed by this node) run out `lease`
    /// from now, on the backend's clock. A hint for [`NodeRegistry::lapsed_rooms`], written
    /// apart from the claims so a slow index never delays one.
    fn index_leases(&self, _rooms: &[RoomId], _lease: Duration) -> Result<(), StoreError> {
        Ok(())
    }
    /// Rooms whose origin lease, as last indexed, has run out (the oldest first, at most
    /// `limit`): the ones worth checking for an origin. `None` from a backend that keeps no such
    /// index (then every stored room is checked).
    fn lapsed_rooms(&self, _limit: usize) -> Result<Option<Vec<RoomId>>, StoreError> {
        Ok(None)
    }
    /// Takes `rooms` out of the index of leases (they ended, or are gone).
    fn unindex_rooms(&self, _rooms: &[RoomId]) -> Result<(), StoreError> {
        Ok(())
    }
    /// The URL of `room`'s origin, if one holds its lease.
    fn room_origin(&self, room: &RoomId) -> Result<Option<String>, StoreError> {
        Ok(self
            .room_origins(std::slice::from_ref(room))?
            .into_iter()
            .next()
            .flatten())
    }
}

/// A lone node's registry: only itself.
#[derive(Debug, Default)]
pub struct LocalRegistry(Mutex<Option<NodeEntry>>);

impl NodeRegistry for LocalRegistry {
    fn beat(&self, me: &NodeEntry, _lease: Duration) -> Result<(), StoreError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(me.clone());
        Ok(())
    }

    fn nodes(&self) -> Result<Vec<NodeEntry>, StoreError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect())
    }

    fn leave(&self, _id: &str) -> Result<(), StoreError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    fn claim_rooms(
        &self,
        _url: &str,
        _rooms: &[RoomId],
        _: Duration,
    ) -> Result<Vec<RoomId>, StoreError> {
        // A lone node is the origin of its own rooms: nobody else holds one.
        Ok(Vec::new())
    }

    fn room_origins(&self, rooms: &[RoomId]) -> Result<Vec<Option<String>>, StoreError> {
        Ok(vec![None; rooms.len()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, kind: NodeKind, listeners: u64, capacity: u64) -> NodeEntry {
        NodeEntry {
            id: id.into(),
            kind,
            url: format!("http://{id}"),
            listeners,
            capacity,
        }
    }

    #[test]
    fn listeners_go_to_the_least_loaded_edge_and_never_to_an_origin() {
        let nodes = [
            node("o", NodeKind::Origin, 0, 100),
            node("b", NodeKind::Edge, 50, 100),
            node("a", NodeKind::Edge, 500, 1000),
            node("c", NodeKind::Edge, 10, 100),
            node("z", NodeKind::Edge, 0, 0),
        ];
        let order: Vec<&str> = by_load(&nodes).iter().map(|n| n.id.as_str()).collect();
        // a and b are both half full: by id. A node with no capacity is last only if loaded.
        assert_eq!(order, ["z", "c", "a", "b"]);
    }

    #[test]
    fn a_local_registry_lists_only_itself_until_it_leaves() {
        let r = LocalRegistry::default();
        assert!(r.nodes().unwrap().is_empty());
        let me = node("x", NodeKind::All, 1, 10);
        r.beat(&me, Duration::from_secs(1)).unwrap();
        assert_eq!(r.nodes().unwrap(), vec![me]);
        r.leave("x").unwrap();
        assert!(r.nodes().unwrap().is_empty());
    }
}
