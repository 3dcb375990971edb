//! Playbook execution through real plugins, a real sled directory and the
//! audit log: guardrails alone and combined, approvals (quorum, expiry, also
//! across a restart, binding), dry runs, idempotent ingest, dedup.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rampart::audit::{AuditKey, AuditKind};
use rampart::context::{Asset, AssetInventory};
use rampart::executor::Executor;
use rampart::executor::approvals::ApprovalStatus;
use rampart::executor::run::{RunStatus, StepStatus};
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::store::{KvNamespace, SledStore};
use rampart::tenant::TenantId;
use rampart::{RuntimeConfig, tenant::Grants};
use rampart_e2e::{manifest, tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const BAD_IP: &str = "77.239.124.102"; // listed by 10 block lists in the ipsum slice
const OTHER_BAD_IP: &str = "2.57.122.53";

fn open(dir: &Path) -> Executor {
    let store = SledStore::open(&dir.join("data")).expect("store");
    Executor::new(
        RuntimeConfig::default(),
        store,
        AuditKey::from_bytes(vec![3u8; 32]).expect("key"),
    )
    .expect("executor")
}

async fn setup(dir: &Path, playbook: &str) -> (Executor, TenantId) {
    prepare(open(dir), playbook).await
}

/// Tenant `acme` on `executor` with the block plugins, the ipsum feed, an
/// inventory and `playbook` (shared with the backend conformance suite).
pub(crate) async fn prepare(executor: Executor, playbook: &str) -> (Executor, TenantId) {
    let acme = tenant("acme");
    executor.set_grants(&acme, grants());
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        executor
            .add_plugin(&acme, &manifest(name))
            .await
            .expect("plugin");
    }
    let feed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/ipsum/ipsum.txt"
    ))
    .expect("feed");
    executor
        .store()
        .intel_insert(
            &acme,
            rampart::feeds::parse_ipsum("ipsum", &feed).expect("parse"),
        )
        .expect("intel");
    executor.set_inventory(
        &acme,
        AssetInventory {
            assets: vec![
                Asset {
                    name: "dc01.corp.example".into(),
                    ips: vec!["10.0.0.10".parse().expect("ip")],
                    tags: vec!["domain-controller".into()],
                    ..Asset::default()
                },
                Asset {
                    name: "ws-042.corp.example".into(),
                    ips: vec!["10.0.5.42".parse().expect("ip")],
                    tags: vec![],
                    ..Asset::default()
                },
                Asset {
                    name: "db-prod.corp.example".into(),
                    ips: vec!["10.0.9.9".parse().expect("ip")],
                    tags: vec!["crown-jewel".into()],
                    ..Asset::default()
                },
                // Internet-facing, with a public address the EDL may hold.
                Asset {
                    name: "vpn-gw.corp.example".into(),
                    ips: vec!["198.51.100.77".parse().expect("ip")],
                    tags: vec![],
                    ..Asset::default()
                },
            ],
        },
    );
    executor
        .add_playbook(&acme, "test.yaml", playbook)
        .expect("playbook");
    (executor, acme)
}

fn grants() -> Grants {
    Grants::allow_all_capabilities()
}

pub(crate) fn alert(id: &str, ip: &str) -> Alert {
    Alert {
        id: id.into(),
        source: "edr".into(),
        title: "Outbound beacon".into(),
        severity: Severity::High,
        time: 1_795_756_800_000,
        entities: vec![
            Entity {
                kind: EntityKind::Ip,
                value: ip.into(),
            },
            Entity {
                kind: EntityKind::Hostname,
                value: "ws-042.corp.example".into(),
            },
        ],
        techniques: vec!["T1071".into()],
        tags: vec![],
        raw: serde_json::json!({}),
    }
}

/// A three-step block playbook; `extra` is spliced into the block step's
/// guard, `guardrails` replaces the guardrails block.
pub(crate) fn block_playbook(mode: &str, guard: &str, target: &str, guardrails: &str) -> String {
    format!(
        r#"name: block
trigger: {{ alert: 'true' }}
mode: {mode}
steps:
  - id: rep
    enrich: ip-reputation
  - id: risk
    score: risk-scorer
    needs: [rep]
  - id: act
    respond: edl-blocklist
    needs: [risk]
    target: '{target}'
    action: block-ip
    with: {{ list: block }}
    guard: {{ {guard} }}
guardrails:
{guardrails}
"#
    )
}

const EXTERNAL: &str = "min_confidence: 80, external_target: true";
pub(crate) const NO_GUARDRAILS: &str = "  rate_limits: { block-ip: 100/h }";

