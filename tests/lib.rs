//! Helpers for the end-to-end tests: where the built components are, and a
//! runtime with a temporary cache.
//!
//! The components are built once per test run by `cargo xtask plugins`
//! (which `cargo xtask test` runs first).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::store::MemoryStore;
use rampart::tenant::{Capability, Grants, Limits, PluginGrant, TenantId};
use rampart::{Plugin, Runtime, RuntimeConfig};

/// `target/plugins`, where `cargo xtask plugins` writes components.
pub fn plugins_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        dir.join("risk-scorer.wasm").is_file(),
        "plugin components are missing in {}: run `cargo xtask plugins` (or `cargo xtask test`)",
        dir.display()
    );
    dir
}

/// A manifest path: `name` under target/plugins, or `fixtures/name`.
pub fn manifest(name: &str) -> PathBuf {
    plugins_dir().join(format!("{name}.toml"))
}

/// A runtime over a fresh in-memory store.
pub fn runtime() -> (Runtime, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::default());
    let runtime = Runtime::new(RuntimeConfig::default(), store.clone()).expect("runtime");
    (runtime, store)
}

/// The test tenant.
pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant id")
}

/// Grants of every capability, with `limits` as ceilings.
pub fn grants_with(limits: Option<Limits>, edit: impl FnOnce(&mut PluginGrant)) -> Grants {
    let mut grant = PluginGrant::with_capabilities(Capability::ALL);
    grant.limits = limits;
    edit(&mut grant);
    Grants {
        default: grant,
        ..Grants::default()
    }
}

/// Loads `name` (e.g. `risk-scorer` or `fixtures/hostile`).
pub async fn load(runtime: &Runtime, tenant: &TenantId, grants: &Grants, name: &str) -> Plugin {
    runtime
        .load_file(tenant, grants, &manifest(name))
        .await
        .unwrap_or_else(|err| panic!("loading {name}: {err}"))
}

/// An alert with `title` and one IP entity.
pub fn alert(title: &str) -> Alert {
    Alert {
        id: format!("test-{title}"),
        source: "test".to_owned(),
        title: title.to_owned(),
        severity: Severity::High,
        time: 1_795_756_800_000,
        entities: vec![Entity {
            kind: EntityKind::Ip,
            value: "77.239.124.102".to_owned(),
        }],
        techniques: vec!["T1110".to_owned()],
        tags: Vec::new(),
        raw: serde_json::json!({"k": "v"}),
    }
}
