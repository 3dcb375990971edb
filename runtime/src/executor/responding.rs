//! Respond steps: the guardrail situation (rate windows, blast radius), the decision, intents before the action, recovery and reconciliation after a crash.

use super::approvals::Approval;
use super::guardrails::{Situation, Verdict};
use super::run::{Run, StepState, StepStatus};
use super::{
    Executor, ExecutorError, Loaded, StepResult, entity_from_json, guardrails, idempotency_key,
    key, new_approval, store_err, target_label,
};
use crate::audit::AuditKind;
use crate::model::{ActionOutcome, ActionRequest, Entity, now_ms};
use crate::playbook::{Expr, Playbook, Step, Variables, output};
use crate::sandbox::{CallContext, PluginError};
use serde_json::{Value, json};

impl Executor {
    pub(super) fn situation(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        target: &Entity,
        now: i64,
    ) -> Result<Situation, ExecutorError> {
        let limit = playbook
            .guardrails
            .rate_limits
            .get(&step.action)
            .copied()
            .unwrap_or(guardrails::DEFAULT_RATE_LIMIT);
        let recent = if run.dry_run {
            0
        } else {
            self.recent_actions(&run.tenant, &step.action, limit.per, now, limit.count)?
        };
        let label = target_label(target);
        Ok(Situation {
            confidence: Self::deciding_confidence(run, playbook, step),
            recent_actions: recent,
            run_targets: run.acted.iter().filter(|t| **t != label).count() as u32,
            target_already_counted: run.acted.contains(&label),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn respond_step(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        variables: &Variables,
        loaded: &Loaded,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        let now = Self::now_for(run);
        let evaluated = match &step.target {
            Some(expr) => Some(
                self.evaluate(&run.tenant, expr, variables, Expr::eval_json)
                    .await,
            ),
            None => None,
        };
        let target = match evaluated {
            Some(Ok(value)) => match entity_from_json(&value) {
                Some(entity) => entity,
                None => {
                    return Ok(self.failed(
                        result,
                        state,
                        now,
                        format!("target evaluated to {value}, not an entity or address"),
                    ));
                }
            },
            Some(Err(err)) => return Ok(self.failed(result, state, now, format!("target: {err}"))),
            None => {
                return Ok(self.failed(
                    result,
                    state,
                    now,
                    "respond step without target".to_owned(),
                ));
            }
        };
        state.target = Some(target.clone());
        let idempotency_key = idempotency_key(run, step, &target);

        // Interrupted by a crash after the intent was written: reconcile.
        if state.status == StepStatus::Running
            && !run.dry_run
            && let Some(intent) = self.intent(run, &idempotency_key)?
        {
            return self
                .recover_action(
                    run,
                    step,
                    loaded,
                    target,
                    idempotency_key,
                    intent,
                    result,
                    state,
                )
                .await;
        }

        let context = self.inner.runtime.context().get(&run.tenant);
        let situation = self.situation(run, playbook, step, &target, now)?;
        let decision = guardrails::decide(playbook, step, &target, &context, situation);
        result.audit.push((
            AuditKind::GuardrailDecision,
            json!({"target": target, "action": step.action, "decision": decision}),
        ));
        state.decision = Some(decision.clone());

        if run.dry_run {
            // Plan only: the plugin runs in a sandbox with no network and a throwaway kv.
            let context = CallContext {
                run_id: Some(run.id.clone()),
                step_id: Some(step.id.clone()),
                dry_run: true,
                timeout: Some(step.timeout),
            };
            let request = ActionRequest {
                run_id: run.id.clone(),
                step_id: step.id.clone(),
                idempotency_key,
                target: target.clone(),
                params: step.with.clone(),
            };
            let planned = loaded.plugin.respond(&request, true, &context).await;
            state.status = StepStatus::Succeeded;
            state.finished = Some(now);
            let would = output::variant_name(&decision.verdict);
            state.output = Some(output::to_value(&match planned {
                Ok(called) => output::RespondOutput::planned(&called.value, would),
                Err(err) => output::RespondOutput::planning_failed(err.to_string(), would),
            }));
            result.state = state;
            return Ok(result);
        }

        match decision.verdict {
            Verdict::Refuse => {
                state.status = StepStatus::Refused;
                state.finished = Some(now);
                state.error = Some(decision.reasons.join("; "));
                result.audit.push((
                    AuditKind::StepFinished,
                    json!({"status": "refused", "reasons": decision.reasons}),
                ));
                result.state = state;
                Ok(result)
            }
            Verdict::NeedsApproval => {
                let mut approval = new_approval(
                    run,
                    step,
                    &target,
                    &loaded.digest,
                    decision.reasons.clone(),
                    now,
                );
                approval.requested_by = self.playbook_owner(&run.tenant, &run.playbook);
                result.audit.push((AuditKind::ApprovalRequested, json!({"approval": approval.id, "target": target, "reasons": decision.reasons, "required": approval.required, "expires": approval.expires})));
                state.status = StepStatus::WaitingApproval;
                state.approval_id = Some(approval.id.clone());
                result.approval = Some(approval);
                result.state = state;
                Ok(result)
            }
            Verdict::Execute => {
                self.act(
                    run,
                    step,
                    loaded,
                    target,
                    idempotency_key,
                    result,
                    state,
                    None,
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn act(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        idempotency_key: String,
        mut result: StepResult,
        mut state: StepState,
        approved_by: Option<&Approval>,
    ) -> Result<StepResult, ExecutorError> {
        crate::crashpoint::reached("before-intent");
        let intent_key = key(&[run.tenant.as_str(), &idempotency_key]);
        // `audit_from`: every audit record of this action comes after it, so
        // recovery can tell whether the crash took the records or only the
        // step state (reading only what was appended since).
        let audit_from = self.inner.audit.head_seq(&run.tenant)?;
        let intent = json!({"run": run.id, "step": step.id, "target": target, "plugin": loaded.digest, "started": now_ms(), "audit_from": audit_from});
        self.inner.intents.insert(
            intent_key.clone(),
            serde_json::to_vec(&intent).map_err(store_err)?,
        )?;
        self.commit().await?;
        let request = ActionRequest {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            idempotency_key: idempotency_key.clone(),
            target: target.clone(),
            params: step.with.clone(),
        };
        let context = CallContext {
            run_id: Some(run.id.clone()),
            step_id: Some(step.id.clone()),
            dry_run: false,
            timeout: Some(step.timeout),
        };
        let outcome = loaded.plugin.respond(&request, false, &context).await;
        crate::crashpoint::reached("after-call");
        self.finish_action(
            run,
            step,
            loaded,
            target,
            intent,
            intent_key,
            outcome,
            &mut result,
            &mut state,
            approved_by,
        )?;
        result.state = state;
        Ok(result)
    }

    /// The intent recorded for the action with `idempotency_key`, if any.
    pub(super) fn intent(
        &self,
        run: &Run,
        idempotency_key: &str,
    ) -> Result<Option<Value>, ExecutorError> {
        match self
            .inner
            .intents
            .get(key(&[run.tenant.as_str(), idempotency_key]))?
        {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(store_err)?)),
            None => Ok(None),
        }
    }

    /// An action whose intent was written before a crash: its recorded
    /// result when it finished, else a reconciliation with the same key —
    /// never a second effect.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn recover_action(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        idempotency_key: String,
        intent: Value,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        let Some(recorded) = intent.get("result") else {
            return self
                .reconcile(run, step, loaded, target, idempotency_key, result, state)
                .await;
        };
        // The action finished before the crash; only the step state was lost.
        state.finished = Some(Self::now_for(run));
        // The crash may or may not have taken the action's audit records
        // with it (they are appended one by one before the run is saved):
        // record from the intent only what is not there yet.
        let recorded_kinds = self.recorded_since(run, step, &intent)?;
        match serde_json::from_value::<crate::model::ActionResult>(recorded.clone()) {
            Ok(done) => {
                state.status = StepStatus::Succeeded;
                result.acted = Some(target_label(&target));
                if !recorded_kinds.contains(&AuditKind::ActionExecuted) {
                    result.audit.push((
                        AuditKind::ActionExecuted,
                        json!({"target": target, "action": step.action, "outcome": done.outcome, "summary": done.summary, "recovered": true}),
                    ));
                }
                state.output = Some(output::to_value(&output::RespondOutput::executed(&done)));
            }
            Err(_) => {
                state.status = StepStatus::Failed;
                state.error = Some(format!("action failed before the restart: {recorded}"));
            }
        }
        if !recorded_kinds.contains(&AuditKind::StepFinished) {
            result.audit.push((
                AuditKind::StepFinished,
                json!({"status": state.status, "recovered": true}),
            ));
        }
        result.state = state;
        Ok(result)
    }

    /// The kinds of audit record already written for `step` of `run` since
    /// its intent was (none when the intent predates `audit_from`: then
    /// everything is recorded again, marked recovered).
    fn recorded_since(
        &self,
        run: &Run,
        step: &Step,
        intent: &Value,
    ) -> Result<Vec<AuditKind>, ExecutorError> {
        let Some(from) = intent.get("audit_from").and_then(Value::as_u64) else {
            return Ok(Vec::new());
        };
        let mut kinds = Vec::new();
        self.inner
            .audit
            .read_after(&run.tenant, from, |record, _| {
                if record.run_id.as_deref() == Some(run.id.as_str())
                    && record.step_id.as_deref() == Some(step.id.as_str())
                {
                    kinds.push(record.kind);
                }
                true
            })?;
        Ok(kinds)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish_action(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        mut intent: Value,
        intent_key: Vec<u8>,
        outcome: Result<crate::sandbox::Called<crate::model::ActionResult>, PluginError>,
        result: &mut StepResult,
        state: &mut StepState,
        approved_by: Option<&Approval>,
    ) -> Result<(), ExecutorError> {
        let now = now_ms();
        match outcome {
            Ok(called) => {
                intent["result"] = json!(called.value);
                self.inner
                    .intents
                    .insert(intent_key, serde_json::to_vec(&intent).map_err(store_err)?)?;
                self.record_action(&run.tenant, &step.action, now, &run.id, &step.id)?;
                result.audit.push((AuditKind::PluginInvoked, json!({"plugin": step.plugin, "digest": loaded.digest, "ok": true, "duration_us": called.stats.duration.as_micros() as u64, "fuel": called.stats.fuel, "peak_memory": called.stats.peak_memory_bytes})));
                result.audit.push((AuditKind::ActionExecuted, json!({"target": target, "action": step.action, "outcome": called.value.outcome, "summary": called.value.summary, "approval": approved_by.map(|a| &a.id), "approvers": approved_by.map(|a| a.approvals.iter().map(|v| v.principal.clone()).collect::<Vec<_>>())})));
                if matches!(
                    called.value.outcome,
                    ActionOutcome::Executed | ActionOutcome::AlreadyInState
                ) {
                    result.acted = Some(target_label(&target));
                }
                state.status = StepStatus::Succeeded;
                state.output = Some(output::to_value(&output::RespondOutput::executed(
                    &called.value,
                )));
            }
            Err(err) => {
                intent["result"] = json!({"error": err.to_string()});
                self.inner
                    .intents
                    .insert(intent_key, serde_json::to_vec(&intent).map_err(store_err)?)?;
                result.audit.push((AuditKind::PluginInvoked, json!({"plugin": step.plugin, "digest": loaded.digest, "ok": false, "error": err.to_string()})));
                state.status = StepStatus::Failed;
                state.error = Some(err.to_string());
            }
        }
        state.finished = Some(now);
        result
            .audit
            .push((AuditKind::StepFinished, json!({"status": state.status})));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn reconcile(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        idempotency_key: String,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        // Same key: a plugin honouring it either reports what it did, or
        // that the target is already in that state. Never a second effect.
        let intent_key = key(&[run.tenant.as_str(), &idempotency_key]);
        let intent: Value = self
            .inner
            .intents
            .get(&intent_key)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(json!({}));
        let request = ActionRequest {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            idempotency_key: idempotency_key.clone(),
            target: target.clone(),
            params: step.with.clone(),
        };
        let context = CallContext {
            run_id: Some(run.id.clone()),
            step_id: Some(step.id.clone()),
            dry_run: false,
            timeout: Some(step.timeout),
        };
        match loaded.plugin.respond(&request, false, &context).await {
            Ok(called) => {
                result.audit.push((
                    AuditKind::GuardrailDecision,
                    json!({"reconciled": true, "target": target, "outcome": called.value.outcome}),
                ));
                self.finish_action(
                    run,
                    step,
                    loaded,
                    target,
                    intent,
                    intent_key,
                    Ok(called),
                    &mut result,
                    &mut state,
                    None,
                )?;
            }
            Err(err) => {
                // Unknown outcome: a human decides; no blind retry.
                let now = now_ms();
                let mut approval = new_approval(
                    run,
                    step,
                    &target,
                    &loaded.digest,
                    vec![format!("outcome unknown after a restart: {err}")],
                    now,
                );
                approval.requested_by = self.playbook_owner(&run.tenant, &run.playbook);
                result.audit.push((
                    AuditKind::ApprovalRequested,
                    json!({"approval": approval.id, "reason": "unknown outcome after restart"}),
                ));
                state.status = StepStatus::WaitingApproval;
                state.approval_id = Some(approval.id.clone());
                result.approval = Some(approval);
            }
        }
        result.state = state;
        Ok(result)
    }
}
