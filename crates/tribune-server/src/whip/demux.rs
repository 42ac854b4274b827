//! Sans-IO demultiplexing of the node's one WebRTC UDP socket.
//!
//! Every WHIP session shares one UDP port, so each datagram must find its session without asking
//! every session (`Rtc::accepts` per packet is O(sessions)). The first byte tells what a datagram
//! is (RFC 7983 §7); STUN binding requests name the session in their USERNAME attribute
//! (`<our ufrag>:<their ufrag>`, RFC 8445 §7.2.2), and everything else (DTLS, SRTP, SRTCP) is
//! routed by the source address that the session's STUN traffic came from. Two hash-map look-ups
//! per datagram, whatever the number of sessions. Nothing here allocates per datagram except
//! when a new source address is learned.

use std::collections::HashMap;
use std::net::SocketAddr;

/// STUN's magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of a STUN header.
const STUN_HEADER: usize = 20;
/// The USERNAME attribute type.
const ATTR_USERNAME: u16 = 0x0006;
/// Longest USERNAME accepted (RFC 8489 §14.3: < 513 bytes).
const MAX_USERNAME: usize = 512;

/// What a datagram is, from its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 0–3: STUN.
    Stun,
    /// 20–63: DTLS.
    Dtls,
    /// 128–191: RTP or RTCP (SRTP/SRTCP once keyed).
    Rtp,
    /// Anything else (ZRTP, TURN channels, QUIC, junk, empty): never ours.
    Other,
}

/// Classifies a datagram by its first byte.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Other,
    }
}

/// Why a STUN message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than its header, or than the length the header announces.
    #[error("truncated STUN message")]
    Truncated,
    /// Not STUN after all (no magic cookie, bad lengths, an attribute running past the end).
    #[error("malformed STUN message")]
    Malformed,
    /// A USERNAME that is not UTF-8 `ufrag:ufrag` text.
    #[error("malformed STUN USERNAME")]
    BadUsername,
}

/// The local (our) ICE ufrag named by a STUN message's USERNAME attribute, `None` if the message
/// has no USERNAME (responses and indications). The whole message is checked for framing first.
pub fn stun_local_ufrag(datagram: &[u8]) -> Result<Option<&str>, StunError> {
    if datagram.len() < STUN_HEADER {
        return Err(StunError::Truncated);
    }
    if datagram[0] & 0xC0 != 0 {
        return Err(StunError::Malformed);
    }
    let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    if cookie != MAGIC_COOKIE {
        return Err(StunError::Malformed);
    }
    let body_len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    if body_len % 4 != 0 {
        return Err(StunError::Malformed);
    }
    let body = match datagram.get(STUN_HEADER..STUN_HEADER + body_len) {
        Some(b) if STUN_HEADER + body_len == datagram.len() => b,
        Some(_) => return Err(StunError::Malformed),
        None => return Err(StunError::Truncated),
    };
    let mut rest = body;
    let mut username = None;
    while !rest.is_empty() {
        let (head, tail) = rest.split_at_checked(4).ok_or(StunError::Malformed)?;
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let padded = len.div_ceil(4) * 4;
        if tail.len() < padded {
            return Err(StunError::Malformed);
        }
        if typ == ATTR_USERNAME && username.is_none() {
            username = Some(&tail[..len]);
        }
        rest = &tail[padded..];
    }
    let Some(raw) = username else {
        return Ok(None);
    };
    if raw.len() > MAX_USERNAME {
        return Err(StunError::BadUsername);
    }
    let text = std::str::from_utf8(raw).map_err(|_| StunError::BadUsername)?;
    match text.split_once(':') {
        Some((local, _remote)) if !local.is_empty() => Ok(Some(local)),
        _ => Err(StunError::BadUsername),
    }
}

/// Why a datagram was dropped before reaching any session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Its first byte is no protocol we speak (or it is empty).
    #[error("not STUN, DTLS or RTP")]
    Junk,
    /// Starts like STUN but is not well-formed.
    #[error("malformed STUN: {0}")]
    BadStun(StunError),
    /// A STUN request for a ufrag no session has.
    #[error("STUN for an unknown ufrag")]
    UnknownUfrag,
    /// DTLS, RTP or a STUN response from an address no session has talked to.
    #[error("from an unknown source address")]
    UnknownSource,
}

