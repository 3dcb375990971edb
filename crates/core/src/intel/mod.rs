//! The threat-intel index behind `rampart:plugin/intel`.
//!
//! Feeds are imported once ([`formats`] reads ipsum, maltrail trails, hash
//! lists, ESET and LOKI IOC files, MISP events and STIX 2.1 bundles) and shared, read-only, by every tenant that
//! subscribes to them. Matching semantics:
//!
//! | entity | matches |
//! |---|---|
//! | IP `a.b.c.d` | the IP; every CIDR that contains it; every `ip:port` indicator of that IP |
//! | IP with port `a.b.c.d:p` | the IP and its CIDRs as above, and `ip:port` indicators with that port only |
//! | domain / hostname `x.evil.example` | `x.evil.example`, `evil.example`, `example` (whole labels only: `notevil.example` never matches `evil.example`); a suffix trail `.evil.example` matches the names under it, not `evil.example` itself |
//! | URL | the normalised URL; a path listed for any host: `/gate.php` matches that path with any query, `/afu.php?zoneid=` that path with a query that starts so; then its host as a domain (with its parents) or an IP |
//! | e-mail `user@evil.example` | its domain |
//! | file hash | MD5, SHA-1 or SHA-256, case-insensitive |
//!
//! URLs are normalised before they are stored and looked up: the scheme
//! (`http`, `https`, `hxxp`) and user info are dropped, the host is
//! lower-cased without a trailing dot, default ports (80, 443) and the
//! fragment are dropped, and a bare `/` path is removed; the path and query
//! keep their case.

pub mod formats;
pub mod loki;
pub mod misp;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{Entity, EntityKind, IndicatorMatch};
use crate::tenant::TenantId;

/// What a feed says about the indicators of one of its files or objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndicatorMeta {
    /// Malware family or threat name.
    pub family: Option<String>,
    /// Campaign or actor.
    pub campaign: Option<String>,
    /// Confidence 0-100 (see each format for how it is set).
    pub confidence: u8,
    /// Report links.
    pub references: Vec<String>,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
}

/// One indicator, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Indicator {
    /// An IP address.
    Ip(IpAddr),
    /// An IP and port (`185.1.2.3:443`).
    IpPort(IpAddr, u16),
    /// A network.
    Cidr(IpNet),
    /// A domain; matches its subdomains.
    Domain(String),
    /// A domain suffix (maltrail's `.cu.cc`): matches the names under it
    /// only.
    DomainSuffix(String),
    /// A normalised URL (see the module docs).
    Url(String),
    /// A path on any host (`/gate.php`), as maltrail lists them.
    UrlPath(String),
    /// A lower-case hex MD5, SHA-1 or SHA-256.
    Hash(String),
}

impl Indicator {
    /// The indicator as shown in matches.
    pub fn text(&self) -> String {
        match self {
            Indicator::Ip(ip) => ip.to_string(),
            Indicator::IpPort(ip, port) => match ip {
                IpAddr::V4(_) => format!("{ip}:{port}"),
                IpAddr::V6(_) => format!("[{ip}]:{port}"),
            },
            Indicator::Cidr(net) => net.to_string(),
            Indicator::DomainSuffix(text) => format!(".{text}"),
            Indicator::Domain(text)
            | Indicator::Url(text)
            | Indicator::UrlPath(text)
            | Indicator::Hash(text) => text.clone(),
        }
    }
}

