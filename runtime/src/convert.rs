//! Conversions between the host's model types (`rampart_core::model`) and
//! the types `bindgen!` generates from the WIT contract: the one place the
//! two meet, so the model crate knows nothing of wasmtime.

use crate::bindings::{memory as wit_memory, types as wit};
use crate::model::{
    ActionOutcome, ActionRequest, ActionResult, Alert, Enrichment, Entity, EntityKind,
    EntityMemory, ErrorKind, Event, FeedbackLabel, Finding, GuestError, OutputViolation, Score,
    Severity, Verdict,
};

// ---- conversions to and from the generated bindings ----

macro_rules! enum_map {
    ($host:ty, $guest:ty, [$($variant:ident),* $(,)?]) => {
        impl From<$host> for $guest {
            fn from(value: $host) -> Self {
                match value { $(<$host>::$variant => <$guest>::$variant,)* }
            }
        }
        impl From<$guest> for $host {
            fn from(value: $guest) -> Self {
                match value { $(<$guest>::$variant => <$host>::$variant,)* }
            }
        }
    };
}

enum_map!(
    EntityKind,
    wit::EntityKind,
    [Ip, Domain, Url, Hostname, User, Email, FileHash, Process]
);
enum_map!(Severity, wit::Severity, [Info, Low, Medium, High, Critical]);
enum_map!(
    Verdict,
    wit::Verdict,
    [Unknown, Benign, Suspicious, Malicious]
);
enum_map!(
    ActionOutcome,
    wit::ActionOutcome,
    [Executed, AlreadyInState, Planned]
);
enum_map!(
    ErrorKind,
    wit::ErrorKind,
    [
        InvalidInput,
        Misconfigured,
        Unauthorized,
        RateLimited,
        Unavailable,
        NotFound,
        Internal
    ]
);
enum_map!(
    FeedbackLabel,
    wit_memory::FeedbackLabel,
    [TruePositive, FalsePositive, Benign]
);

impl From<&Entity> for wit::Entity {
    fn from(entity: &Entity) -> Self {
        wit::Entity {
            kind: entity.kind.into(),
            value: entity.value.clone(),
        }
    }
}

impl From<wit::Entity> for Entity {
    fn from(entity: wit::Entity) -> Self {
        Entity {
            kind: entity.kind.into(),
            value: entity.value,
        }
    }
}

impl From<&Alert> for wit::Alert {
    fn from(alert: &Alert) -> Self {
        wit::Alert {
            id: alert.id.clone(),
            source: alert.source.clone(),
            title: alert.title.clone(),
            severity: alert.severity.into(),
            time: alert.time,
            entities: alert.entities.iter().map(Into::into).collect(),
            techniques: alert.techniques.clone(),
            tags: alert.tags.clone(),
            raw: alert.raw.to_string(),
        }
    }
}

impl From<&Enrichment> for wit::Enrichment {
    fn from(found: &Enrichment) -> Self {
        wit::Enrichment {
            entity: (&found.entity).into(),
            verdict: found.verdict.into(),
            confidence: found.confidence,
            tags: found.tags.clone(),
            data: found.data.to_string(),
        }
    }
}

impl From<&ActionRequest> for wit::ActionRequest {
    fn from(request: &ActionRequest) -> Self {
        wit::ActionRequest {
            run_id: request.run_id.clone(),
            step_id: request.step_id.clone(),
            idempotency_key: request.idempotency_key.clone(),
            target: (&request.target).into(),
            params: request.params.to_string(),
        }
    }
}

impl From<&Event> for wit::Event {
    fn from(event: &Event) -> Self {
        wit::Event {
            id: event.id.clone(),
            time: event.time,
            data: event.data.to_string(),
        }
    }
}

impl From<wit::PluginError> for GuestError {
    fn from(err: wit::PluginError) -> Self {
        GuestError {
            kind: err.kind.into(),
            message: err.message,
            retry_after_ms: err.retry_after_ms,
        }
    }
}

impl From<&EntityMemory> for wit_memory::EntityMemory {
    fn from(memory: &EntityMemory) -> Self {
        wit_memory::EntityMemory {
            entity: wit::Entity {
                kind: wit::EntityKind::Ip,
                value: String::new(),
            },
            first_seen: memory.first_seen,
            last_seen: memory.last_seen,
            sightings: memory.sightings,
            verdicts: memory
                .verdicts
                .iter()
                .map(|prior| wit_memory::PriorVerdict {
                    verdict: prior.verdict.into(),
                    confidence: prior.confidence,
                    run_id: prior.run_id.clone(),
                    playbook: prior.playbook.clone(),
                    time: prior.time,
                })
                .collect(),
            feedback: memory
                .feedback
                .iter()
                .map(|feedback| wit_memory::Feedback {
                    label: feedback.label.into(),
                    analyst: feedback.analyst.clone(),
                    time: feedback.time,
                    run_id: feedback.run_id.clone(),
                    comment: feedback.comment.clone(),
                })
                .collect(),
        }
    }
}

fn parse_json(field: &str, text: &str) -> Result<serde_json::Value, OutputViolation> {
    serde_json::from_str(text).map_err(|err| OutputViolation(format!("{field} is not JSON: {err}")))
}

fn percent(field: &str, value: u8) -> Result<u8, OutputViolation> {
    if value > 100 {
        return Err(OutputViolation(format!("{field} is {value}, above 100")));
    }
    Ok(value)
}

pub(crate) fn enrichment_from_guest(
    index: usize,
    found: wit::Enrichment,
) -> Result<Enrichment, OutputViolation> {
    Ok(Enrichment {
        entity: found.entity.into(),
        verdict: found.verdict.into(),
        confidence: percent(&format!("enrichment {index}: confidence"), found.confidence)?,
        tags: found.tags,
        data: parse_json(&format!("enrichment {index}: data"), &found.data)?,
    })
}

pub(crate) fn score_from_guest(score: wit::Score) -> Result<Score, OutputViolation> {
    Ok(Score {
        risk: percent("score: risk", score.risk)?,
        confidence: percent("score: confidence", score.confidence)?,
        reasons: score.reasons,
    })
}

pub(crate) fn action_result_from_guest(
    result: wit::ActionResult,
    dry_run: bool,
) -> Result<ActionResult, OutputViolation> {
    let outcome: ActionOutcome = result.outcome.into();
    if dry_run && outcome != ActionOutcome::Planned {
        return Err(OutputViolation(format!(
            "dry run answered {outcome:?}; a dry run must only plan"
        )));
    }
    Ok(ActionResult {
        outcome,
        summary: result.summary,
        data: parse_json("action result: data", &result.data)?,
    })
}

pub(crate) fn finding_from_guest(
    index: usize,
    finding: wit::Finding,
) -> Result<Finding, OutputViolation> {
    Ok(Finding {
        rule_id: finding.rule_id,
        title: finding.title,
        severity: finding.severity.into(),
        time: finding.time,
        entities: finding.entities.into_iter().map(Into::into).collect(),
        techniques: finding.techniques,
        event_ids: finding.event_ids,
        references: finding.references,
        detail: parse_json(&format!("finding {index}: detail"), &finding.detail)?,
    })
}
