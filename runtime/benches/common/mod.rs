//! What the playbook benches share: the 4-step benchmark playbook, where
//! the built components are, and the alert they send.
#![allow(dead_code)]

use std::path::PathBuf;

use rampart::model::{Alert, Entity, EntityKind, Severity};

/// A 4-step playbook: 2 enrichers in parallel, 1 scorer, 1 guarded
/// responder under a rate limit.
pub const PLAYBOOK: &str = r#"name: bench
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

/// `target/plugins`, where `cargo xtask plugins` writes components.
pub fn plugins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

/// One high-severity beacon alert on `ip`.
pub fn bench_alert(id: String, ip: String) -> Alert {
    Alert {
        id,
        source: "edr".into(),
        title: "beacon".into(),
        severity: Severity::High,
        time: 1_795_756_800_000,
        entities: vec![Entity {
            kind: EntityKind::Ip,
            value: ip,
        }],
        techniques: vec![],
        tags: vec![],
        raw: serde_json::json!({}),
    }
}
