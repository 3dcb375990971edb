//! Driving a run: waves of ready steps, one `apply` for every step result, finishing (statuses, skipped steps, verdicts into entity memory), resuming after a restart.

use super::approvals::Approval;
use super::run::{Run, RunStatus, StepStatus};
use super::{
    DEFAULT_RUN_SHARE, Executor, ExecutorError, StepResult, decisions, key, memory_key, queue,
    read_lock, store_err, write_lock,
};
use crate::audit::AuditKind;
use crate::model::{Alert, EntityKind, PriorVerdict, Verdict as EntityVerdict, now_ms};
use crate::playbook::{OnError, Playbook, output};
use crate::tenant::TenantId;
use serde_json::{Value, json};
use std::sync::Arc;

/// On a shared queue, a running run younger than this may still be in the
/// middle of another node's intake (its alert's record not yet written): a
/// node starting up leaves it alone.
const SHARED_INTAKE_GRACE_MS: i64 = 30_000;

const NEVER_ACCEPTED: &str = "its alert was never accepted: the intake stopped before the alert's record was written; the alert gets new runs when sent again";

impl Executor {
    /// Runs `playbook` on `alert` as a dry run: nothing is persisted, no
    /// action executes, no rate limit, dedup, memory or audit is touched;
    /// plugins get a throwaway kv and no network. The clock is the alert's.
    pub async fn dry_run(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
    ) -> Result<Run, ExecutorError> {
        let mut run = self.new_run(tenant, playbook, alert, true, alert.time);
        // A dry run is worked on in the caller's task (nothing of it is
        // kept to resume), within the tenant's share of concurrent runs.
        let _slot = self.dry_run_slot(tenant).await?;
        self.drive(&mut run, playbook).await?;
        Ok(run)
    }

    /// The tenant's share of concurrent dry runs: its `max_concurrent_runs`
    /// quota, or [`DEFAULT_RUN_SHARE`].
    async fn dry_run_slot(
        &self,
        tenant: &TenantId,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ExecutorError> {
        let existing = read_lock(&self.inner.run_slots).get(tenant).cloned();
        let slots = match existing {
            Some(slots) => slots,
            None => write_lock(&self.inner.run_slots)
                .entry(tenant.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(DEFAULT_RUN_SHARE)))
                .clone(),
        };
        slots
            .acquire_owned()
            .await
            .map_err(|_| ExecutorError::Queue(queue::QueueError::Closed))
    }

    /// Queues a persisted run to be continued until it finishes or waits
    /// for a human, and waits for that.
    pub async fn execute(&self, tenant: &TenantId, run_id: &str) -> Result<Run, ExecutorError> {
        self.enqueue(queue::Work::Run {
            tenant: tenant.clone(),
            run: run_id.to_owned(),
        })?;
        self.settle(tenant, &[run_id.to_owned()], None).await?;
        self.get_run(tenant, run_id)
    }

    /// After a restart: denies approvals that expired while down, queues
    /// every decision not yet applied to its run (an approved action is
    /// carried out or reconciled from its intent) and every unfinished run
    /// (interrupted actions reconcile), and waits for all of it. The queue
    /// holds nothing durable: this is where its work is recomputed from the
    /// journal.
    pub async fn resume(&self) -> Result<Vec<String>, ExecutorError> {
        self.start_workers();
        self.expire_approvals(now_ms()).await?;
        let leases = self.inner.leases.clone();
        let mut queued: Vec<(TenantId, String)> = Vec::new();
        for approval in self.inner.approvals.unapplied()? {
            self.enqueue(decisions::decided_work(&approval))?;
            queued.push((approval.tenant.clone(), approval.run_id.clone()));
        }
        let mut resumed = Vec::new();
        for entry in self.inner.runs.iter() {
            let (_, bytes) = entry?;
            if let Ok(mut run) = serde_json::from_slice::<Run>(&bytes)
                && run.status == RunStatus::Running
            {
                if let Some(leases) = &leases {
                    // Another node is on it, or may still be accepting its
                    // alert: left to that node (its lease expires and its
                    // queue redelivers if it died).
                    let lease = crate::cluster::run_lease(run.tenant.as_str(), &run.id);
                    if leases.holder(&lease)?.is_some()
                        || now_ms() - run.created < SHARED_INTAKE_GRACE_MS
                    {
                        continue;
                    }
                }
                if !self.accepted(&run)? {
                    self.abandon(&mut run, NEVER_ACCEPTED)?;
                    continue;
                }
                self.enqueue(queue::Work::Run {
                    tenant: run.tenant.clone(),
                    run: run.id.clone(),
                })?;
                queued.push((run.tenant.clone(), run.id.clone()));
                resumed.push(run.id);
            }
        }
        if leases.is_some() {
            // The other nodes keep working: this one starts serving now and
            // its share of the resumed work arrives like any other.
            return Ok(resumed);
        }
        for (tenant, run) in queued {
            self.settle(&tenant, &[run], None).await?;
        }
        Ok(resumed)
    }

