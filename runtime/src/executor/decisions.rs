//! What people decide: analyst feedback, approve and deny (each one compare-and-swap on the approval), expiry.

use super::approvals::{Approval, ApprovalError, ApprovalStatus, Approver};
use super::run::{Run, StepState, StepStatus};
use super::{Executor, ExecutorError, StepResult, approvals, guardrails, idempotency_key, queue};
use crate::audit::AuditKind;
use crate::model::now_ms;
use crate::playbook::{Playbook, Step};
use crate::tenant::TenantId;
use serde_json::json;
use std::time::Duration;

impl Executor {
    /// An analyst labels a run; the label goes into the tenant's entity
    /// memory for every entity of the alert (plugins read it through
    /// `memory`), onto the run, and into the audit log.
    pub fn feedback(
        &self,
        tenant: &TenantId,
        run_id: &str,
        label: crate::model::FeedbackLabel,
        analyst: &str,
        comment: &str,
    ) -> Result<Run, ExecutorError> {
        let mut run = self.get_run(tenant, run_id)?;
        let feedback = crate::model::Feedback {
            label,
            analyst: analyst.to_owned(),
            time: now_ms(),
            run_id: run.id.clone(),
            comment: comment.to_owned(),
        };
        for entity in &run.alert.entities {
            self.inner
                .store
                .memory_record_feedback(tenant, entity, feedback.clone())?;
        }
        let previous = run.feedback.last().map(|f| f.label);
        run.feedback.push(feedback);
        self.save(&run)?;
        self.inner.tally.relabelled(&run, previous, label);
        self.inner.audit.append(
            tenant,
            AuditKind::FeedbackGiven,
            Some(&run.id),
            None,
            Some(analyst),
            json!({"label": label, "comment": comment}),
        )?;
        self.inner.store.space().flush()?;
        Ok(run)
    }

    /// An approver approves, and the caller waits until the decision's
    /// work is done: at quorum the action is re-checked and executed and
    /// the run continues (see [`Executor::vote`]).
    pub async fn approve(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let voted = self
            .vote(
                tenant,
                approval_id,
                approver.into(),
                reason,
                Decision::Approve,
            )
            .await;
        self.settle_decision(tenant, approval_id, None).await?;
        voted
    }

    /// An approver denies (one denial is enough), and the caller waits until
    /// the run has continued without the action.
    pub async fn deny(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let voted = self
            .vote(tenant, approval_id, approver.into(), reason, Decision::Deny)
            .await;
        self.settle_decision(tenant, approval_id, None).await?;
        voted
    }

    /// Waits up to `deadline` (`None`: until done) for the work of
    /// `approval_id`'s run, whatever the vote's outcome: a refused vote may
    /// have found it expired, or decided by someone else whose work is
    /// still running, and the caller should read what was decided. Whether
    /// it settled (an unknown approval has nothing to wait for).
    pub async fn settle_decision(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        deadline: Option<Duration>,
    ) -> Result<bool, ExecutorError> {
        match self.inner.approvals.get(tenant, approval_id) {
            Ok(approval) => {
                self.settle(tenant, std::slice::from_ref(&approval.run_id), deadline)
                    .await
            }
            Err(_) => Ok(true),
        }
    }

    /// Casts one vote as one compare-and-swap on the approval, so of
    /// concurrent decisions exactly one moves it out of `pending` (the
    /// others are refused with the winner's outcome). A decision is
    /// recorded, made durable and its continuation queued before this
    /// returns; the action and the rest of the run happen on a worker.
    pub async fn vote(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: Approver,
        reason: &str,
        decision: Decision,
    ) -> Result<Approval, ExecutorError> {
        let principal = approver.name.as_str();
        let now = now_ms();
        let decided = match decision {
            Decision::Approve => {
                self.inner
                    .approvals
                    .approve(tenant, approval_id, &approver, reason, now)
            }
            Decision::Deny => {
                self.inner
                    .approvals
                    .deny(tenant, approval_id, &approver, reason, now)
            }
        };
        let approval = self.closing_if_expired(tenant, decided).await?;
        let run = self.get_run(tenant, &approval.run_id)?;
        match decision {
            Decision::Approve => self.audit_append(&run, AuditKind::ApprovalGranted, Some(&approval.step_id), Some(principal), json!({"approval": approval.id, "reason": reason, "count": approval.approvals.len(), "required": approval.required}))?,
            Decision::Deny => self.audit_append(
                &run,
                AuditKind::ApprovalDenied,
                Some(&approval.step_id),
                Some(principal),
                json!({"approval": approval.id, "reason": reason}),
            )?,
        }
        self.commit().await?;
        // Durable, not yet queued: a crash here leaves the decision in the
        // pending index, and `resume` carries it out.
        crate::crashpoint::reached("after-decision");
        if approval.status != ApprovalStatus::Pending {
            self.enqueue(decided_work(&approval))?;
        }
        Ok(approval)
    }

