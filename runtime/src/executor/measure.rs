//! Measurement: what automation changed, per tenant and playbook.
//!
//! MTTD is alert time → the first verdict (a score step finishing); MTTC is
//! alert time → the first executed action, approval waits included. Runs
//! before `baseline_until` form the baseline period, later runs the current
//! one, so a tenant can show the gain against how things were before.

use std::collections::BTreeMap;

use serde::Serialize;

use super::approvals::{Approval, ApprovalStatus};
use super::run::Run;

/// Figures of one period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeriodStats {
    /// Runs started.
    pub runs: u64,
    /// Alerts folded into them by dedup.
    pub folded: u64,
    /// Share of alerts folded by dedup (folded / (runs + folded)).
    pub folded_share: f64,
    /// Median MTTD, ms.
    pub mttd_p50_ms: Option<i64>,
    /// Mean MTTD, ms.
    pub mttd_mean_ms: Option<i64>,
    /// Median MTTC, ms.
    pub mttc_p50_ms: Option<i64>,
    /// Mean MTTC, ms.
    pub mttc_mean_ms: Option<i64>,
    /// Median approval wait (request → decision), ms.
    pub approval_wait_p50_ms: Option<i64>,
    /// Share of finished runs closed without any human approval.
    pub closed_without_human: f64,
    /// Runs an analyst labelled.
    pub labelled: u64,
    /// Share of labelled runs whose latest label is false positive.
    pub false_positive_rate: Option<f64>,
}

/// Figures of one playbook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlaybookStats {
    /// Playbook name.
    pub playbook: String,
    /// Runs before the baseline cut-off.
    pub baseline: Option<PeriodStats>,
    /// Runs after it (or all runs).
    pub current: PeriodStats,
    /// Current median MTTC relative to the baseline's, in percent (negative = faster).
    pub mttc_change_pct: Option<f64>,
    /// Current median MTTD relative to the baseline's, in percent.
    pub mttd_change_pct: Option<f64>,
}

fn median(values: &mut [i64]) -> Option<i64> {
    values.sort_unstable();
    values
        .get(values.len() / 2)
        .copied()
        .filter(|_| !values.is_empty())
}

fn mean(values: &[i64]) -> Option<i64> {
    (!values.is_empty()).then(|| values.iter().sum::<i64>() / values.len() as i64)
}

fn period(runs: &[&Run], approvals: &[Approval]) -> PeriodStats {
    let mut mttd: Vec<i64> = runs
        .iter()
        .filter_map(|r| r.verdict_at.map(|t| t - r.alert.time))
        .collect();
    let mut mttc: Vec<i64> = runs
        .iter()
        .filter_map(|r| r.contained_at.map(|t| t - r.alert.time))
        .collect();
    let run_ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut waits: Vec<i64> = approvals
        .iter()
        .filter(|a| run_ids.contains(&a.run_id.as_str()) && a.status != ApprovalStatus::Pending)
        .map(|a| {
            let decided = a
                .denial
                .as_ref()
                .map(|v| v.time)
                .or_else(|| a.approvals.iter().map(|v| v.time).max())
                .unwrap_or(a.expires);
            decided - a.created
        })
        .collect();
    let finished: Vec<&&Run> = runs.iter().filter(|r| r.status.is_finished()).collect();
    let without_human = finished
        .iter()
        .filter(|r| !approvals.iter().any(|a| a.run_id == r.id))
        .count();
    let folded: u64 = runs.iter().map(|r| r.folded.len() as u64).sum();
    let labelled: Vec<&crate::model::Feedback> =
        runs.iter().filter_map(|r| r.feedback.last()).collect();
    let false_positives = labelled
        .iter()
        .filter(|f| f.label == crate::model::FeedbackLabel::FalsePositive)
        .count();
    let total_alerts = runs.len() as u64 + folded;
    PeriodStats {
        runs: runs.len() as u64,
        folded,
        folded_share: if total_alerts == 0 {
            0.0
        } else {
            folded as f64 / total_alerts as f64
        },
        mttd_mean_ms: mean(&mttd),
        mttd_p50_ms: median(&mut mttd),
        mttc_mean_ms: mean(&mttc),
        mttc_p50_ms: median(&mut mttc),
        approval_wait_p50_ms: median(&mut waits),
        closed_without_human: if finished.is_empty() {
            0.0
        } else {
            without_human as f64 / finished.len() as f64
        },
        labelled: labelled.len() as u64,
        false_positive_rate: (!labelled.is_empty())
            .then(|| false_positives as f64 / labelled.len() as f64),
    }
}

fn change(before: Option<i64>, after: Option<i64>) -> Option<f64> {
    match (before, after) {
        (Some(before), Some(after)) if before > 0 => {
            Some((after - before) as f64 * 100.0 / before as f64)
        }
        _ => None,
    }
}

/// Figures per playbook; runs created before `baseline_until` (Unix ms) are the baseline.
pub fn measure(
    runs: &[Run],
    approvals: &[Approval],
    baseline_until: Option<i64>,
) -> Vec<PlaybookStats> {
    let mut by_playbook: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|r| !r.dry_run) {
        by_playbook
            .entry(run.playbook.as_str())
            .or_default()
            .push(run);
    }
    by_playbook
        .into_iter()
        .map(|(name, runs)| {
            let (before, after): (Vec<&Run>, Vec<&Run>) = match baseline_until {
                Some(cut) => runs.iter().partition(|r| r.created < cut),
                None => (Vec::new(), runs.clone()),
            };
            let baseline = baseline_until.map(|_| period(&before, approvals));
            let current = period(&after, approvals);
            PlaybookStats {
                playbook: name.to_owned(),
                mttc_change_pct: change(
                    baseline.as_ref().and_then(|b| b.mttc_p50_ms),
                    current.mttc_p50_ms,
                ),
                mttd_change_pct: change(
                    baseline.as_ref().and_then(|b| b.mttd_p50_ms),
                    current.mttd_p50_ms,
                ),
                baseline,
                current,
            }
        })
        .collect()
}
