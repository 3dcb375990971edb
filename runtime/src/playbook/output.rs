//! What each step kind leaves for later steps: the shape CEL sees as
//! `steps.<id>`. One struct per kind, written and read only through these
//! types, so a renamed field breaks the build, not guardrails or memory at
//! run time. [`fields`] is the same shape as a table, for checking
//! expressions at upload (`steps.<id>.<field>` must name one of them).

use serde::{Deserialize, Serialize};

use super::StepKind;
use crate::model::{ActionResult, Enrichment, Finding, Score, Verdict as EntityVerdict};

/// What an enrich step found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichOutput {
    /// Every enrichment the plugin returned.
    pub enrichments: Vec<Enrichment>,
    /// The worst verdict among them (`unknown` when none).
    pub verdict: EntityVerdict,
    /// The highest confidence among the enrichments with the worst verdict.
    pub confidence: u8,
    /// How many enrichments.
    pub count: usize,
}

impl EnrichOutput {
    /// The output of `enrichments`.
    pub fn new(enrichments: Vec<Enrichment>) -> Self {
        let verdict = enrichments
            .iter()
            .map(|e| e.verdict)
            .max()
            .unwrap_or(EntityVerdict::Unknown);
        let confidence = enrichments
            .iter()
            .filter(|e| e.verdict == verdict)
            .map(|e| e.confidence)
            .max()
            .unwrap_or(0);
        EnrichOutput {
            count: enrichments.len(),
            enrichments,
            verdict,
            confidence,
        }
    }
}

/// What a score step decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreOutput {
    /// Risk 0-100.
    pub score: u8,
    /// The same as `score` (both names are in use in playbooks).
    pub risk: u8,
    /// Confidence 0-100: what a respond step's `min_confidence` is held to.
    pub confidence: u8,
    /// Why.
    pub reasons: Vec<String>,
}

impl From<Score> for ScoreOutput {
    fn from(score: Score) -> Self {
        ScoreOutput {
            score: score.risk,
            risk: score.risk,
            confidence: score.confidence,
            reasons: score.reasons,
        }
    }
}

/// What a hunt step found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntOutput {
    /// The findings.
    pub findings: Vec<Finding>,
    /// How many.
    pub count: usize,
}

impl HuntOutput {
    /// The output of `findings`.
    pub fn new(findings: Vec<Finding>) -> Self {
        HuntOutput {
            count: findings.len(),
            findings,
        }
    }
}

/// What a respond step did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RespondOutput {
    /// The action's outcome; `planning_failed` when a dry run's plan failed.
    pub outcome: String,
    /// One line for the analyst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The responder's details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// Dry runs: what the guardrails would have decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub would: Option<String>,
    /// Dry runs: why the plan failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The snake_case name serde gives a unit enum variant.
pub fn variant_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl RespondOutput {
    /// An executed action's result.
    pub fn executed(result: &ActionResult) -> Self {
        RespondOutput {
            outcome: variant_name(&result.outcome),
            summary: Some(result.summary.clone()),
            data: Some(result.data.clone()),
            would: None,
            error: None,
        }
    }

    /// A dry run's plan.
    pub fn planned(result: &ActionResult, would: String) -> Self {
        RespondOutput {
            outcome: variant_name(&result.outcome),
            summary: Some(result.summary.clone()),
            data: None,
            would: Some(would),
            error: None,
        }
    }

    /// A dry run whose plan failed.
    pub fn planning_failed(error: String, would: String) -> Self {
        RespondOutput {
            outcome: "planning_failed".to_owned(),
            summary: None,
            data: None,
            would: Some(would),
            error: Some(error),
        }
    }
}

/// The fields `steps.<id>` has for a step of `kind` (a respond step's
/// optional ones included).
pub fn fields(kind: StepKind) -> &'static [&'static str] {
    match kind {
        StepKind::Enrich => &["enrichments", "verdict", "confidence", "count"],
        StepKind::Score => &["score", "risk", "confidence", "reasons"],
        StepKind::Hunt => &["findings", "count"],
        StepKind::Respond => &["outcome", "summary", "data", "would", "error"],
    }
}