pub(crate) fn edl_has(executor: &Executor, tenant: &TenantId, ip: &str) -> bool {
    let ns = KvNamespace {
        tenant: tenant.clone(),
        plugin: "edl-blocklist".into(),
    };
    executor
        .store()
        .kv_get(&ns, &format!("edl/block/{ip}"))
        .expect("kv")
        .is_some()
}

pub(crate) async fn only_run(
    executor: &Executor,
    tenant: &TenantId,
    alert: &Alert,
) -> rampart::executor::run::Run {
    let ingested = executor.ingest(tenant, alert).await.expect("ingest");
    assert_eq!(ingested.runs.len(), 1, "{ingested:?}");
    executor.get_run(tenant, &ingested.runs[0]).expect("run")
}

fn reasons(run: &rampart::executor::run::Run) -> String {
    run.steps["act"]
        .decision
        .as_ref()
        .map(|d| d.reasons.join(" | "))
        .unwrap_or_default()
}

#[tokio::test]
async fn autonomous_action_executes_when_every_guardrail_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "autonomous",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(
        run.steps["act"].status,
        StepStatus::Succeeded,
        "{}",
        reasons(&run)
    );
    assert_eq!(
        run.steps["act"].output.as_ref().expect("output")["outcome"],
        "executed"
    );
    assert!(edl_has(&executor, &acme, BAD_IP));
    assert!(run.verdict_at.is_some() && run.contained_at.is_some());
    let report = executor.audit().verify(&acme).expect("verify");
    assert!(report.ok(), "{report:?}");
    let mut kinds = Vec::new();
    executor
        .audit()
        .read(&acme, |record, _| {
            kinds.push(record.kind);
            true
        })
        .expect("read");
    for kind in [
        AuditKind::AlertReceived,
        AuditKind::RunStarted,
        AuditKind::PluginInvoked,
        AuditKind::GuardrailDecision,
        AuditKind::ActionExecuted,
        AuditKind::RunFinished,
    ] {
        assert!(kinds.contains(&kind), "missing {kind:?} in {kinds:?}");
    }
}

#[tokio::test]
async fn supervised_mode_alone_needs_approval() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(run.status, RunStatus::WaitingApproval);
    assert_eq!(
        reasons(&run),
        "supervised playbook: every action needs approval"
    );
    assert!(!edl_has(&executor, &acme, BAD_IP));
}

#[tokio::test]
async fn low_confidence_alone_needs_approval() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "autonomous",
            "min_confidence: 95, external_target: true",
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(
        reasons(&run),
        "confidence 90 is below the step's minimum 95"
    );
}

#[tokio::test]
async fn no_score_means_confidence_zero() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = r#"name: noscore
trigger: { alert: 'true' }
mode: autonomous
steps:
  - id: act
    respond: edl-blocklist
    target: 'alert.entities.ip[0]'
    guard: { min_confidence: 1, external_target: true }
"#;
    let (executor, acme) = setup(dir.path(), playbook).await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(
        reasons(&run),
        "no score: confidence 0 is below the step's minimum 1"
    );
}

#[tokio::test]
async fn unknown_asset_is_never_acted_on_automatically() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "autonomous",
            "min_confidence: 80",
            "\"laptop-99.corp.example\"",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(
        reasons(&run),
        "the target is not in the tenant's asset inventory"
    );
    // A known asset passes the same rule.
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "autonomous",
            "min_confidence: 80",
            "\"198.51.100.77\"",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    assert_eq!(
        run.steps["act"].status,
        StepStatus::Succeeded,
        "{}",
        reasons(&run)
    );
}

#[tokio::test]
async fn protected_assets_are_refused_even_in_autonomous_mode() {
    for (target, protected) in [
        ("DC01.corp.example.", "dc01.corp.example"), // case, trailing dot
        ("dc01", "dc01.corp.example"),               // short name vs FQDN
        ("10.0.0.10", "dc01.corp.example"),          // the asset's IP
        ("10.0.0.10", "10.0.0.0/24"),                // CIDR
        ("db-prod.corp.example", "tag:crown-jewel"), // inventory tag
        ("::ffff:10.0.0.10", "10.0.0.0/24"),         // IPv4-mapped form
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let guardrails = format!("  protected_assets: [\"{protected}\"]");
        let (executor, acme) = setup(
            dir.path(),
            &block_playbook(
                "autonomous",
                "min_confidence: 80",
                &format!("\"{target}\""),
                &guardrails,
            ),
        )
        .await;
        let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
        assert_eq!(
            run.steps["act"].status,
            StepStatus::Refused,
            "{target} vs {protected}: {}",
            reasons(&run)
        );
        assert!(reasons(&run).starts_with("protected:"), "{}", reasons(&run));
        assert!(
            executor
                .approvals()
                .list(Some(&acme), true)
                .expect("list")
                .is_empty(),
            "a refusal is not an approval"
        );
    }
}

