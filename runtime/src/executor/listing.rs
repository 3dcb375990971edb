//! Listing runs a page at a time, newest first, at the cost of the page.
//!
//! Runs are stored by id; a second tree indexes them by creation time
//! (`tenant\0<created ms BE><run id>`), written when a run is first saved,
//! and a per-tenant counter says how many there are. A page walks the index
//! backwards from its cursor, so `GET runs?limit=1` reads one index entry
//! and one run however many runs the tenant has. Filters are applied while
//! walking; a walk stops after [`MAX_SCAN`] index entries and hands back a
//! cursor, so a filter that matches nothing still answers in bounded time.

use std::collections::BTreeMap;

use super::run::{Run, RunStatus};
use super::{Executor, ExecutorError, key, store_err};
use crate::tenant::TenantId;

/// The most index entries one page walks.
pub const MAX_SCAN: usize = 5_000;

/// What a page of runs asks for (all filters optional).
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this playbook.
    pub playbook: Option<String>,
    /// Only runs of (or folding) this alert id.
    pub alert: Option<String>,
    /// Created at or after, Unix ms.
    pub since: Option<i64>,
    /// Created before, Unix ms.
    pub until: Option<i64>,
    /// Continue after this cursor (from the previous page's `next`).
    pub before: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// One page of runs, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// The cursor for the next (older) page, when there may be more.
    pub next: Option<String>,
}

