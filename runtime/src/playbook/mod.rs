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

struct Check<'a> {
    text: &'a str,
    issues: Vec<Issue>,
}

impl Check<'_> {
    fn at<T>(
        &mut self,
        spanned: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.issues.push(Issue {
            line: usize::try_from(spanned.referenced.line()).ok(),
            column: usize::try_from(spanned.referenced.column()).ok(),
            field: field.into(),
            message: message.into(),
            hint,
        });
    }

    /// Compiles `spanned` and checks the step outputs it reads when it is
    /// evaluated for step `reader` (`None`: before any step runs). The
    /// expression is kept (for later checks) even when a read is wrong:
    /// the issue is recorded and the playbook refused anyway.
    fn expr_reading(
        &mut self,
        spanned: &Spanned<String>,
        field: &str,
        reader: Option<&str>,
        shapes: &refs::StepShapes,
    ) -> Option<Expr> {
        let expr = self.expr(spanned, field)?;
        for (message, hint) in refs::problems(expr.ast(), reader, shapes) {
            self.at(spanned, field, message, hint);
        }
        Some(expr)
    }

    fn expr(&mut self, spanned: &Spanned<String>, field: &str) -> Option<Expr> {
        match Expr::compile(&spanned.value) {
            Ok(expr) => Some(expr),
            Err(err) => {
                let hint = Some(
                    "CEL syntax: https://cel.dev — e.g. 'alert.severity == \"high\"'".to_owned(),
                );
                self.at(spanned, field, err.to_string(), hint);
                // Point at the character the parser complained about: the
                // scalar's column, past an opening quote, plus the offset.
                if let (ExprError::Syntax { offset, .. }, Some(issue)) =
                    (&err, self.issues.last_mut())
                {
                    let line = issue
                        .line
                        .and_then(|line| self.text.lines().nth(line.saturating_sub(1)));
                    let quoted = issue.column.zip(line).is_some_and(|(column, line)| {
                        matches!(line.chars().nth(column.saturating_sub(1)), Some('"' | '\''))
                    });
                    issue.column = issue
                        .column
                        .map(|column| column + usize::from(quoted) + offset.saturating_sub(1));
                }
                None
            }
        }
    }

    fn duration(&mut self, spanned: &Spanned<String>, field: &str) -> Option<Duration> {
        match humantime::parse_duration(spanned.value.trim()) {
            Ok(duration) if !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.at(spanned, field, "must be longer than zero", None);
                None
            }
            Err(err) => {
                self.at(
                    spanned,
                    field,
                    format!("`{}` is not a duration: {err}", spanned.value),
                    Some("write e.g. 500ms, 30s, 15m, 2h".to_owned()),
                );
                None
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses `5/h`, `10/15m`, `100/d`.
/// The longest rate-limit window a playbook may set (and how long the
/// executor keeps what it counts).
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(31 * 86_400);

fn parse_rate(text: &str) -> Option<RateLimit> {
    let (count, per) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
    let per = per.trim();
    let per = match per {
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other)
            .ok()
            .filter(|d| !d.is_zero())?,
    };
    (per <= MAX_RATE_WINDOW).then_some(RateLimit { count, per })
}

/// Parses, validates and compiles a playbook. `plugins` says which plugin
/// names exist and their kinds.
pub fn parse(
    source_name: &str,
    text: &str,
    plugins: &dyn PluginCatalog,
) -> Result<Playbook, PlaybookError> {
    let syntax =
        |line: Option<usize>, column: Option<usize>, message: String| PlaybookError::Syntax {
            source_name: source_name.to_owned(),
            issue: Box::new(Issue {
                line,
                column,
                field: "playbook".to_owned(),
                message,
                hint: None,
            }),
        };
    if text.len() > MAX_PLAYBOOK_BYTES {
        return Err(syntax(
            None,
            None,
            format!(
                "playbook is {} bytes; the limit is {MAX_PLAYBOOK_BYTES}",
                text.len()
            ),
        ));
    }
    let raw: RawPlaybook = serde_saphyr::from_str(text).map_err(|err| {
        let location = err.location();
        let line = location
            .and_then(|l| usize::try_from(l.line()).ok())
            .filter(|l| *l > 0);
        let column = location
            .and_then(|l| usize::try_from(l.column()).ok())
            .filter(|c| *c > 0);
        // The error's Display may repeat the location and quote the source; keep its first line.
        let message = err
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_owned();
        syntax(line, column, message)
    })?;
    let mut check = Check {
        text,
        issues: Vec::new(),
    };

    if !valid_name(&raw.name.value) {
        check.at(
            &raw.name,
            "name",
            format!("`{}` must be 1-64 characters of [a-z0-9_-]", raw.name.value),
            None,
        );
    }
    // What each step is, for checking the step outputs expressions read.
    let shapes: refs::StepShapes = raw
        .steps
        .value
        .iter()
        .map(|step| {
            let step = &step.value;
            let kinds: Vec<StepKind> = [
                (StepKind::Enrich, step.enrich.is_some()),
                (StepKind::Score, step.score.is_some()),
                (StepKind::Respond, step.respond.is_some()),
                (StepKind::Hunt, step.hunt.is_some()),
            ]
            .into_iter()
            .filter_map(|(kind, named)| named.then_some(kind))
            .collect();
            let kind = match kinds.as_slice() {
                [kind] => Some(*kind),
                _ => None,
            };
            let needs = step.needs.iter().map(|need| need.value.clone()).collect();
            (step.id.value.clone(), (kind, needs))
        })
        .collect();
    let trigger = check.expr_reading(&raw.trigger.value.alert, "trigger.alert", None, &shapes);
    let mode = match &raw.mode {
        None => Some(Mode::Supervised),
        Some(mode) => match mode.value.as_str() {
            "autonomous" => Some(Mode::Autonomous),
            "supervised" => Some(Mode::Supervised),
            "dry-run" | "dry_run" => Some(Mode::DryRun),
            other => {
                check.at(
                    mode,
                    "mode",
                    format!("`{other}` is not a mode"),
                    Some("one of autonomous, supervised, dry-run".to_owned()),
                );
                None
            }
        },
    };
    let dedup = raw.dedup.as_ref().and_then(|dedup| {
        if dedup.value.key.is_empty() {
            check.at(dedup, "dedup.key", "needs at least one expression", None);
        }
        let keys: Vec<Option<Expr>> = dedup
            .value
            .key
            .iter()
            .enumerate()
            .map(|(i, key)| check.expr_reading(key, &format!("dedup.key[{i}]"), None, &shapes))
            .collect();
        let window = check.duration(&dedup.value.window, "dedup.window");
        let keys: Option<Vec<Expr>> = keys.into_iter().collect();
        Some(Dedup {
            key: keys?,
            window: window?,
        })
    });

    let mut guardrails = Guardrails::default();
    if let Some(raw_guardrails) = &raw.guardrails {
        for asset in &raw_guardrails.value.protected_assets {
            let value = asset.value.trim();
            if value.is_empty() || value == "tag:" {
                check.at(asset, "guardrails.protected_assets", "empty entry", None);
            } else if value.contains('/') && value.parse::<ipnet::IpNet>().is_err() {
                check.at(
                    asset,
                    "guardrails.protected_assets",
                    format!("`{value}` looks like a CIDR range but is not one"),
                    None,
                );
            } else {
                guardrails.protected_assets.push(value.to_owned());
            }
        }
        for (action, rate) in &raw_guardrails.value.rate_limits {
            match parse_rate(&rate.value) {
                Some(limit) => {
                    guardrails.rate_limits.insert(action.clone(), limit);
                }
                None => check.at(
                    rate,
                    format!("guardrails.rate_limits.{action}"),
                    format!("`{}` is not a rate", rate.value),
                    Some("write COUNT/PERIOD with a period of at most 31 days, e.g. 5/h, 10/15m, 100/d".to_owned()),
                ),
            }
        }
        if let Some(max) = &raw_guardrails.value.max_targets_per_run {
            if max.value == 0 {
                check.at(
                    max,
                    "guardrails.max_targets_per_run",
                    "must be at least 1",
                    None,
                );
            }
            guardrails.max_targets_per_run = Some(max.value);
        }
    }

    if raw.steps.value.is_empty() {
        check.at(
            &raw.steps,
            "steps",
            "a playbook needs at least one step",
            None,
        );
    }
    if raw.steps.value.len() > MAX_STEPS {
        check.at(
            &raw.steps,
            "steps",
            format!("{} steps; at most {MAX_STEPS}", raw.steps.value.len()),
            None,
        );
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, step) in raw.steps.value.iter().enumerate() {
        let id = &step.value.id;
        if !valid_name(&id.value) {
            check.at(
                id,
                format!("steps[{index}].id"),
                format!("`{}` must be 1-64 characters of [a-z0-9_-]", id.value),
                None,
            );
        } else if seen.insert(id.value.clone(), index).is_some() {
            check.at(
                id,
                format!("steps[{index}].id"),
                format!("`{}` is used by an earlier step", id.value),
                None,
            );
        }
    }
    let mut steps = Vec::new();
    for (index, spanned_step) in raw.steps.value.iter().enumerate() {
        let step = &spanned_step.value;
        let field = |name: &str| format!("steps[{index}].{name}");
        let chosen: Vec<(StepKind, &Spanned<String>)> = [
            (StepKind::Enrich, &step.enrich),
            (StepKind::Score, &step.score),
            (StepKind::Respond, &step.respond),
            (StepKind::Hunt, &step.hunt),
        ]
        .into_iter()
        .filter_map(|(kind, plugin)| plugin.as_ref().map(|plugin| (kind, plugin)))
        .collect();
        let (kind, plugin) = match chosen.as_slice() {
            [(kind, plugin)] => (*kind, *plugin),
            [] => {
                check.at(
                    spanned_step,
                    format!("steps[{index}]"),
                    "names no plugin",
                    Some(
                        "add one of enrich:, score:, respond:, hunt: with a plugin name".to_owned(),
                    ),
                );
                continue;
            }
            _ => {
                check.at(
                    spanned_step,
                    format!("steps[{index}]"),
                    "names more than one of enrich/score/respond/hunt",
                    Some("split it into one step per plugin".to_owned()),
                );
                continue;
            }
        };
        match plugins.kind_of(&plugin.value) {
            None => check.at(
                plugin,
                field(step_verb(kind)),
                format!("unknown plugin `{}`", plugin.value),
                Some("upload the plugin first, or check the name".to_owned()),
            ),
            Some(actual) if actual != kind.plugin_kind() => check.at(
                plugin,
                field(step_verb(kind)),
                format!(
                    "plugin `{}` is a {actual}, not a {}",
                    plugin.value,
                    kind.plugin_kind()
                ),
                None,
            ),
            Some(_) => {}
        }
        for need in &step.needs {
            match seen.get(&need.value) {
                None => {
                    let known: Vec<&str> = seen.keys().map(String::as_str).collect();
                    check.at(
                        need,
                        field("needs"),
                        format!("unknown step `{}`", need.value),
                        Some(format!("steps are: {}", known.join(", "))),
                    );
                }
                Some(other) if *other == index => {
                    check.at(need, field("needs"), "a step cannot need itself", None)
                }
                Some(_) => {}
            }
        }
        let reader = Some(step.id.value.as_str());
        let when = step
            .when
            .as_ref()
            .and_then(|when| check.expr_reading(when, &field("when"), reader, &shapes));
        let target = step
            .target
            .as_ref()
            .and_then(|target| check.expr_reading(target, &field("target"), reader, &shapes));
        if matches!(kind, StepKind::Enrich | StepKind::Score) && step.with.is_some() {
            check.at(
                spanned_step,
                field("with"),
                format!("{} steps take no parameters", step_verb(kind)),
                Some("only respond and hunt steps take `with:`".to_owned()),
            );
        }
        if kind == StepKind::Respond && step.target.is_none() {
            check.at(
                spanned_step,
                field("target"),
                "a respond step needs a target",
                Some("e.g. target: 'alert.entities.ip[0]'".to_owned()),
            );
        }
        if kind != StepKind::Respond {
            if let Some(target) = &step.target {
                check.at(
                    target,
                    field("target"),
                    "only respond steps take a target",
                    None,
                );
            }
            if let Some(guard) = &step.guard {
                check.at(
                    guard,
                    field("guard"),
                    "only respond steps take a guard",
                    None,
                );
            }
        }
        let timeout = step
            .timeout
            .as_ref()
            .map_or(Some(DEFAULT_STEP_TIMEOUT), |t| {
                check.duration(t, &field("timeout"))
            });
        let on_error = match &step.on_error {
            None => Some(OnError::Fail),
            Some(policy) => parse_on_error(&mut check, policy, &field("on_error")),
        };
        let mut guard = Guard::default();
        if let Some(raw_guard) = &step.guard {
            if let Some(min) = &raw_guard.value.min_confidence {
                if min.value > 100 {
                    check.at(
                        min,
                        field("guard.min_confidence"),
                        format!("{} is above 100", min.value),
                        None,
                    );
                }
                guard.min_confidence = u8::try_from(min.value.min(100)).unwrap_or(100);
            }
            if let Some(approvers) = &raw_guard.value.approvers {
                if approvers.value == 0 || approvers.value > 10 {
                    check.at(
                        approvers,
                        field("guard.approvers"),
                        "must be 1 to 10",
                        Some("approvals fail closed: at least one human must approve".to_owned()),
                    );
                }
                guard.approvers = approvers.value.clamp(1, 10);
            }
            guard.external_target = raw_guard.value.external_target.unwrap_or(false);
            if let Some(timeout) = &raw_guard.value.approval_timeout
                && let Some(duration) = check.duration(timeout, &field("guard.approval_timeout"))
            {
                guard.approval_timeout = duration;
            }
        }
        let with = step
            .with
            .clone()
            .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
        if !with.is_object() {
            check.at(
                spanned_step,
                field("with"),
                "must be a mapping of parameters",
                None,
            );
        }
        let action = step
            .action
            .as_ref()
            .map_or_else(|| plugin.value.clone(), |action| action.value.clone());
        // Only steps whose every part compiled go on to the cycle check.
        let compiled =
            step.when.is_some() == when.is_some() && step.target.is_some() == target.is_some();
        if let (Some(timeout), Some(on_error), true) = (timeout, on_error, compiled) {
            steps.push(Step {
                id: step.id.value.clone(),
                kind,
                plugin: plugin.value.clone(),
                needs: step.needs.iter().map(|need| need.value.clone()).collect(),
                when,
                with,
                target,
                action,
                timeout,
                on_error,
                guard,
            });
        }
    }

    // Cycles: Kahn's algorithm over the steps that parsed.
    let order = topological_order(&steps);
    if order.is_none() {
        let in_cycle = cycle_members(&steps);
        for (index, spanned_step) in raw.steps.value.iter().enumerate() {
            if in_cycle.contains(&spanned_step.value.id.value) {
                check.at(
                    &spanned_step.value.id,
                    format!("steps[{index}].needs"),
                    format!(
                        "step `{}` is part of a dependency cycle",
                        spanned_step.value.id.value
                    ),
                    Some("remove one of the `needs` that close the loop".to_owned()),
                );
            }
        }
    }

    match (check.issues.is_empty(), trigger, mode, order) {
        (true, Some(trigger), Some(mode), Some(order)) => {
            let by_id: HashMap<String, Step> = steps
                .into_iter()
                .map(|step| (step.id.clone(), step))
                .collect();
            let mut by_id = by_id;
            let steps = order
                .into_iter()
                .filter_map(|id| by_id.remove(&id))
                .collect();
            Ok(Playbook {
                name: raw.name.value,
                version: raw.version.map_or(1, |v| v.value),
                description: raw.description,
                trigger,
                mode,
                dedup: if raw.dedup.is_some() { dedup } else { None },
                steps,
                guardrails,
                sha256: hex::encode(Sha256::digest(text.as_bytes())),
                source: text.to_owned(),
            })
        }
        _ => Err(PlaybookError::Invalid {
            source_name: source_name.to_owned(),
            issues: check.issues,
        }),
    }
}

fn step_verb(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Enrich => "enrich",
        StepKind::Score => "score",
        StepKind::Respond => "respond",
        StepKind::Hunt => "hunt",
    }
}