#[tokio::test]
async fn rate_limit_holds_across_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = block_playbook(
        "autonomous",
        EXTERNAL,
        "alert.entities.ip[0]",
        "  rate_limits: { block-ip: 1/h }",
    );
    {
        let (executor, acme) = setup(dir.path(), &playbook).await;
        let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
        assert_eq!(
            run.steps["act"].status,
            StepStatus::Succeeded,
            "{}",
            reasons(&run)
        );
        let run = only_run(&executor, &acme, &alert("a2", OTHER_BAD_IP)).await;
        assert!(
            reasons(&run).contains("rate limit for `block-ip` reached"),
            "{}",
            reasons(&run)
        );
    }
    let (executor, acme) = setup(dir.path(), &playbook).await;
    let mut third = alert("a3", "62.60.130.201");
    third.title = "another".into();
    let run = only_run(&executor, &acme, &third).await;
    assert!(
        reasons(&run).contains("rate limit"),
        "after restart: {}",
        reasons(&run)
    );
}

#[tokio::test]
async fn blast_radius_limits_targets_per_run() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = r#"name: two
trigger: { alert: 'true' }
mode: autonomous
steps:
  - id: rep
    enrich: ip-reputation
  - id: risk
    score: risk-scorer
    needs: [rep]
  - id: first
    respond: edl-blocklist
    needs: [risk]
    target: 'alert.entities.ip[0]'
    guard: { min_confidence: 80, external_target: true }
  - id: second
    respond: edl-blocklist
    needs: [first]
    target: 'alert.entities.ip[1]'
    guard: { min_confidence: 80, external_target: true }
guardrails:
  max_targets_per_run: 1
"#;
    let (executor, acme) = setup(dir.path(), playbook).await;
    let mut two = alert("a1", BAD_IP);
    two.entities.push(Entity {
        kind: EntityKind::Ip,
        value: OTHER_BAD_IP.into(),
    });
    let run = only_run(&executor, &acme, &two).await;
    assert_eq!(run.steps["first"].status, StepStatus::Succeeded);
    assert_eq!(run.steps["second"].status, StepStatus::WaitingApproval);
    let why = run.steps["second"]
        .decision
        .as_ref()
        .expect("decision")
        .reasons
        .join(" | ");
    assert!(why.contains("blast radius"), "{why}");
}

#[tokio::test]
async fn failing_rules_are_all_reported_together() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            "min_confidence: 99",
            "\"laptop-99\"",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let why = reasons(&run);
    for part in [
        "supervised",
        "confidence 90 is below",
        "not in the tenant's asset inventory",
    ] {
        assert!(why.contains(part), "{part} missing from {why}");
    }
}

#[tokio::test]
async fn quorum_needs_distinct_approvers_then_executes() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            "approvers: 2, external_target: true",
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    let first = executor
        .approve(&acme, &approval_id, "alice", "seen the beacon")
        .await
        .expect("alice");
    assert_eq!(first.status, ApprovalStatus::Pending);
    let again = executor
        .approve(&acme, &approval_id, "alice", "again")
        .await
        .expect_err("same approver twice");
    assert!(again.to_string().contains("distinct approvers"), "{again}");
    assert!(!edl_has(&executor, &acme, BAD_IP));
    let err = executor
        .approve(&acme, &approval_id, "bob", "  ")
        .await
        .expect_err("reason required");
    assert!(err.to_string().contains("reason"), "{err}");
    let done = executor
        .approve(&acme, &approval_id, "bob", "agree")
        .await
        .expect("bob");
    assert_eq!(done.status, ApprovalStatus::Approved);
    assert!(edl_has(&executor, &acme, BAD_IP));
    let run = executor.get_run(&acme, &run.id).expect("run");
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    // Another tenant cannot see or touch it.
    let other = tenant("globex");
    assert!(
        executor
            .approve(&other, &approval_id, "mallory", "x")
            .await
            .is_err()
    );
    assert!(
        executor
            .approvals()
            .list(Some(&other), false)
            .expect("list")
            .is_empty()
    );
    assert!(executor.audit().verify(&acme).expect("verify").ok());
}