    pub(super) async fn execute_approved(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        approval: &Approval,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        let now = now_ms();
        let Some(loaded) = self.plugin_for(run, &step.plugin) else {
            return Ok(self.failed(result, state, now, "pinned plugin not loaded".to_owned()));
        };
        let target = state
            .target
            .clone()
            .unwrap_or_else(|| approval.target.clone());
        // Carried out before a crash took its step state: its intent says
        // what happened (checked before the re-checks, which would count
        // this very action against the rate limit).
        let key = idempotency_key(run, step, &target);
        if let Some(intent) = self.intent(run, &key)? {
            return self
                .recover_action(run, step, &loaded, target, key, intent, result, state)
                .await;
        }
        // Bound to exactly this action.
        if let Err(difference) = approval.covers(
            &run.id,
            &step.id,
            &target,
            &approvals::params_hash(&step.with),
            &loaded.digest,
        ) {
            state.status = StepStatus::Refused;
            state.finished = Some(now);
            state.error = Some(format!("approval does not cover this action: {difference}"));
            result.audit.push((
                AuditKind::GuardrailDecision,
                json!({"approval": approval.id, "refused": difference}),
            ));
            result.state = state;
            return Ok(result);
        }
        // Checked again at execution time: protected assets, rate, blast radius.
        let inventory = self.inner.runtime.context().get(&run.tenant).assets;
        let mut recheck = Vec::new();
        if let Some(reason) =
            guardrails::protected_by(&playbook.guardrails.protected_assets, &target, &inventory)
        {
            recheck.push(format!("protected: {reason}"));
        }
        let situation = self.situation(run, playbook, step, &target, now)?;
        recheck.extend(guardrails::capacity_reasons(playbook, step, situation));
        if !recheck.is_empty() {
            state.status = StepStatus::Refused;
            state.finished = Some(now);
            state.error = Some(recheck.join("; "));
            result.audit.push((
                AuditKind::GuardrailDecision,
                json!({"approval": approval.id, "recheck": recheck}),
            ));
            result.state = state;
            return Ok(result);
        }
        let idempotency_key = idempotency_key(run, step, &target);
        self.act(
            run,
            step,
            &loaded,
            target,
            idempotency_key,
            result,
            state,
            Some(approval),
        )
        .await
    }

    /// A decision's result; when the decision found the approval expired
    /// (and so moved it to `expired` itself), the expiry is recorded and its
    /// step closed as denied before the error is returned.
    pub(super) async fn closing_if_expired(
        &self,
        tenant: &TenantId,
        decided: Result<Approval, ApprovalError>,
    ) -> Result<Approval, ExecutorError> {
        match decided {
            Ok(approval) => Ok(approval),
            Err(ApprovalError::Expired(id)) => {
                let approval = self.inner.approvals.get(tenant, &id)?;
                self.record_expiry(&approval)?;
                self.commit().await?;
                Err(ApprovalError::Expired(id).into())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Audits an expiry this process decided and queues its closing.
    fn record_expiry(&self, approval: &Approval) -> Result<(), ExecutorError> {
        let run = self.get_run(&approval.tenant, &approval.run_id)?;
        self.audit_append(
            &run,
            AuditKind::ApprovalExpired,
            Some(&approval.step_id),
            None,
            json!({"approval": approval.id, "reason": "approval timed out"}),
        )?;
        self.enqueue(decided_work(approval))
    }

    /// Denies every approval whose time is up (fail closed): each is
    /// audited, made durable, and its step closed by a worker.
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<Approval>, ExecutorError> {
        let expired = self.inner.approvals.expire_due(now)?;
        for approval in &expired {
            self.record_expiry(approval)?;
        }
        if !expired.is_empty() {
            self.commit().await?;
        }
        Ok(expired)
    }
}

/// The continuation of a decided approval.
pub(super) fn decided_work(approval: &Approval) -> queue::Work {
    queue::Work::Decided {
        tenant: approval.tenant.clone(),
        run: approval.run_id.clone(),
        approval: approval.id.clone(),
    }
}

/// What a vote says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve the action (counts toward the quorum).
    Approve,
    /// Deny it (one denial is enough).
    Deny,
}
