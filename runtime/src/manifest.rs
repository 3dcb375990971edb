//! Plugin manifests: parse → validate → lock.
//!
//! A manifest is TOML:
//!
//! ```toml
//! name = "ip-reputation"       # [a-z0-9][a-z0-9-]*, at most 64
//! version = "0.1.0"            # the plugin's own semver
//! kind = "enricher"            # enricher | scorer | responder | hunt
//! wit = "0.1.0"                # the rampart:plugin version it was built against
//! description = "..."          # optional
//! capabilities = ["log", "kv"] # log | kv | memory | intel | context | config | http
//!
//! [limits]                     # optional; capped by the tenant's grant and the runtime
//! memory_mib = 64
//! fuel = 1_000_000_000
//! timeout_ms = 5_000
//!
//! [component]
//! path = "ip-reputation.wasm"  # relative to the manifest, no `..`
//! sha256 = "…64 hex…"
//! ```
//!
//! [`parse`] collects every problem with its line and column before failing,
//! so a vendor fixes them all in one go; the result is a [`LockedManifest`],
//! the only form the sandbox accepts.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::tenant::{Capability, Limits};

/// The largest limits a manifest may ask for (the runtime's ceilings apply too).
pub const MAX_MEMORY_MIB: u64 = 4096;
/// See [`MAX_MEMORY_MIB`].
pub const MAX_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// The kind of plugin, i.e. the world it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// World `enricher`, exports `rampart:plugin/enrich`.
    Enricher,
    /// World `scorer`, exports `rampart:plugin/score`.
    Scorer,
    /// World `responder`, exports `rampart:plugin/respond`.
    Responder,
    /// World `hunt`, exports `rampart:plugin/hunting`.
    Hunt,
}

impl PluginKind {
    /// The manifest name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Enricher => "enricher",
            PluginKind::Scorer => "scorer",
            PluginKind::Responder => "responder",
            PluginKind::Hunt => "hunt",
        }
    }

    /// The interface this kind's world exports (without version).
    pub fn export_interface(self) -> &'static str {
        match self {
            PluginKind::Enricher => "rampart:plugin/enrich",
            PluginKind::Scorer => "rampart:plugin/score",
            PluginKind::Responder => "rampart:plugin/respond",
            PluginKind::Hunt => "rampart:plugin/hunting",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            PluginKind::Enricher,
            PluginKind::Scorer,
            PluginKind::Responder,
            PluginKind::Hunt,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

pub use crate::diagnostics::Issue;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is not well-formed TOML or has fields of the wrong type.
    #[error("{source_name}: {issue}")]
    Syntax {
        /// File name or other label.
        source_name: String,
        /// The problem.
        issue: Box<Issue>,
    },
    /// The manifest parsed but some values are wrong; all of them are listed.
    #[error("{source_name}: {} problem(s):\n{}", issues.len(), issues.iter().map(|issue| format!("  {issue}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// File name or other label.
        source_name: String,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    version: Spanned<String>,
    kind: Spanned<String>,
    wit: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    capabilities: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    limits: Option<RawLimits>,
    component: Option<Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mib: Option<Spanned<u64>>,
    fuel: Option<Spanned<u64>>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    path: Option<Spanned<String>>,
    sha256: Spanned<String>,
}

/// A manifest that passed validation: what the sandbox runs by.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockedManifest {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Kind.
    pub kind: PluginKind,
    /// The `rampart:plugin` version the plugin was built against.
    pub wit: semver::Version,
    /// Description.
    pub description: Option<String>,
    /// Capabilities requested.
    pub capabilities: BTreeSet<Capability>,
    /// Limits requested (defaults where unset).
    pub limits: Limits,
    /// Component file, relative to the manifest.
    pub component_path: Option<PathBuf>,
    /// Lower-case hex sha256 of the component.
    pub sha256: String,
}

/// Turns a byte offset into a 1-based line and column.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

struct Collector<'a> {
    text: &'a str,
    issues: Vec<Issue>,
}

impl Collector<'_> {
    fn at<T>(&mut self, spanned: &Spanned<T>, field: &str, message: impl Into<String>) {
        let (line, column) = line_column(self.text, spanned.span().start);
        self.issues.push(Issue {
            line: Some(line),
            column: Some(column),
            field: field.to_owned(),
            message: message.into(),
            hint: None,
        });
    }

    fn missing(&mut self, field: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            line: None,
            column: None,
            field: field.to_owned(),
            message: message.into(),
            hint: None,
        });
    }
}

/// Whether a runtime speaking [`crate::WIT_VERSION`] can run a plugin built
/// against `version`: same leftmost non-zero part (0.1.x here).
pub fn wit_compatible(version: &semver::Version) -> bool {
    let Ok(ours) = semver::Version::parse(crate::WIT_VERSION) else {
        return false;
    };
    if ours.major != 0 {
        return version.major == ours.major;
    }
    if ours.minor != 0 {
        return version.major == 0 && version.minor == ours.minor;
    }
    version.major == 0 && version.minor == 0 && version.patch == ours.patch
}

