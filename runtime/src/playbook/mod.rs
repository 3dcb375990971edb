//! Playbooks: YAML that chains plugins into enrich → score → decide → act.
//!
//! ```yaml
//! name: ip-triage                      # [a-z0-9][a-z0-9-]*
//! version: 3                           # bumped on every change; runs keep theirs
//! trigger:
//!   alert: 'alert.source == "edr" && "ip" in alert.entities'   # CEL
//! mode: autonomous                     # autonomous | supervised | dry-run
//! dedup: { key: [alert.title, 'alert.entities.ip[0]'], window: 30m }
//! steps:
//!   - id: ti
//!     enrich: ip-reputation
//!     timeout: 5s
//!     on_error: continue               # fail (default) | continue | {retry: {max: 3, backoff: 2s}}
//!   - id: risk
//!     score: risk-scorer
//!     needs: [ti]
//!   - id: block
//!     respond: edl-blocklist
//!     needs: [risk]
//!     when: 'steps.risk.score >= 80'
//!     target: '{"kind": "ip", "value": alert.entities.ip[0]}'
//!     action: block-ip                 # the rate-limit bucket; defaults to the plugin name
//!     with: { list: block }
//!     guard: { min_confidence: 90, approvers: 1, approval_timeout: 15m }
//! guardrails:
//!   protected_assets: [dc01.corp.example, "tag:crown-jewel", 10.0.0.0/24]
//!   rate_limits: { block-ip: 5/h }
//!   max_targets_per_run: 3
//! ```
//!
//! [`parse`] validates everything it can without running anything and
//! reports every problem with line, column and a hint; the result is a
//! [`Playbook`] whose CEL is compiled and whose steps are in an order that
//! respects `needs`.

mod cost;
mod expr;
pub mod output;
mod refs;
mod validate;

pub use validate::parse;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;
use sha2::{Digest, Sha256};

pub use crate::diagnostics::Issue;
pub use expr::{Expr, ExprError, Variables, cel_to_json, json_to_cel};

use crate::manifest::PluginKind;

/// Largest playbook accepted, in bytes.
pub const MAX_PLAYBOOK_BYTES: usize = 256 << 10;
/// Most steps in one playbook.
pub const MAX_STEPS: usize = 64;
/// Default step timeout.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default approval timeout.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Why a playbook was refused.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    /// Not YAML, or a field of the wrong type or unknown.
    #[error("{source_name}: {issue}")]
    Syntax {
        /// File name or label.
        source_name: String,
        /// The problem.
        issue: Box<Issue>,
    },
    /// Parsed, but invalid; every problem is listed.
    #[error("{source_name}: {} problem(s):\n{}", issues.len(), issues.iter().map(|issue| format!("  {issue}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// File name or label.
        source_name: String,
        /// Every problem.
        issues: Vec<Issue>,
    },
}

impl PlaybookError {
    /// Every issue, whichever the variant.
    pub fn issues(&self) -> Vec<&Issue> {
        match self {
            PlaybookError::Syntax { issue, .. } => vec![issue],
            PlaybookError::Invalid { issues, .. } => issues.iter().collect(),
        }
    }
}

/// How much a playbook may do on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Acts when every guardrail allows; asks a human otherwise.
    Autonomous,
    /// Every action waits for approval.
    Supervised,
    /// Nothing executes; responders only plan.
    DryRun,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// Runs an enricher.
    Enrich,
    /// Runs a scorer on the enrichments of the steps it needs (all earlier
    /// enrich steps if it needs none).
    Score,
    /// Runs a responder, under guardrails.
    Respond,
    /// Runs a hunt over the events in `with.events` (or none).
    Hunt,
}

impl StepKind {
    fn plugin_kind(self) -> PluginKind {
        match self {
            StepKind::Enrich => PluginKind::Enricher,
            StepKind::Score => PluginKind::Scorer,
            StepKind::Respond => PluginKind::Responder,
            StepKind::Hunt => PluginKind::Hunt,
        }
    }
}

/// What to do when a step fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum OnError {
    /// The run fails.
    Fail,
    /// The step is marked failed; the run goes on (dependants see no output).
    Continue,
    /// Try again up to `max` more times, waiting `backoff` (doubling), or the
    /// plugin's retry-after if it gave one; then fail.
    Retry {
        /// Extra attempts.
        max: u32,
        /// First wait.
        #[serde(with = "humantime_serde_ms")]
        backoff: Duration,
    },
}

