//! The contract's data types, with constructors that keep plugins short.

pub use crate::bindings::rampart::plugin::intel::IndicatorMatch;
pub use crate::bindings::rampart::plugin::kv::KvError;
pub use crate::bindings::rampart::plugin::memory::{
    EntityMemory, Feedback, FeedbackLabel, PriorVerdict,
};
pub use crate::bindings::rampart::plugin::types::{
    ActionOutcome, ActionRequest, ActionResult, Alert, Enrichment, Entity, EntityKind, ErrorKind,
    Event, Finding, Json, PluginError, Score, Severity, Timestamp, Verdict,
};

impl Entity {
    /// An entity of `kind` with `value`.
    pub fn new(kind: EntityKind, value: impl Into<String>) -> Self {
        Entity {
            kind,
            value: value.into(),
        }
    }
}

impl Alert {
    /// The alert's entities of one kind.
    pub fn entities_of(&self, kind: EntityKind) -> impl Iterator<Item = &Entity> {
        self.entities
            .iter()
            .filter(move |entity| entity.kind == kind)
    }

    /// The original alert document, parsed (`Null` if it is not valid JSON).
    pub fn raw_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.raw).unwrap_or(serde_json::Value::Null)
    }
}

impl Enrichment {
    /// An enrichment with no tags and empty data.
    pub fn new(entity: Entity, verdict: Verdict, confidence: u8) -> Self {
        Enrichment {
            entity,
            verdict,
            confidence: confidence.min(100),
            tags: Vec::new(),
            data: "{}".to_owned(),
        }
    }

    /// Adds a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets the free-form details.
    pub fn data(mut self, data: &serde_json::Value) -> Self {
        self.data = data.to_string();
        self
    }
}

impl Score {
    /// A score with no reasons yet (both values are clamped to 100).
    pub fn new(risk: u8, confidence: u8) -> Self {
        Score {
            risk: risk.min(100),
            confidence: confidence.min(100),
            reasons: Vec::new(),
        }
    }

    /// Adds a reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reasons.push(reason.into());
        self
    }
}

impl ActionResult {
    fn with_outcome(outcome: ActionOutcome, summary: String) -> Self {
        ActionResult {
            outcome,
            summary,
            data: "{}".to_owned(),
        }
    }

    /// The action was carried out now.
    pub fn executed(summary: impl Into<String>) -> Self {
        Self::with_outcome(ActionOutcome::Executed, summary.into())
    }

    /// The target was already in the requested state.
    pub fn already_in_state(summary: impl Into<String>) -> Self {
        Self::with_outcome(ActionOutcome::AlreadyInState, summary.into())
    }

    /// Dry run: what would have been done.
    pub fn planned(summary: impl Into<String>) -> Self {
        Self::with_outcome(ActionOutcome::Planned, summary.into())
    }

    /// Sets the free-form details (e.g. how to undo the action).
    pub fn data(mut self, data: &serde_json::Value) -> Self {
        self.data = data.to_string();
        self
    }
}

impl Event {
    /// The event document, parsed (`Null` if it is not valid JSON).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }
}

impl Finding {
    /// A finding with no entities, techniques, events or references yet.
    pub fn new(
        rule_id: impl Into<String>,
        title: impl Into<String>,
        severity: Severity,
        time: Timestamp,
    ) -> Self {
        Finding {
            rule_id: rule_id.into(),
            title: title.into(),
            severity,
            time,
            entities: Vec::new(),
            techniques: Vec::new(),
            event_ids: Vec::new(),
            references: Vec::new(),
            detail: "{}".to_owned(),
        }
    }

    /// Adds an entity.
    pub fn entity(mut self, entity: Entity) -> Self {
        self.entities.push(entity);
        self
    }

    /// Adds an ATT&CK technique id.
    pub fn technique(mut self, id: impl Into<String>) -> Self {
        self.techniques.push(id.into());
        self
    }

    /// Adds the id of a matching event.
    pub fn event(mut self, id: impl Into<String>) -> Self {
        self.event_ids.push(id.into());
        self
    }

    /// Adds a reference link.
    pub fn reference(mut self, url: impl Into<String>) -> Self {
        self.references.push(url.into());
        self
    }

    /// Sets the free-form details.
    pub fn detail(mut self, detail: &serde_json::Value) -> Self {
        self.detail = detail.to_string();
        self
    }
}

impl PluginError {
    /// An error of `kind` with `message` and no retry hint.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The input was not acceptable.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// A setting or secret is missing or wrong.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Misconfigured, message)
    }

    /// An upstream failed; try again after `retry_after_ms` if given.
    pub fn unavailable(message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        PluginError {
            retry_after_ms,
            ..Self::new(ErrorKind::Unavailable, message)
        }
    }
}

impl From<KvError> for PluginError {
    fn from(err: KvError) -> Self {
        let message = match err {
            KvError::QuotaExceeded(bytes) => format!("kv quota of {bytes} bytes exceeded"),
            KvError::TooLarge(bytes) => format!("kv key or value over {bytes} bytes"),
            KvError::Store(message) => format!("kv store failed: {message}"),
        };
        PluginError::new(ErrorKind::Internal, message)
    }
}
