//! Who may create rooms: operators with an API key, or (on a node with open rooms) anyone,
//! bounded per address; and how many rooms a node holds at once, whoever asks.
//!
//! A room costs a node memory, a task and, once someone speaks, a share of a core and disk, so
//! creating one is an operator's act by default (`Authorization: Bearer KEY` on
//! `POST /api/rooms`). Community nodes run with open rooms: then each address (IPv6: its /64)
//! may hold a few rooms and create a few an hour. Either way the node caps its rooms.

use std::io::Write as _;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RoomPolicy;
use crate::error::ApiError;
use crate::net::limits::{host_key, throttle};

/// Name of the file under the data directory that keeps a generated operator key.
pub const KEY_FILE: &str = "api-key";

/// How long a client refused for the node's room cap is told to wait.
const FULL_RETRY_S: u64 = 60;

/// Who is creating a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creator {
    /// An operator (presented a configured API key).
    Operator,
    /// Anyone, on a node with open rooms: counted under this address key.
    Anonymous(IpAddr),
}

/// The node's room-creation policy with its per-address state.
pub struct CreationGate {
    policy: RoomPolicy,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for CreationGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreationGate")
            .field("open", &self.policy.open)
            .field("keys", &self.policy.api_keys.len())
            .finish()
    }
}

impl CreationGate {
    /// The gate for `policy`.
    pub fn new(policy: &RoomPolicy) -> Self {
        let per_ip = NonZeroU32::new(policy.open_creations_per_ip_per_hour)
            .filter(|_| policy.open)
            .map(|n| {
                let period = Duration::from_secs(3600) / n.get();
                let quota = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_hour(n))
                    .allow_burst(n);
                DefaultKeyedRateLimiter::keyed(quota)
            });
        CreationGate {
            policy: policy.clone(),
            per_ip,
        }
    }

    /// Decides who is asking: an operator key wins; without one, anyone on an open node (at
    /// `client`), else `401`. A presented key that is not one of the node's is `403`, open or not.
    pub fn identify(&self, bearer: Option<&str>, client: IpAddr) -> Result<Creator, ApiError> {
        match bearer {
            Some(key) if self.is_key(key) => Ok(Creator::Operator),
            Some(_) => Err(ApiError::Forbidden(
                "this API key is not one of this node's operator keys".into(),
            )),
            None if self.policy.open => Ok(Creator::Anonymous(host_key(client))),
            None => Err(ApiError::Unauthenticated(
                "operator API key (Authorization: Bearer KEY): this node lets only its \
                 operators create rooms",
            )),
        }
    }

    /// Whether `key` is one of the operator keys (compared in constant time).
    fn is_key(&self, key: &str) -> bool {
        self.policy.api_keys.iter().fold(false, |found, k| {
            found | same_bytes(k.as_bytes(), key.as_bytes())
        })
    }

    /// Admits one creation by `who`, given the node's `live` rooms and how many of them
    /// `who` holds (`held`, for an anonymous creator). Refusals: `503` at the node's cap,
    /// `429` past the address's share.
    pub fn admit(&self, who: Creator, live: usize, held: usize) -> Result<(), ApiError> {
        if live >= self.policy.max_rooms {
            return Err(ApiError::Full {
                message: format!(
                    "this node holds its maximum of {} rooms; try again later",
                    self.policy.max_rooms
                ),
                retry_after_s: FULL_RETRY_S,
            });
        }
        let Creator::Anonymous(ip) = who else {
            return Ok(());
        };
        if held >= self.policy.open_rooms_per_ip {
            return Err(ApiError::Throttled {
                message: format!(
                    "this address already holds {held} rooms, the most one address may open; \
                     end one first"
                ),
                retry_after_s: FULL_RETRY_S,
            });
        }
        match &self.per_ip {
            Some(limiter) => throttle(
                limiter,
                &ip,
                "this address created too many rooms this hour",
            ),
            None => Ok(()),
        }
    }

    /// Forgets addresses whose buckets refilled.
    pub fn sweep(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// Constant-time equality (a key check must not tell how much of a guess was right).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An operator key the node made for itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The key.
    pub key: String,
    /// Where it is kept (`None` without a data directory: it lasts this run only).
    pub path: Option<PathBuf>,
}

