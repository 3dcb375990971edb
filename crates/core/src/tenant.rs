//! Tenants and the grants they give plugins.
//!
//! A plugin gets nothing by default. A tenant's [`Grants`] say, per plugin
//! name (with a default for plugins not named), which capabilities it may
//! use, which hosts it may reach over HTTP, which private address ranges (if
//! any) those hosts may resolve to, its resource ceilings, its kv quota, and
//! its settings and secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Why a tenant id or grant is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    /// The id is empty, too long or has characters outside `[a-z0-9_-]`.
    #[error("tenant id `{0}` must be 1-64 characters of [a-z0-9_-]")]
    InvalidId(String),
}

/// A tenant's identifier: 1-64 characters of `[a-z0-9_-]`, so it is safe in
/// paths, keys and metric labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, TenantError> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(TenantId(id))
        } else {
            Err(TenantError::InvalidId(id))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TenantId::new(value)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host capability a plugin may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `rampart:plugin/log`.
    Log,
    /// `rampart:plugin/kv`.
    Kv,
    /// `rampart:plugin/memory`.
    Memory,
    /// `rampart:plugin/intel`.
    Intel,
    /// `rampart:plugin/context`.
    Context,
    /// `rampart:plugin/config`.
    Config,
    /// `wasi:http/outgoing-handler`.
    Http,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Kv,
        Capability::Memory,
        Capability::Intel,
        Capability::Context,
        Capability::Config,
        Capability::Http,
    ];

    /// The name used in manifests and grants.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Kv => "kv",
            Capability::Memory => "memory",
            Capability::Intel => "intel",
            Capability::Context => "context",
            Capability::Config => "config",
            Capability::Http => "http",
        }
    }

    /// Parses a manifest or grant name.
    pub fn from_name(name: &str) -> Option<Self> {
        Capability::ALL.into_iter().find(|cap| cap.name() == name)
    }

    /// The capability a component import name needs, if it is one of ours.
    /// `None` for the rest of WASI (linked, but granting nothing).
    pub fn for_import(import: &str) -> Option<Self> {
        let (interface, _version) = import.split_once('@').unwrap_or((import, ""));
        match interface {
            "rampart:plugin/log" => Some(Capability::Log),
            "rampart:plugin/kv" => Some(Capability::Kv),
            "rampart:plugin/memory" => Some(Capability::Memory),
            "rampart:plugin/intel" => Some(Capability::Intel),
            "rampart:plugin/context" => Some(Capability::Context),
            "rampart:plugin/config" => Some(Capability::Config),
            "wasi:http/outgoing-handler" => Some(Capability::Http),
            _ => None,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A secret value. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value; only for handing to the plugin it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A tenant's share of the process, set by an admin. `None`: no limit
/// beyond the plugins' own. Enforced by the runtime (fuel, memory) and the
/// executor (runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// Runs executing at once; more wait for a free slot.
    #[serde(default)]
    pub max_concurrent_runs: Option<u32>,
    /// Fuel all the tenant's plugin calls may burn per minute; past it,
    /// calls are refused until the minute is over.
    #[serde(default)]
    pub fuel_per_minute: Option<u64>,
    /// Memory cap of any one call (lowers a plugin's own cap).
    #[serde(default)]
    pub memory_per_call_bytes: Option<u64>,
}

/// Smallest memory cap a quota may set.
pub const MIN_QUOTA_MEMORY_BYTES: u64 = 64 << 10;

impl TenantQuota {
    /// Quotas set too low to be meant (a zero would stop the tenant dead):
    /// the field names, for the API and the config file alike.
    pub fn too_small(&self) -> Vec<&'static str> {
        [
            ("max_concurrent_runs", self.max_concurrent_runs == Some(0)),
            ("fuel_per_minute", self.fuel_per_minute == Some(0)),
            (
                "memory_per_call_bytes",
                self.memory_per_call_bytes
                    .is_some_and(|m| m < MIN_QUOTA_MEMORY_BYTES),
            ),
        ]
        .into_iter()
        .filter_map(|(field, bad)| bad.then_some(field))
        .collect()
    }
}

