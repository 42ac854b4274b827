//! HMAC-signed tokens and tickets, verifiable by any node holding the key, with no lookup.
//!
//! Wire form: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, claims JSON))`. The claims
//! name the key id, so keys can rotate: a node signs with its current key and verifies with any
//! key it still holds.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{Role, RoomId};

type HmacSha256 = Hmac<Sha256>;

/// Longest token text accepted before any decoding work is done.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a token grants.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A participant's stage credential (host, co-host, speaker).
    Stage,
    /// A listener's admission to the listen WebSocket.
    Listen,
    /// A node pulling a room's program from another node of its cluster (nodes sharing the
    /// signing secret trust each other).
    Relay,
}

/// The signed content of a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Key id that signed it.
    pub kid: String,
    /// What it grants.
    pub kind: TokenKind,
    /// The room it is bound to.
    pub room: RoomId,
    /// The role it carries.
    pub role: Role,
    /// Subject: participant or listener id.
    pub sub: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
}

/// Something a [`Keyring`] signs: JSON with the signing key's id and an expiry.
pub trait SignedPayload: Serialize + serde::de::DeserializeOwned + Clone {
    /// The id of the key that signed it.
    fn kid(&self) -> &str;
    /// Sets the signing key's id.
    fn set_kid(&mut self, kid: String);
    /// Expiry, seconds since the Unix epoch.
    fn exp(&self) -> u64;
}

impl SignedPayload for Claims {
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

/// Why a token was refused.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token at all (wrong shape, bad base64, bad JSON, too long).
    #[error("malformed token")]
    Malformed,
    /// Signed with a key this node does not hold.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not match (forged or altered).
    #[error("bad signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
    /// Valid, but for another room.
    #[error("token is for another room")]
    WrongRoom,
    /// Valid, but not this kind of token.
    #[error("wrong kind of token")]
    WrongKind,
}

/// The keys a node signs and verifies with.
#[derive(Clone)]
pub struct Keyring {
    current: (String, Vec<u8>),
    previous: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("kid", &self.current.0)
            .finish()
    }
}

impl Keyring {
    /// A keyring with one signing key.
    pub fn new(kid: impl Into<String>, key: impl Into<Vec<u8>>) -> Self {
        Keyring {
            current: (kid.into(), key.into()),
            previous: Vec::new(),
        }
    }

    /// A keyring with a fresh random 256-bit key (a single node with no configured secret).
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        let kid = format!("k{:08x}", rand::random::<u32>());
        Keyring::new(kid, key.to_vec())
    }

    /// Adds a key that is still accepted for verification but no longer used to sign.
    pub fn with_previous(mut self, kid: impl Into<String>, key: impl Into<Vec<u8>>) -> Self {
        self.previous.push((kid.into(), key.into()));
        self
    }

    /// The id of the key used for signing.
    pub fn current_kid(&self) -> &str {
        &self.current.0
    }

    fn key(&self, kid: &str) -> Option<&[u8]> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(k, _)| k == kid)
            .map(|(_, key)| key.as_slice())
    }

    /// Signs claims (their `kid` is set to the current key's id).
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_payload(claims)
    }

    /// Checks the signature and expiry, and returns the claims.
    pub fn verify(&self, token: &str, now_s: u64) -> Result<Claims, TokenError> {
        self.verify_payload(token, now_s)
    }

    /// Signs any payload (its `kid` is set to the current key's id). Payload types differ in
    /// their required fields, so one kind never parses as another.
    pub fn sign_payload<T: SignedPayload>(&self, payload: &T) -> String {
        let mut payload = payload.clone();
        payload.set_kid(self.current.0.clone());
        let body = serde_json::to_vec(&payload).expect("payloads serialize");
        let mut mac = mac_for(&self.current.1);
        mac.update(&body);
        let sig = mac.finalize().into_bytes();
        format!("{}.{}", B64.encode(&body), B64.encode(sig))
    }

    /// Checks a payload's signature and expiry.
    pub fn verify_payload<T: SignedPayload>(
        &self,
        token: &str,
        now_s: u64,
    ) -> Result<T, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let body = B64.decode(body_b64).map_err(|_| TokenError::Malformed)?;
        let sig = B64.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        let payload: T = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        let key = self.key(payload.kid()).ok_or(TokenError::UnknownKey)?;
        let mut mac = mac_for(key);
        mac.update(&body);
        // Constant-time comparison.
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        if payload.exp() <= now_s {
            return Err(TokenError::Expired);
        }
        Ok(payload)
    }

    /// Verifies a token and checks it is of `kind` for `room`.
    pub fn verify_for(
        &self,
        token: &str,
        kind: TokenKind,
        room: &RoomId,
        now_s: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify(token, now_s)?;
        if claims.kind != kind {
            return Err(TokenError::WrongKind);
        }
        if &claims.room != room {
            return Err(TokenError::WrongRoom);
        }
        Ok(claims)
    }
}

