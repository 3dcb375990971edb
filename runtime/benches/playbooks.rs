//! Playbook and audit benchmarks (`cargo xtask plugins` first, then
//! `cargo bench -p rampart-runtime --bench playbooks`). Prints figures; not
//! a criterion harness because each measurement is one long run.
//!
//! - a 4-step playbook (2 enrichers in parallel, 1 scorer, 1 guarded
//!   responder) with the audit log on, through the library API, on a sled
//!   directory: alerts/s with `concurrency` alerts in flight, p50/p99 per alert;
//! - `verify` of a 1,000,000-record audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use rampart::audit::{AuditKey, AuditKind, AuditLog};
use rampart::executor::Executor;
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::store::{SledStore, Store};
use rampart::tenant::{Grants, TenantId};

const PLAYBOOK: &str = r#"name: bench
trigger: { alert: 'true' }
mode: autonomous
steps:
  - id: rep
    enrich: ip-reputation
  - id: rep2
    enrich: ip-reputation
  - id: risk
    score: risk-scorer
    needs: [rep, rep2]
  - id: block
    respond: edl-blocklist
    needs: [risk]
    when: 'steps.risk.score >= 50'
    target: 'alert.entities.ip[0]'
    action: block-ip
    guard: { min_confidence: 80, external_target: true }
guardrails:
  rate_limits: { block-ip: 1000000/h }
  max_targets_per_run: 1
"#;

fn plugins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(playbook_throughput());
    audit_verify();
}

async fn playbook_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let executor = Executor::new(
        RuntimeConfig::default(),
        store,
        AuditKey::from_bytes(vec![1; 32]).unwrap(),
    )
    .unwrap();
    let tenant = TenantId::new("bench").unwrap();
    executor.set_grants(&tenant, Grants::allow_all_capabilities());
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        executor
            .add_plugin(&tenant, &plugins().join(format!("{name}.toml")))
            .await
            .unwrap();
    }
    let feed =
        std::fs::read_to_string(plugins().join("../../examples/data/ipsum/ipsum.txt")).unwrap();
    let indicators = rampart::feeds::parse_ipsum("ipsum", &feed).unwrap();
    let ips: Vec<String> = indicators.iter().map(|(e, _)| e.value.clone()).collect();
    executor.store().intel_insert(&tenant, indicators).unwrap();
    executor
        .add_playbook(&tenant, "bench.yaml", PLAYBOOK)
        .unwrap();

    for concurrency in [1usize, 64] {
        let total = if concurrency == 1 { 300 } else { 3_000 };
        let started = Instant::now();
        let mut latencies = Vec::with_capacity(total);
        let mut next = 0usize;
        while next < total {
            let batch: Vec<usize> = (next..(next + concurrency).min(total)).collect();
            next += batch.len();
            let tasks: Vec<_> = batch
                .into_iter()
                .map(|i| {
                    let executor = executor.clone();
                    let tenant = tenant.clone();
                    let ip = ips[i % ips.len()].clone();
                    tokio::spawn(async move {
                        let alert = Alert {
                            id: format!("c{concurrency}-{i}"),
                            source: "edr".into(),
                            title: format!("beacon {i}"),
                            severity: Severity::High,
                            time: 1_795_756_800_000,
                            entities: vec![Entity {
                                kind: EntityKind::Ip,
                                value: ip,
                            }],
                            techniques: vec![],
                            tags: vec![],
                            raw: serde_json::json!({}),
                        };
                        let t = Instant::now();
                        executor.ingest(&tenant, &alert).await.unwrap();
                        t.elapsed()
                    })
                })
                .collect();
            for task in tasks {
                latencies.push(task.await.unwrap());
            }
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        println!(
            "4-step playbook, audit on, sled, {concurrency} in flight: {total} alerts in {elapsed:.2?} = {:.0} alerts/s; per alert p50 {:?}, p99 {:?}",
            total as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99)
        );
    }
    let report = executor.audit().verify(&tenant).unwrap();
    assert!(report.ok());
    println!(
        "  audit chain after the runs: {} records, verified",
        report.records
    );
    let _ = Arc::new(());
}

fn audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let log = AuditLog::new(
        store.db().clone(),
        AuditKey::from_bytes(vec![2; 32]).unwrap(),
    );
    let tenant = TenantId::new("bench").unwrap();
    let started = Instant::now();
    for i in 0..1_000_000u64 {
        log.append(
            &tenant,
            AuditKind::StepFinished,
            Some("run-0123456789"),
            Some("enrich"),
            None,
            serde_json::json!({"status": "succeeded", "attempts": 1, "i": i}),
        )
        .unwrap();
    }
    log.checkpoint(&tenant).unwrap();
    log.flush().unwrap();
    println!(
        "audit append: 1,000,000 records in {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let report = log.verify(&tenant).unwrap();
    let elapsed = started.elapsed();
    assert!(report.ok() && report.records == 1_000_000);
    println!(
        "audit verify: 1,000,000 records, {} checkpoints in {elapsed:.2?} (target <= 3 s)",
        report.checkpoints
    );
    let _ = Duration::ZERO;
    let _ = store.kv_usage(&rampart::store::KvNamespace {
        tenant,
        plugin: "x".into(),
    });
}