#[tokio::test]
async fn denial_skips_the_action() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    executor
        .deny(&acme, &approval_id, "carol", "false positive: our scanner")
        .await
        .expect("deny");
    let run = executor.get_run(&acme, &run.id).expect("run");
    assert_eq!(run.steps["act"].status, StepStatus::Denied);
    assert_eq!(run.status, RunStatus::Succeeded);
    assert!(!edl_has(&executor, &acme, BAD_IP));
    assert!(
        executor
            .approve(&acme, &approval_id, "dave", "too late")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn expired_approval_is_denied_and_cannot_be_approved() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            "approval_timeout: 300ms, external_target: true",
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = executor
        .approve(&acme, &approval_id, "alice", "ok")
        .await
        .expect_err("expired");
    assert!(err.to_string().contains("expired"), "{err}");
    let run = executor.get_run(&acme, &run.id).expect("run");
    assert_eq!(run.steps["act"].status, StepStatus::Denied);
    assert!(!edl_has(&executor, &acme, BAD_IP));
}

#[tokio::test]
async fn approvals_that_expire_while_down_are_denied_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = block_playbook(
        "supervised",
        "approval_timeout: 300ms, external_target: true",
        "alert.entities.ip[0]",
        NO_GUARDRAILS,
    );
    let (run_id, approval_id) = {
        let (executor, acme) = setup(dir.path(), &playbook).await;
        let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
        (
            run.id.clone(),
            run.steps["act"].approval_id.clone().expect("approval"),
        )
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (executor, acme) = setup(dir.path(), &playbook).await;
    executor.resume().await.expect("resume");
    let approval = executor
        .approvals()
        .get(&acme, &approval_id)
        .expect("approval");
    assert_eq!(approval.status, ApprovalStatus::Expired);
    let run = executor.get_run(&acme, &run_id).expect("run");
    assert_eq!(run.steps["act"].status, StepStatus::Denied);
    assert!(
        executor
            .approve(&acme, &approval_id, "alice", "late")
            .await
            .is_err()
    );
    assert!(executor.audit().verify(&acme).expect("verify").ok());
}

#[tokio::test]
async fn an_approval_is_bound_to_its_target_params_and_plugin() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval = executor
        .approvals()
        .get(&acme, run.steps["act"].approval_id.as_deref().expect("id"))
        .expect("approval");
    let target = Entity {
        kind: EntityKind::Ip,
        value: BAD_IP.into(),
    };
    let params = rampart::executor::approvals::params_hash(&serde_json::json!({"list": "block"}));
    assert!(
        approval
            .covers(&run.id, "act", &target, &params, &approval.plugin_digest)
            .is_ok()
    );
    let changed = Entity {
        kind: EntityKind::Ip,
        value: OTHER_BAD_IP.into(),
    };
    let err = approval
        .covers(&run.id, "act", &changed, &params, &approval.plugin_digest)
        .expect_err("other target");
    assert!(err.contains("approves target"), "{err}");
    let other_params =
        rampart::executor::approvals::params_hash(&serde_json::json!({"list": "allow"}));
    assert!(
        approval
            .covers(
                &run.id,
                "act",
                &target,
                &other_params,
                &approval.plugin_digest
            )
            .expect_err("params")
            .contains("parameters")
    );
    assert!(
        approval
            .covers(&run.id, "act", &target, &params, "0000")
            .expect_err("digest")
            .contains("plugin changed")
    );
}

/// Counts HTTP requests; the dry run must make none.
async fn counting_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = socket.read(&mut buf).await;
            let body = format!("{BAD_IP}\t9\n");
            let _ = socket
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (port, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_never_reaches_the_network_nor_touches_state() {
    let (port, hits) = counting_server().await;
    let dir = tempfile::tempdir().expect("dir");
    let executor = open(dir.path());
    let acme = tenant("acme");
    let mut grants = grants();
    grants.default.http_hosts = vec![format!("127.0.0.1:{port}")];
    grants.default.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
    grants.default.settings.insert(
        "feed_url".into(),
        format!("http://127.0.0.1:{port}/ipsum.txt"),
    );
    executor.set_grants(&acme, grants);
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        executor
            .add_plugin(&acme, &manifest(name))
            .await
            .expect("plugin");
    }
    let playbook = block_playbook("dry-run", EXTERNAL, "alert.entities.ip[0]", NO_GUARDRAILS);
    let parsed = executor
        .add_playbook(&acme, "dry.yaml", &playbook)
        .expect("playbook");
    let before = executor.audit().verify(&acme).expect("verify").records;

    let run = executor
        .dry_run(&acme, &parsed, &alert("a1", BAD_IP))
        .await
        .expect("dry run");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the dry run reached the network"
    );
    assert_eq!(
        run.steps["act"].output.as_ref().expect("output")["outcome"],
        "planned",
        "{run:#?}"
    );
    assert!(!edl_has(&executor, &acme, BAD_IP));
    let ns = KvNamespace {
        tenant: acme.clone(),
        plugin: "ip-reputation".into(),
    };
    assert_eq!(
        executor.store().kv_usage(&ns).expect("usage"),
        0,
        "dry run wrote the plugin's kv"
    );
    assert_eq!(
        executor.audit().verify(&acme).expect("verify").records,
        before,
        "dry run wrote to the audit chain"
    );
    assert!(
        executor.runs(&acme).expect("runs").is_empty(),
        "dry run persisted a run"
    );

    // The same playbook ingested for real (mode dry-run) also plans only.
    let ingested = executor
        .ingest(&acme, &alert("a2", BAD_IP))
        .await
        .expect("ingest");
    assert!(ingested.runs.len() == 1);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(!edl_has(&executor, &acme, BAD_IP));
}

