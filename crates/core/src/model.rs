//! The contract's data types on the host side, with their JSON form.
//!
//! These mirror `wit/types.wit` field for field; conversions to and from the
//! generated bindings live here so the rest of the runtime never sees them.
//! JSON uses `snake_case` names; times are RFC 3339 strings or Unix
//! milliseconds on input and Unix milliseconds on output.

use serde::{Deserialize, Serialize};

/// What an entity names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// IP address (optionally with port).
    Ip,
    /// Domain name.
    Domain,
    /// URL.
    Url,
    /// Host name.
    Hostname,
    /// User account.
    User,
    /// E-mail address.
    Email,
    /// File hash.
    FileHash,
    /// Process.
    Process,
}

/// A thing an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// What the value names.
    pub kind: EntityKind,
    /// The value.
    pub value: String,
}

/// Longest entity value the host accepts (a long URL fits; a megabyte
/// "domain" does not), bytes.
pub const MAX_ENTITY_VALUE_BYTES: usize = 8 << 10;
/// Most entities one alert, finding or enrichment may name.
pub const MAX_ALERT_ENTITIES: usize = 1_000;
/// Longest DNS name, bytes (RFC 1035: 255 octets on the wire).
pub const MAX_DNS_NAME_BYTES: usize = 253;
/// Longest DNS label, bytes.
pub const MAX_DNS_LABEL_BYTES: usize = 63;

impl Entity {
    /// What is wrong with this entity's value, if anything: longer than
    /// [`MAX_ENTITY_VALUE_BYTES`], or a domain, hostname or e-mail domain
    /// that is not a DNS name (over 253 bytes, or a label over 63). Every
    /// lookup the host makes for an entity is then bounded by the name's
    /// length, never its square.
    pub fn problem(&self) -> Option<String> {
        let value = self.value.trim();
        if value.len() > MAX_ENTITY_VALUE_BYTES {
            return Some(format!(
                "{:?} value is {} bytes, more than the {MAX_ENTITY_VALUE_BYTES} allowed",
                self.kind,
                value.len()
            ));
        }
        let name = match self.kind {
            EntityKind::Domain | EntityKind::Hostname => value,
            EntityKind::Email => value.rsplit_once('@').map_or("", |(_, domain)| domain),
            _ => return None,
        };
        dns_name_problem(name).map(|problem| format!("{:?} {problem}", self.kind))
    }
}

/// What keeps `name` from being a DNS name, if anything.
pub fn dns_name_problem(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.');
    if name.len() > MAX_DNS_NAME_BYTES {
        return Some(format!(
            "is {} bytes, a DNS name has at most {MAX_DNS_NAME_BYTES}",
            name.len()
        ));
    }
    if let Some(label) = name
        .split('.')
        .find(|label| label.len() > MAX_DNS_LABEL_BYTES)
    {
        return Some(format!(
            "has a {}-byte label, a DNS label has at most {MAX_DNS_LABEL_BYTES}",
            label.len()
        ));
    }
    None
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A security alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Identifier, unique per tenant and source.
    pub id: String,
    /// The product or feed that raised it.
    pub source: String,
    /// Title.
    pub title: String,
    /// Severity.
    #[serde(default)]
    pub severity: Severity,
    /// When the activity happened, Unix milliseconds.
    #[serde(default)]
    pub time: i64,
    /// Entities named.
    #[serde(default)]
    pub entities: Vec<Entity>,
    /// ATT&CK technique ids.
    #[serde(default)]
    pub techniques: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The original document.
    #[serde(default)]
    pub raw: serde_json::Value,
}

impl Alert {
    /// Every problem with this alert's entities, each with where it is
    /// (`entities[3]: ...`): too many, or a value no lookup should take.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.entities.len() > MAX_ALERT_ENTITIES {
            problems.push(format!(
                "entities: {} named, at most {MAX_ALERT_ENTITIES} allowed",
                self.entities.len()
            ));
            return problems;
        }
        for (index, entity) in self.entities.iter().enumerate() {
            if let Some(problem) = entity.problem() {
                problems.push(format!("entities[{index}]: {problem}"));
            }
        }
        problems
    }
}

/// A judgement about an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing known.
    Unknown,
    /// Known good.
    Benign,
    /// Worth a look.
    Suspicious,
    /// Known bad.
    Malicious,
}

/// What an enricher learned about an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    /// The entity.
    pub entity: Entity,
    /// The verdict.
    pub verdict: Verdict,
    /// Confidence 0-100.
    pub confidence: u8,
    /// Labels.
    pub tags: Vec<String>,
    /// Details.
    pub data: serde_json::Value,
}

/// A risk score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Risk 0-100.
    pub risk: u8,
    /// Confidence 0-100.
    pub confidence: u8,
    /// Reasons.
    pub reasons: Vec<String>,
}