#[derive(Debug)]
struct Entry<K> {
    ufrag: String,
    addrs: Vec<SocketAddr>,
    handle: K,
}

/// Maps datagrams to sessions: by local ufrag (STUN), then by learned source address.
///
/// `K` is the session's handle (a channel sender in the server; anything in tests and fuzzing).
#[derive(Debug)]
pub struct Router<K> {
    sessions: HashMap<u64, Entry<K>>,
    by_ufrag: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    max_addrs: usize,
}

impl<K> Router<K> {
    /// An empty router; each session learns at most `max_addrs` source addresses (a peer
    /// normally uses one; the cap bounds what forged STUN can make a session hold).
    pub fn new(max_addrs: usize) -> Self {
        Router {
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            max_addrs: max_addrs.max(1),
        }
    }

    /// Registers session `id` with its local ICE ufrag. False (and nothing changes) if the id or
    /// the ufrag is already in use.
    pub fn insert(&mut self, id: u64, ufrag: &str, handle: K) -> bool {
        if self.sessions.contains_key(&id) || self.by_ufrag.contains_key(ufrag) {
            return false;
        }
        self.by_ufrag.insert(ufrag.to_owned(), id);
        self.sessions.insert(
            id,
            Entry {
                ufrag: ufrag.to_owned(),
                addrs: Vec::new(),
                handle,
            },
        );
        true
    }

    /// Forgets session `id` and every address it learned; returns its handle.
    pub fn remove(&mut self, id: u64) -> Option<K> {
        let entry = self.sessions.remove(&id)?;
        self.by_ufrag.remove(&entry.ufrag);
        for a in &entry.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        Some(entry.handle)
    }

    /// Sessions registered.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is registered.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Source addresses learned (all sessions).
    pub fn addr_count(&self) -> usize {
        self.by_addr.len()
    }

    /// The session a datagram from `src` belongs to: its id and handle, or why it is dropped.
    /// A STUN request for a known ufrag teaches the router its source address.
    pub fn route(&mut self, src: SocketAddr, datagram: &[u8]) -> Result<(u64, &K), DropReason> {
        let id = match classify(datagram) {
            Kind::Other => return Err(DropReason::Junk),
            Kind::Stun => match stun_local_ufrag(datagram).map_err(DropReason::BadStun)? {
                Some(ufrag) => {
                    let id = *self.by_ufrag.get(ufrag).ok_or(DropReason::UnknownUfrag)?;
                    self.learn(src, id);
                    id
                }
                None => *self.by_addr.get(&src).ok_or(DropReason::UnknownSource)?,
            },
            Kind::Dtls | Kind::Rtp => *self.by_addr.get(&src).ok_or(DropReason::UnknownSource)?,
        };
        match self.sessions.get(&id) {
            Some(e) => Ok((id, &e.handle)),
            None => Err(DropReason::UnknownSource),
        }
    }