mod humantime_serde_ms {
    pub fn serialize<S: serde::Serializer>(
        duration: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A responder step's guard.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Guard {
    /// Confidence the deciding score must reach to act without a human.
    pub min_confidence: u8,
    /// Distinct approvers needed when a human must decide.
    pub approvers: u32,
    /// How long an approval may wait before it is denied.
    pub approval_timeout: Duration,
    /// The step acts on outside targets (an attacker's IP on a block list):
    /// the inventory rule then requires the target *not* to be ours.
    pub external_target: bool,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            min_confidence: 90,
            approvers: 1,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            external_target: false,
        }
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Id, unique in the playbook.
    pub id: String,
    /// What it does.
    pub kind: StepKind,
    /// The plugin it runs.
    pub plugin: String,
    /// Steps that must finish first.
    pub needs: Vec<String>,
    /// Condition; the step is skipped when false.
    pub when: Option<Expr>,
    /// Parameters (JSON).
    pub with: serde_json::Value,
    /// Responders: the target, as an entity `{kind, value}` or an IP/host string.
    pub target: Option<Expr>,
    /// Responders: the action kind for rate limits.
    pub action: String,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Failure policy.
    pub on_error: OnError,
    /// Responders: the guard.
    pub guard: Guard,
}

/// A rate limit: at most `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// How many.
    pub count: u32,
    /// Per how long.
    #[serde(with = "humantime_serde_ms")]
    pub per: Duration,
}

/// Playbook-level guardrails.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Guardrails {
    /// Names, CIDRs or `tag:<tag>` never acted on automatically.
    pub protected_assets: Vec<String>,
    /// Per action kind.
    pub rate_limits: BTreeMap<String, RateLimit>,
    /// Most distinct targets one run may act on.
    pub max_targets_per_run: Option<u32>,
}

/// Deduplication.
#[derive(Debug, Clone, PartialEq)]
pub struct Dedup {
    /// Expressions whose values form the fingerprint.
    pub key: Vec<Expr>,
    /// How long a fingerprint folds new alerts.
    pub window: Duration,
}

/// A validated playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Playbook {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// Description.
    pub description: Option<String>,
    /// Which alerts start a run.
    pub trigger: Expr,
    /// Mode.
    pub mode: Mode,
    /// Deduplication, if any.
    pub dedup: Option<Dedup>,
    /// Steps in an order that respects `needs`.
    pub steps: Vec<Step>,
    /// Guardrails.
    pub guardrails: Guardrails,
    /// sha256 of the YAML source: runs record it.
    pub sha256: String,
    /// The YAML source.
    pub source: String,
}

impl Playbook {
    /// The step with `id`.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|step| step.id == id)
    }
}

// ---- raw form, as written (also the source of the JSON Schema) ----

/// A Rampart playbook.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Rampart playbook")]
struct RawPlaybook {
    /// Name, 1-64 characters of [a-z0-9_-].
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// Version, bumped on every change; runs keep the version they started with.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    version: Option<Spanned<u32>>,
    /// What the playbook is for.
    #[serde(default)]
    description: Option<String>,
    /// Which alerts start a run.
    #[schemars(with = "RawTrigger")]
    trigger: Spanned<RawTrigger>,
    /// autonomous | supervised (default) | dry-run.
    #[serde(default)]
    #[schemars(with = "Option<ModeDoc>")]
    mode: Option<Spanned<String>>,
    /// Fold repeated alerts into the open run.
    #[serde(default)]
    #[schemars(with = "Option<RawDedup>")]
    dedup: Option<Spanned<RawDedup>>,
    /// The steps; order does not matter, `needs` does.
    #[schemars(with = "Vec<RawStep>")]
    steps: Spanned<Vec<Spanned<RawStep>>>,
    /// Limits on what responders may do on their own.
    #[serde(default)]
    #[schemars(with = "Option<RawGuardrails>")]
    guardrails: Option<Spanned<RawGuardrails>>,
}

/// Playbook modes.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum ModeDoc {
    /// Acts when every guardrail allows.
    Autonomous,
    /// Every action waits for approval.
    Supervised,
    /// Nothing executes.
    DryRun,
}

/// When the playbook runs.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    /// CEL condition on `alert`.
    #[schemars(with = "String")]
    alert: Spanned<String>,
}

