//! Per-client limits: who the client is (behind trusted proxies), how many connections one
//! address may hold, and how fast one address or subnet may join.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use parking_lot::Mutex;

use crate::config::LimitsConfig;

/// The key "one client" is counted under: the address itself for IPv4, its /64 for IPv6 (one
/// host usually owns a whole /64 and could otherwise use a fresh address per attempt).
pub fn host_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, 64)),
    }
}

/// The key of the client's subnet: its /24 for IPv4, its /56 for IPv6.
pub fn subnet_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(mask_v6(v6, 56)),
    }
}

fn mask_v6(ip: Ipv6Addr, prefix: u32) -> Ipv6Addr {
    let mask = u128::MAX << (128 - prefix);
    Ipv6Addr::from(u128::from(ip) & mask)
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The address a request is limited by. The TCP peer, unless the peer is a trusted proxy: then
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. Entries to the left
/// of that one were written by the client and prove nothing; a proxy's own address is never used
/// while it forwards one.
pub fn client_ip(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(trusted, peer) {
        return peer;
    }
    // Several X-Forwarded-For headers form one list, in order.
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage was not written by a proxy we trust: the last good hop is the client.
            break;
        };
        client = ip;
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (some proxies add it).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The TCP peer of a request, when it came through the node's accept loop (a router driven
/// directly, as in unit tests, has none: then no per-client limit applies).
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        Ok(Peer(peer))
    }
}

/// Counts one event of `key` on `limiter`: `429` with `message` and how long to wait when the
/// key is over its rate.
pub fn throttle(
    limiter: &DefaultKeyedRateLimiter<IpAddr>,
    key: &IpAddr,
    message: &str,
) -> Result<(), crate::error::ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        crate::error::ApiError::Throttled {
            message: message.to_owned(),
            retry_after_s: wait.as_secs_f64().ceil() as u64,
        }
    })
}

/// Why a join was refused by the per-client rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimited {
    /// This client address joined too often.
    Client(Duration),
    /// Its subnet joined too often.
    Subnet(Duration),
}

impl RateLimited {
    /// How long until a join from this client could pass.
    pub fn wait(&self) -> Duration {
        match *self {
            RateLimited::Client(d) | RateLimited::Subnet(d) => d,
        }
    }
}

/// Per-IP and per-subnet join rates (token buckets keyed by address).
pub struct JoinLimiter {
    per_host: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_subnet: Option<DefaultKeyedRateLimiter<IpAddr>>,
    trusted: Vec<IpNet>,
}

impl std::fmt::Debug for JoinLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinLimiter")
            .field("tracked_hosts", &self.per_host.as_ref().map(|l| l.len()))
            .field(
                "tracked_subnets",
                &self.per_subnet.as_ref().map(|l| l.len()),
            )
            .finish()
    }
}

fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    // A burst below the rate would refuse joins the rate allows.
    let burst = NonZeroU32::new(burst.max(rate.get())).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl JoinLimiter {
    /// Limiters for these settings (a rate of 0 turns that limit off).
    pub fn new(config: &LimitsConfig) -> Self {
        JoinLimiter {
            per_host: quota(config.join_rate_per_ip, config.join_burst_per_ip)
                .map(DefaultKeyedRateLimiter::keyed),
            per_subnet: quota(config.join_rate_per_subnet, config.join_burst_per_subnet)
                .map(DefaultKeyedRateLimiter::keyed),
            trusted: config.trusted_proxies.clone(),
        }
    }

    /// The client address of a request from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(&self.trusted, peer, headers)
    }

    /// Counts one join from `client`, or says how long it must wait.
    pub fn check(&self, client: IpAddr) -> Result<(), RateLimited> {
        let now = DefaultClock::default().now();
        if let Some(l) = &self.per_host {
            l.check_key(&host_key(client))
                .map_err(|n| RateLimited::Client(n.wait_time_from(now)))?;
        }
        if let Some(l) = &self.per_subnet {
            l.check_key(&subnet_key(client))
                .map_err(|n| RateLimited::Subnet(n.wait_time_from(now)))?;
        }
        Ok(())
    }

    /// Forgets addresses whose buckets are full again (they would pass anyway), so the maps
    /// hold only clients seen within about one burst's refill time.
    pub fn sweep(&self) {
        for l in [&self.per_host, &self.per_subnet].into_iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    #[cfg(test)]
    /// Addresses and subnets currently tracked.
    pub fn tracked(&self) -> usize {
        [&self.per_host, &self.per_subnet]
            .into_iter()
            .flatten()
            .map(|l| l.len())
            .sum()
    }
}

/// How fast one WebSocket may send messages: a token bucket on a monotonic clock. A client
/// past it is closed (`close::POLICY`): listeners only react now and then, speakers send one
/// audio message per 20 ms frame or fewer.
#[derive(Debug)]
pub struct MessageRate {
    bucket: tribune_core::admission::TokenBucket,
    epoch: std::time::Instant,
}

impl MessageRate {
    /// `per_s` messages a second, `burst` at once.
    pub fn new(per_s: u32, burst: u32) -> Self {
        MessageRate {
            bucket: tribune_core::admission::TokenBucket::new(per_s.max(1), burst.max(1), 0),
            epoch: std::time::Instant::now(),
        }
    }

    /// Counts one message; false when it is over the rate.
    pub fn allow(&mut self) -> bool {
        let now = self.epoch.elapsed().as_micros() as u64;
        self.bucket.try_take(now)
    }
}

/// Open connections per client address, capped.
#[derive(Debug)]
pub struct PerIpConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounts it when dropped (when the socket closes).
#[derive(Debug)]
pub struct IpSlot {
    owner: Arc<PerIpConnections>,
    /// `None` when there is no cap (nothing was counted).
    key: Option<IpAddr>,
}