#[tokio::test]
async fn ingest_is_idempotent_on_alert_id() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let first = executor
        .ingest(&acme, &alert("a1", BAD_IP))
        .await
        .expect("first");
    let again = executor
        .ingest(&acme, &alert("a1", BAD_IP))
        .await
        .expect("again");
    assert!(again.duplicate);
    assert_eq!(first.runs, again.runs);
    let mut changed = alert("a1", BAD_IP);
    changed.title = "something else".into();
    let err = executor
        .ingest(&acme, &changed)
        .await
        .expect_err("conflict");
    assert!(err.to_string().contains("different body"), "{err}");
    assert_eq!(executor.runs(&acme).expect("runs").len(), 1);
}

#[tokio::test]
async fn dedup_folds_alerts_into_the_open_run() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = block_playbook(
        "supervised",
        EXTERNAL,
        "alert.entities.ip[0]",
        NO_GUARDRAILS,
    )
    .replace(
        "mode: supervised\n",
        "mode: supervised\ndedup: { key: [alert.title, 'alert.entities.ip[0]'], window: 30m }\n",
    );
    let (executor, acme) = setup(dir.path(), &playbook).await;
    let first = executor
        .ingest(&acme, &alert("a1", BAD_IP))
        .await
        .expect("first");
    let second = executor
        .ingest(&acme, &alert("a2", BAD_IP))
        .await
        .expect("second");
    assert!(second.runs.is_empty());
    assert_eq!(second.folded_into, first.runs);
    let third = executor
        .ingest(&acme, &alert("a3", OTHER_BAD_IP))
        .await
        .expect("third");
    assert_eq!(third.runs.len(), 1, "a different key starts its own run");
    let run = executor.get_run(&acme, &first.runs[0]).expect("run");
    assert_eq!(run.folded, vec!["a2".to_owned()]);
}

#[tokio::test]
async fn measurement_compares_against_a_baseline_period() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    // Baseline: a human approves the block.
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    tokio::time::sleep(Duration::from_millis(50)).await;
    executor
        .approve(&acme, &approval_id, "alice", "confirmed")
        .await
        .expect("approve");
    let cut = rampart::executor::now_ms() + 1;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Current: the playbook now acts on its own.
    executor
        .add_playbook(
            &acme,
            "test.yaml",
            &block_playbook(
                "autonomous",
                EXTERNAL,
                "alert.entities.ip[0]",
                NO_GUARDRAILS,
            ),
        )
        .expect("replace");
    only_run(&executor, &acme, &alert("a2", OTHER_BAD_IP)).await;
    let stats = executor.measure(&acme, Some(cut)).expect("measure");
    assert_eq!(stats.len(), 1);
    let block = &stats[0];
    let baseline = block.baseline.as_ref().expect("baseline");
    assert_eq!((baseline.runs, block.current.runs), (1, 1));
    assert_eq!(baseline.closed_without_human, 0.0);
    assert_eq!(block.current.closed_without_human, 1.0);
    assert!(baseline.approval_wait_p50_ms.expect("wait") >= 50);
    assert!(block.mttc_change_pct.is_some(), "{block:?}");
}

#[tokio::test]
async fn replacing_a_playbook_never_changes_a_pending_run() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    // Version 2 blocks on another list and would need two approvers.
    let v2 = block_playbook(
        "supervised",
        "approvers: 2, external_target: true",
        "alert.entities.ip[0]",
        NO_GUARDRAILS,
    )
    .replace("with: { list: block }", "with: { list: quarantine }")
    .replace("name: block\n", "name: block\nversion: 2\n");
    executor.add_playbook(&acme, "test.yaml", &v2).expect("v2");
    let approval = executor
        .approve(&acme, &approval_id, "alice", "ok")
        .await
        .expect("approve");
    assert_eq!(
        approval.status,
        ApprovalStatus::Approved,
        "one approver, as in the version the run started with"
    );
    assert!(
        edl_has(&executor, &acme, BAD_IP),
        "executed with version 1's params (list block)"
    );
    let run = executor.get_run(&acme, &run.id).expect("run");
    assert_eq!(run.playbook_version, 1);
    assert_eq!(run.status, RunStatus::Succeeded);
}

