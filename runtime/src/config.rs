//! The server's config file (`rampart serve --config rampart.yaml`): the
//! tenants an operator manages as code, with their grants, quotas, ingest
//! rate, asset inventory and people.
//!
//! ```yaml
//! tenants:
//!   - id: acme
//!     ingest_per_second: 200
//!     quotas: { max_concurrent_runs: 8, fuel_per_minute: 50000000000 }
//!     grants:
//!       default: { capabilities: [log, kv, memory, intel, context, config] }
//!       plugins:
//!         ip-reputation: { capabilities: [log, kv, http], http_hosts: [feeds.example] }
//!     inventory: assets.csv       # relative to this file; JSON or CSV
//!     identities: users.csv       # people, for the identity-context enricher
//! ```
//!
//! Parse → validate (every problem, with line and column) → apply. A file
//! with any problem changes nothing. At start the file is authoritative for
//! the tenants it names (their grants, quotas, rate and inventory are
//! replaced); tenants created over the API are left alone. Secrets never go
//! in this file: they are set over the API, sealed under the master key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::context::{AssetInventory, IdentityDirectory};
use crate::diagnostics::Issue;
use crate::tenant::{Grants, TenantId, TenantQuota};

/// Largest config file read.
const MAX_CONFIG_BYTES: usize = 4 << 20;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {detail}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// The file has problems; all of them are listed.
    #[error("{path}: {} problem(s):\n{}", issues.len(), issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

/// One tenant as the file declares it, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// Id.
    pub id: TenantId,
    /// Alerts per second (burst twice that).
    pub ingest_per_second: Option<u32>,
    /// Quotas.
    pub quotas: TenantQuota,
    /// Grants (no secrets).
    pub grants: Grants,
    /// Asset inventory, read from the file named (JSON or `.csv`).
    pub inventory: Option<AssetInventory>,
    /// People, read from the file named (JSON or `.csv`).
    pub identities: Option<IdentityDirectory>,
}

/// A validated config file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerConfig {
    /// Tenants, in file order.
    pub tenants: Vec<TenantConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tenants: Vec<Spanned<RawTenant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    id: Spanned<String>,
    #[serde(default)]
    ingest_per_second: Option<Spanned<u32>>,
    #[serde(default)]
    quotas: Option<Spanned<TenantQuota>>,
    #[serde(default)]
    grants: Option<Spanned<Grants>>,
    #[serde(default)]
    inventory: Option<Spanned<String>>,
    #[serde(default)]
    identities: Option<Spanned<String>>,
}

/// Reads a table file named in the config: CSV when it ends in `.csv`,
/// JSON otherwise. The error names the file and every problem in it.
fn read_table<T: serde::de::DeserializeOwned>(
    base: &Path,
    file: &Spanned<String>,
    from_csv: fn(&str) -> Result<T, crate::context::ContextError>,
) -> Result<T, String> {
    let path: PathBuf = base.join(&file.value);
    let shown = path.display();
    let text = std::fs::read_to_string(&path).map_err(|err| format!("{shown}: {err}"))?;
    if path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
    {
        from_csv(&text).map_err(|err| format!("{shown}: {err}"))
    } else {
        serde_json::from_str(&text).map_err(|err| format!("{shown}: {err}"))
    }
}

