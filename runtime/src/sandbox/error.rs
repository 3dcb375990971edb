//! Why a plugin was refused at load, and why one call failed.

use std::path::PathBuf;

use super::bounds;
use crate::manifest::{ManifestError, PluginKind};
use crate::model::GuestError;
use crate::tenant::{Capability, TenantId};

/// Why a plugin was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest names no component file.
    #[error("manifest of `{0}` has no [component] path")]
    NoComponentPath(String),
    /// The component's sha256 is not the manifest's.
    #[error("sha256 mismatch: manifest says {expected}, component is {actual}")]
    DigestMismatch {
        /// From the manifest.
        expected: String,
        /// Of the bytes.
        actual: String,
    },
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    NotAComponent,
    /// Not WebAssembly, or truncated.
    #[error("not a WebAssembly component (bad or truncated header)")]
    NotWasm,
    /// wasmtime could not compile it (malformed, truncated, unsupported).
    #[error("component does not compile: {0}")]
    Compile(String),
    /// The component is past what this runtime compiles (size, functions).
    #[error(transparent)]
    TooHeavy(bounds::BoundsError),
    /// The compile worker hit a bound (time, memory) or failed.
    #[error("component does not compile: {0}")]
    Compiler(#[from] super::compiler::CompileError),
    /// No compile slot came free in time (the tenant's, or the process's).
    #[error("cannot compile now: {0}; retry later")]
    CompileBusy(String),
    /// Built against a contract version this runtime does not speak.
    #[error(
        "component is built against rampart:plugin@{found}; this runtime speaks {speaks} (same leftmost non-zero version part required)"
    )]
    WitVersion {
        /// Version(s) the component names.
        found: String,
        /// Our version.
        speaks: &'static str,
    },
    /// The component does not implement the world of its manifest's kind.
    #[error("component does not implement the `{kind}` world: {detail}")]
    WrongWorld {
        /// The manifest's kind.
        kind: PluginKind,
        /// What is missing or mistyped.
        detail: String,
    },
    /// The component imports a capability its manifest does not request.
    #[error(
        "component imports `{import}` (capability `{capability}`) but its manifest does not request it"
    )]
    UndeclaredImport {
        /// The import name.
        import: String,
        /// The capability.
        capability: Capability,
    },
    /// The manifest requests capabilities the tenant did not grant.
    #[error("tenant `{tenant}` does not grant plugin `{plugin}` the capabilities: {}", missing.iter().map(|cap| cap.name()).collect::<Vec<_>>().join(", "))]
    NotGranted {
        /// Tenant.
        tenant: TenantId,
        /// Plugin.
        plugin: String,
        /// Requested but not granted.
        missing: Vec<Capability>,
    },
    /// An import the host does not provide at all.
    #[error("component imports something this runtime does not provide: {0}")]
    UnknownImport(String),
}

/// Why one call failed. The call is over; the plugin stays loaded and the
/// next call gets a fresh sandbox.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum PluginError {
    /// The plugin returned an error itself.
    #[error("plugin error ({:?}): {}", .0.kind, .0.message)]
    Guest(GuestError),
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("trap: {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Trap {
        /// The trap code, e.g. `wasm unreachable instruction executed`.
        code: String,
        /// The guest's last stderr line (a panic message), if any.
        message: Option<String>,
    },
    /// The fuel budget ran out.
    #[error("out of fuel: budget of {budget} exhausted")]
    OutOfFuel {
        /// The budget.
        budget: u64,
    },
    /// The deadline passed.
    #[error("deadline of {limit_ms} ms exceeded (ended after {elapsed_ms} ms)")]
    Deadline {
        /// The deadline.
        limit_ms: u64,
        /// When it ended.
        elapsed_ms: u64,
    },
    /// The plugin tried to grow memory past its cap.
    #[error("out of memory: cap of {limit_bytes} bytes reached")]
    OutOfMemory {
        /// The cap.
        limit_bytes: u64,
    },
    /// The plugin tried to use something it was not granted.
    #[error("capability denied: {detail}")]
    CapabilityDenied {
        /// What was refused.
        detail: String,
    },
    /// The plugin returned something the contract does not allow.
    #[error("invalid output: {detail}")]
    InvalidOutput {
        /// What is wrong.
        detail: String,
    },
    /// The plugin's kind has no such call (e.g. `score` on an enricher).
    #[error("plugin `{plugin}` is a {kind}, it has no `{call}`")]
    WrongKind {
        /// Plugin.
        plugin: String,
        /// Its kind.
        kind: PluginKind,
        /// The call asked for.
        call: &'static str,
    },
    /// No sandbox slot was free, or the host failed; try again.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// A hunt session used up its whole-session budget (`what`: `time`,
    /// in ms, or `fuel`).
    #[error("hunt session budget exhausted: {what} limit {limit}, used {used}")]
    SessionBudget {
        /// `time` (milliseconds) or `fuel`.
        what: &'static str,
        /// The session's budget.
        limit: u64,
        /// What it had used.
        used: u64,
    },
    /// The tenant's quota (fuel per minute) is spent; try again later.
    #[error("quota exceeded: {detail}; retry in {retry_after_ms} ms")]
    QuotaExceeded {
        /// Which quota.
        detail: String,
        /// When the quota refills.
        retry_after_ms: u64,
    },
}
