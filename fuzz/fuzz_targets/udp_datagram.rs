//! The WebRTC UDP demultiplexer: arbitrary sequences of datagrams from arbitrary loopback ports
//! are classified and routed (or dropped with a reason) without a panic, and routing keeps its
//! invariants: DTLS/RTP only reach a session from an address its STUN came from, and a session
//! learns a bounded number of addresses.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use tribune_server::whip::demux::{classify, stun_local_ufrag, DropReason, Kind, Router};

const MAX_ADDRS: usize = 3;

fuzz_target!(|data: &[u8]| {
    let mut router = Router::new(MAX_ADDRS);
    assert!(router.insert(1, "alpha", 'a'));
    assert!(router.insert(2, "beta", 'b'));
    // The input is a sequence of [port byte, length byte, datagram...].
    let mut rest = data;
    while let [port, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        rest = next;
        let src = SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(*port % 8)));
        let kind = classify(datagram);
        let ufrag = stun_local_ufrag(datagram);
        if let Ok(Some(u)) = ufrag {
            assert!(!u.is_empty() && datagram.len() >= 20 + u.len());
        }
        match router.route(src, datagram) {
            Ok((id, handle)) => {
                assert!(kind != Kind::Other);
                assert!((id == 1 && *handle == 'a') || (id == 2 && *handle == 'b'));
            }
            Err(DropReason::Junk) => assert_eq!(kind, Kind::Other),
            Err(DropReason::BadStun(_)) => assert!(kind == Kind::Stun && ufrag.is_err()),
            Err(DropReason::UnknownUfrag) => assert!(matches!(ufrag, Ok(Some(_)))),
            Err(DropReason::UnknownSource) => assert!(kind != Kind::Other),
        }
        assert!(router.addr_count() <= 2 * MAX_ADDRS);
    }
    assert_eq!(router.remove(1), Some('a'));
    assert_eq!(router.remove(2), Some('b'));
    assert!(router.is_empty());
    assert_eq!(router.addr_count(), 0);
});