/// Serializes an output for the run record (every output type is plain
/// data, so this cannot fail; `null` if it ever did).
pub fn to_value<T: Serialize>(output: &T) -> serde_json::Value {
    serde_json::to_value(output).unwrap_or(serde_json::Value::Null)
}

/// Reads an output back from a run record; `None` when the step left none
/// or it is of another kind.
pub fn from_value<T: for<'de> Deserialize<'de>>(output: Option<&serde_json::Value>) -> Option<T> {
    output.and_then(|value| T::deserialize(value).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    //! Golden: the shape CEL sees as `steps.<id>` is a contract with every
    //! playbook written; these are the shapes the untyped outputs had.
    use super::*;
    use crate::model::{ActionOutcome, Entity, EntityKind, Severity};
    use serde_json::json;

    fn keys(value: &serde_json::Value) -> Vec<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        out.sort();
        out
    }

    #[test]
    fn the_shape_cel_sees_is_unchanged() {
        let entity = Entity {
            kind: EntityKind::Ip,
            value: "203.0.113.7".to_owned(),
        };
        let enrichments = vec![
            Enrichment {
                entity: entity.clone(),
                verdict: EntityVerdict::Malicious,
                confidence: 90,
                tags: vec!["ipsum".to_owned()],
                data: json!({"hits": 3}),
            },
            Enrichment {
                entity: entity.clone(),
                verdict: EntityVerdict::Benign,
                confidence: 99,
                tags: vec![],
                data: json!(null),
            },
        ];
        let enrich = to_value(&EnrichOutput::new(enrichments.clone()));
        assert_eq!(
            enrich,
            json!({"enrichments": enrichments, "verdict": "malicious", "confidence": 90, "count": 2})
        );
        let score = to_value(&ScoreOutput::from(Score {
            risk: 85,
            confidence: 70,
            reasons: vec!["bad ip".to_owned()],
        }));
        assert_eq!(
            score,
            json!({"score": 85, "risk": 85, "confidence": 70, "reasons": ["bad ip"]})
        );
        let finding = Finding {
            rule_id: "r".to_owned(),
            title: "t".to_owned(),
            severity: Severity::High,
            time: 1,
            entities: vec![entity],
            techniques: vec!["T1059".to_owned()],
            event_ids: vec![],
            references: vec![],
            detail: json!({}),
        };
        let hunt = to_value(&HuntOutput::new(vec![finding.clone()]));
        assert_eq!(hunt, json!({"findings": [finding], "count": 1}));
        let result = ActionResult {
            outcome: ActionOutcome::Executed,
            summary: "blocked".to_owned(),
            data: json!({"list": "block"}),
        };
        assert_eq!(
            to_value(&RespondOutput::executed(&result)),
            json!({"outcome": "executed", "summary": "blocked", "data": {"list": "block"}})
        );
        assert_eq!(
            to_value(&RespondOutput::planned(&result, "execute".to_owned())),
            json!({"outcome": "executed", "summary": "blocked", "would": "execute"})
        );
        assert_eq!(
            to_value(&RespondOutput::planning_failed(
                "trap".to_owned(),
                "refuse".to_owned()
            )),
            json!({"outcome": "planning_failed", "error": "trap", "would": "refuse"})
        );
        // The table checks are made against is the same shape.
        for (kind, value) in [
            (StepKind::Enrich, &enrich),
            (StepKind::Score, &score),
            (StepKind::Hunt, &hunt),
        ] {
            let mut found = keys(value);
            found.sort();
            assert_eq!(found, sorted(fields(kind)), "{kind:?}");
        }
        let mut respond: Vec<String> = keys(&to_value(&RespondOutput::executed(&result)));
        respond.extend(keys(&to_value(&RespondOutput::planning_failed(
            String::new(),
            String::new(),
        ))));
        respond.sort();
        respond.dedup();
        assert_eq!(respond, sorted(fields(StepKind::Respond)));
    }
}