impl PerIpConnections {
    /// At most `max` connections per address (0: no cap).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIpConnections {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`, or `None` if that address is at its cap.
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        if self.max == 0 {
            return Some(self.exempt());
        }
        let key = host_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            owner: self.clone(),
            key: Some(key),
        })
    }

    /// A slot that is not counted (for a peer that is exempt from the cap).
    pub fn exempt(self: &Arc<Self>) -> IpSlot {
        IpSlot {
            owner: self.clone(),
            key: None,
        }
    }

    #[cfg(test)]
    /// Addresses with a connection open (the map's size).
    pub fn addresses(&self) -> usize {
        self.open.lock().len()
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.owner.open.lock();
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            // Remove emptied entries so the map holds only addresses with open connections.
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peers_are_their_own_client() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = xff(&["1.2.3.4"]);
        assert_eq!(client_ip(&trusted, ip("192.0.2.1"), &h), ip("192.0.2.1"));
        assert_eq!(client_ip(&[], ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_proxies_forward_the_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ];
        let peer = ip("10.1.1.1");
        // The client wrote "6.6.6.6"; our edge appended the real peer and another edge its own.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.2.2.2"]);
        assert_eq!(client_ip(&trusted, peer, &h), ip("198.51.100.7"));
        // With a port, and garbage to its left.
        let h = xff(&["not an address, 198.51.100.8:5555"]);
        assert_eq!(client_ip(&trusted, peer, &h), ip("198.51.100.8"));
        // Garbage appended after the trusted hops: the last trusted hop is all we know.
        let h = xff(&["198.51.100.9, 10.3.3.3, junk"]);
        assert_eq!(client_ip(&trusted, peer, &h), peer);
        // Only proxies: the left-most of them.
        let h = xff(&["10.4.4.4, 10.5.5.5"]);
        assert_eq!(client_ip(&trusted, peer, &h), ip("10.4.4.4"));
        // No header: the proxy itself.
        assert_eq!(client_ip(&trusted, peer, &HeaderMap::new()), peer);
        // A v4-mapped peer is the IPv4 address.
        assert_eq!(
            client_ip(&trusted, ip("::ffff:10.1.1.1"), &xff(&["203.0.113.5"])),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn keys_group_hosts_and_subnets() {
        assert_eq!(host_key(ip("192.0.2.77")), ip("192.0.2.77"));
        assert_eq!(subnet_key(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(host_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            subnet_key(ip("2001:db8:1:2ff:aaaa::1")),
            ip("2001:db8:1:200::")
        );
    }

    #[test]
    fn join_rates_apply_per_host_then_per_subnet() {
        let limiter = JoinLimiter::new(&LimitsConfig {
            join_rate_per_ip: 1,
            join_burst_per_ip: 2,
            join_rate_per_subnet: 1,
            join_burst_per_subnet: 3,
            ..LimitsConfig::default()
        });
        assert!(limiter.check(ip("192.0.2.1")).is_ok());
        assert!(limiter.check(ip("192.0.2.1")).is_ok());
        let refused = limiter.check(ip("192.0.2.1")).unwrap_err();
        assert!(matches!(refused, RateLimited::Client(_)), "{refused:?}");
        assert!(refused.wait() > Duration::ZERO && refused.wait() <= Duration::from_secs(1));
        // Another host of the same /24 has its own bucket, but the subnet's third join is its last.
        assert!(limiter.check(ip("192.0.2.2")).is_ok());
        let refused = limiter.check(ip("192.0.2.3")).unwrap_err();
        assert!(matches!(refused, RateLimited::Subnet(_)), "{refused:?}");
        // Another subnet is unaffected.
        assert!(limiter.check(ip("198.51.100.1")).is_ok());
    }

    #[test]
    fn sweeping_forgets_clients_whose_buckets_refilled() {
        let limiter = JoinLimiter::new(&LimitsConfig {
            join_rate_per_ip: 2,
            join_burst_per_ip: 1000,
            join_rate_per_subnet: 2,
            join_burst_per_subnet: 1000,
            ..LimitsConfig::default()
        });
        for i in 0..100u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0xc000_0200 + (i << 8)));
            assert!(limiter.check(ip).is_ok());
        }
        assert_eq!(limiter.tracked(), 200);
        // A sweep right away keeps them: their buckets are not full yet.
        limiter.sweep();
        assert_eq!(limiter.tracked(), 200);
        // The one token each used refills in 500 ms (slow enough that the sweep above comes
        // first on a loaded machine); governor forgets a key one emission interval after that
        // (its state is then the same as a fresh one's).
        std::thread::sleep(Duration::from_millis(1_200));
        limiter.sweep();
        assert_eq!(limiter.tracked(), 0);
    }

    #[test]
    fn connection_slots_are_capped_and_returned() {
        let per_ip = PerIpConnections::new(2);
        let a = per_ip.try_open(ip("192.0.2.1")).unwrap();
        let _b = per_ip.try_open(ip("192.0.2.1")).unwrap();
        assert!(per_ip.try_open(ip("192.0.2.1")).is_none());
        let _c = per_ip.try_open(ip("192.0.2.2")).unwrap();
        drop(a);
        assert!(per_ip.try_open(ip("192.0.2.1")).is_some());
        drop(_b);
        drop(_c);
        assert_eq!(per_ip.addresses(), 0);
        let unlimited = PerIpConnections::new(0);
        let held: Vec<_> = (0..10)
            .map(|_| unlimited.try_open(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 10);
        assert_eq!(unlimited.addresses(), 0);
    }
}
