//! IP address helpers for plugins that judge, report or act on addresses:
//! one reading of an `ip` entity's value and one definition of "ours" and
//! "never on the internet", so that a blocker, a reputation lookup and an
//! asset report agree.
//!
//! ```
//! use rampart_sdk::net;
//!
//! let ip = net::address("[fd12::1]:22").unwrap();
//! assert!(net::is_private(ip) && net::is_reserved(ip));
//! assert_eq!(net::address("10.0.0.7:445"), "10.0.0.7".parse().ok());
//! assert_eq!(net::address("::ffff:10.0.0.1"), "10.0.0.1".parse().ok());
//! assert!(net::is_reserved("127.0.0.1".parse().unwrap()));
//! assert!(!net::is_private("127.0.0.1".parse().unwrap()));
//! assert!(!net::is_reserved("203.0.113.9".parse().unwrap()));
//! assert_eq!(net::address("not an ip"), None);
//! ```

use std::net::IpAddr;

/// The address an `ip` entity names: `a.b.c.d`, `a.b.c.d:port`, an IPv6
/// address, `[v6]` or `[v6]:port`; an IPv4-mapped IPv6 address as IPv4.
pub fn address(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    let bare = value
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']').map(|(ip, _)| ip))
        .or_else(|| {
            value
                .rsplit_once(':')
                .filter(|(ip, _)| !ip.contains(':'))
                .map(|(ip, _)| ip)
        })
        .unwrap_or(value);
    let ip: IpAddr = bare.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Inside an organisation's own networks: RFC 1918, shared address space
/// (100.64.0.0/10, carrier-grade NAT) and IPv6 unique local (fc00::/7).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => (v6.segments()[0] & 0xfe00) == 0xfc00,
        },
    }
}

/// Never a public internet host: [`is_private`], loopback, link-local,
/// multicast, broadcast, unspecified, `0.0.0.0/8` and `240.0.0.0/4`.
/// Blocking one cuts off your own network; sending one to a third party
/// leaks your topology.
pub fn is_reserved(ip: IpAddr) -> bool {
    if is_private(ip) {
        return true;
    }
    match ip {
        IpAddr::V4(v4) => {
            let [a, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || a == 0
                || a >= 240
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_reserved(IpAddr::V4(v4)),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}