/// Normalises a URL (see the module docs); `None` if it has no host.
pub fn normalize_url(raw: &str) -> Option<String> {
    let text = raw.trim();
    let lower = text.to_ascii_lowercase();
    let (rest, default_ports): (&str, &[&str]) = if let Some(i) = lower.find("://") {
        let scheme = &lower[..i];
        let ports: &[&str] = match scheme {
            "http" | "hxxp" => &[":80"],
            "https" | "hxxps" => &[":443"],
            _ => &[],
        };
        (&text[i + 3..], ports)
    } else {
        (text, &[":80", ":443"])
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let mut host = host_port.to_ascii_lowercase();
    for port in default_ports {
        if let Some(stripped) = host.strip_suffix(port) {
            host = stripped.to_owned();
        }
    }
    let host = host.trim_end_matches('.');
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let path = if path == "/" { "" } else { path };
    Some(format!("{host}{path}"))
}

/// The host of a normalised URL (without port).
fn url_host(normalized: &str) -> &str {
    let authority = normalized.split(['/', '?']).next().unwrap_or_default();
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Which references of each match a lookup returns: a feed entry group
/// can carry thousands (one maltrail trail file lists 7,408), so a match
/// carries a page of them and their count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferencePage {
    /// Skip this many.
    pub from: usize,
    /// Return at most this many.
    pub max: usize,
}

impl ReferencePage {
    /// References a match carries unless asked for more.
    pub const DEFAULT_MAX: usize = 5;
    /// The most one lookup returns per match.
    pub const LIMIT: usize = 1_000;

    /// The page of `all`.
    pub fn of(&self, all: &[String]) -> Vec<String> {
        all.iter()
            .skip(self.from)
            .take(self.max.min(Self::LIMIT))
            .cloned()
            .collect()
    }

    /// Cuts `found`'s references to this page (and records their count,
    /// unless a count is already there).
    pub fn apply(&self, found: &mut IndicatorMatch) {
        found.references_total = found.references_total.max(found.references.len());
        found.references = self.of(&found.references);
    }
}

impl Default for ReferencePage {
    fn default() -> Self {
        ReferencePage {
            from: 0,
            max: Self::DEFAULT_MAX,
        }
    }
}

/// Ids of the metadata of one indicator (usually one).
type Ids = Vec<u32>;

/// Where one lookup puts its matches.
struct Lookup<'a> {
    page: ReferencePage,
    found: &'a mut Vec<IndicatorMatch>,
}

/// One imported feed, indexed for lookups.
#[derive(Debug, Default)]
pub struct FeedIndex {
    name: String,
    metas: Vec<IndicatorMeta>,
    ips: HashMap<IpAddr, Ids>,
    ip_ports: HashMap<(IpAddr, u16), Ids>,
    ports_of: HashMap<IpAddr, Vec<u16>>,
    cidrs: HashMap<(u8, IpAddr), (IpNet, Ids)>,
    prefix_lengths: BTreeSet<(bool, u8)>,
    domains: HashMap<Box<str>, Ids>,
    domain_suffixes: HashMap<Box<str>, Ids>,
    urls: HashMap<Box<str>, Ids>,
    url_paths: HashMap<Box<str>, Ids>,
    hashes: HashMap<Box<str>, Ids>,
    count: usize,
}

impl FeedIndex {
    /// Builds the index of feed `name`.
    pub fn build(
        name: &str,
        metas: Vec<IndicatorMeta>,
        indicators: impl IntoIterator<Item = (Indicator, u32)>,
    ) -> Self {
        let mut index = FeedIndex {
            name: name.to_owned(),
            metas,
            ..FeedIndex::default()
        };
        for (indicator, meta) in indicators {
            index.insert(indicator, meta);
        }
        index
    }

    fn insert(&mut self, indicator: Indicator, meta: u32) {
        let ids = match indicator {
            Indicator::Ip(ip) => self.ips.entry(ip).or_default(),
            Indicator::IpPort(ip, port) => {
                let ports = self.ports_of.entry(ip).or_default();
                if !ports.contains(&port) {
                    ports.push(port);
                }
                self.ip_ports.entry((ip, port)).or_default()
            }
            Indicator::Cidr(net) => {
                let net = net.trunc();
                self.prefix_lengths
                    .insert((net.addr().is_ipv4(), net.prefix_len()));
                &mut self
                    .cidrs
                    .entry((net.prefix_len(), net.network()))
                    .or_insert_with(|| (net, Vec::new()))
                    .1
            }
            Indicator::Domain(domain) => self.domains.entry(domain.into()).or_default(),
            Indicator::DomainSuffix(domain) => {
                self.domain_suffixes.entry(domain.into()).or_default()
            }
            Indicator::Url(url) => self.urls.entry(url.into()).or_default(),
            Indicator::UrlPath(path) => self.url_paths.entry(path.into()).or_default(),
            Indicator::Hash(hash) => self.hashes.entry(hash.into()).or_default(),
        };
        if !ids.contains(&meta) {
            ids.push(meta);
            self.count += 1;
        }
    }

