//! The tenant's own context: the assets it owns and the people who work
//! there.
//!
//! This is host data the tenant imports (JSON, or CSV exported from a CMDB or
//! an identity provider), never a plugin's output: guardrails read the
//! inventory to decide what may be acted on, and plugins granted the
//! `context` capability look entries up to enrich alerts. An alert can name
//! any host, but it cannot make that host less critical or a user less
//! privileged.
//!
//! CSV files are read with a header row; every problem is reported with its
//! line and column before anything is replaced (parse → validate → swap).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::{Entity, EntityKind};
use crate::tenant::TenantId;

/// How much the business would suffer if an asset were compromised.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Criticality {
    /// Lab machines, kiosks.
    Low,
    /// Ordinary workstations and servers (the default).
    #[default]
    Medium,
    /// Business systems, executives' devices.
    High,
    /// Domain controllers, payment systems, crown jewels.
    Critical,
}

impl Criticality {
    const NAMES: [(&'static str, Criticality); 4] = [
        ("low", Criticality::Low),
        ("medium", Criticality::Medium),
        ("high", Criticality::High),
        ("critical", Criticality::Critical),
    ];

    fn parse(value: &str) -> Option<Self> {
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map(|(_, level)| *level)
    }
}

/// One asset the tenant owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Host name (FQDN preferred).
    pub name: String,
    /// Its addresses.
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    /// Who answers for it (team or person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// How critical it is (unset: medium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criticality: Option<Criticality>,
    /// Tags (`crown-jewel`, `domain-controller`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Never acted on automatically (guardrails refuse it outright).
    #[serde(default)]
    pub protected: bool,
}

/// The tenant's asset inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetInventory {
    /// The assets.
    pub assets: Vec<Asset>,
}

/// One person (or service account) of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Account name as logs show it (`jdoe`; `CORP\jdoe` and
    /// `jdoe@corp.example` find it too).
    pub user: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Department.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Holds administrative rights (domain admin, cloud admin, …).
    #[serde(default)]
    pub privileged: bool,
    /// Enrolled in multi-factor authentication.
    #[serde(default)]
    pub mfa: bool,
    /// Directory groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The tenant's people.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityDirectory {
    /// The identities.
    pub identities: Vec<Identity>,
}

/// One problem in an imported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportIssue {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    /// The column, by header name, when the problem is in one cell.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ImportIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0: the problem is in JSON, where the column names the path.
        match (&self.column, self.line) {
            (Some(column), 0) => write!(f, "{column}: {}", self.message),
            (Some(column), line) => write!(f, "line {line}, column `{column}`: {}", self.message),
            (None, line) => write!(f, "line {line}: {}", self.message),
        }
    }
}

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The file has problems; all of them are listed. Nothing was replaced.
    #[error("{} problem(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ImportIssue>),
}

/// Most rows one import accepts (a large enterprise CMDB is ~10^5 assets).
pub const MAX_ROWS: usize = 1_000_000;

/// One CSV record, its cells looked up by header name.
struct Row<'a> {
    header: &'a [String],
    record: &'a csv::StringRecord,
}

impl<'a> Row<'a> {
    /// The trimmed cell under `column` ("" when the file has no such column).
    fn cell(&self, column: &str) -> &'a str {
        self.header
            .iter()
            .position(|h| h == column)
            .and_then(|i| self.record.get(i))
            .unwrap_or("")
    }
}