/// A run's verdict and a hunt finding, emitted as OCSF 1.8 Detection
/// Findings, validate against the class schema built for their profiles
/// (none), and make the round trip back into an alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_verdicts_and_hunt_findings_validate_as_ocsf_detection_findings() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/ocsf/detection_finding-1.8.0.schema.json"
        ))
        .expect("schema"),
    )
    .expect("schema json");
    let validator = jsonschema::validator_for(&schema).expect("compile schema");
    let check = |doc: &serde_json::Value| {
        let errors: Vec<String> = validator
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    };

    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "autonomous",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let mut attacked = alert("ocsf-1", BAD_IP);
    attacked.techniques = vec!["T1071.001".into(), "T1105".into()];
    let run = only_run(&executor, &acme, &attacked).await;
    let doc = rampart::ocsf::run_to_ocsf(&run);
    check(&doc);
    assert_eq!(doc["unmapped"]["verdict"], "contained", "{doc:#}");
    assert_eq!(
        doc["finding_info"]["attacks"][0]["sub_technique"]["uid"],
        "T1071.001"
    );
    // Back in as an alert: same entities and techniques.
    let back = rampart::ocsf::alert_from_ocsf(&doc).expect("round trip");
    assert_eq!(back.entities, attacked.entities);
    assert!(back.techniques.contains(&"T1105".to_owned()));

    // A Sigma finding from the sandbox.
    let plugin = executor
        .add_plugin(&acme, &manifest("sigma-hunt"))
        .await
        .expect("sigma-hunt");
    let mut session = plugin
        .open_hunt(&serde_json::json!({"min_level": "low"}))
        .await
        .expect("open");
    let event = rampart::model::Event {
        id: "ev-1".into(),
        time: 1_795_700_000_000,
        data: serde_json::json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Hostname": "wks-7",
            "Image": "C:\\Windows\\System32\\vssadmin.exe", "CommandLine": "vssadmin.exe delete shadows /all /quiet",
            "ParentImage": "C:\\Windows\\System32\\cmd.exe", "User": "ACME\\bob"}),
    };
    let findings = session.push(&[event]).await.expect("push").value;
    assert!(
        !findings.is_empty(),
        "shadow copy deletion is a classic Sigma hit"
    );
    for finding in &findings {
        let doc = rampart::ocsf::finding_to_ocsf(&acme, "sigma", finding);
        check(&doc);
        assert!(doc["unmapped"]["detail"]["author"].is_string());
    }
}

/// Analyst feedback changes later verdicts and scores for the same entity:
/// a domain on a feed scores high; after an analyst marks the run a false
/// positive, the next alert about it is cleared (benign) and scores low,
/// while a different listed domain still scores high.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_changes_later_scores_for_the_same_entity() {
    let dir = tempfile::tempdir().expect("dir");
    let executor = open(dir.path());
    let acme = tenant("acme");
    executor.set_grants(&acme, grants());
    for name in ["threat-intel", "risk-scorer"] {
        executor
            .add_plugin(&acme, &manifest(name))
            .await
            .expect("plugin");
    }
    let bundle = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/intel/stix/apt1.json"
    ))
    .expect("stix");
    let feeds = executor.store().feeds();
    feeds
        .import(
            "apt1",
            rampart::intel::formats::Format::Stix,
            rampart::intel::formats::stix(&bundle),
            false,
        )
        .expect("import");
    feeds
        .subscribe(&acme, ["apt1".to_owned()].into())
        .expect("subscribe");
    let playbook = "name: intel\ntrigger: { alert: 'true' }\nmode: autonomous\nsteps:\n  - id: intel\n    enrich: threat-intel\n  - id: risk\n    score: risk-scorer\n    needs: [intel]\n";
    executor
        .add_playbook(&acme, "intel.yaml", playbook)
        .expect("playbook");
    let about = |id: &str, domain: &str| Alert {
        id: id.into(),
        source: "proxy".into(),
        title: "Connection to a listed domain".into(),
        severity: Severity::Medium,
        time: rampart::executor::now_ms(),
        entities: vec![Entity {
            kind: EntityKind::Domain,
            value: domain.into(),
        }],
        techniques: vec![],
        tags: vec![],
        raw: serde_json::json!({}),
    };
    let risk = |run: &rampart::executor::run::Run| {
        run.steps["risk"].output.as_ref().expect("scored")["risk"]
            .as_u64()
            .expect("risk")
    };
    let verdict = |run: &rampart::executor::run::Run| {
        run.steps["intel"].output.as_ref().expect("enriched")["enrichments"][0]["verdict"].clone()
    };
    let first = only_run(&executor, &acme, &about("fb-1", "mail.hugesoft.org")).await;
    assert_eq!(verdict(&first), "malicious");
    let before = risk(&first);
    executor
        .feedback(
            &acme,
            &first.id,
            rampart::model::FeedbackLabel::FalsePositive,
            "analyst@acme",
            "sinkholed, harmless now",
        )
        .expect("feedback");
    let second = only_run(&executor, &acme, &about("fb-2", "mail.hugesoft.org")).await;
    assert_eq!(verdict(&second), "benign", "{second:#?}");
    let after = risk(&second);
    assert!(after < before, "risk {before} → {after}");
    // Feedback is about that entity only.
    let other = only_run(&executor, &acme, &about("fb-3", "msnhome.org")).await;
    assert_eq!(verdict(&other), "malicious");
    assert_eq!(risk(&other), before);
}

