//! Where the crowd connects from and to: the target must be on loopback (unless allowed
//! otherwise), client sockets are spread over many 127.x.y.z source addresses so one machine
//! never runs out of ephemeral ports, and the process's open-file limit is raised.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use url::Url;

use super::CrowdError;

/// Connections per source address. Each 127.x.y.z has its own 28 000 ephemeral ports
/// (32768–60999); keeping far fewer per address leaves room for TIME_WAIT after churn.
pub const PER_SOURCE_ADDR: u32 = 1_000;

/// The target server.
#[derive(Debug, Clone)]
pub struct Target {
    /// The base URL (`http://host:port`).
    pub base: Url,
    /// Where to connect.
    pub addr: SocketAddr,
    /// Whether source addresses are spread over 127.0.0.0/8 (only for a loopback target).
    pub spread_sources: bool,
}

/// Resolves the server URL and checks it is on loopback, unless `allow_remote`.
pub async fn target(server: &str, allow_remote: bool) -> Result<Target, CrowdError> {
    let base =
        Url::parse(server).map_err(|e| CrowdError::Config(format!("--server {server}: {e}")))?;
    if base.scheme() != "http" {
        return Err(CrowdError::Config(format!(
            "--server {server}: only http:// is supported"
        )));
    }
    let host = base
        .host_str()
        .ok_or_else(|| CrowdError::Config(format!("--server {server}: no host")))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = base.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| CrowdError::Config(format!("--server {server}: {e}")))?
        .collect();
    // Prefer IPv4 loopback: "localhost" may resolve to ::1 first.
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback() && a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| CrowdError::Config(format!("--server {server}: no address")))?;
    let loopback = addr.ip().is_loopback();
    if !loopback && !allow_remote {
        return Err(CrowdError::Config(format!(
            "--server {server} resolves to {}, which is not a loopback address; a crowd is a \
             load test, so it is only sent elsewhere with --allow-remote",
            addr.ip()
        )));
    }
    Ok(Target {
        base,
        addr,
        spread_sources: loopback && addr.is_ipv4(),
    })
}

/// The source address of connection `i`: 127.1.0.1, … `PER_SOURCE_ADDR` connections each,
/// stepping through 127.x.y.z with x ≥ 1 (so the server's usual 127.0.0.1 is never used) and
/// y, z in 1..=250 (no .0 or .255 octets, which some tools treat specially).
pub fn source_addr(i: u32) -> Ipv4Addr {
    let k = i / PER_SOURCE_ADDR;
    let z = (k % 250) as u8 + 1;
    let y = ((k / 250) % 250) as u8 + 1;
    let x = ((k / 62_500) % 254) as u8 + 1;
    Ipv4Addr::new(127, x, y, z)
}

/// The source address of join client `k` (HTTP connections for joins), apart from the listen
/// connections' range.
pub fn join_source_addr(k: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 255, (k / 250 % 250) as u8 + 1, (k % 250) as u8 + 1)
}

/// Opens a TCP connection to the target, bound to connection `i`'s source address when spread.
pub async fn connect(target: &Target, i: u32) -> std::io::Result<TcpStream> {
    connect_to(target, target.addr, i).await
}

/// Where a listen URL points: its address, which must be on loopback when the target is (a
/// cluster's join may send a listener to another node, never off this machine in a test).
pub fn listen_addr(target: &Target, url: &str) -> Result<SocketAddr, String> {
    let u = Url::parse(url).map_err(|e| format!("bad listen_url: {e}"))?;
    // Checked before any lookup: a hostile answer naming some host must not make the crowd
    // send even a DNS query off the machine.
    let local_name = matches!(
        u.host(),
        Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) | Some(url::Host::Domain("localhost"))
    );
    if target.addr.ip().is_loopback() && !local_name {
        return Err(format!(
            "listen_url {url}: a loopback crowd follows only IP addresses"
        ));
    }
    let addr = u
        .socket_addrs(|| Some(80))
        .map_err(|e| format!("listen_url {url}: {e}"))?
        .into_iter()
        .find(|a| a.is_ipv4() || !target.addr.is_ipv4())
        .ok_or_else(|| format!("listen_url {url}: no address"))?;
    if target.addr.ip().is_loopback() && !addr.ip().is_loopback() {
        return Err(format!("listen_url {url} is not on loopback"));
    }
    Ok(addr)
}

/// Opens a TCP connection to `addr` (a node of the target's cluster), bound to connection
/// `i`'s source address when the target's are spread.
pub async fn connect_to(target: &Target, addr: SocketAddr, i: u32) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if target.spread_sources && addr.is_ipv4() {
        sock.bind(SocketAddr::new(IpAddr::V4(source_addr(i)), 0))?;
    }
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Raises the soft open-file limit to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> Result<u64, CrowdError> {
    rlimit::increase_nofile_limit(u64::MAX)
        .map_err(|e| CrowdError::Config(format!("cannot raise the open-file limit: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_step_per_thousand_and_skip_special_octets() {
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(source_addr(999), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(source_addr(1_000), Ipv4Addr::new(127, 1, 1, 2));
        assert_eq!(source_addr(250_000), Ipv4Addr::new(127, 1, 2, 1));
        assert_eq!(source_addr(u32::MAX).octets()[0], 127);
        for i in (0..2_000_000_000u32).step_by(7_777_777) {
            let o = source_addr(i).octets();
            assert!(o[1] >= 1 && o[2] >= 1 && o[2] <= 250 && o[3] >= 1 && o[3] <= 250);
        }
        assert_eq!(join_source_addr(0), Ipv4Addr::new(127, 255, 1, 1));
    }

    #[tokio::test]
    async fn a_loopback_crowd_follows_listen_urls_only_to_loopback_addresses() {
        let t = target("http://127.0.0.1:9", false).await.unwrap();
        assert_eq!(
            listen_addr(&t, "ws://127.0.0.2:81/api/rooms/r/listen?ticket=x").unwrap(),
            "127.0.0.2:81".parse().unwrap()
        );
        assert!(listen_addr(&t, "ws://localhost:81/l")
            .unwrap()
            .ip()
            .is_loopback());
        // Named hosts are refused before any lookup; other addresses after parsing.
        assert!(listen_addr(&t, "ws://edge.example.net/l").is_err());
        assert!(listen_addr(&t, "ws://10.0.0.1:80/l").is_err());
        assert!(listen_addr(&t, "not a url").is_err());
    }

    #[tokio::test]
    async fn remote_targets_are_refused_without_the_flag() {
        assert!(
            target("http://127.0.0.1:9", false)
                .await
                .unwrap()
                .spread_sources
        );
        assert!(target("http://localhost:9", false).await.is_ok());
        let err = target("http://192.0.2.1:80", false).await.unwrap_err();
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let t = target("http://192.0.2.1:80", true).await.unwrap();
        assert!(!t.spread_sources);
        assert!(target("https://127.0.0.1:9", false).await.is_err());
    }
}