fn parse_on_error(
    check: &mut Check<'_>,
    policy: &Spanned<serde_json::Value>,
    field: &str,
) -> Option<OnError> {
    let hint = Some("one of fail, continue, or {retry: {max: 3, backoff: 2s}}".to_owned());
    match &policy.value {
        serde_json::Value::String(text) if text == "fail" => Some(OnError::Fail),
        serde_json::Value::String(text) if text == "continue" => Some(OnError::Continue),
        serde_json::Value::Object(object) if object.len() == 1 && object.contains_key("retry") => {
            let retry = object.get("retry").and_then(serde_json::Value::as_object);
            let max = retry
                .and_then(|r| r.get("max"))
                .and_then(serde_json::Value::as_u64);
            let backoff = retry
                .and_then(|r| r.get("backoff"))
                .and_then(serde_json::Value::as_str)
                .map_or(Some(Duration::from_secs(1)), |text| {
                    humantime::parse_duration(text).ok()
                });
            match (max, backoff) {
                (Some(max), Some(backoff)) if (1..=10).contains(&max) => Some(OnError::Retry {
                    max: max as u32,
                    backoff,
                }),
                _ => {
                    check.at(
                        policy,
                        field,
                        "retry needs max (1-10) and an optional backoff duration",
                        hint,
                    );
                    None
                }
            }
        }
        other => {
            check.at(
                policy,
                field,
                format!("`{other}` is not an error policy"),
                hint,
            );
            None
        }
    }
}