    fn learn(&mut self, src: SocketAddr, id: u64) {
        let previous = self.by_addr.get(&src).copied();
        if previous == Some(id) {
            return;
        }
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        if entry.addrs.len() >= self.max_addrs {
            return;
        }
        entry.addrs.push(src);
        self.by_addr.insert(src, id);
        // The address moved from another session (a port reused after a client restarted).
        if let Some(old) = previous.and_then(|p| self.sessions.get_mut(&p)) {
            old.addrs.retain(|a| *a != src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with the given USERNAME (and one other attribute before it).
    pub(crate) fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // PRIORITY (0x0024), 4 bytes.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn first_byte_classes_follow_rfc_7983() {
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0]), Kind::Stun);
        assert_eq!(classify(&[3]), Kind::Stun);
        assert_eq!(classify(&[4]), Kind::Other);
        assert_eq!(classify(&[19]), Kind::Other);
        assert_eq!(classify(&[20]), Kind::Dtls);
        assert_eq!(classify(&[63]), Kind::Dtls);
        assert_eq!(classify(&[64]), Kind::Other);
        assert_eq!(classify(&[127]), Kind::Other);
        assert_eq!(classify(&[128]), Kind::Rtp);
        assert_eq!(classify(&[191]), Kind::Rtp);
        assert_eq!(classify(&[192]), Kind::Other);
        assert_eq!(classify(&[255]), Kind::Other);
    }

    #[test]
    fn username_gives_the_local_ufrag() {
        let m = binding_request("srvUfrag:cliUfrag");
        assert_eq!(stun_local_ufrag(&m), Ok(Some("srvUfrag")));
        // Odd lengths are padded.
        let m = binding_request("abcde:xyz");
        assert_eq!(stun_local_ufrag(&m), Ok(Some("abcde")));
    }

    #[test]
    fn bad_stun_is_refused() {
        let m = binding_request("a:b");
        assert_eq!(stun_local_ufrag(&m[..19]), Err(StunError::Truncated));
        assert_eq!(
            stun_local_ufrag(&m[..m.len() - 4]),
            Err(StunError::Truncated)
        );
        let mut extra = m.clone();
        extra.extend_from_slice(&[0; 4]);
        assert_eq!(stun_local_ufrag(&extra), Err(StunError::Malformed));
        let mut no_cookie = m.clone();
        no_cookie[4] = 0;
        assert_eq!(stun_local_ufrag(&no_cookie), Err(StunError::Malformed));
        assert_eq!(
            stun_local_ufrag(&binding_request("nocolon")),
            Err(StunError::BadUsername)
        );
        assert_eq!(
            stun_local_ufrag(&binding_request(":remote")),
            Err(StunError::BadUsername)
        );
        // An attribute whose length runs past the end.
        let mut long_attr = m.clone();
        long_attr[22..24].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(stun_local_ufrag(&long_attr), Err(StunError::Malformed));
        // A response without USERNAME is fine: it routes by address.
        let mut resp = vec![0x01, 0x01, 0, 0];
        resp.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        resp.extend_from_slice(&[1; 12]);
        assert_eq!(stun_local_ufrag(&resp), Ok(None));
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_address() {
        let mut r = Router::new(2);
        assert!(r.insert(1, "one", "session one"));
        assert!(r.insert(2, "two", "session two"));
        assert!(!r.insert(3, "one", "dup ufrag"));
        assert!(!r.insert(1, "three", "dup id"));
        let dtls = [22u8, 0xfe, 0xfd, 0, 0];
        let rtp = [0x80u8, 111, 0, 1];
        assert_eq!(r.route(addr(5000), &dtls), Err(DropReason::UnknownSource));
        assert_eq!(
            r.route(addr(5000), &binding_request("nobody:x")),
            Err(DropReason::UnknownUfrag)
        );
        assert_eq!(
            r.route(addr(5000), &binding_request("one:x")),
            Ok((1, &"session one"))
        );
        assert_eq!(r.route(addr(5000), &dtls), Ok((1, &"session one")));
        assert_eq!(r.route(addr(5000), &rtp), Ok((1, &"session one")));
        assert_eq!(r.route(addr(5001), &rtp), Err(DropReason::UnknownSource));
        assert_eq!(r.route(addr(5000), &[0x42, 1, 2]), Err(DropReason::Junk));
        assert_eq!(
            r.route(addr(5000), &[0, 1, 2]),
            Err(DropReason::BadStun(StunError::Truncated))
        );
        // The per-session address cap: a third address is delivered but not learned.
        r.route(addr(5002), &binding_request("one:x")).unwrap();
        r.route(addr(5003), &binding_request("one:x")).unwrap();
        assert_eq!(r.route(addr(5003), &rtp), Err(DropReason::UnknownSource));
        // An address moves to the session whose STUN it sent last.
        r.route(addr(5002), &binding_request("two:x")).unwrap();
        assert_eq!(r.route(addr(5002), &rtp), Ok((2, &"session two")));
        assert_eq!(r.addr_count(), 2);
        assert_eq!(r.remove(1), Some("session one"));
        assert_eq!(r.route(addr(5000), &rtp), Err(DropReason::UnknownSource));
        assert_eq!(r.route(addr(5002), &rtp), Ok((2, &"session two")));
        assert_eq!(r.remove(2), Some("session two"));
        assert!(r.is_empty());
        assert_eq!(r.addr_count(), 0);
    }
}
