//! Queue tickets: a waiting listener's place in line, signed, so the node keeps no record of it.

use serde::{Deserialize, Serialize};

use crate::ids::RoomId;
use crate::token::{Keyring, SignedPayload, TokenError};

/// The signed content of a queue ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTicket {
    /// Key id that signed it.
    pub kid: String,
    /// The room the holder waits for.
    pub room: RoomId,
    /// The holder's number in the node's queue (see [`super::Gate`]).
    pub queue: u64,
    /// The epoch of the cluster's shared line the number is from (see [`super::SharedGate`]);
    /// `None` for the node's own line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<u64>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

impl SignedPayload for QueueTicket {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn set_kid(&mut self, kid: String) {
        self.kid = kid;
    }
    fn exp(&self) -> u64 {
        self.exp
    }
}

impl QueueTicket {
    /// Signs a ticket for number `queue` in `room`.
    pub fn issue(keys: &Keyring, room: &RoomId, queue: u64, exp: u64) -> String {
        Self::issue_in(keys, room, queue, None, exp)
    }

    /// Signs a ticket for number `queue` of the cluster's shared line of epoch `cluster`, or
    /// (`None`) the node's own.
    pub fn issue_in(
        keys: &Keyring,
        room: &RoomId,
        queue: u64,
        cluster: Option<u64>,
        exp: u64,
    ) -> String {
        keys.sign_payload(&QueueTicket {
            kid: String::new(),
            room: room.clone(),
            queue,
            cluster,
            exp,
        })
    }

    /// Verifies a queue ticket for `room`: forged, expired, unknown-key and other rooms' tickets
    /// are refused.
    pub fn verify(
        keys: &Keyring,
        token: &str,
        room: &RoomId,
        now_s: u64,
    ) -> Result<QueueTicket, TokenError> {
        let t: QueueTicket = keys.verify_payload(token, now_s)?;
        if &t.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Claims, TokenKind};
    use crate::Role;

    #[test]
    fn tickets_verify_only_for_their_room_key_and_lifetime() {
        let keys = Keyring::new("a", b"secret-a".to_vec());
        let room = RoomId::random();
        let t = QueueTicket::issue(&keys, &room, 42, 100);
        let got = QueueTicket::verify(&keys, &t, &room, 99).unwrap();
        assert_eq!((got.queue, got.kid.as_str()), (42, "a"));
        assert_eq!(
            QueueTicket::verify(&keys, &t, &room, 100),
            Err(TokenError::Expired)
        );
        assert_eq!(
            QueueTicket::verify(&keys, &t, &RoomId::random(), 1),
            Err(TokenError::WrongRoom)
        );
        let other = Keyring::new("b", b"secret-b".to_vec());
        assert_eq!(
            QueueTicket::verify(&other, &t, &room, 1),
            Err(TokenError::UnknownKey)
        );
        let same_kid = Keyring::new("a", b"another".to_vec());
        assert_eq!(
            QueueTicket::verify(&same_kid, &t, &room, 1),
            Err(TokenError::BadSignature)
        );
        // Rotation: the old key still verifies.
        let rotated = Keyring::new("c", b"new".to_vec()).with_previous("a", b"secret-a".to_vec());
        assert!(QueueTicket::verify(&rotated, &t, &room, 1).is_ok());
    }

    #[test]
    fn a_queue_ticket_is_not_a_listen_ticket_and_back() {
        let keys = Keyring::new("a", b"k".to_vec());
        let room = RoomId::random();
        let q = QueueTicket::issue(&keys, &room, 1, 100);
        assert_eq!(keys.verify(&q, 1), Err(TokenError::Malformed));
        let listen = keys.sign(&Claims {
            kid: String::new(),
            kind: TokenKind::Listen,
            room: room.clone(),
            role: Role::Listener,
            sub: 1,
            exp: 100,
        });
        assert_eq!(
            QueueTicket::verify(&keys, &listen, &room, 1),
            Err(TokenError::Malformed)
        );
    }
}
