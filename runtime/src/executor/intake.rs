//! Intake: an alert made durable once (duplicates answered from the first), triggers evaluated where they cannot stall other tenants, dedup folds, new runs.

use super::run::{Run, RunStatus, StepState};
use super::{
    Executor, ExecutorError, Ingested, fingerprint, key, queue, random_id, read_lock, slots,
    store_err,
};
use crate::audit::AuditKind;
use crate::model::{Alert, now_ms};
use crate::playbook::{Expr, Mode, Playbook, Variables};
use crate::tenant::TenantId;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

impl Executor {
    /// Accepts an alert for `tenant` and waits until its runs finish or
    /// wait for a human: [`Executor::accept`], then [`Executor::settle`].
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        alert: &Alert,
    ) -> Result<Ingested, ExecutorError> {
        let ingested = self.accept(tenant, alert).await?;
        self.settle(tenant, &ingested.runs, None).await?;
        Ok(ingested)
    }

    /// Accepts an alert for `tenant`: records it, creates a run per
    /// matching playbook (or folds it into a recent run by dedup), makes
    /// all of it durable (flushed) and queues the runs for the workers.
    /// Returns once the alert is accepted, before its runs have run; a
    /// repeated alert (same id and body) is answered from the first.
    pub async fn accept(
        &self,
        tenant: &TenantId,
        alert: &Alert,
    ) -> Result<Ingested, ExecutorError> {
        let problems = alert.problems();
        if !problems.is_empty() {
            return Err(ExecutorError::InvalidAlert {
                id: alert.id.clone(),
                problems,
            });
        }
        let intake = self.cpu_slot(tenant).await;
        let body = serde_json::to_vec(alert).map_err(store_err)?;
        let body_hash = hex::encode(Sha256::digest(&body));
        let alert_key = key(&[tenant.as_str(), &alert.id]);
        if let Some(previous) = self.inner.alerts.get(&alert_key)? {
            let previous: Value = serde_json::from_slice(&previous).map_err(store_err)?;
            if previous["sha256"] != json!(body_hash) {
                return Err(ExecutorError::AlertConflict {
                    id: alert.id.clone(),
                });
            }
            return self.answer_repeat(tenant, &previous);
        }
        self.inner.audit.append(tenant, AuditKind::AlertReceived, None, None, None, json!({"alert_id": alert.id, "source": alert.source, "title": alert.title, "sha256": body_hash}))?;
        for entity in &alert.entities {
            self.inner
                .store
                .memory_record_sighting(tenant, entity, alert.time)?;
        }

        let mut started = Vec::new();
        let mut planned = Vec::new();
        let mut folded_into = Vec::new();
        let mut playbooks = self.playbooks(tenant);
        playbooks.sort_by(|a, b| a.name.cmp(&b.name));
        let now = now_ms();
        for playbook in playbooks {
            if !self.playbook_enabled(tenant, &playbook.name) {
                continue;
            }
            let variables = Variables::new(alert, &json!({}));
            match self
                .evaluate(tenant, &playbook.trigger, &variables, Expr::eval_bool)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    self.inner.audit.append(tenant, AuditKind::GuardrailDecision, None, None, None, json!({"playbook": playbook.name, "alert_id": alert.id, "trigger_error": err.to_string()}))?;
                    continue;
                }
            }
            if playbook.mode == Mode::DryRun {
                // Plans only: kept for viewing, but it touches no dedup,
                // rate limit, memory or audit chain.
                let run = self.dry_run(tenant, &playbook, alert).await?;
                self.inner.runs.insert(
                    key(&[tenant.as_str(), &run.id]),
                    serde_json::to_vec(&run).map_err(store_err)?,
                )?;
                self.index_run(&run)?;
                planned.push(run.id);
                continue;
            }
            if let Some(existing) = self.dedup_fold(tenant, &playbook, alert, &variables, now)? {
                folded_into.push(existing);
                continue;
            }
            let run = self.new_run(tenant, &playbook, alert, false, now);
            self.save(&run)?;
            if let Some(dedup) = &playbook.dedup
                && let Some(fingerprint) = fingerprint(&playbook, &dedup.key, &variables)
            {
                let expires = now + i64::try_from(dedup.window.as_millis()).unwrap_or(i64::MAX);
                self.inner.dedup.insert(
                    key(&[tenant.as_str(), &playbook.name, &fingerprint]),
                    serde_json::to_vec(&json!({"run": run.id, "expires": expires}))
                        .map_err(store_err)?,
                )?;
            }
            self.audit_append(&run, AuditKind::RunStarted, None, None, json!({"playbook": playbook.name, "version": playbook.version, "sha256": playbook.sha256, "plugins": run.plugins, "mode": playbook.mode}))?;
            started.push(run.id.clone());
        }
        let all_runs: Vec<String> = started.iter().chain(&planned).cloned().collect();
        let record = StoredAlert {
            sha256: &body_hash,
            runs: &all_runs,
            folded_into: &folded_into,
            received: now,
        };
        // Written only if no other intake wrote it meanwhile (on another
        // node sharing the store: this node's intakes of one tenant take
        // turns): the first one wins, the other's runs end unacted.
        if let Err(conflict) = self.inner.alerts.compare_and_swap(
            &alert_key,
            None::<&[u8]>,
            Some(record.with_alert(&body).map_err(store_err)?),
        )? {
            drop(intake);
            for id in &started {
                let mut run = self.get_run(tenant, id)?;
                self.abandon(&mut run, "the same alert was accepted at the same moment by another intake (another node): its runs act, these do not")?;
            }
            self.commit().await?;
            let previous: Value = conflict
                .current
                .as_deref()
                .map(serde_json::from_slice)
                .transpose()
                .map_err(store_err)?
                .unwrap_or(Value::Null);
            if previous["sha256"] != json!(body_hash) {
                return Err(ExecutorError::AlertConflict {
                    id: alert.id.clone(),
                });
            }
            return self.answer_repeat(tenant, &previous);
        }
        drop(intake);
        // Accepted: flushed before anything acts on it.
        self.commit().await?;
        crate::crashpoint::reached("after-accept");
        for id in &started {
            self.enqueue(queue::Work::Run {
                tenant: tenant.clone(),
                run: id.clone(),
            })?;
        }
        Ok(Ingested {
            runs: all_runs,
            folded_into,
            duplicate: false,
        })
    }

    /// The answer to an alert received before: its runs, and those of them
    /// still running queued again — the node that accepted it may have died
    /// before queueing them (a queued one is not added twice; a redelivered
    /// one whose run is done is a no-op).
    fn answer_repeat(
        &self,
        tenant: &TenantId,
        previous: &Value,
    ) -> Result<Ingested, ExecutorError> {
        let runs: Vec<String> =
            serde_json::from_value(previous["runs"].clone()).unwrap_or_default();
        let folded_into =
            serde_json::from_value(previous["folded_into"].clone()).unwrap_or_default();
        for id in &runs {
            if self
                .get_run(tenant, id)
                .is_ok_and(|run| run.status == RunStatus::Running)
            {
                self.enqueue(queue::Work::Run {
                    tenant: tenant.clone(),
                    run: id.clone(),
                })?;
            }
        }
        Ok(Ingested {
            runs,
            folded_into,
            duplicate: true,
        })
    }

    /// Evaluates `expr` with `eval` (`Expr::eval_bool`, `Expr::eval_json`);
    /// a costly one runs under the tenant's CPU share on the call pool, off
    /// the async workers.
    pub(super) async fn evaluate<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        expr: &crate::playbook::Expr,
        variables: &Variables,
        eval: fn(&crate::playbook::Expr, &Variables) -> Result<T, crate::playbook::ExprError>,
    ) -> Result<T, crate::playbook::ExprError> {
        if !expr.costly(variables) {
            return eval(expr, variables);
        }
        let (work_expr, work_vars) = (expr.clone(), variables.clone());
        self.inner
            .runtime
            .run_heavy(tenant, move || eval(&work_expr, &work_vars))
            .await
            .unwrap_or_else(|err| {
                Err(crate::playbook::ExprError::Eval {
                    source_text: expr.source().to_owned(),
                    message: err.to_string(),
                })
            })
    }

    /// Waits for one of the CPU slots for `tenant` (see `Inner::cpu_slots`).
    pub(super) async fn cpu_slot(&self, tenant: &TenantId) -> slots::CpuSlot {
        self.inner.cpu_slots.acquire(tenant).await
    }

    pub(super) fn dedup_fold(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
        variables: &Variables,
        now: i64,
    ) -> Result<Option<String>, ExecutorError> {
        let Some(dedup) = &playbook.dedup else {
            return Ok(None);
        };
        let Some(fingerprint) = fingerprint(playbook, &dedup.key, variables) else {
            return Ok(None);
        };
        let dedup_key = key(&[tenant.as_str(), &playbook.name, &fingerprint]);
        let Some(found) = self.inner.dedup.get(&dedup_key)? else {
            return Ok(None);
        };
        let found: Value = serde_json::from_slice(&found).map_err(store_err)?;
        if found["expires"].as_i64().unwrap_or(0) <= now {
            return Ok(None);
        }
        let Some(run_id) = found["run"].as_str() else {
            return Ok(None);
        };
        let mut run = self.get_run(tenant, run_id)?;
        run.folded.push(alert.id.clone());
        self.inner.tally.folded(&run, 1);
        self.save(&run)?;
        self.audit_append(
            &run,
            AuditKind::AlertFolded,
            None,
            None,
            json!({"alert_id": alert.id, "fingerprint": fingerprint}),
        )?;
        Ok(Some(run.id))
    }

    pub(super) fn new_run(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
        dry_run: bool,
        now: i64,
    ) -> Run {
        let current = read_lock(&self.inner.current);
        let plugins = playbook
            .steps
            .iter()
            .filter_map(|step| {
                current
                    .get(&(tenant.clone(), step.plugin.clone()))
                    .map(|digest| (step.plugin.clone(), digest.clone()))
            })
            .collect();
        Run {
            id: random_id(if dry_run { "dry" } else { "run" }),
            tenant: tenant.clone(),
            playbook: playbook.name.clone(),
            playbook_version: playbook.version,
            playbook_sha256: playbook.sha256.clone(),
            plugins,
            mode: if dry_run { Mode::DryRun } else { playbook.mode },
            dry_run: dry_run || playbook.mode == Mode::DryRun,
            alert: alert.clone(),
            folded: Vec::new(),
            status: RunStatus::Running,
            steps: playbook
                .steps
                .iter()
                .map(|step| (step.id.clone(), StepState::pending()))
                .collect(),
            acted: Vec::new(),
            created: now,
            verdict_at: None,
            contained_at: None,
            finished: None,
            feedback: Vec::new(),
        }
    }
}

/// An alert's record as intake writes it (read back as
/// [`super::alerts::AlertRecord`]).
#[derive(serde::Serialize)]
struct StoredAlert<'a> {
    sha256: &'a str,
    runs: &'a [String],
    folded_into: &'a [String],
    received: i64,
}

impl StoredAlert<'_> {
    /// The record's JSON with `"alert"` set to `body` — the alert as
    /// serialized for its hash, spliced in as it is: neither parsed nor
    /// encoded a second time for every accepted alert.
    fn with_alert(&self, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
        let rest = serde_json::to_vec(self)?;
        let mut record = Vec::with_capacity(body.len() + rest.len() + 10);
        record.extend_from_slice(b"{\"alert\":");
        record.extend_from_slice(body);
        record.push(b',');
        // `rest` is `{"sha256":…}`: its fields follow the alert's.
        record.extend_from_slice(rest.get(1..).unwrap_or(b"}"));
        Ok(record)
    }
}