fn issue<T>(spanned: &Spanned<T>, field: String, message: String, hint: Option<&str>) -> Issue {
    Issue {
        line: usize::try_from(spanned.referenced.line()).ok(),
        column: usize::try_from(spanned.referenced.column()).ok(),
        field,
        message,
        hint: hint.map(str::to_owned),
    }
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
    let read_error = |detail: String| ConfigError::Read {
        path: path.display().to_string(),
        detail,
    };
    let size = std::fs::metadata(path)
        .map_err(|err| read_error(err.to_string()))?
        .len();
    if size > MAX_CONFIG_BYTES as u64 {
        return Err(read_error(format!(
            "{size} bytes; the limit is {MAX_CONFIG_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|err| read_error(err.to_string()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&path.display().to_string(), &text, &base)
}

/// Validates config `text`; inventory paths are relative to `base`.
pub fn parse(name: &str, text: &str, base: &Path) -> Result<ServerConfig, ConfigError> {
    let invalid = |issues: Vec<Issue>| ConfigError::Invalid {
        path: name.to_owned(),
        issues,
    };
    let raw: RawConfig = serde_saphyr::from_str(text).map_err(|err| {
        let location = err.location();
        invalid(vec![Issue {
            line: location
                .and_then(|l| usize::try_from(l.line()).ok())
                .filter(|l| *l > 0),
            column: location
                .and_then(|l| usize::try_from(l.column()).ok())
                .filter(|c| *c > 0),
            field: "config".to_owned(),
            message: err
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_owned(),
            hint: None,
        }])
    })?;
    let mut issues = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut tenants = Vec::new();
    for (index, tenant) in raw.tenants.iter().enumerate() {
        let raw = &tenant.value;
        let at = |field: &str| format!("tenants[{index}].{field}");
        let id = match TenantId::new(raw.id.value.as_str()) {
            Ok(id) => Some(id),
            Err(err) => {
                issues.push(issue(&raw.id, at("id"), err.to_string(), None));
                None
            }
        };
        if let Some(first) = seen.insert(raw.id.value.clone(), index) {
            issues.push(issue(
                &raw.id,
                at("id"),
                format!(
                    "tenant `{}` is already declared at tenants[{first}]",
                    raw.id.value
                ),
                None,
            ));
        }
        if let Some(rate) = &raw.ingest_per_second
            && rate.value == 0
        {
            issues.push(issue(
                rate,
                at("ingest_per_second"),
                "must be at least 1".to_owned(),
                Some("leave it out for the default of 500"),
            ));
        }
        let quotas = raw.quotas.as_ref().map(|q| q.value).unwrap_or_default();
        if let Some(spanned) = &raw.quotas {
            for field in quotas.too_small() {
                issues.push(issue(
                    spanned,
                    at(&format!("quotas.{field}")),
                    "too small (runs and fuel at least 1, memory at least 64 KiB)".to_owned(),
                    Some("leave a quota out for no limit"),
                ));
            }
        }
        let grants = raw
            .grants
            .as_ref()
            .map(|g| g.value.clone())
            .unwrap_or_default();
        if let Some(spanned) = &raw.grants {
            let named = std::iter::once(("default".to_owned(), &grants.default)).chain(
                grants
                    .plugins
                    .iter()
                    .map(|(n, g)| (format!("plugins.{n}"), g)),
            );
            for (who, grant) in named {
                if !grant.secrets.is_empty() {
                    issues.push(issue(
                        spanned,
                        at(&format!("grants.{who}.secrets")),
                        "secrets do not belong in the config file".to_owned(),
                        Some("set them with PUT /v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}"),
                    ));
                }
                for host in &grant.http_hosts {
                    if !crate::net::valid_host_rule(host) {
                        issues.push(issue(
                            spanned,
                            at(&format!("grants.{who}.http_hosts")),
                            format!("`{host}` is not host, host:port or *.domain"),
                            None,
                        ));
                    }
                }
            }
        }
        let inventory = raw.inventory.as_ref().and_then(|file| {
            read_table(base, file, AssetInventory::from_csv)
                .map_err(|message| issues.push(issue(file, at("inventory"), message, None)))
                .ok()
        });
        let identities = raw.identities.as_ref().and_then(|file| {
            read_table(base, file, IdentityDirectory::from_csv)
                .map_err(|message| issues.push(issue(file, at("identities"), message, None)))
                .ok()
        });
        if let Some(id) = id {
            tenants.push(TenantConfig {
                id,
                ingest_per_second: raw.ingest_per_second.as_ref().map(|r| r.value),
                quotas,
                grants,
                inventory,
                identities,
            });
        }
    }
    if issues.is_empty() {
        Ok(ServerConfig { tenants })
    } else {
        Err(invalid(issues))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "tenants:\n  - id: acme\n    quotas: { fuel_per_minute: 0 }\n  - id: Bad Id\n  - id: acme\n    grants:\n      default: { http_hosts: ['a b'], secrets: { token: x } }\n    inventory: missing.json\n";
        let Err(ConfigError::Invalid { issues, .. }) =
            parse("t.yaml", text, Path::new("/nonexistent"))
        else {
            panic!("accepted a bad config");
        };
        let found: Vec<(Option<usize>, &str)> =
            issues.iter().map(|i| (i.line, i.field.as_str())).collect();
        assert_eq!(
            found,
            vec![
                (Some(3), "tenants[0].quotas.fuel_per_minute"),
                (Some(4), "tenants[1].id"),
                (Some(5), "tenants[2].id"),
                (Some(7), "tenants[2].grants.default.secrets"),
                (Some(7), "tenants[2].grants.default.http_hosts"),
                (Some(8), "tenants[2].inventory"),
            ],
            "{issues:#?}"
        );
    }

    #[test]
    fn unknown_fields_and_types_are_refused_with_a_location() {
        for text in [
            "tenants:\n  - id: acme\n    colour: red\n",
            "tenants:\n  - id: acme\n    quotas: { max_concurrent_runs: many }\n",
        ] {
            let Err(ConfigError::Invalid { issues, .. }) = parse("t.yaml", text, Path::new("."))
            else {
                panic!("accepted {text}");
            };
            assert!(issues[0].line.is_some(), "{issues:?}");
        }
    }
}