fn topological_order(steps: &[Step]) -> Option<Vec<String>> {
    let ids: BTreeSet<&str> = steps.iter().map(|step| step.id.as_str()).collect();
    let mut indegree: BTreeMap<&str, usize> = steps
        .iter()
        .map(|step| {
            (
                step.id.as_str(),
                step.needs
                    .iter()
                    .filter(|n| ids.contains(n.as_str()))
                    .count(),
            )
        })
        .collect();
    let mut ready: Vec<&str> = steps
        .iter()
        .map(|s| s.id.as_str())
        .filter(|id| indegree.get(id) == Some(&0))
        .collect();
    let mut order = Vec::new();
    while let Some(id) = ready.first().copied() {
        ready.remove(0);
        order.push(id.to_owned());
        for step in steps {
            if step.needs.iter().any(|need| need == id)
                && let Some(degree) = indegree.get_mut(step.id.as_str())
            {
                *degree -= 1;
                if *degree == 0 {
                    ready.push(step.id.as_str());
                }
            }
        }
    }
    (order.len() == steps.len()).then_some(order)
}

fn cycle_members(steps: &[Step]) -> BTreeSet<String> {
    // Steps not placed by the topological sort are in or behind a cycle;
    // keep those that can reach themselves.
    let needs: HashMap<&str, Vec<&str>> = steps
        .iter()
        .map(|s| (s.id.as_str(), s.needs.iter().map(String::as_str).collect()))
        .collect();
    let mut members = BTreeSet::new();
    for step in steps {
        let mut stack: Vec<&str> = needs.get(step.id.as_str()).cloned().unwrap_or_default();
        let mut visited = BTreeSet::new();
        while let Some(next) = stack.pop() {
            if next == step.id {
                members.insert(step.id.clone());
                break;
            }
            if visited.insert(next) {
                stack.extend(needs.get(next).cloned().unwrap_or_default());
            }
        }
    }
    members
}
