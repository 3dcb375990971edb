//! What a call may return: bytes and item counts.
//!
//! A byte cap alone lets a million empty enrichments through (~1 MB of
//! strings that become gigabytes of runs, audit records and memory on the
//! host side), so every list a plugin returns is also capped by count, and
//! the JSON it returns (enrichment data, action data, finding detail) by
//! the number of values the host builds from it. The lifted output itself
//! is bounded by the guest's memory cap; these checks run before anything
//! else is built from it.

use serde_json::Value;

use crate::bindings::types as wit;
pub use crate::engine::OutputItemCaps;
use crate::model::OutputViolation;

fn over(what: &str, count: usize, max: usize) -> Result<(), OutputViolation> {
    if count > max {
        return Err(OutputViolation(format!(
            "{what}: {count} returned, at most {max} allowed"
        )));
    }
    Ok(())
}

/// Bytes of strings in one enrichment.
pub(crate) fn enrichment_size(found: &wit::Enrichment) -> usize {
    found.entity.value.len() + found.tags.iter().map(String::len).sum::<usize>() + found.data.len()
}

/// Bytes of strings in one finding.
pub(crate) fn finding_size(finding: &wit::Finding) -> usize {
    finding.rule_id.len()
        + finding.title.len()
        + finding
            .entities
            .iter()
            .map(|entity| entity.value.len())
            .sum::<usize>()
        + finding
            .techniques
            .iter()
            .chain(&finding.event_ids)
            .chain(&finding.references)
            .map(String::len)
            .sum::<usize>()
        + finding.detail.len()
}

/// Checks the counts of an `enrich` result.
pub(crate) fn check_enrichments(
    found: &[wit::Enrichment],
    caps: &OutputItemCaps,
) -> Result<(), OutputViolation> {
    over("enrichments", found.len(), caps.enrichments)?;
    for (index, item) in found.iter().enumerate() {
        over(
            &format!("enrichment {index}: tags"),
            item.tags.len(),
            caps.tags,
        )?;
    }
    Ok(())
}

/// Checks the counts of a hunt's findings.
pub(crate) fn check_findings(
    findings: &[wit::Finding],
    caps: &OutputItemCaps,
) -> Result<(), OutputViolation> {
    over("findings", findings.len(), caps.findings)?;
    for (index, finding) in findings.iter().enumerate() {
        for (what, count) in [
            ("entities", finding.entities.len()),
            ("techniques", finding.techniques.len()),
            ("event ids", finding.event_ids.len()),
            ("references", finding.references.len()),
        ] {
            over(
                &format!("finding {index}: {what}"),
                count,
                caps.finding_items,
            )?;
        }
    }
    Ok(())
}

/// Checks the reasons of a score.
pub(crate) fn check_reasons(
    reasons: &[String],
    caps: &OutputItemCaps,
) -> Result<(), OutputViolation> {
    over("score reasons", reasons.len(), caps.reasons)
}

/// Counts the JSON values the host built for one call, against the cap.
#[derive(Debug)]
pub(crate) struct JsonBudget {
    left: usize,
    max: usize,
}

impl JsonBudget {
    pub(crate) fn new(caps: &OutputItemCaps) -> Self {
        JsonBudget {
            left: caps.json_values,
            max: caps.json_values,
        }
    }

    /// Charges every value inside `value`.
    pub(crate) fn charge(&mut self, value: &Value) -> Result<(), OutputViolation> {
        let mut stack = vec![value];
        while let Some(next) = stack.pop() {
            if self.left == 0 {
                return Err(OutputViolation(format!(
                    "JSON data: more than {} values in one call's output",
                    self.max
                )));
            }
            self.left -= 1;
            match next {
                Value::Array(items) => stack.extend(items),
                Value::Object(fields) => stack.extend(fields.values()),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_capped_and_json_values_counted() {
        let caps = OutputItemCaps {
            enrichments: 2,
            json_values: 5,
            ..OutputItemCaps::default()
        };
        let item = wit::Enrichment {
            entity: wit::Entity {
                kind: wit::EntityKind::Ip,
                value: "192.0.2.1".to_owned(),
            },
            verdict: wit::Verdict::Unknown,
            confidence: 0,
            tags: Vec::new(),
            data: "{}".to_owned(),
        };
        assert!(check_enrichments(&[item.clone(), item.clone()], &caps).is_ok());
        let err = check_enrichments(&[item.clone(), item.clone(), item], &caps);
        assert_eq!(
            err,
            Err(OutputViolation(
                "enrichments: 3 returned, at most 2 allowed".to_owned()
            ))
        );
        let mut budget = JsonBudget::new(&caps);
        assert!(budget.charge(&serde_json::json!({"a": [1, 2]})).is_ok());
        assert!(budget.charge(&serde_json::json!([1, 2])).is_err());
    }
}