/// The context enrichers report what the tenant imported (the example CSVs:
/// the Mordor lab's hosts and accounts) and the scorer weighs it: an LSASS
/// access by a privileged account without MFA on a high-criticality
/// workstation scores far above the same event at a tenant that knows
/// neither. A true-positive label then raises the next score about the same
/// entities (the scorer's memory term).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_and_memory_drive_the_risk_formula() {
    let dir = tempfile::tempdir().expect("dir");
    let executor = open(dir.path());
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/context");
    let read = |name: &str| std::fs::read_to_string(format!("{examples}/{name}")).expect(name);
    let acme = tenant("acme");
    let globex = tenant("globex");
    executor.set_inventory(
        &acme,
        AssetInventory::from_csv(&read("assets.csv")).expect("assets"),
    );
    executor.set_identities(
        &acme,
        rampart::context::IdentityDirectory::from_csv(&read("users.csv")).expect("users"),
    );
    let playbook = "name: context\ntrigger: { alert: 'true' }\nmode: autonomous\nsteps:\n  - id: asset\n    enrich: asset-context\n  - id: who\n    enrich: identity-context\n  - id: risk\n    score: risk-scorer\n    needs: [asset, who]\n";
    for t in [&acme, &globex] {
        executor.set_grants(t, grants());
        for name in ["asset-context", "identity-context", "risk-scorer"] {
            executor
                .add_plugin(t, &manifest(name))
                .await
                .expect("plugin");
        }
        executor
            .add_playbook(t, "context.yaml", playbook)
            .expect("playbook");
    }
    // A real event: Outflank-Dumpert opening lsass.exe (Mordor, T1003.001).
    let events = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events/mordor-lsass-dumps.jsonl"
    ))
    .expect("events");
    let event: serde_json::Value = events
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|e| {
            e["EventID"] == 4663
                && e["ObjectName"]
                    .as_str()
                    .is_some_and(|o| o.ends_with("lsass.exe"))
        })
        .expect("an lsass access");
    let lsass = |id: &str| Alert {
        id: id.into(),
        source: "windows-security".into(),
        title: "LSASS memory access".into(),
        severity: Severity::High,
        time: rampart::executor::now_ms(),
        entities: vec![
            Entity {
                kind: EntityKind::Hostname,
                value: event["Hostname"].as_str().expect("host").into(),
            },
            Entity {
                kind: EntityKind::User,
                value: format!(
                    "{}\\{}",
                    event["SubjectDomainName"].as_str().expect("domain"),
                    event["SubjectUserName"].as_str().expect("user")
                ),
            },
        ],
        techniques: vec!["T1003.001".into()],
        tags: vec![],
        raw: event.clone(),
    };
    let step =
        |run: &rampart::executor::run::Run, id: &str| run.steps[id].output.clone().expect("output");
    let risk =
        |run: &rampart::executor::run::Run| step(run, "risk")["risk"].as_u64().expect("risk");

    let known = only_run(&executor, &acme, &lsass("ctx-1")).await;
    let asset = &step(&known, "asset")["enrichments"][0];
    assert_eq!(asset["data"]["asset"], "WORKSTATION5.theshire.local");
    assert_eq!(asset["data"]["owner"], "Finance");
    assert!(
        asset["tags"]
            .as_array()
            .expect("tags")
            .contains(&"criticality:high".into())
    );
    let who = &step(&known, "who")["enrichments"][0];
    assert_eq!(who["data"]["user"], "wardog");
    let tags = who["tags"].as_array().expect("tags");
    assert!(
        tags.contains(&"privileged".into()) && tags.contains(&"no-mfa".into()),
        "{who}"
    );
    // 45 (high) + 0.6 × 20 (asset) + 15 (privileged) + 0.9 × 15 (credential access)
    assert_eq!(risk(&known), 86, "{:#}", step(&known, "risk"));

    let stranger = only_run(&executor, &globex, &lsass("ctx-1")).await;
    assert_eq!(
        step(&stranger, "asset")["enrichments"],
        serde_json::json!([])
    );
    assert_eq!(
        step(&stranger, "who")["enrichments"][0]["tags"],
        serde_json::json!(["unknown-identity"]),
        "globex imported no directory: acme's people are not visible"
    );
    assert_eq!(risk(&stranger), 59, "45 + 14 (tactic) only");

    executor
        .feedback(
            &acme,
            &known.id,
            rampart::model::FeedbackLabel::TruePositive,
            "analyst@acme",
            "confirmed credential theft",
        )
        .expect("feedback");
    let again = only_run(&executor, &acme, &lsass("ctx-2")).await;
    assert_eq!(risk(&again), 96, "+ ½ × 20 for one confirmed true positive");
    assert!(
        step(&again, "risk")["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.starts_with("memory:"))),
        "{:#}",
        step(&again, "risk")
    );
    // globex's scores do not move with acme's feedback.
    let stranger_again = only_run(&executor, &globex, &lsass("ctx-2")).await;
    assert_eq!(risk(&stranger_again), 59);
}