/// Deduplication.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    /// CEL expressions whose values form the fingerprint; an alert missing one is never folded.
    #[schemars(with = "Vec<String>")]
    key: Vec<Spanned<String>>,
    /// How long a fingerprint folds new alerts (e.g. 30m).
    #[schemars(with = "String")]
    window: Spanned<String>,
}

/// One step: exactly one of enrich, score, respond, hunt.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawStep {
    /// Id, unique in the playbook.
    #[schemars(with = "String")]
    id: Spanned<String>,
    /// Run this enricher plugin.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    enrich: Option<Spanned<String>>,
    /// Run this scorer plugin.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    score: Option<Spanned<String>>,
    /// Run this responder plugin (under guardrails).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    respond: Option<Spanned<String>>,
    /// Run this hunt plugin.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    hunt: Option<Spanned<String>>,
    /// Steps that must finish first.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    needs: Vec<Spanned<String>>,
    /// CEL condition; the step is skipped when false.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    when: Option<Spanned<String>>,
    /// Parameters for the plugin.
    #[serde(default)]
    with: Option<serde_json::Value>,
    /// Responders: CEL giving the target, an entity {kind, value} or an address/host string.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    target: Option<Spanned<String>>,
    /// Responders: the action kind rate limits count (default: the plugin name).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    action: Option<Spanned<String>>,
    /// Deadline of one attempt (default 30s).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// fail (default) | continue | {retry: {max, backoff}}.
    #[serde(default)]
    #[schemars(with = "Option<OnErrorDoc>")]
    on_error: Option<Spanned<serde_json::Value>>,
    /// Responders: when a human must decide.
    #[serde(default)]
    #[schemars(with = "Option<RawGuard>")]
    guard: Option<Spanned<RawGuard>>,
}

/// Error policies.
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OnErrorDoc {
    /// fail or continue.
    Simple(SimplePolicyDoc),
    /// Retry with backoff.
    Retry {
        /// Retry settings.
        retry: RetryDoc,
    },
}

/// fail | continue.
#[derive(schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum SimplePolicyDoc {
    /// The run fails.
    Fail,
    /// The run goes on.
    Continue,
}

/// Retry settings.
#[derive(schemars::JsonSchema)]
#[allow(dead_code)]
struct RetryDoc {
    /// Extra attempts, 1-10.
    max: u32,
    /// First wait, doubling (default 1s); a plugin's retry-after wins.
    backoff: Option<String>,
}

/// A responder step's guard.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    /// Confidence (0-100) the deciding score must reach to act alone (default 90).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    min_confidence: Option<Spanned<u32>>,
    /// Distinct approvers needed, 1-10 (default 1).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    approvers: Option<Spanned<u32>>,
    /// How long an approval waits before it is denied (default 15m).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    approval_timeout: Option<Spanned<String>>,
    /// The target is outside (an attacker's IP): it must not be one of our assets.
    #[serde(default)]
    external_target: Option<bool>,
}

/// Playbook guardrails.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    /// Names, CIDRs or tag:<tag> never acted on automatically.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    protected_assets: Vec<Spanned<String>>,
    /// Per action kind, COUNT/PERIOD (5/h, 10/15m).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    rate_limits: BTreeMap<String, Spanned<String>>,
    /// Most distinct targets one run may act on (default 5).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    max_targets_per_run: Option<Spanned<u32>>,
}

/// The JSON Schema of the playbook format, generated from the types above.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawPlaybook)).unwrap_or(serde_json::Value::Null)
}

/// What the validator needs to know about plugins: the kind of each name.
pub trait PluginCatalog {
    /// The kind of the plugin called `name`, or `None` if there is none.
    fn kind_of(&self, name: &str) -> Option<PluginKind>;
}

impl PluginCatalog for HashMap<String, PluginKind> {
    fn kind_of(&self, name: &str) -> Option<PluginKind> {
        self.get(name).copied()
    }
}

impl PluginCatalog for BTreeMap<String, PluginKind> {
    fn kind_of(&self, name: &str) -> Option<PluginKind> {
        self.get(name).copied()
    }
}

/// Parses `5/h`, `10/15m`, `100/d`.
/// The longest rate-limit window a playbook may set (and how long the
/// executor keeps what it counts).
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(31 * 86_400);