/// Reads a CSV table whose header names columns among `allowed`; `required`
/// must be present. Calls `row` with a cell getter for each record and
/// collects every problem.
fn read_csv(
    text: &str,
    allowed: &[&str],
    required: &str,
    mut row: impl FnMut(u64, &Row<'_>, &mut Vec<ImportIssue>),
) -> Result<(), ContextError> {
    let mut issues = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(|h| h.to_ascii_lowercase()).collect(),
        Err(err) => {
            return Err(ContextError::Invalid(vec![ImportIssue {
                line: 1,
                column: None,
                message: format!("unreadable header: {err}"),
            }]));
        }
    };
    for name in &header {
        if !allowed.contains(&name.as_str()) {
            issues.push(ImportIssue {
                line: 1,
                column: Some(name.clone()),
                message: format!("unknown column; the columns are {}", allowed.join(", ")),
            });
        }
    }
    if !header.iter().any(|h| h == required) {
        issues.push(ImportIssue {
            line: 1,
            column: None,
            message: format!("the `{required}` column is missing"),
        });
    }
    if !issues.is_empty() {
        return Err(ContextError::Invalid(issues));
    }
    for (index, record) in reader.records().enumerate() {
        if index >= MAX_ROWS {
            issues.push(ImportIssue {
                line: index as u64 + 2,
                column: None,
                message: format!("more than {MAX_ROWS} rows"),
            });
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(index as u64 + 2, |p| p.line());
                issues.push(ImportIssue {
                    line,
                    column: None,
                    message: err.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(index as u64 + 2, |p| p.line());
        row(
            line,
            &Row {
                header: &header,
                record: &record,
            },
            &mut issues,
        );
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ContextError::Invalid(issues))
    }
}

/// Splits a multi-value cell (`a;b`, `a b`, `a,b` inside quotes).
fn list(cell: &str) -> Vec<String> {
    cell.split([';', ',', ' ', '|'])
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn optional(cell: &str) -> Option<String> {
    (!cell.is_empty()).then(|| cell.to_owned())
}

fn flag(cell: &str, line: u64, column: &str, issues: &mut Vec<ImportIssue>) -> bool {
    match cell.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "n" | "0" => false,
        "true" | "yes" | "y" | "1" => true,
        other => {
            issues.push(ImportIssue {
                line,
                column: Some(column.to_owned()),
                message: format!("`{other}` is not yes/no/true/false/1/0"),
            });
            false
        }
    }
}

/// Normalises a host name: lower case, no trailing dot.
pub(crate) fn normal(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether two host names name the same host (`dc01` ~ `dc01.corp.example`).
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    let (a, b) = (normal(a), normal(b));
    if a == b {
        return true;
    }
    let short = |name: &str| name.split('.').next().unwrap_or("").to_owned();
    (!a.contains('.') || !b.contains('.')) && short(&a) == short(&b) && !short(&a).is_empty()
}

/// Parses an address, dropping a port and unwrapping v4-mapped v6.
pub(crate) fn parse_ip(value: &str) -> Option<IpAddr> {
    let value = crate::feeds::strip_port(value.trim());
    value.parse::<IpAddr>().ok().map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

impl AssetInventory {
    /// Columns of the CSV form.
    pub const CSV_COLUMNS: [&'static str; 6] = [
        "hostname",
        "ips",
        "owner",
        "criticality",
        "tags",
        "protected",
    ];

    /// Reads the CSV form: a header naming columns among
    /// [`Self::CSV_COLUMNS`] (`hostname` required); `ips` and `tags` hold
    /// several values separated by `;` or spaces; `protected` is yes/no.
    pub fn from_csv(text: &str) -> Result<Self, ContextError> {
        let mut assets = Vec::new();
        let mut seen = HashMap::new();
        read_csv(text, &Self::CSV_COLUMNS, "hostname", |line, row, issues| {
            let name = row.cell("hostname").to_owned();
            if name.is_empty() {
                issues.push(ImportIssue {
                    line,
                    column: Some("hostname".into()),
                    message: "empty host name".into(),
                });
            } else if let Some(first) = seen.insert(normal(&name), line) {
                issues.push(ImportIssue {
                    line,
                    column: Some("hostname".into()),
                    message: format!("`{name}` is already on line {first}"),
                });
            }
            let mut ips = Vec::new();
            for value in list(row.cell("ips")) {
                match value.parse::<IpAddr>() {
                    Ok(ip) => ips.push(ip),
                    Err(_) => issues.push(ImportIssue {
                        line,
                        column: Some("ips".into()),
                        message: format!("`{value}` is not an IP address"),
                    }),
                }
            }
            let criticality = match row.cell("criticality") {
                "" => None,
                value => {
                    let level = Criticality::parse(value);
                    if level.is_none() {
                        issues.push(ImportIssue {
                            line,
                            column: Some("criticality".into()),
                            message: format!("`{value}` is not one of low, medium, high, critical"),
                        });
                    }
                    level
                }
            };
            let protected = flag(row.cell("protected"), line, "protected", issues);
            assets.push(Asset {
                name,
                ips,
                owner: optional(row.cell("owner")),
                criticality,
                tags: list(row.cell("tags")),
                protected,
            });
        })?;
        Ok(AssetInventory { assets })
    }
}

/// The bare account name of `CORP\jdoe`, `jdoe@corp.example` or `jdoe`.
fn account(value: &str) -> String {
    let value = value.trim();
    let value = value.rsplit('\\').next().unwrap_or(value);
    let value = value.split('@').next().unwrap_or(value);
    value.to_ascii_lowercase()
}

impl IdentityDirectory {
    /// Columns of the CSV form.
    pub const CSV_COLUMNS: [&'static str; 8] = [
        "user",
        "email",
        "display_name",
        "department",
        "title",
        "privileged",
        "mfa",
        "groups",
    ];

    /// Reads the CSV form: a header naming columns among
    /// [`Self::CSV_COLUMNS`] (`user` required); `privileged` and `mfa` are
    /// yes/no; `groups` holds several values separated by `;`.
    pub fn from_csv(text: &str) -> Result<Self, ContextError> {
        let mut identities = Vec::new();
        let mut seen = HashMap::new();
        read_csv(text, &Self::CSV_COLUMNS, "user", |line, row, issues| {
            let user = row.cell("user").to_owned();
            if user.is_empty() {
                issues.push(ImportIssue {
                    line,
                    column: Some("user".into()),
                    message: "empty user".into(),
                });
            } else if let Some(first) = seen.insert(account(&user), line) {
                issues.push(ImportIssue {
                    line,
                    column: Some("user".into()),
                    message: format!("`{user}` is already on line {first}"),
                });
            }
            let email = optional(row.cell("email"));
            if let Some(email) = &email
                && (!email.contains('@') || email.contains(char::is_whitespace))
            {
                issues.push(ImportIssue {
                    line,
                    column: Some("email".into()),
                    message: format!("`{email}` is not an e-mail address"),
                });
            }
            let privileged = flag(row.cell("privileged"), line, "privileged", issues);
            let mfa = flag(row.cell("mfa"), line, "mfa", issues);
            let groups = row
                .cell("groups")
                .split(';')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect();
            identities.push(Identity {
                user,
                email,
                display_name: optional(row.cell("display_name")),
                department: optional(row.cell("department")),
                title: optional(row.cell("title")),
                privileged,
                mfa,
                groups,
            });
        })?;
        Ok(IdentityDirectory { identities })
    }
}

/// The short name of a host (`dc01` of `dc01.corp.example`), normalised.
fn short_name(name: &str) -> String {
    let name = normal(name);
    name.split('.').next().unwrap_or("").to_owned()
}

/// Keeps the first index seen for `key`: lookups answer the first asset or
/// person in import order, as a scan would.
fn first<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, index: usize) {
    map.entry(key).or_insert(index);
}

/// An asset inventory with its lookup tables, built once when the tenant
/// imports it: guardrails and the `context` capability look assets up for
/// every action and every alert entity, so a lookup is a hash probe, not a
/// scan of a CMDB-sized list.
#[derive(Debug, Clone, Default)]
pub struct AssetIndex {
    inventory: AssetInventory,
    by_ip: HashMap<IpAddr, usize>,
    by_name: HashMap<String, usize>,
    by_short: HashMap<String, usize>,
}

impl AssetIndex {
    /// Indexes `inventory`.
    pub fn new(inventory: AssetInventory) -> Self {
        let mut index = AssetIndex::default();
        for (i, asset) in inventory.assets.iter().enumerate() {
            for ip in &asset.ips {
                first(&mut index.by_ip, *ip, i);
            }
            first(&mut index.by_name, normal(&asset.name), i);
            let short = short_name(&asset.name);
            if !short.is_empty() {
                first(&mut index.by_short, short, i);
            }
        }
        index.inventory = inventory;
        index
    }

    /// The inventory.
    pub fn inventory(&self) -> &AssetInventory {
        &self.inventory
    }

    /// The inventory asset `target` names, if any: by address (also inside
    /// a host name that is an address), by name with short names and FQDNs
    /// the same host (`dc01` ~ `dc01.corp.example`). An address range names
    /// the first asset with an address inside it (blocking
    /// `198.51.100.0/24` blocks our gateway at `198.51.100.77`).
    pub fn find(&self, target: &Entity) -> Option<&Asset> {
        let at = |index: Option<usize>| index.and_then(|i| self.inventory.assets.get(i));
        let value = target.value.trim();
        match target.kind {
            EntityKind::Ip => {
                if let Ok(net) = value.parse::<ipnet::IpNet>() {
                    // Ranges are rare targets; a scan in import order.
                    return self
                        .inventory
                        .assets
                        .iter()
                        .find(|asset| asset.ips.iter().any(|ip| net.contains(ip)));
                }
                at(self.by_ip.get(&parse_ip(value)?).copied())
            }
            EntityKind::Hostname | EntityKind::Domain => {
                if let Some(ip) = parse_ip(value) {
                    return at(self.by_ip.get(&ip).copied());
                }
                let name = normal(value);
                if name.contains('.') {
                    // Its FQDN, or an inventory entry that is its short name.
                    let exact = self.by_name.get(&name).copied();
                    let short = self.by_name.get(&short_name(&name)).copied();
                    at(exact.into_iter().chain(short).min())
                } else {
                    at(self.by_short.get(&name).copied())
                }
            }
            _ => at(self.by_name.get(&normal(value)).copied()),
        }
    }
}

/// An identity directory with its lookup tables (see [`AssetIndex`]).
#[derive(Debug, Clone, Default)]
pub struct IdentityIndex {
    directory: IdentityDirectory,
    by_account: HashMap<String, usize>,
    by_email: HashMap<String, usize>,
}

impl IdentityIndex {
    /// Indexes `directory`.
    pub fn new(directory: IdentityDirectory) -> Self {
        let mut index = IdentityIndex::default();
        for (i, identity) in directory.identities.iter().enumerate() {
            first(&mut index.by_account, account(&identity.user), i);
            if let Some(email) = &identity.email {
                first(&mut index.by_email, email.trim().to_ascii_lowercase(), i);
            }
        }
        index.directory = directory;
        index
    }

    /// The directory.
    pub fn directory(&self) -> &IdentityDirectory {
        &self.directory
    }

    /// The identity a `user` or `email` entity names, if any. Accounts match
    /// without their domain (`CORP\jdoe`, `jdoe@corp.example`, `JDoe`) or by
    /// their e-mail address; e-mail entities match the `email` column
    /// (case-insensitive).
    pub fn find(&self, target: &Entity) -> Option<&Identity> {
        let value = target.value.trim();
        let by_email = self.by_email.get(&value.to_ascii_lowercase()).copied();
        let index = match target.kind {
            EntityKind::Email => by_email,
            EntityKind::User => {
                let name = account(value);
                if name.is_empty() {
                    return None;
                }
                self.by_account
                    .get(&name)
                    .copied()
                    .into_iter()
                    .chain(by_email)
                    .min()
            }
            _ => None,
        };
        index.and_then(|i| self.directory.identities.get(i))
    }
}

/// Everything a tenant told us about itself.
#[derive(Debug, Clone, Default)]
pub struct TenantContext {
    /// Assets.
    pub assets: Arc<AssetIndex>,
    /// People.
    pub identities: Arc<IdentityIndex>,
}

/// Every tenant's context, shared by the executor (guardrails) and the
/// sandbox (the `context` capability). Updates swap whole tables, so a
/// reader never sees half an import.
#[derive(Debug, Default)]
pub struct Directory {
    tenants: RwLock<HashMap<TenantId, TenantContext>>,
}

impl Directory {
    /// The tenant's context (empty if it never imported any).
    pub fn get(&self, tenant: &TenantId) -> TenantContext {
        self.tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the tenant's asset inventory.
    pub fn set_assets(&self, tenant: &TenantId, assets: AssetInventory) {
        let mut tenants = self
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.entry(tenant.clone()).or_default().assets = Arc::new(AssetIndex::new(assets));
    }

    /// Replaces the tenant's identity directory.
    pub fn set_identities(&self, tenant: &TenantId, identities: IdentityDirectory) {
        let mut tenants = self
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.entry(tenant.clone()).or_default().identities =
            Arc::new(IdentityIndex::new(identities));
    }
}

/// Checks a JSON-supplied inventory the way the CSV reader does (duplicate
/// names), so both forms refuse the same mistakes.
pub fn check_assets(inventory: &AssetInventory) -> Result<(), ContextError> {
    let mut seen = HashSet::new();
    let issues: Vec<ImportIssue> = inventory
        .assets
        .iter()
        .enumerate()
        .filter_map(|(index, asset)| {
            let message = if asset.name.trim().is_empty() {
                "empty host name".to_owned()
            } else if !seen.insert(normal(&asset.name)) {
                format!("`{}` appears twice", asset.name)
            } else {
                return None;
            };
            Some(ImportIssue {
                line: 0,
                column: Some(format!("assets[{index}].name")),
                message,
            })
        })
        .collect();
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ContextError::Invalid(issues))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entity(kind: EntityKind, value: &str) -> Entity {
        Entity {
            kind,
            value: value.into(),
        }
    }

    #[test]
    fn assets_from_csv_with_every_column() {
        let csv = "hostname,ips,owner,criticality,tags,protected\n\
                   dc01.corp.example,10.0.0.10;10.0.0.11,IT Ops,critical,domain-controller;crown-jewel,yes\n\
                   ws-042.corp.example,10.0.5.42,Finance,,,\n";
        let inventory = AssetIndex::new(AssetInventory::from_csv(csv).expect("valid"));
        assert_eq!(inventory.inventory().assets.len(), 2);
        let dc = inventory
            .find(&entity(EntityKind::Ip, "10.0.0.11"))
            .expect("dc by ip");
        assert_eq!(dc.criticality, Some(Criticality::Critical));
        assert!(dc.protected);
        assert_eq!(dc.tags, ["domain-controller", "crown-jewel"]);
        let range = inventory.find(&entity(EntityKind::Ip, "10.0.0.0/24"));
        assert_eq!(range.map(|a| a.name.as_str()), Some("dc01.corp.example"));
        assert!(
            inventory
                .find(&entity(EntityKind::Ip, "10.0.1.0/24"))
                .is_none()
        );
        let ws = inventory
            .find(&entity(EntityKind::Hostname, "WS-042"))
            .expect("short name");
        assert_eq!(ws.owner.as_deref(), Some("Finance"));
        assert_eq!(ws.criticality, None);
        assert!(!ws.protected);
    }

    #[test]
    fn csv_problems_are_all_reported_with_line_and_column() {
        let csv = "hostname,ips,criticality,protected\n\
                   a,10.0.0.300,extreme,maybe\n\
                   ,10.0.0.1,,\n\
                   A.,,low,no\n";
        let Err(ContextError::Invalid(issues)) = AssetInventory::from_csv(csv) else {
            panic!("must be refused")
        };
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "line 2, column `ips`: `10.0.0.300` is not an IP address",
                "line 2, column `criticality`: `extreme` is not one of low, medium, high, critical",
                "line 2, column `protected`: `maybe` is not yes/no/true/false/1/0",
                "line 3, column `hostname`: empty host name",
                "line 4, column `hostname`: `A.` is already on line 2",
            ]
        );
    }

    #[test]
    fn unknown_and_missing_columns_are_refused() {
        let Err(ContextError::Invalid(issues)) =
            AssetInventory::from_csv("host,critcality\nx,low\n")
        else {
            panic!("must be refused")
        };
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(issues[2].message.contains("`hostname` column is missing"));
    }

    #[test]
    fn identities_match_account_forms_and_email() {
        let csv = "user,email,department,privileged,mfa,groups\n\
                   jdoe,jdoe@corp.example,Finance,no,yes,Finance Users;VPN\n\
                   adm-kim,kim.admin@corp.example,IT,yes,no,Domain Admins\n";
        let directory = IdentityIndex::new(IdentityDirectory::from_csv(csv).expect("valid"));
        for form in ["jdoe", "CORP\\JDoe", "jdoe@corp.example"] {
            let found = directory.find(&entity(EntityKind::User, form)).expect(form);
            assert_eq!(found.department.as_deref(), Some("Finance"));
        }
        let admin = directory
            .find(&entity(EntityKind::Email, "Kim.Admin@corp.example"))
            .expect("by email");
        assert!(admin.privileged && !admin.mfa);
        assert_eq!(admin.groups, ["Domain Admins"]);
        assert!(directory.find(&entity(EntityKind::User, "jdoe2")).is_none());
        assert!(
            directory
                .find(&entity(EntityKind::Hostname, "jdoe"))
                .is_none()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2_000))]

        /// Hostile CSV (any bytes as text, quotes, ragged rows, huge cells)
        /// is either read or refused with located problems; never a panic.
        #[test]
        fn any_csv_is_read_or_refused_with_located_problems(
            header in proptest::sample::select(vec![
                "hostname,ips,owner,criticality,tags,protected",
                "user,email,display_name,department,title,privileged,mfa,groups",
                "hostname,ips",
                "user,privileged",
                "",
            ]),
            body in "(?s).{0,400}",
        ) {
            let text = format!("{header}\n{body}");
            for result in [
                AssetInventory::from_csv(&text).map(|_| ()),
                IdentityDirectory::from_csv(&text).map(|_| ()),
            ] {
                if let Err(ContextError::Invalid(issues)) = result {
                    proptest::prop_assert!(!issues.is_empty());
                    proptest::prop_assert!(issues.iter().all(|i| i.line >= 1));
                }
            }
        }
    }

    #[test]
    fn identity_csv_problems() {
        let csv = "user,email,privileged\njdoe,not-an-address,perhaps\nJDOE,,\n";
        let Err(ContextError::Invalid(issues)) = IdentityDirectory::from_csv(csv) else {
            panic!("must be refused")
        };
        assert_eq!(issues.len(), 3, "{issues:?}");
    }
}
