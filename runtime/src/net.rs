//! Network-address policy, below every user of it: which hosts an
//! allow-list entry names, which addresses are internal (never reached
//! without an explicit grant), and the TLS client configuration. The http
//! capability, webhook delivery and config validation all use this one
//! module, so they cannot disagree about what "internal" means.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostRule {
    Exact { host: String, port: Option<u16> },
    Subdomain { suffix: String, port: Option<u16> },
}

impl HostRule {
    /// Parses `host`, `host:port`, `*.domain`; `None` if it is not one.
    pub(crate) fn parse(entry: &str) -> Option<HostRule> {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
                (host.to_owned(), Some(port.parse().ok()?))
            }
            _ => (entry.clone(), None),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_owned();
        if host.is_empty() {
            return None;
        }
        Some(match host.strip_prefix("*.") {
            Some(suffix) => HostRule::Subdomain {
                suffix: suffix.to_owned(),
                port,
            },
            None => HostRule::Exact { host, port },
        })
    }

    /// Whether the rule lets `host:port` through (no port: 80 and 443).
    pub(crate) fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok =
            |rule: Option<u16>| rule.map_or(port == 80 || port == 443, |rule| rule == port);
        match self {
            HostRule::Exact {
                host: rule,
                port: rule_port,
            } => rule == host && port_ok(*rule_port),
            HostRule::Subdomain {
                suffix,
                port: rule_port,
            } => {
                host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && port_ok(*rule_port)
            }
        }
    }
}

/// Whether `ip` is an address plugins may never reach without an explicit
/// grant: anything that is not a public unicast address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and IPv4-compatible (::/96) embed an IPv4 address.
    if (segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0; 4])
        || segments[..6] == [0; 6]
    {
        let embedded = Ipv4Addr::new(
            (segments[6] >> 8) as u8,
            segments[6] as u8,
            (segments[7] >> 8) as u8,
            segments[7] as u8,
        );
        return ip.is_unspecified() || ip.is_loopback() || is_internal_v4(embedded);
    }
    // 6to4 (2002::/16) embeds an IPv4 address in segments 1-2.
    if segments[0] == 0x2002 {
        let embedded = Ipv4Addr::new(
            (segments[1] >> 8) as u8,
            segments[1] as u8,
            (segments[2] >> 8) as u8,
            segments[2] as u8,
        );
        return is_internal_v4(embedded);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (segments[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (segments[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (segments[0] == 0x2001 && segments[1] == 0x0db8) // documentation
        || (segments[0] == 0x0100 && segments[1..4] == [0; 3]) // discard-only
}

/// Whether `entry` is a valid allow-list entry (`host`, `host:port`,
/// `*.domain`), for validating grants where they are written.
pub fn valid_host_rule(entry: &str) -> bool {
    let characters_ok = entry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-*:[]_".contains(&b));
    characters_ok && HostRule::parse(entry).is_some()
}

/// The TLS client configuration, built once per process (parsing the root
/// store per call would cost more than the rest of a sandbox).
pub(crate) fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG.get_or_init(build_tls_config).clone()
}

fn build_tls_config() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => builder.with_root_certificates(roots).with_no_client_auth(),
        // The ring provider always supports the default versions; fall back
        // to the process default rather than failing a sandbox.
        Err(_) => rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            })
            .with_no_client_auth(),
    };
    Arc::new(config)
}
