//! Detection performance from analyst feedback, and muting a rule.
//!
//! A hunt's finding becomes the alert `hunt:<hunt>:<rule>:<event>`; an
//! analyst labels the runs of that alert true positive, false positive or
//! benign. Per rule (and hunt) the report counts findings and labels, gives
//! precision = TP / (TP + FP), the field values its false positives share
//! most and no true positive has (the candidate filter) and a Sigma
//! `filter` block a detection engineer can review. A muted rule's findings are dropped by the hunts
//! (counted, never turned into alerts) until it is unmuted; both are
//! audited. Nothing in the rule bundle is edited.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ControlError, audit_change, key};
use crate::executor::{AlertRecord, Executor, ExecutorError, MAX_ALERT_PAGE};
use crate::model::FeedbackLabel;
use crate::store::{Keyspace, Tree};
use crate::tenant::TenantId;

/// The tree of mutes: `tenant \0 rule id` → [`Mute`].
pub(super) const MUTES: &str = "detection-mutes";

/// The most findings one report reads.
pub const MAX_REPORTED_FINDINGS: usize = 100_000;

/// Field values listed per rule as shared by its false positives.
const CANDIDATES: usize = 5;

/// A muted rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mute {
    /// Who muted it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When, Unix milliseconds.
    pub at: i64,
}

/// One rule's performance in one hunt.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RulePerformance {
    /// Rule id.
    pub rule_id: String,
    /// Rule title (from its latest finding).
    pub title: String,
    /// The hunt that ran it.
    pub hunt: String,
    /// Findings.
    pub findings: u64,
    /// Findings labelled true positive.
    pub true_positives: u64,
    /// Findings labelled false positive.
    pub false_positives: u64,
    /// Findings labelled benign (real but harmless).
    pub benign: u64,
    /// TP / (TP + FP), when any finding has one of those labels.
    pub precision: Option<f64>,
    /// The field values false positives share most: (field, value, how many
    /// false positives have it).
    pub false_positive_fields: Vec<(String, String, u64)>,
    /// A Sigma filter block over those values, for review.
    pub suggested_filter: Option<String>,
    /// The mute, if the rule is muted.
    pub muted: Option<Mute>,
}

/// Per-rule detection performance and the mutes.
#[derive(Clone)]
pub struct Detections {
    mutes: Tree,
    executor: Executor,
}

impl std::fmt::Debug for Detections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detections").finish_non_exhaustive()
    }
}

/// Whether `rule` is muted for `tenant` in `mutes`.
pub(super) fn is_muted(mutes: &Tree, tenant: &TenantId, rule: &str) -> Result<bool, ControlError> {
    Ok(mutes.get(key(&[tenant.as_str(), rule]))?.is_some())
}

impl Detections {
    /// Over `space`.
    pub fn open(space: &Keyspace, executor: Executor) -> Result<Self, ControlError> {
        Ok(Detections {
            mutes: space.open_tree(MUTES)?,
            executor,
        })
    }