/// People are known to the tenant through its identity directory: a
/// suspension of a directory user passes the "known target" rule, one of an
/// account nobody imported waits for a human and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_known_from_the_identity_directory() {
    let dir = tempfile::tempdir().expect("dir");
    let executor = open(dir.path());
    let acme = tenant("acme");
    executor.set_grants(&acme, grants());
    executor.set_identities(
        &acme,
        rampart::context::IdentityDirectory::from_csv("user,email\njdoe,jdoe@corp.example\n")
            .expect("users"),
    );
    executor
        .add_plugin(&acme, &manifest("idp-suspend"))
        .await
        .expect("plugin");
    let playbook = "name: suspend\ntrigger: { alert: 'true' }\nmode: autonomous\nsteps:\n  - id: act\n    respond: idp-suspend\n    target: '{\"kind\": \"user\", \"value\": alert.entities.user[0]}'\n    action: suspend-user\n    guard: { min_confidence: 0 }\n";
    executor
        .add_playbook(&acme, "suspend.yaml", playbook)
        .expect("playbook");
    let about = |id: &str, user: &str| Alert {
        id: id.into(),
        source: "idp".into(),
        title: "Risky sign-in".into(),
        severity: Severity::High,
        time: rampart::executor::now_ms(),
        entities: vec![Entity {
            kind: EntityKind::User,
            value: user.into(),
        }],
        techniques: vec![],
        tags: vec![],
        raw: serde_json::json!({}),
    };
    let known = only_run(&executor, &acme, &about("u1", "CORP\\jdoe")).await;
    assert_eq!(reasons(&known), "all guardrails passed");
    let stranger = only_run(&executor, &acme, &about("u2", "mallory")).await;
    assert_eq!(
        reasons(&stranger),
        "the target is not in the tenant's identity directory"
    );
}

/// One `apply` for every path: an approved action's containment time is
/// its step's finish time, as in a run that acted on its own.
#[tokio::test]
async fn an_approved_action_is_applied_like_an_automatic_one() {
    let dir = tempfile::tempdir().expect("dir");
    let (executor, acme) = setup(
        dir.path(),
        &block_playbook(
            "supervised",
            EXTERNAL,
            "alert.entities.ip[0]",
            NO_GUARDRAILS,
        ),
    )
    .await;
    let run = only_run(&executor, &acme, &alert("a1", BAD_IP)).await;
    let approval_id = run.steps["act"].approval_id.clone().expect("approval");
    tokio::time::sleep(Duration::from_millis(20)).await;
    executor
        .approve(&acme, &approval_id, "alice", "confirmed")
        .await
        .expect("approve");
    let run = executor.get_run(&acme, &run.id).expect("run");
    let act = &run.steps["act"];
    assert_eq!(act.status, rampart::executor::run::StepStatus::Succeeded);
    assert_eq!(run.contained_at, act.finished, "{run:?}");
    assert_eq!(run.acted.len(), 1);
    let mut actors = Vec::new();
    executor
        .audit()
        .read_after(&acme, 0, |record, _| {
            if record.kind == rampart::audit::AuditKind::ActionExecuted {
                actors.push(record.actor.clone());
            }
            true
        })
        .expect("records");
    assert_eq!(actors, vec![Some("alice".to_owned())]);
}