/// The node's own operator key: read from `data_dir/api-key`, or made and stored there (mode
/// 0600) on first start. Answers the key and, when it was made just now, what to tell the
/// operator (it is printed once). Without a data directory a fresh key is made every start.
pub fn own_key(data_dir: Option<&Path>) -> std::io::Result<(String, Option<GeneratedKey>)> {
    let fresh = || format!("trb_{:032x}", rand::random::<u128>());
    let Some(dir) = data_dir else {
        let key = fresh();
        let told = GeneratedKey {
            key: key.clone(),
            path: None,
        };
        return Ok((key, Some(told)));
    };
    let path = dir.join(KEY_FILE);
    let (key, made) = read_or_make(&path, fresh)?;
    let told = made.then(|| GeneratedKey {
        key: key.clone(),
        path: Some(path),
    });
    Ok((key, told))
}

/// The file under the data directory that holds the node's token-signing secret.
pub const SIGNING_KEY_FILE: &str = "signing-key";

/// The node's own token-signing key, kept in `data_dir/signing-key` (made on first start,
/// mode 0600), so the tokens and tickets it issued still verify after a restart.
pub fn own_signing_key(data_dir: &Path) -> std::io::Result<tribune_core::Keyring> {
    let fresh = || {
        format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        )
    };
    let (secret, _) = read_or_make(&data_dir.join(SIGNING_KEY_FILE), fresh)?;
    Ok(tribune_core::Keyring::new("k1", secret.into_bytes()))
}

/// The first line of `path`, or `fresh()` written there (fsynced, owner-only) when the file is
/// missing or empty; whether it was made now.
fn read_or_make(path: &Path, fresh: impl Fn() -> String) -> std::io::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_owned(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let value = fresh();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(format!("{value}\n").as_bytes())?;
    f.sync_all()?;
    Ok((value, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(open: bool) -> CreationGate {
        CreationGate::new(&RoomPolicy {
            api_keys: vec!["k-one".into(), "k-two".into()],
            open,
            max_rooms: 5,
            open_rooms_per_ip: 2,
            open_creations_per_ip_per_hour: 3,
            ..RoomPolicy::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_keys_create_on_a_closed_node() {
        let g = gate(false);
        let client = ip("192.0.2.1");
        assert_eq!(
            g.identify(Some("k-two"), client).unwrap(),
            Creator::Operator
        );
        let e = g.identify(None, client).unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        for wrong in ["k-on", "k-one ", "", "K-ONE"] {
            let e = g.identify(Some(wrong), client).unwrap_err();
            assert_eq!(e.status().as_u16(), 403, "{wrong:?}");
        }
        // Operators are bounded only by the node's cap.
        assert!(g.admit(Creator::Operator, 4, 0).is_ok());
        assert_eq!(
            g.admit(Creator::Operator, 5, 0)
                .unwrap_err()
                .status()
                .as_u16(),
            503
        );
    }

    #[test]
    fn open_nodes_bound_each_address() {
        let g = gate(true);
        let who = g.identify(None, ip("2001:db8::1")).unwrap();
        // Counted per /64.
        assert_eq!(who, Creator::Anonymous(ip("2001:db8::")));
        assert_eq!(g.admit(who, 0, 2).unwrap_err().status().as_u16(), 429);
        for _ in 0..3 {
            assert!(g.admit(who, 0, 0).is_ok());
        }
        let e = g.admit(who, 0, 0).unwrap_err();
        assert_eq!(e.status().as_u16(), 429);
        // Another address has its own bucket; the node cap applies to everyone.
        let other = g.identify(None, ip("198.51.100.4")).unwrap();
        assert!(g.admit(other, 0, 0).is_ok());
        assert_eq!(g.admit(other, 5, 0).unwrap_err().status().as_u16(), 503);
    }

    #[test]
    fn a_generated_key_is_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (key, told) = own_key(Some(dir.path())).unwrap();
        let told = told.expect("made on first start");
        assert_eq!(told.key, key);
        assert!(key.starts_with("trb_") && key.len() == 36, "{key}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, told) = own_key(Some(dir.path())).unwrap();
        assert_eq!(again, key);
        assert!(told.is_none(), "printed only once");
        let (a, _) = own_key(None).unwrap();
        let (b, _) = own_key(None).unwrap();
        assert_ne!(a, b);
    }
}