fn index_key(tenant: &TenantId, created: i64, id: &str) -> Vec<u8> {
    let mut k = key(&[tenant.as_str(), ""]);
    k.extend_from_slice(&created.max(0).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

impl Executor {
    /// Indexes `run` by creation time (once) and counts it; moves the
    /// metrics counters.
    pub(super) fn index_run(&self, run: &Run) -> Result<(), ExecutorError> {
        let new = self.index_once(run)?;
        let waits = self.approval_waits_at_finish(run);
        self.inner.tally.saw(run, new, &waits);
        Ok(())
    }

    /// Indexes `run` unless it is; whether it was new.
    fn index_once(&self, run: &Run) -> Result<bool, ExecutorError> {
        let k = index_key(&run.tenant, run.created, &run.id);
        let new = !self.inner.runs_by_time.insert(k, [])?;
        if new {
            self.inner
                .run_counts
                .update_and_fetch(run.tenant.as_str(), |old| {
                    let count = old
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(0, u64::from_be_bytes);
                    Some((count + 1).to_be_bytes().to_vec())
                })?;
        }
        Ok(new)
    }

    /// At open: indexes runs stored before the index existed, and rebuilds
    /// the metrics counters (one scan; from then on they move as runs do).
    pub(super) fn index_existing_runs(&self) -> Result<(), ExecutorError> {
        for entry in self.inner.runs.iter() {
            let (_, bytes) = entry?;
            if let Ok(run) = serde_json::from_slice::<Run>(&bytes) {
                self.index_once(&run)?;
                let waits = self.approval_waits_at_finish(&run);
                self.inner.tally.saw(&run, true, &waits);
                self.inner.tally.folded(&run, run.folded.len() as u64);
            }
        }
        Ok(())
    }

    /// For a finished run that asked a human: how long each of its decided
    /// approvals waited (request → decision), ms. Empty otherwise.
    fn approval_waits_at_finish(&self, run: &Run) -> Vec<i64> {
        if !run.status.is_finished() || !super::measure::asked_a_human(run) {
            return Vec::new();
        }
        run.steps
            .values()
            .filter_map(|step| step.approval_id.as_deref())
            .filter_map(|id| self.inner.approvals.get(&run.tenant, id).ok())
            .filter(|a| a.status != super::approvals::ApprovalStatus::Pending)
            .map(|a| {
                let decided = a
                    .denial
                    .as_ref()
                    .map(|v| v.time)
                    .or_else(|| a.approvals.iter().map(|v| v.time).max())
                    .unwrap_or(a.expires);
                decided - a.created
            })
            .collect()
    }

    /// MTTD/MTTC and the other figures per playbook of `tenant`; runs
    /// created before `baseline_until` (Unix ms) are the baseline. From the
    /// hourly counters, plus the runs of the cut's own hour before the cut.
    pub fn measure(
        &self,
        tenant: &TenantId,
        baseline_until: Option<i64>,
    ) -> Result<Vec<super::measure::PlaybookStats>, ExecutorError> {
        let hours = self.inner.tally.hours(tenant);
        let mut split: BTreeMap<String, super::measure::Period> = BTreeMap::new();
        if let Some(cut) = baseline_until {
            let hour_start = cut.div_euclid(super::measure::HOUR_MS) * super::measure::HOUR_MS;
            let prefix_len = key(&[tenant.as_str(), ""]).len() + 8;
            let range = index_key(tenant, hour_start, "")..index_key(tenant, cut, "");
            for entry in self.inner.runs_by_time.range(range) {
                let (k, _) = entry?;
                let Some(id) = k
                    .get(prefix_len..)
                    .and_then(|b| std::str::from_utf8(b).ok())
                else {
                    continue;
                };
                let Ok(run) = self.get_run(tenant, id) else {
                    continue;
                };
                if run.dry_run {
                    continue;
                }
                let waits = self.approval_waits_at_finish(&run);
                split
                    .entry(run.playbook.clone())
                    .or_default()
                    .add(&super::measure::Period::of_run(&run, &waits));
            }
        }
        Ok(super::measure::measure(&hours, baseline_until, &split))
    }

    /// The metrics counters of every tenant.
    pub fn tally(&self) -> Vec<(TenantId, super::tally::TenantTally)> {
        self.inner.tally.snapshot()
    }

    /// How many runs `tenant` has (kept as runs are created).
    pub fn run_count(&self, tenant: &TenantId) -> Result<u64, ExecutorError> {
        Ok(self
            .inner
            .run_counts
            .get(tenant.as_str())?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// A page of `tenant`'s runs matching `query`, newest first.
    pub fn runs_page(&self, tenant: &TenantId, query: &RunQuery) -> Result<RunPage, ExecutorError> {
        let prefix = key(&[tenant.as_str(), ""]);
        let at = |time: i64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&time.max(0).to_be_bytes());
            k
        };
        let low = at(query.since.unwrap_or(0));
        // Newest first from the tightest upper bound: the cursor, `until`,
        // or the end of the tenant's index.
        let mut high = at(query.until.unwrap_or(i64::MAX));
        if let Some(cursor) = &query.before {
            let mut k = prefix.clone();
            k.extend_from_slice(
                &hex::decode(cursor)
                    .map_err(|_| ExecutorError::InvalidCursor(cursor.to_owned()))?,
            );
            high = high.min(k);
        }
        let limit = query.limit.max(1);
        let mut runs = Vec::new();
        let mut scanned = 0usize;
        for entry in self.inner.runs_by_time.range(low..high).rev() {
            let (k, _) = entry?;
            scanned += 1;
            let suffix = &k[prefix.len()..];
            let id = String::from_utf8_lossy(suffix.get(8..).unwrap_or_default()).into_owned();
            if let Some(bytes) = self.inner.runs.get(key(&[tenant.as_str(), &id]))? {
                let run: Run = serde_json::from_slice(&bytes).map_err(store_err)?;
                if matches(&run, query) {
                    runs.push(run);
                }
            }
            if runs.len() == limit || scanned == MAX_SCAN {
                return Ok(RunPage {
                    runs,
                    next: Some(hex::encode(suffix)),
                });
            }
        }
        Ok(RunPage { runs, next: None })
    }
}

fn matches(run: &Run, query: &RunQuery) -> bool {
    query.status.is_none_or(|s| s == run.status)
        && query.playbook.as_deref().is_none_or(|p| p == run.playbook)
        && query
            .alert
            .as_deref()
            .is_none_or(|a| a == run.alert.id || run.folded.iter().any(|f| f == a))
}