    /// Whether `run`'s alert was accepted with it: the alert's record,
    /// written and flushed after its runs, lists it. A run saved by an
    /// intake that stopped before that (a crash, a failed write) was never
    /// acknowledged; the alert, sent again, gets runs of its own.
    fn accepted(&self, run: &Run) -> Result<bool, ExecutorError> {
        let Some(bytes) = self
            .inner
            .alerts
            .get(key(&[run.tenant.as_str(), &run.alert.id]))?
        else {
            return Ok(false);
        };
        let record: Value = serde_json::from_slice(&bytes).map_err(store_err)?;
        Ok(record["runs"]
            .as_array()
            .is_some_and(|runs| runs.iter().any(|id| id.as_str() == Some(run.id.as_str()))))
    }

    /// Ends a run that was never accepted as failed, without running a step
    /// of it (it stays listed, with the reason in the audit chain).
    pub(super) fn abandon(&self, run: &mut Run, why: &str) -> Result<(), ExecutorError> {
        run.status = RunStatus::Failed;
        run.finished = Some(now_ms());
        self.save(run)?;
        self.audit_append(
            run,
            AuditKind::RunFinished,
            None,
            None,
            json!({"status": run.status, "abandoned": why}),
        )?;
        Ok(())
    }

    pub(super) fn now_for(run: &Run) -> i64 {
        if run.dry_run {
            run.alert.time
        } else {
            now_ms()
        }
    }

    pub(super) async fn drive(
        &self,
        run: &mut Run,
        playbook: &Playbook,
    ) -> Result<(), ExecutorError> {
        let mut requested: Vec<Approval> = Vec::new();
        loop {
            // Steps interrupted by a crash run again (responders reconcile).
            let mut ready = Vec::new();
            for step in &playbook.steps {
                let Some(state) = run.steps.get(&step.id) else {
                    continue;
                };
                if !matches!(state.status, StepStatus::Pending | StepStatus::Running) {
                    continue;
                }
                let needs: Vec<StepStatus> = step
                    .needs
                    .iter()
                    .filter_map(|need| run.steps.get(need).map(|s| s.status))
                    .collect();
                if needs.iter().all(|status| status.is_final()) {
                    ready.push(step.clone());
                }
            }
            if ready.is_empty() {
                break;
            }
            let cpu = self.cpu_slot(&run.tenant).await;
            let now = Self::now_for(run);
            for step in &ready {
                if let Some(state) = run.steps.get_mut(&step.id)
                    && state.status == StepStatus::Pending
                {
                    state.status = StepStatus::Running;
                    state.started = Some(now);
                }
            }
            self.save(run)?;
            let snapshot = run.clone();
            // Plugin calls hold CPU permits of their own.
            drop(cpu);
            let results = futures::future::join_all(
                ready
                    .iter()
                    .map(|step| self.run_step(&snapshot, playbook, step)),
            )
            .await;
            let cpu = self.cpu_slot(&run.tenant).await;
            let mut fail = false;
            for result in results {
                fail |= self.apply(run, playbook, result?, None, &mut requested)?;
            }
            self.save(run)?;
            drop(cpu);
            // Flushed only where an effect could be lost: an approval
            // request must be durable before anyone is told of it. Other
            // step results are recomputed after a crash (the run resumes
            // from its last durable state; actions are guarded by their
            // intents and idempotency keys).
            if !run.dry_run && !requested.is_empty() {
                self.commit().await?;
            }
            // Drained whether or not anyone listens, so a later wave with
            // no new request is not flushed for this one.
            let announced = std::mem::take(&mut requested);
            if let Some(sink) = read_lock(&self.inner.approval_sink).as_ref() {
                for approval in announced {
                    let _ = sink.send(approval);
                }
            }
            if fail {
                run.status = RunStatus::Failed;
                break;
            }
        }
        let cpu = self.cpu_slot(&run.tenant).await;
        self.finish(run, playbook)?;
        drop(cpu);
        // Not flushed: a finished run lost in a crash resumes and finishes
        // the same way; the next flush (any alert's accept) covers it.
        Ok(())
    }