    /// Indicators (counting each feed entry once).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the feed has no indicators.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn push(&self, out: &mut Lookup<'_>, indicator: String, ids: &Ids) {
        let (page, out) = (out.page, &mut *out.found);
        for id in ids {
            let Some(meta) = self.metas.get(*id as usize) else {
                continue;
            };
            out.push(IndicatorMatch {
                indicator: indicator.clone(),
                feed: self.name.clone(),
                family: meta.family.clone(),
                campaign: meta.campaign.clone(),
                confidence: meta.confidence,
                references: page.of(&meta.references),
                references_total: meta.references.len(),
                techniques: meta.techniques.clone(),
                first_seen: None,
                last_seen: None,
            });
        }
    }

    fn lookup_ip(&self, ip: IpAddr, port: Option<u16>, out: &mut Lookup<'_>) {
        let ip = canonical_ip(ip);
        if let Some(ids) = self.ips.get(&ip) {
            self.push(out, ip.to_string(), ids);
        }
        for (v4, length) in &self.prefix_lengths {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            let Ok(net) = IpNet::new(ip, *length) else {
                continue;
            };
            if let Some((net, ids)) = self.cidrs.get(&(*length, net.network())) {
                self.push(out, net.to_string(), ids);
            }
        }
        if let Some(ports) = self.ports_of.get(&ip) {
            for candidate in ports {
                if port.is_none_or(|p| p == *candidate)
                    && let Some(ids) = self.ip_ports.get(&(ip, *candidate))
                {
                    self.push(out, Indicator::IpPort(ip, *candidate).text(), ids);
                }
            }
        }
    }

    fn lookup_domain(&self, domain: &str, out: &mut Lookup<'_>) {
        // No feed lists a name that is not a DNS name; refusing it here
        // keeps the suffix walk below bounded (at most 127 labels of a
        // 253-byte name) whoever calls.
        if crate::model::dns_name_problem(domain.trim()).is_some() {
            return;
        }
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = domain.parse::<IpAddr>() {
            self.lookup_ip(ip, None, out);
            return;
        }
        // Whole labels only: x.evil.example, evil.example, example; a
        // suffix only for the names strictly under it.
        let mut rest = domain.as_str();
        let mut under = false;
        loop {
            if let Some(ids) = self.domains.get(rest) {
                self.push(out, rest.to_owned(), ids);
            }
            if under && let Some(ids) = self.domain_suffixes.get(rest) {
                self.push(out, format!(".{rest}"), ids);
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => {
                    rest = parent;
                    under = true;
                }
                _ => break,
            }
        }
    }

    /// Paths listed for any host, against a URL's path and query: the
    /// path alone (or with a bare `?`), and the path with each prefix of the query that ends at
    /// a parameter's `=` or before a `&` (so `/afu.php?zoneid=` matches
    /// `/afu.php?zoneid=123&x=1`).
    fn lookup_url_path(&self, path_and_query: &str, out: &mut Lookup<'_>) {
        if self.url_paths.is_empty() {
            return;
        }
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let mut candidates = vec![path];
        if let Some(query) = query {
            let base = path.len() + 1;
            // `/malu1?`: that path with any query.
            candidates.push(&path_and_query[..base]);
            for (i, byte) in query.bytes().enumerate() {
                match byte {
                    b'=' => candidates.push(&path_and_query[..=base + i]),
                    b'&' => candidates.push(&path_and_query[..base + i]),
                    _ => {}
                }
            }
            candidates.push(path_and_query);
        }
        candidates.dedup();
        for candidate in candidates {
            if let Some(ids) = self.url_paths.get(candidate) {
                self.push(out, candidate.to_owned(), ids);
            }
        }
    }

    /// Every indicator of this feed matching `entity`, each with `page` of
    /// its references.
    pub fn lookup(&self, entity: &Entity, page: ReferencePage, found: &mut Vec<IndicatorMatch>) {
        let out = &mut Lookup { page, found };
        match entity.kind {
            EntityKind::Ip => {
                if let Some((ip, port)) = parse_ip_port(&entity.value) {
                    self.lookup_ip(ip, port, out);
                }
            }
            EntityKind::Domain | EntityKind::Hostname => self.lookup_domain(&entity.value, out),
            EntityKind::Email => {
                if let Some((_, domain)) = entity.value.rsplit_once('@') {
                    self.lookup_domain(domain, out);
                }
            }
            EntityKind::Url => {
                let Some(url) = normalize_url(&entity.value) else {
                    return;
                };
                if let Some(ids) = self.urls.get(url.as_str()) {
                    self.push(out, url.clone(), ids);
                }
                if let Some(start) = url.find(['/', '?']) {
                    self.lookup_url_path(&url[start..], out);
                }
                let host = url_host(&url);
                match parse_ip_port(host) {
                    Some((ip, _)) => self.lookup_ip(ip, None, out),
                    None => self.lookup_domain(host, out),
                }
            }
            EntityKind::FileHash => {
                let hash = entity.value.trim().to_ascii_lowercase();
                if let Some(ids) = self.hashes.get(hash.as_str()) {
                    self.push(out, hash, ids);
                }
            }
            EntityKind::User | EntityKind::Process => {}
        }
    }
}