/// Parses, validates and locks a manifest. `source_name` labels errors.
pub fn parse(source_name: &str, text: &str) -> Result<LockedManifest, ManifestError> {
    let raw: RawManifest = toml::from_str(text).map_err(|err| {
        let (line, column) = err.span().map_or((None, None), |span| {
            let (line, column) = line_column(text, span.start);
            (Some(line), Some(column))
        });
        ManifestError::Syntax {
            source_name: source_name.to_owned(),
            issue: Box::new(Issue {
                line,
                column,
                field: "manifest".to_owned(),
                message: err.message().to_owned(),
                hint: None,
            }),
        }
    })?;
    let mut check = Collector {
        text,
        issues: Vec::new(),
    };

    let name = raw.name.get_ref();
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        check.at(
            &raw.name,
            "name",
            format!(
                "`{name}` must be 1-64 characters of [a-z0-9-], starting with a letter or digit"
            ),
        );
    }
    if semver::Version::parse(raw.version.get_ref()).is_err() {
        check.at(
            &raw.version,
            "version",
            format!(
                "`{}` is not a semantic version like 1.2.3",
                raw.version.get_ref()
            ),
        );
    }
    let kind = PluginKind::from_name(raw.kind.get_ref());
    if kind.is_none() {
        check.at(
            &raw.kind,
            "kind",
            format!(
                "`{}` is not one of enricher, scorer, responder, hunt",
                raw.kind.get_ref()
            ),
        );
    }
    let wit = match semver::Version::parse(raw.wit.get_ref()) {
        Ok(version) if wit_compatible(&version) => Some(version),
        Ok(version) => {
            check.at(&raw.wit, "wit", format!(
                "built against rampart:plugin@{version}; this runtime speaks {} (compatible: same leftmost non-zero part)",
                crate::WIT_VERSION
            ));
            None
        }
        Err(_) => {
            check.at(
                &raw.wit,
                "wit",
                format!(
                    "`{}` is not a semantic version like 0.1.0",
                    raw.wit.get_ref()
                ),
            );
            None
        }
    };
    let mut capabilities = BTreeSet::new();
    for cap in raw.capabilities.get_ref() {
        match Capability::from_name(cap.get_ref()) {
            Some(found) if !capabilities.insert(found) => {
                check.at(
                    cap,
                    "capabilities",
                    format!("`{}` is listed twice", cap.get_ref()),
                );
            }
            Some(_) => {}
            None => check.at(
                cap,
                "capabilities",
                format!(
                    "`{}` is not a capability; known: {}",
                    cap.get_ref(),
                    Capability::ALL.map(Capability::name).join(", ")
                ),
            ),
        }
    }

    let mut limits = Limits::default();
    if let Some(raw_limits) = &raw.limits {
        if let Some(memory) = &raw_limits.memory_mib {
            match *memory.get_ref() {
                0 => check.at(memory, "limits.memory_mib", "must be at least 1"),
                mib if mib > MAX_MEMORY_MIB => check.at(
                    memory,
                    "limits.memory_mib",
                    format!("{mib} is above the maximum {MAX_MEMORY_MIB}"),
                ),
                mib => limits.memory_bytes = mib << 20,
            }
        }
        if let Some(fuel) = &raw_limits.fuel {
            match *fuel.get_ref() {
                0 => check.at(fuel, "limits.fuel", "must be at least 1"),
                fuel => limits.fuel = fuel,
            }
        }
        if let Some(timeout) = &raw_limits.timeout_ms {
            match *timeout.get_ref() {
                0 => check.at(timeout, "limits.timeout_ms", "must be at least 1"),
                ms if ms > MAX_TIMEOUT_MS => check.at(
                    timeout,
                    "limits.timeout_ms",
                    format!("{ms} is above the maximum {MAX_TIMEOUT_MS}"),
                ),
                ms => limits.timeout = Duration::from_millis(ms),
            }
        }
    }

    let mut sha256 = String::new();
    let mut component_path = None;
    match &raw.component {
        None => check.missing(
            "component",
            "missing [component] table with `sha256` (and usually `path`)",
        ),
        Some(component) => {
            let component = component.get_ref();
            let digest = component.sha256.get_ref();
            if digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                sha256 = digest.clone();
            } else {
                check.at(
                    &component.sha256,
                    "component.sha256",
                    "must be 64 lower-case hex digits (sha256 of the .wasm file)",
                );
            }
            if let Some(path) = &component.path {
                let candidate = PathBuf::from(path.get_ref());
                let escapes = candidate.is_absolute()
                    || candidate
                        .components()
                        .any(|part| !matches!(part, std::path::Component::Normal(_)));
                if path.get_ref().is_empty() || escapes {
                    check.at(path, "component.path", "must be a relative path inside the manifest's directory (no `..`, not absolute)");
                } else {
                    component_path = Some(candidate);
                }
            }
        }
    }

    match (kind, wit, check.issues.is_empty()) {
        (Some(kind), Some(wit), true) => Ok(LockedManifest {
            name: raw.name.into_inner(),
            version: raw.version.into_inner(),
            kind,
            wit,
            description: raw.description,
            capabilities,
            limits,
            component_path,
            sha256,
        }),
        _ => Err(ManifestError::Invalid {
            source_name: source_name.to_owned(),
            issues: check.issues,
        }),
    }
}