fn mac_for(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(room: &RoomId, kind: TokenKind, exp: u64) -> Claims {
        Claims {
            kid: String::new(),
            kind,
            room: room.clone(),
            role: Role::Host,
            sub: 7,
            exp,
        }
    }

    #[test]
    fn signed_token_verifies_and_carries_claims() {
        let keys = Keyring::new("a", b"secret".to_vec());
        let room = RoomId::random();
        let t = keys.sign(&claims(&room, TokenKind::Stage, 1000));
        let c = keys.verify_for(&t, TokenKind::Stage, &room, 999).unwrap();
        assert_eq!(c.sub, 7);
        assert_eq!(c.role, Role::Host);
        assert_eq!(c.kid, "a");
    }

    #[test]
    fn refusals_name_the_reason() {
        let keys = Keyring::new("a", b"secret".to_vec());
        let room = RoomId::random();
        let t = keys.sign(&claims(&room, TokenKind::Stage, 1000));
        assert_eq!(keys.verify(&t, 1000), Err(TokenError::Expired));
        assert_eq!(
            keys.verify_for(&t, TokenKind::Listen, &room, 1),
            Err(TokenError::WrongKind)
        );
        assert_eq!(
            keys.verify_for(&t, TokenKind::Stage, &RoomId::random(), 1),
            Err(TokenError::WrongRoom)
        );
        let other = Keyring::new("a", b"other".to_vec());
        assert_eq!(other.verify(&t, 1), Err(TokenError::BadSignature));
        let stranger = Keyring::new("b", b"secret".to_vec());
        assert_eq!(stranger.verify(&t, 1), Err(TokenError::UnknownKey));
        for junk in ["", ".", "abc", "a.b", "!!!.###", &"x".repeat(5000)] {
            assert_eq!(keys.verify(junk, 1), Err(TokenError::Malformed), "{junk:?}");
        }
    }

    #[test]
    fn altered_claims_fail_the_signature() {
        let keys = Keyring::new("a", b"secret".to_vec());
        let room = RoomId::random();
        let t = keys.sign(&claims(&room, TokenKind::Listen, 1000));
        let (body, sig) = t.split_once('.').unwrap();
        let mut c: Claims = serde_json::from_slice(&B64.decode(body).unwrap()).unwrap();
        c.role = Role::CoHost;
        let forged = format!("{}.{}", B64.encode(serde_json::to_vec(&c).unwrap()), sig);
        assert_eq!(keys.verify(&forged, 1), Err(TokenError::BadSignature));
    }

    #[test]
    fn rotated_keys_still_verify_old_tokens() {
        let old = Keyring::new("k1", b"one".to_vec());
        let room = RoomId::random();
        let t = old.sign(&claims(&room, TokenKind::Listen, 1000));
        let rotated = Keyring::new("k2", b"two".to_vec()).with_previous("k1", b"one".to_vec());
        assert!(rotated.verify(&t, 1).is_ok());
        let t2 = rotated.sign(&claims(&room, TokenKind::Listen, 1000));
        assert_eq!(rotated.verify(&t2, 1).unwrap().kid, "k2");
        assert_eq!(old.verify(&t2, 1), Err(TokenError::UnknownKey));
    }
}