/// IPv4-mapped IPv6 addresses are looked up as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
pub fn parse_ip_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some((addr.ip(), Some(addr.port())));
    }
    None
}

/// Every feed, and which tenants see which. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct IntelIndex {
    feeds: Arc<RwLock<BTreeMap<String, Arc<FeedIndex>>>>,
    subscriptions: Arc<RwLock<HashMap<TenantId, BTreeSet<String>>>>,
}

impl IntelIndex {
    /// Adds or replaces a feed (lookups in progress keep the old one).
    pub fn put_feed(&self, feed: FeedIndex) {
        let name = feed.name.clone();
        self.feeds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, Arc::new(feed));
    }

    /// Removes a feed.
    pub fn remove_feed(&self, name: &str) -> bool {
        self.feeds
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
            .is_some()
    }

    /// Feed names and sizes.
    pub fn feeds(&self) -> Vec<(String, usize)> {
        self.feeds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(name, feed)| (name.clone(), feed.len()))
            .collect()
    }

    /// Sets the feeds `tenant` sees.
    pub fn subscribe(&self, tenant: &TenantId, feeds: BTreeSet<String>) {
        self.subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), feeds);
    }

    /// The feeds `tenant` sees.
    pub fn subscriptions(&self, tenant: &TenantId) -> BTreeSet<String> {
        self.subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// Every match for `entity` in the feeds `tenant` subscribes to, each
    /// with `page` of its references.
    pub fn lookup(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        page: ReferencePage,
    ) -> Vec<IndicatorMatch> {
        let mut out = Vec::new();
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(names) = subscriptions.get(tenant) else {
            return out;
        };
        let feeds = self
            .feeds
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in names {
            if let Some(feed) = feeds.get(name) {
                feed.lookup(entity, page, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: EntityKind, value: &str) -> Entity {
        Entity {
            kind,
            value: value.to_owned(),
        }
    }

    fn index() -> (IntelIndex, TenantId) {
        let metas = vec![IndicatorMeta {
            family: Some("evilbot".into()),
            confidence: 80,
            ..IndicatorMeta::default()
        }];
        let parse = |s: &str| s.parse().unwrap_or_else(|_| unreachable!());
        let feed = FeedIndex::build(
            "test",
            metas,
            [
                (Indicator::Ip(parse("203.0.113.9")), 0),
                (Indicator::IpPort(parse("198.51.100.7"), 8443), 0),
                (
                    Indicator::Cidr("192.0.2.0/24".parse().unwrap_or_else(|_| unreachable!())),
                    0,
                ),
                (Indicator::Domain("evil.example".into()), 0),
                (
                    Indicator::Url(
                        normalize_url("HTTP://Bad.Example:80/Dl/x.exe#frag").unwrap_or_default(),
                    ),
                    0,
                ),
                (
                    Indicator::Hash("d41d8cd98f00b204e9800998ecf8427e".into()),
                    0,
                ),
                (Indicator::UrlPath("/gate.php".into()), 0),
                (Indicator::UrlPath("/afu.php?zoneid=".into()), 0),
                (Indicator::UrlPath("/malu1?".into()), 0),
                (Indicator::DomainSuffix("cu.example".into()), 0),
            ],
        );
        let intel = IntelIndex::default();
        intel.put_feed(feed);
        let tenant = TenantId::new("acme").unwrap_or_else(|_| unreachable!());
        intel.subscribe(&tenant, ["test".to_owned()].into());
        (intel, tenant)
    }

    #[test]
    fn matching_semantics() {
        let (intel, acme) = index();
        let hits = |kind, value: &str| -> Vec<String> {
            intel
                .lookup(&acme, &entity(kind, value), ReferencePage::default())
                .into_iter()
                .map(|m| m.indicator)
                .collect()
        };
        use EntityKind::*;
        assert_eq!(hits(Ip, "203.0.113.9"), ["203.0.113.9"]);
        assert_eq!(hits(Ip, "::ffff:203.0.113.9"), ["203.0.113.9"]);
        assert_eq!(hits(Ip, "203.0.113.9:22"), ["203.0.113.9"]);
        assert_eq!(hits(Ip, "192.0.2.77"), ["192.0.2.0/24"]);
        assert!(hits(Ip, "192.0.3.1").is_empty());
        assert_eq!(hits(Ip, "198.51.100.7"), ["198.51.100.7:8443"]);
        assert_eq!(hits(Ip, "198.51.100.7:8443"), ["198.51.100.7:8443"]);
        assert!(hits(Ip, "198.51.100.7:443").is_empty());
        assert_eq!(hits(Domain, "evil.example"), ["evil.example"]);
        assert_eq!(hits(Domain, "A.b.EVIL.example."), ["evil.example"]);
        assert!(hits(Domain, "notevil.example").is_empty());
        assert!(hits(Domain, "evil.example.com").is_empty());
        assert_eq!(hits(Hostname, "x.evil.example"), ["evil.example"]);
        assert_eq!(hits(Email, "ceo@mail.evil.example"), ["evil.example"]);
        assert_eq!(
            hits(Url, "https://www.evil.example/login"),
            ["evil.example"]
        );
        assert_eq!(
            hits(Url, "http://bad.example/Dl/x.exe"),
            ["bad.example/Dl/x.exe"]
        );
        assert_eq!(hits(Url, "bad.example/Dl/x.exe"), ["bad.example/Dl/x.exe"]);
        assert!(
            hits(Url, "http://bad.example/dl/x.exe").is_empty(),
            "paths keep case"
        );
        assert_eq!(hits(Url, "http://192.0.2.5:8080/a"), ["192.0.2.0/24"]);
        assert_eq!(
            hits(Url, "https://any.example/gate.php?id=1"),
            ["/gate.php"]
        );
        assert!(hits(Url, "https://any.example/x/gate.php").is_empty());
        // A listed path with a query: that path with a query starting so.
        assert_eq!(
            hits(Url, "http://ads.example/afu.php?zoneid=2849&var=7"),
            ["/afu.php?zoneid="]
        );
        assert_eq!(
            hits(Url, "ads.example/afu.php?zoneid="),
            ["/afu.php?zoneid="]
        );
        assert!(hits(Url, "http://ads.example/afu.php").is_empty());
        assert!(hits(Url, "http://ads.example/afu.php?zone=1").is_empty());
        assert_eq!(hits(Url, "http://x.example/malu1?a=b"), ["/malu1?"]);
        assert!(hits(Url, "http://x.example/malu1").is_empty());
        // A suffix trail: names under it, not the name itself.
        assert_eq!(hits(Domain, "x.cu.example"), [".cu.example"]);
        assert_eq!(hits(Url, "http://a.b.cu.example/x"), [".cu.example"]);
        assert!(hits(Domain, "cu.example").is_empty());
        assert!(hits(Domain, "xcu.example").is_empty());
        assert_eq!(
            hits(FileHash, "D41D8CD98F00B204E9800998ECF8427E"),
            ["d41d8cd98f00b204e9800998ecf8427e"]
        );
        // Another tenant subscribes to nothing.
        let other = TenantId::new("other").unwrap_or_else(|_| unreachable!());
        assert!(
            intel
                .lookup(&other, &entity(Ip, "203.0.113.9"), ReferencePage::default())
                .is_empty()
        );
    }

    #[test]
    fn url_normalisation() {
        for (raw, expected) in [
            ("HTTPS://User:pw@Evil.Example:443/", Some("evil.example")),
            ("hxxp://evil.example./a?B=1#x", Some("evil.example/a?B=1")),
            ("evil.example:8080/x", Some("evil.example:8080/x")),
            ("http://", None),
        ] {
            assert_eq!(normalize_url(raw).as_deref(), expected, "{raw}");
        }
    }
}