/// A request to a responder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// Run id.
    pub run_id: String,
    /// Step id.
    pub step_id: String,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Target.
    pub target: Entity,
    /// Parameters.
    #[serde(default)]
    pub params: serde_json::Value,
}

/// What a responder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionOutcome {
    /// Carried out now.
    Executed,
    /// Already in the requested state.
    AlreadyInState,
    /// Dry run: only planned.
    Planned,
}

/// A responder's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    /// Outcome.
    pub outcome: ActionOutcome,
    /// One line for the analyst.
    pub summary: String,
    /// Details.
    pub data: serde_json::Value,
}

/// A telemetry event for a hunt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Identifier.
    pub id: String,
    /// When, Unix milliseconds.
    #[serde(default)]
    pub time: i64,
    /// The event document.
    pub data: serde_json::Value,
}

/// What a hunt found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Rule id.
    pub rule_id: String,
    /// Title.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// When, Unix milliseconds.
    pub time: i64,
    /// Entities.
    pub entities: Vec<Entity>,
    /// ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// Matching event ids.
    pub event_ids: Vec<String>,
    /// Links.
    pub references: Vec<String>,
    /// Details.
    pub detail: serde_json::Value,
}

/// Why a plugin says it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input.
    InvalidInput,
    /// Missing or wrong settings.
    Misconfigured,
    /// Upstream refused credentials.
    Unauthorized,
    /// Upstream rate limit.
    RateLimited,
    /// Upstream unavailable.
    Unavailable,
    /// Not found.
    NotFound,
    /// Anything else.
    Internal,
}

/// A failure the plugin reported itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestError {
    /// Kind.
    pub kind: ErrorKind,
    /// Message.
    pub message: String,
    /// Retry hint in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// A verdict a past run reached about an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorVerdict {
    /// Verdict.
    pub verdict: Verdict,
    /// Confidence 0-100.
    pub confidence: u8,
    /// Run id.
    pub run_id: String,
    /// Playbook.
    pub playbook: String,
    /// When, Unix milliseconds.
    pub time: i64,
}

/// An analyst's label on a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackLabel {
    /// A real attack.
    TruePositive,
    /// A wrong detection.
    FalsePositive,
    /// Real but harmless.
    Benign,
}

/// One piece of analyst feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// Label.
    pub label: FeedbackLabel,
    /// Analyst.
    pub analyst: String,
    /// When, Unix milliseconds.
    pub time: i64,
    /// Run id.
    pub run_id: String,
    /// Comment.
    pub comment: String,
}

/// What a tenant remembers about an entity.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EntityMemory {
    /// First sighting, Unix milliseconds.
    pub first_seen: Option<i64>,
    /// Last sighting, Unix milliseconds.
    pub last_seen: Option<i64>,
    /// Number of alerts naming it.
    pub sightings: u32,
    /// Past verdicts, newest first.
    pub verdicts: Vec<PriorVerdict>,
    /// Analyst feedback, newest first.
    pub feedback: Vec<Feedback>,
}

impl EntityMemory {
    /// Counts one more sighting at `time`.
    pub fn record_sighting(&mut self, time: i64) {
        self.sightings = self.sightings.saturating_add(1);
        self.first_seen = Some(self.first_seen.map_or(time, |first| first.min(time)));
        self.last_seen = Some(self.last_seen.map_or(time, |last| last.max(time)));
    }

    /// Adds a verdict, newest first, keeping at most `cap`.
    pub fn push_verdict(&mut self, verdict: PriorVerdict, cap: usize) {
        self.verdicts.insert(0, verdict);
        self.verdicts.truncate(cap);
    }

    /// Adds feedback, newest first, keeping at most `cap`.
    pub fn push_feedback(&mut self, feedback: Feedback, cap: usize) {
        self.feedback.insert(0, feedback);
        self.feedback.truncate(cap);
    }
}

/// One indicator match from the intel index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorMatch {
    /// The indicator as the feed wrote it.
    pub indicator: String,
    /// Feed name.
    pub feed: String,
    /// Family.
    pub family: Option<String>,
    /// Campaign.
    pub campaign: Option<String>,
    /// Confidence 0-100.
    pub confidence: u8,
    /// References: a page of them (see `references_total`).
    pub references: Vec<String>,
    /// How many references the feed gives for this entry; `references`
    /// holds at most a page of them (`intel::ReferencePage`).
    #[serde(default)]
    pub references_total: usize,
    /// ATT&CK ids.
    pub techniques: Vec<String>,
    /// First listed, Unix milliseconds.
    pub first_seen: Option<i64>,
    /// Last listed, Unix milliseconds.
    pub last_seen: Option<i64>,
}

/// A field of a plugin's output that is not what the contract promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputViolation(pub String);

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