/// Resource limits of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory cap in bytes.
    pub memory_bytes: u64,
    /// Fuel budget (roughly, Wasm instructions; host calls are charged too).
    pub fuel: u64,
    /// Wall-clock deadline.
    pub timeout: Duration,
}

impl Limits {
    /// The smaller of each limit.
    pub fn min(self, other: Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            fuel: self.fuel.min(other.fuel),
            timeout: self.timeout.min(other.timeout),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            fuel: 1_000_000_000,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a tenant gives one plugin. Every field has a default (nothing
/// granted, a kv quota of [`DEFAULT_KV_QUOTA`]), and a grant read from JSON
/// or YAML takes the same default for each field it leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginGrant {
    /// Capabilities the plugin may use.
    pub capabilities: BTreeSet<Capability>,
    /// Hosts the plugin may reach over HTTP: `host`, `host:port` or
    /// `*.domain` (any subdomain). Without a port, 80 and 443.
    pub http_hosts: Vec<String>,
    /// Private, loopback or otherwise internal ranges those hosts may resolve
    /// to. Empty (the default) allows public addresses only.
    pub allow_private: Vec<IpNet>,
    /// Ceilings on the manifest's limits (`None` = the runtime's ceilings).
    pub limits: Option<Limits>,
    /// Size quota of the plugin's kv namespace in bytes.
    pub kv_quota_bytes: u64,
    /// Settings (`config.get`).
    pub settings: BTreeMap<String, String>,
    /// Secrets (`config.secret`).
    pub secrets: BTreeMap<String, Secret>,
}

/// Default kv quota of a plugin namespace: 16 MiB.
pub const DEFAULT_KV_QUOTA: u64 = 16 << 20;

impl Default for PluginGrant {
    fn default() -> Self {
        PluginGrant {
            capabilities: BTreeSet::new(),
            http_hosts: Vec::new(),
            allow_private: Vec::new(),
            limits: None,
            kv_quota_bytes: DEFAULT_KV_QUOTA,
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}

impl PluginGrant {
    /// A grant of the given capabilities and nothing else.
    pub fn with_capabilities(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        PluginGrant {
            capabilities: capabilities.into_iter().collect(),
            ..PluginGrant::default()
        }
    }
}

/// Everything a tenant grants its plugins.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// For plugins not named in `plugins`.
    pub default: PluginGrant,
    /// Per plugin name.
    pub plugins: BTreeMap<String, PluginGrant>,
}

impl Grants {
    /// Every capability except HTTP to anywhere: all host interfaces, no
    /// hosts on the allow-list. Handy for tests and local runs.
    pub fn allow_all_capabilities() -> Self {
        Grants {
            default: PluginGrant::with_capabilities(Capability::ALL),
            plugins: BTreeMap::new(),
        }
    }

    /// The grant for plugin `name`.
    pub fn for_plugin(&self, name: &str) -> &PluginGrant {
        self.plugins.get(name).unwrap_or(&self.default)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_that_leaves_out_the_kv_quota_gets_the_default() {
        let parsed: Grants = serde_json::from_str(
            r#"{"default": {"capabilities": ["kv"]}, "plugins": {"edl-blocklist": {}}}"#,
        )
        .expect("grants");
        assert_eq!(parsed.default.kv_quota_bytes, DEFAULT_KV_QUOTA);
        assert_eq!(
            parsed.for_plugin("edl-blocklist").kv_quota_bytes,
            DEFAULT_KV_QUOTA
        );
        assert_eq!(Grants::default().default.kv_quota_bytes, DEFAULT_KV_QUOTA);
        assert_eq!(PluginGrant::default().kv_quota_bytes, 16 << 20);
    }
}