    /// Mutes `rule` for `tenant` (audited).
    pub fn mute(
        &self,
        tenant: &TenantId,
        rule: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Mute, ControlError> {
        if rule.is_empty() || rule.len() > 256 || rule.contains('\0') {
            return Err(ControlError::InvalidRuleId(rule.chars().take(64).collect()));
        }
        let mute = Mute {
            by: actor.to_owned(),
            reason: reason.to_owned(),
            at: crate::model::now_ms(),
        };
        audit_change(
            &self.executor,
            tenant,
            actor,
            json!({"detection": rule, "muted": true, "reason": reason}),
        )?;
        let bytes = serde_json::to_vec(&mute).map_err(|source| ControlError::Decode {
            what: format!("mute of {rule}"),
            source,
        })?;
        self.mutes.insert(key(&[tenant.as_str(), rule]), bytes)?;
        self.mutes.flush()?;
        Ok(mute)
    }

    /// Unmutes `rule` (audited); whether it was muted.
    pub fn unmute(&self, tenant: &TenantId, rule: &str, actor: &str) -> Result<bool, ControlError> {
        if self.mutes.get(key(&[tenant.as_str(), rule]))?.is_none() {
            return Ok(false);
        }
        audit_change(
            &self.executor,
            tenant,
            actor,
            json!({"detection": rule, "muted": false}),
        )?;
        self.mutes.remove(key(&[tenant.as_str(), rule]))?;
        self.mutes.flush()?;
        Ok(true)
    }

    /// `tenant`'s mutes by rule id.
    pub fn mutes(&self, tenant: &TenantId) -> Result<BTreeMap<String, Mute>, ControlError> {
        let prefix = key(&[tenant.as_str(), ""]);
        let mut out = BTreeMap::new();
        for entry in self.mutes.scan_prefix(&prefix) {
            let (k, bytes) = entry?;
            let rule = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let mute = serde_json::from_slice(&bytes).map_err(|source| ControlError::Decode {
                what: format!("mute of {rule}"),
                source,
            })?;
            out.insert(rule, mute);
        }
        Ok(out)
    }

    /// Per rule and hunt (`hunt`: only that one), from at most
    /// [`MAX_REPORTED_FINDINGS`] findings; and whether that cut the report.
    pub fn report(
        &self,
        tenant: &TenantId,
        hunt: Option<&str>,
    ) -> Result<(Vec<RulePerformance>, bool), ControlError> {
        let prefix = super::alert_prefix(hunt.unwrap_or_default());
        let mutes = self.mutes(tenant)?;
        let mut rules: BTreeMap<(String, String), (RulePerformance, Labelled)> = BTreeMap::new();
        let (mut after, mut read) = (None::<String>, 0usize);
        loop {
            let page =
                self.executor
                    .alerts_page(tenant, &prefix, after.as_deref(), MAX_ALERT_PAGE)?;
            for record in &page.alerts {
                if read == MAX_REPORTED_FINDINGS {
                    return Ok((finish(rules, &mutes), true));
                }
                read += 1;
                let Some((hunt, finding)) = super::hunt_finding(record) else {
                    continue;
                };
                let label = self.label(tenant, record)?;
                let (rule, fields) = rules
                    .entry((finding.rule_id.clone(), hunt.clone()))
                    .or_insert_with(|| {
                        let rule = RulePerformance {
                            rule_id: finding.rule_id.clone(),
                            hunt,
                            ..RulePerformance::default()
                        };
                        (rule, Labelled::default())
                    });
                rule.title.clone_from(&finding.title);
                rule.findings += 1;
                match label {
                    Some(FeedbackLabel::TruePositive) => {
                        rule.true_positives += 1;
                        fields.true_positives.add(&finding.detail["fields"]);
                    }
                    Some(FeedbackLabel::FalsePositive) => {
                        rule.false_positives += 1;
                        fields.false_positives.add(&finding.detail["fields"]);
                    }
                    Some(FeedbackLabel::Benign) => rule.benign += 1,
                    None => {}
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok((finish(rules, &mutes), false)),
            }
        }
    }

    /// The latest analyst label on any run of the finding's alert.
    fn label(
        &self,
        tenant: &TenantId,
        record: &AlertRecord,
    ) -> Result<Option<FeedbackLabel>, ControlError> {
        let mut latest: Option<(i64, FeedbackLabel)> = None;
        for id in record.runs.iter().chain(&record.folded_into) {
            let run = match self.executor.get_run(tenant, id) {
                Ok(run) => run,
                Err(ExecutorError::RunNotFound(_)) => continue,
                Err(other) => return Err(other.into()),
            };
            for feedback in &run.feedback {
                if latest.is_none_or(|(time, _)| feedback.time >= time) {
                    latest = Some((feedback.time, feedback.label));
                }
            }
        }
        Ok(latest.map(|(_, label)| label))
    }
}

/// How many findings of one label have each (field, value).
#[derive(Debug, Default)]
struct FieldCounts(BTreeMap<(String, String), u64>);

/// Field values of a rule's true and false positives.
#[derive(Debug, Default)]
struct Labelled {
    true_positives: FieldCounts,
    false_positives: FieldCounts,
}

impl FieldCounts {
    fn add(&mut self, fields: &Value) {
        for (field, value) in fields.as_object().into_iter().flatten() {
            let value = match value {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if value.len() <= 512 {
                *self.0.entry((field.clone(), value)).or_default() += 1;
            }
        }
    }
}

fn finish(
    rules: BTreeMap<(String, String), (RulePerformance, Labelled)>,
    mutes: &BTreeMap<String, Mute>,
) -> Vec<RulePerformance> {
    rules
        .into_values()
        .map(|(mut rule, fields)| {
            let judged = rule.true_positives + rule.false_positives;
            rule.precision = (judged > 0).then(|| rule.true_positives as f64 / judged as f64);
            // A value a true positive has too would filter it out as well:
            // only the values false positives have and true ones lack.
            let in_true = &fields.true_positives.0;
            let mut shared: Vec<(String, String, u64)> = fields
                .false_positives
                .0
                .into_iter()
                .filter(|(pair, _)| !in_true.contains_key(pair))
                .filter(|(_, count)| *count >= 2 || rule.false_positives == 1)
                .map(|((field, value), count)| (field, value, count))
                .collect();
            shared.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            shared.truncate(CANDIDATES);
            rule.suggested_filter = suggested_filter(&shared);
            rule.false_positive_fields = shared;
            rule.muted = mutes.get(&rule.rule_id).cloned();
            rule
        })
        .collect()
}

/// A Sigma filter over the values most false positives share (each field
/// once, its commonest value), to be reviewed before it goes in a rule.
fn suggested_filter(shared: &[(String, String, u64)]) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    for (field, value, _) in shared {
        if seen.insert(field.as_str()) {
            lines.push(format!("        {field}: '{}'", value.replace('\'', "''")));
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "detection:\n    filter_main_rampart_fp:\n{}\n    condition: <the rule's condition> and not filter_main_rampart_fp\n",
            lines.join("\n")
        )
    })
}
