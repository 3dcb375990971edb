//! What people decide: analyst feedback, approve and deny (each one compare-and-swap on the approval), expiry.

#[allow(unused_imports)]
use super::*;

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

    /// An approver approves; at quorum the action is re-checked and executed
    /// and the run continues. The vote is one compare-and-swap on the
    /// approval, so of concurrent votes exactly one meets the quorum and
    /// only that one executes the action.
    pub async fn approve(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let approver = approver.into();
        let principal = approver.name.as_str();
        let now = now_ms();
        let decided = self
            .inner
            .approvals
            .approve(tenant, approval_id, &approver, reason, now);
        let approval = self.closing_if_expired(tenant, decided).await?;
        let mut run = self.get_run(tenant, &approval.run_id)?;
        self.audit_append(&run, AuditKind::ApprovalGranted, Some(&approval.step_id), Some(principal), json!({"approval": approval.id, "reason": reason, "count": approval.approvals.len(), "required": approval.required}))?;
        self.commit().await?;
        if approval.status != ApprovalStatus::Approved {
            return Ok(approval);
        }
        let playbook = self.playbook_of(&run)?;
        let Some(step) = playbook.step(&approval.step_id).cloned() else {
            return Err(ExecutorError::PlaybookNotFound(approval.step_id.clone()));
        };
        let state = run
            .steps
            .get(&step.id)
            .cloned()
            .unwrap_or_else(StepState::pending);
        let result = StepResult {
            id: step.id.clone(),
            state: state.clone(),
            audit: Vec::new(),
            approval: None,
            acted: None,
            scored: false,
        };
        let result = self
            .execute_approved(&run, &playbook, &step, &approval, result, state)
            .await?;
        // An approved action asks for no further approval.
        let mut requested = Vec::new();
        if self.apply(&mut run, &playbook, result, Some(principal), &mut requested)? {
            // The approved action failed and its step does not continue:
            // the run fails, as it would have in a wave of `drive`.
            run.status = RunStatus::Failed;
            self.finish(&mut run, &playbook)?;
            self.commit().await?;
            return Ok(approval);
        }
        run.status = RunStatus::Running;
        self.save(&run)?;
        self.commit().await?;
        self.drive(&mut run, &playbook).await?;
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

    /// An approver denies (one denial is enough); the run continues without
    /// the action.
    pub async fn deny(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let approver = approver.into();
        let principal = approver.name.as_str();
        let decided = self
            .inner
            .approvals
            .deny(tenant, approval_id, &approver, reason, now_ms());
        let approval = self.closing_if_expired(tenant, decided).await?;
        self.close_denied(
            &approval,
            AuditKind::ApprovalDenied,
            Some(principal),
            reason,
        )
        .await?;
        Ok(approval)
    }

    /// A decision's result; when the decision found the approval expired
    /// (and so moved it to `expired` itself), the step is closed as denied
    /// before the error is returned.
    pub(super) async fn closing_if_expired(
        &self,
        tenant: &TenantId,
        decided: Result<Approval, ApprovalError>,
    ) -> Result<Approval, ExecutorError> {
        match decided {
            Ok(approval) => Ok(approval),
            Err(ApprovalError::Expired(id)) => {
                let approval = self.inner.approvals.get(tenant, &id)?;
                self.close_denied(&approval, AuditKind::ApprovalExpired, None, "expired")
                    .await?;
                Err(ApprovalError::Expired(id).into())
            }
            Err(err) => Err(err.into()),
        }
    }

    pub(super) async fn close_denied(
        &self,
        approval: &Approval,
        kind: AuditKind,
        principal: Option<&str>,
        reason: &str,
    ) -> Result<(), ExecutorError> {
        let mut run = self.get_run(&approval.tenant, &approval.run_id)?;
        self.audit_append(
            &run,
            kind,
            Some(&approval.step_id),
            principal,
            json!({"approval": approval.id, "reason": reason}),
        )?;
        if let Some(state) = run.steps.get_mut(&approval.step_id)
            && state.status == StepStatus::WaitingApproval
        {
            state.status = StepStatus::Denied;
            state.finished = Some(now_ms());
            state.error = Some(format!("{kind:?}: {reason}"));
        }
        run.status = RunStatus::Running;
        self.save(&run)?;
        self.commit().await?;
        let playbook = self.playbook_of(&run)?;
        self.drive(&mut run, &playbook).await
    }

    /// Denies every approval whose time is up (fail closed).
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<Approval>, ExecutorError> {
        let expired = self.inner.approvals.expire_due(now)?;
        for approval in &expired {
            self.close_denied(
                approval,
                AuditKind::ApprovalExpired,
                None,
                "approval timed out",
            )
            .await?;
        }
        Ok(expired)
    }
}