    /// Applies one step's result to `run` — the one place a result becomes
    /// state, for every path (a wave of `drive`, an approved action): the
    /// verdict and containment times (the step's finish time), the targets
    /// acted on, an approval request (kept; queued in `requested` to be
    /// announced once durable), the step's audit records (by `actor`, when
    /// a person caused it) and the step state. Whether the run must fail
    /// (a failed step whose `on_error` does not continue).
    pub(super) fn apply(
        &self,
        run: &mut Run,
        playbook: &Playbook,
        result: StepResult,
        actor: Option<&str>,
        requested: &mut Vec<Approval>,
    ) -> Result<bool, ExecutorError> {
        let fails_run = result.state.status == StepStatus::Failed
            && playbook.step(&result.id).is_some_and(|s| {
                s.on_error == OnError::Fail || matches!(s.on_error, OnError::Retry { .. })
            });
        let finished = result.state.finished.unwrap_or_else(|| Self::now_for(run));
        if result.scored && run.verdict_at.is_none() {
            run.verdict_at = Some(finished);
        }
        if let Some(target) = result.acted {
            if !run.acted.contains(&target) {
                run.acted.push(target);
            }
            run.contained_at.get_or_insert(finished);
        }
        if let Some(approval) = &result.approval
            && !run.dry_run
        {
            self.inner.approvals.put(approval)?;
            requested.push(approval.clone());
        }
        for (kind, detail) in result.audit {
            self.audit_append(run, kind, Some(&result.id), actor, detail)?;
        }
        run.steps.insert(result.id, result.state);
        Ok(fails_run)
    }

    pub(super) fn finish(&self, run: &mut Run, playbook: &Playbook) -> Result<(), ExecutorError> {
        if run.status != RunStatus::Failed {
            let waiting = run
                .steps
                .values()
                .any(|s| s.status == StepStatus::WaitingApproval);
            let unfinished = run
                .steps
                .values()
                .any(|s| !s.status.is_final() && s.status != StepStatus::WaitingApproval);
            run.status = if waiting {
                RunStatus::WaitingApproval
            } else if unfinished {
                RunStatus::Running
            } else if run.steps.values().any(|s| s.status == StepStatus::Failed) {
                RunStatus::SucceededWithErrors
            } else {
                RunStatus::Succeeded
            };
        }
        // Steps that can no longer run (a need failed, was denied, refused or skipped).
        if run.status != RunStatus::Running {
            for step in &playbook.steps {
                let blocked = step.needs.iter().any(|need| {
                    run.steps.get(need).is_some_and(|s| {
                        matches!(
                            s.status,
                            StepStatus::Failed
                                | StepStatus::Refused
                                | StepStatus::Denied
                                | StepStatus::Skipped
                        )
                    })
                });
                if let Some(state) = run.steps.get_mut(&step.id)
                    && state.status == StepStatus::Pending
                    && (blocked || run.status == RunStatus::Failed)
                {
                    state.status = StepStatus::Skipped;
                }
            }
        }
        if run.status.is_finished() {
            run.finished = Some(Self::now_for(run));
            let mttd = run.verdict_at.map(|at| at - run.alert.time);
            let mttc = run.contained_at.map(|at| at - run.alert.time);
            self.audit_append(run, AuditKind::RunFinished, None, None, json!({"status": run.status, "mttd_ms": mttd, "mttc_ms": mttc, "folded": run.folded.len()}))?;
            if !run.dry_run {
                self.record_verdicts(run)?;
            }
        }
        self.save(run)?;
        if run.status.is_finished()
            && !run.dry_run
            && let Some(sink) = read_lock(&self.inner.finished_sink).as_ref()
        {
            let _ = sink.send((run.tenant.clone(), run.id.clone()));
        }
        Ok(())
    }

    /// Writes what the run's enrichers found into the tenant's entity
    /// memory — only for entities the alert names (an enricher cannot
    /// plant a verdict on 8.8.8.8 for later runs), and never a benign
    /// verdict over an analyst's true-positive: an enricher cannot clear
    /// what a human marked malicious.
    pub(super) fn record_verdicts(&self, run: &Run) -> Result<(), ExecutorError> {
        let named: std::collections::HashSet<(EntityKind, String)> =
            run.alert.entities.iter().map(memory_key).collect();
        for state in run.steps.values() {
            let Some(found) = output::from_value::<output::EnrichOutput>(state.output.as_ref())
            else {
                continue;
            };
            for enrichment in found.enrichments {
                if !named.contains(&memory_key(&enrichment.entity)) {
                    tracing::debug!(run = %run.id, entity = %enrichment.entity.value, "verdict for an entity the alert does not name: not remembered");
                    continue;
                }
                if enrichment.verdict == EntityVerdict::Benign {
                    let known = self
                        .inner
                        .store
                        .memory_recall(&run.tenant, &enrichment.entity)?;
                    if known
                        .feedback
                        .first()
                        .is_some_and(|f| f.label == crate::model::FeedbackLabel::TruePositive)
                    {
                        continue;
                    }
                }
                self.inner.store.memory_record_verdict(
                    &run.tenant,
                    &enrichment.entity,
                    PriorVerdict {
                        verdict: enrichment.verdict,
                        confidence: enrichment.confidence,
                        run_id: run.id.clone(),
                        playbook: run.playbook.clone(),
                        time: run.finished.unwrap_or(run.created),
                    },
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn steps_json(run: &Run) -> Value {
        Value::Object(
            run.steps
                .iter()
                .filter_map(|(id, state)| state.output.clone().map(|o| (id.clone(), o)))
                .collect(),
        )
    }
}
