//! Counters kept as runs change, so `/metrics` costs the number of tenants
//! and statuses, not the number of runs: runs by tenant and status, alerts
//! folded by dedup, and MTTD/MTTC histograms. They are rebuilt by one scan
//! when the executor opens and then moved at every save: only runs that are
//! not finished are remembered (a finished run does not change status,
//! verdict or containment time again).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::measure::{HOUR_MS, Period};
use super::run::{Run, RunStatus};
use crate::tenant::TenantId;

/// Upper bounds (seconds) of the MTTD/MTTC histogram buckets.
pub const BUCKETS_SECS: [f64; 8] = [1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0];

/// A histogram of seconds.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Counts per bucket of [`BUCKETS_SECS`] (not cumulative).
    pub buckets: [u64; 8],
    /// Samples above the last bucket.
    pub over: u64,
    /// Sum of samples, seconds.
    pub sum: f64,
    /// Samples.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        match BUCKETS_SECS.iter().position(|bound| seconds <= *bound) {
            Some(i) => self.buckets[i] += 1,
            None => self.over += 1,
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// Cumulative count at or below bucket `i`.
    pub fn cumulative(&self, i: usize) -> u64 {
        self.buckets[..=i.min(7)].iter().sum()
    }
}

/// One tenant's counters.
#[derive(Debug, Clone, Default)]
pub struct TenantTally {
    /// Runs by status (`RunStatus::as_str`).
    pub runs: BTreeMap<&'static str, u64>,
    /// Alerts folded into open runs.
    pub folded: u64,
    /// Alert time to first verdict.
    pub mttd: Histogram,
    /// Alert time to first containment.
    pub mttc: Histogram,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    status: RunStatus,
    verdict: bool,
    contained: bool,
}

/// Every tenant's counters.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<TallyInner>,
}

#[derive(Debug, Default)]
struct TallyInner {
    tenants: HashMap<TenantId, TenantTally>,
    /// Runs not finished yet, by tenant and id.
    live: HashMap<(TenantId, String), Live>,
    /// Measurement counters of runs that are not dry runs, by tenant, then
    /// playbook and hour of creation.
    hours: HashMap<TenantId, BTreeMap<(String, i64), Period>>,
}

fn period_of<'a>(
    hours: &'a mut HashMap<TenantId, BTreeMap<(String, i64), Period>>,
    run: &Run,
) -> Option<&'a mut Period> {
    (!run.dry_run).then(|| {
        hours
            .entry(run.tenant.clone())
            .or_default()
            .entry((run.playbook.clone(), run.created.div_euclid(HOUR_MS)))
            .or_default()
    })
}

impl Tally {
    /// Moves the counters for `run` as just saved; `new` when this is the
    /// run's first save (or the run is being counted at open);
    /// `approval_waits` are the waits of its decided approvals, read by the
    /// caller only for a finished run that asked a human.
    pub fn saw(&self, run: &Run, new: bool, approval_waits: &[i64]) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = (run.tenant.clone(), run.id.clone());
        let before = match inner.live.get(&id).copied() {
            Some(live) => live,
            None if new => Live {
                status: run.status,
                verdict: false,
                contained: false,
            },
            // Finished before: nothing of what is counted changes.
            None => return,
        };
        let finishing = run.status.is_finished() && (new || !before.status.is_finished());
        if let Some(period) = period_of(&mut inner.hours, run) {
            if new {
                period.runs += 1;
                if let Some(label) = run.feedback.last().map(|f| f.label) {
                    period.label(label, 1);
                }
            }
            if let (false, Some(at)) = (before.verdict, run.verdict_at) {
                period.mttd.observe(at - run.alert.time);
            }
            if let (false, Some(at)) = (before.contained, run.contained_at) {
                period.mttc.observe(at - run.alert.time);
            }
            if finishing {
                period.finish(run, approval_waits);
            }
        }
        let tally = inner.tenants.entry(run.tenant.clone()).or_default();
        if new {
            *tally.runs.entry(run.status.as_str()).or_default() += 1;
        } else if before.status != run.status {
            if let Some(count) = tally.runs.get_mut(before.status.as_str()) {
                *count = count.saturating_sub(1);
            }
            *tally.runs.entry(run.status.as_str()).or_default() += 1;
        }
        if let (false, Some(at)) = (before.verdict, run.verdict_at) {
            tally.mttd.observe((at - run.alert.time) as f64 / 1000.0);
        }
        if let (false, Some(at)) = (before.contained, run.contained_at) {
            tally.mttc.observe((at - run.alert.time) as f64 / 1000.0);
        }
        let now = Live {
            status: run.status,
            verdict: run.verdict_at.is_some(),
            contained: run.contained_at.is_some(),
        };
        if run.status.is_finished() {
            inner.live.remove(&id);
        } else {
            inner.live.insert(id, now);
        }
    }

    /// Counts `alerts` folded into `run` by dedup.
    pub fn folded(&self, run: &Run, alerts: u64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.tenants.entry(run.tenant.clone()).or_default().folded += alerts;
        if let Some(period) = period_of(&mut inner.hours, run) {
            period.folded += alerts;
        }
    }

    /// Moves the label counters: `run`'s latest label was `previous` and is
    /// now `label`.
    pub fn relabelled(
        &self,
        run: &Run,
        previous: Option<crate::model::FeedbackLabel>,
        label: crate::model::FeedbackLabel,
    ) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(period) = period_of(&mut inner.hours, run) {
            if let Some(previous) = previous {
                period.label(previous, -1);
            }
            period.label(label, 1);
        }
    }

    /// `tenant`'s measurement counters (playbook, hour → period), copied.
    pub fn hours(&self, tenant: &TenantId) -> BTreeMap<(String, i64), Period> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.hours.get(tenant).cloned().unwrap_or_default()
    }

    /// Every tenant's counters, copied.
    pub fn snapshot(&self) -> Vec<(TenantId, TenantTally)> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(TenantId, TenantTally)> = inner
            .tenants
            .iter()
            .map(|(tenant, tally)| (tenant.clone(), tally.clone()))
            .collect();
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        out
    }
}
