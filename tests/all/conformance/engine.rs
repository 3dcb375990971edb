//! The executor on every backend: what the engine promises must not depend
//! on where its state lives. Real plugin components, real concurrency.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart::RuntimeConfig;
use rampart::audit::{AuditKey, AuditKind};
use rampart::executor::Executor;
use rampart::executor::approvals::ApprovalStatus;
use rampart::executor::run::{RunStatus, StepStatus};
use rampart::store::{Backend, MemoryStore, SledStore};

use crate::executor::{BAD_IP, NO_GUARDRAILS, alert, block_playbook, only_run, prepare};

fn executor_on(backend: impl Backend) -> Executor {
    Executor::new(
        RuntimeConfig::default(),
        backend,
        AuditKey::from_bytes(vec![3u8; 32]).expect("key"),
    )
    .expect("executor")
}

/// Tenant `acme` with a supervised block playbook: every run waits for one
/// approval.
async fn supervised(executor: Executor) -> (Executor, rampart::tenant::TenantId) {
    prepare(
        executor,
        &block_playbook(
            "supervised",
            "external_target: true",
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await
}

/// Per run: how many records of each kind the audit log holds.
fn audit_counts(
    executor: &Executor,
    tenant: &rampart::tenant::TenantId,
) -> std::collections::HashMap<(String, AuditKind), usize> {
    let mut counts = std::collections::HashMap::new();
    executor
        .audit()
        .read(tenant, |record, _| {
            if let Some(run) = &record.run_id {
                *counts.entry((run.clone(), record.kind)).or_insert(0) += 1;
            }
            true
        })
        .expect("read");
    counts
}

/// Twelve supervised runs; on each, four analysts approve and four deny at
/// the same instant. Exactly one decision wins; the action runs once if it
/// was an approval and never if a denial; the run ends accordingly; the
/// audit chain holds one decision per approval and verifies.
async fn racing_decisions_decide_once(executor: Executor) {
    let (executor, acme) = supervised(executor).await;
    let mut outcomes = BTreeMap::new();
    for trial in 0..12 {
        let run = only_run(&executor, &acme, &alert(&format!("race-{trial}"), BAD_IP)).await;
        assert_eq!(run.status, RunStatus::WaitingApproval, "{run:#?}");
        let approval = run.steps["act"].approval_id.clone().expect("approval");
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut votes = Vec::new();
        for analyst in 0..8 {
            let (executor, acme, approval, barrier) = (
                executor.clone(),
                acme.clone(),
                approval.clone(),
                barrier.clone(),
            );
            votes.push(tokio::spawn(async move {
                let name = format!("analyst-{analyst}");
                barrier.wait().await;
                if analyst % 2 == 0 {
                    executor
                        .approve(&acme, &approval, name.as_str(), "seen it")
                        .await
                } else {
                    executor
                        .deny(&acme, &approval, name.as_str(), "not sure")
                        .await
                }
            }));
        }
        let mut won = Vec::new();
        for vote in votes {
            if let Ok(decided) = vote.await.expect("task") {
                won.push(decided.status);
            }
        }
        assert_eq!(won.len(), 1, "trial {trial}: {won:?} decisions succeeded");
        let approved = won[0] == ApprovalStatus::Approved;
        *outcomes.entry(approved).or_insert(0) += 1;
        let run = executor.get_run(&acme, &run.id).expect("run");
        let counts = audit_counts(&executor, &acme);
        let count = |kind| counts.get(&(run.id.clone(), kind)).copied().unwrap_or(0);
        assert_eq!(
            count(AuditKind::ApprovalGranted) + count(AuditKind::ApprovalDenied),
            1,
            "trial {trial}: {counts:?}"
        );
        assert_eq!(
            count(AuditKind::ActionExecuted),
            usize::from(approved),
            "trial {trial}"
        );
        assert_eq!(run.status, RunStatus::Succeeded, "trial {trial}: {run:#?}");
        assert_eq!(
            run.steps["act"].status,
            if approved {
                StepStatus::Succeeded
            } else {
                StepStatus::Denied
            },
            "trial {trial}"
        );
    }
    assert_eq!(outcomes.values().sum::<usize>(), 12);
    assert!(executor.audit().verify(&acme).expect("verify").ok());
}

/// The same alert twice is one run; the run and the approval are listed for
/// their tenant only.
async fn ingest_is_idempotent_and_tenants_apart(executor: Executor) {
    let (executor, acme) = supervised(executor).await;
    let first = executor
        .ingest(&acme, &alert("same", BAD_IP))
        .await
        .expect("ingest");
    let again = executor
        .ingest(&acme, &alert("same", BAD_IP))
        .await
        .expect("ingest");
    assert!(again.duplicate);
    assert_eq!(first.runs, again.runs);
    assert_eq!(executor.runs(&acme).expect("runs").len(), 1);
    let globex = rampart_e2e::tenant("globex");
    assert!(executor.runs(&globex).expect("runs").is_empty());
    assert!(executor.get_run(&globex, &first.runs[0]).is_err());
    assert_eq!(
        executor
            .approvals()
            .list(Some(&acme), false)
            .expect("list")
            .len(),
        1
    );
    assert!(
        executor
            .approvals()
            .list(Some(&globex), false)
            .expect("list")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_on_memory_conforms() {
    racing_decisions_decide_once(executor_on(MemoryStore::default())).await;
    ingest_is_idempotent_and_tenants_apart(executor_on(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_on_sled_conforms() {
    racing_decisions_decide_once(executor_on(SledStore::temporary().expect("sled"))).await;
    ingest_is_idempotent_and_tenants_apart(executor_on(SledStore::temporary().expect("sled")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_engine_on_postgres_conforms() {
    racing_decisions_decide_once(executor_on(super::fresh_pg())).await;
    ingest_is_idempotent_and_tenants_apart(executor_on(super::fresh_pg())).await;
}
