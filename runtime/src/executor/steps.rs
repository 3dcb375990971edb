//! Running one enrich, score or hunt step: `when`, retries and timeouts, the plugin call, typed outputs, the deciding confidence.

use super::run::{Run, StepState, StepStatus};
use super::{Executor, ExecutorError, StepResult, retriable, retry_delay};
use crate::audit::AuditKind;
use crate::model::Enrichment;
use crate::playbook::{Expr, OnError, Playbook, Step, StepKind, Variables, output};
use crate::sandbox::{CallContext, Plugin, PluginError};
use serde_json::{Value, json};

impl Executor {
    pub(super) async fn run_step(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
    ) -> Result<StepResult, ExecutorError> {
        let now = Self::now_for(run);
        let mut state = run
            .steps
            .get(&step.id)
            .cloned()
            .unwrap_or_else(StepState::pending);
        let mut result = StepResult {
            id: step.id.clone(),
            state: state.clone(),
            audit: Vec::new(),
            approval: None,
            acted: None,
            scored: false,
        };
        // A step whose needs did not all succeed does not run.
        let blocked = step.needs.iter().any(|need| {
            run.steps
                .get(need)
                .is_some_and(|s| s.status != StepStatus::Succeeded)
        });
        if blocked {
            state.status = StepStatus::Skipped;
            state.finished = Some(now);
            state.error = Some("a step it needs did not succeed".to_owned());
            result.state = state;
            return Ok(result);
        }
        let variables = Variables::new(&run.alert, &Self::steps_json(run));
        if let Some(when) = &step.when {
            match self
                .evaluate(&run.tenant, when, &variables, Expr::eval_bool)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    state.status = StepStatus::Skipped;
                    state.finished = Some(now);
                    result.audit.push((
                        AuditKind::StepFinished,
                        json!({"status": "skipped", "when": when.source()}),
                    ));
                    result.state = state;
                    return Ok(result);
                }
                Err(err) => {
                    return Ok(self.failed(result, state, now, format!("when: {err}")));
                }
            }
        }
        let Some(loaded) = self.plugin_for(run, &step.plugin) else {
            return Ok(self.failed(
                result,
                state,
                now,
                format!(
                    "plugin `{}` (as pinned by the run) is not loaded",
                    step.plugin
                ),
            ));
        };
        match step.kind {
            StepKind::Respond => {
                self.respond_step(run, playbook, step, &variables, &loaded, result, state)
                    .await
            }
            _ => {
                let context = CallContext {
                    run_id: Some(run.id.clone()),
                    step_id: Some(step.id.clone()),
                    dry_run: run.dry_run,
                    timeout: Some(step.timeout),
                };
                let mut attempts = 0u32;
                loop {
                    attempts += 1;
                    let started = std::time::Instant::now();
                    let outcome = self
                        .call_plugin(run, playbook, step, &loaded.plugin, &context)
                        .await;
                    let (ok, stats) = match &outcome {
                        Ok((_, stats)) => (true, Some(*stats)),
                        Err(_) => (false, None),
                    };
                    result.audit.push((AuditKind::PluginInvoked, json!({
                        "plugin": step.plugin, "digest": loaded.digest, "attempt": attempts, "ok": ok,
                        "duration_us": stats.map_or(started.elapsed().as_micros() as u64, |s| s.duration.as_micros() as u64),
                        "fuel": stats.map(|s| s.fuel), "peak_memory": stats.map(|s| s.peak_memory_bytes),
                        "error": outcome.as_ref().err().map(ToString::to_string),
                    })));
                    match outcome {
                        Ok((output, _)) => {
                            state.status = StepStatus::Succeeded;
                            state.attempts = attempts;
                            state.finished = Some(Self::now_for(run));
                            result.scored = step.kind == StepKind::Score;
                            result.audit.push((
                                AuditKind::StepFinished,
                                json!({"status": "succeeded", "attempts": attempts}),
                            ));
                            state.output = Some(output);
                            result.state = state;
                            return Ok(result);
                        }
                        Err(err) => {
                            let retry = match step.on_error {
                                OnError::Retry { max, backoff }
                                    if attempts <= max && retriable(&err) =>
                                {
                                    Some(retry_delay(&err, backoff, attempts))
                                }
                                _ => None,
                            };
                            if let Some(delay) = retry {
                                if !run.dry_run {
                                    tokio::time::sleep(delay).await;
                                }
                                continue;
                            }
                            state.attempts = attempts;
                            return Ok(self.failed(
                                result,
                                state,
                                Self::now_for(run),
                                err.to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }

    pub(super) fn failed(
        &self,
        mut result: StepResult,
        mut state: StepState,
        now: i64,
        error: String,
    ) -> StepResult {
        state.status = StepStatus::Failed;
        state.finished = Some(now);
        result.audit.push((
            AuditKind::StepFinished,
            json!({"status": "failed", "error": error}),
        ));
        state.error = Some(error);
        result.state = state;
        result
    }

    pub(super) async fn call_plugin(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        plugin: &Plugin,
        context: &CallContext,
    ) -> Result<(Value, crate::sandbox::CallStats), PluginError> {
        match step.kind {
            StepKind::Enrich => {
                let called = plugin.enrich(&run.alert, context).await?;
                Ok((
                    output::to_value(&output::EnrichOutput::new(called.value)),
                    called.stats,
                ))
            }
            StepKind::Score => {
                let sources: Vec<&str> = if step.needs.is_empty() {
                    playbook
                        .steps
                        .iter()
                        .filter(|s| s.kind == StepKind::Enrich)
                        .map(|s| s.id.as_str())
                        .collect()
                } else {
                    step.needs.iter().map(String::as_str).collect()
                };
                let enrichments: Vec<Enrichment> = sources
                    .iter()
                    .filter_map(|id| {
                        output::from_value::<output::EnrichOutput>(
                            run.steps.get(*id)?.output.as_ref(),
                        )
                    })
                    .flat_map(|found| found.enrichments)
                    .collect();
                let called = plugin.score(&run.alert, &enrichments, context).await?;
                Ok((
                    output::to_value(&output::ScoreOutput::from(called.value)),
                    called.stats,
                ))
            }
            StepKind::Hunt => {
                let mut session = plugin.open_hunt_with(&step.with, context).await?;
                let events: Vec<crate::model::Event> = run
                    .alert
                    .raw
                    .get("events")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_default();
                let mut findings = session.push(&events).await?.value;
                let closed = session.close().await?;
                let stats = closed.stats;
                findings.extend(closed.value);
                Ok((output::to_value(&output::HuntOutput::new(findings)), stats))
            }
            StepKind::Respond => Err(PluginError::Unavailable(
                "respond steps go through guardrails".to_owned(),
            )),
        }
    }

    /// The confidence of the nearest score step this step (transitively) needs.
    pub(super) fn deciding_confidence(run: &Run, playbook: &Playbook, step: &Step) -> Option<u8> {
        let mut queue: Vec<&str> = step.needs.iter().map(String::as_str).collect();
        let mut seen = Vec::new();
        while let Some(id) = queue.first().copied() {
            queue.remove(0);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let Some(need) = playbook.step(id) else {
                continue;
            };
            if need.kind == StepKind::Score {
                return output::from_value::<output::ScoreOutput>(
                    run.steps.get(id)?.output.as_ref(),
                )
                .map(|score| score.confidence.min(100));
            }
            queue.extend(need.needs.iter().map(String::as_str));
        }
        None
    }
}
