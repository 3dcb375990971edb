//! Rampart is a library first. This program embeds it the way a SOC product
//! would: open a store, load plugins and a playbook, process an alert, then
//! read the run and prove the audit log intact.
//!
//! `cargo xtask plugins && cargo run -p rampart-embed-example`

use std::path::PathBuf;

use anyhow::Context;
use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::context::AssetInventory;
use rampart::executor::Executor;
use rampart::model::Alert;
use rampart::store::SledStore;
use rampart::tenant::{Grants, TenantId};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir()?;

    // 1. Storage and the audit key (kept outside the data directory).
    let store = SledStore::open(&scratch.path().join("data"))?;
    let key = AuditKey::load_or_create(
        &scratch.path().join("keys/audit.key"),
        Some(&scratch.path().join("data")),
    )?;
    let executor = Executor::new(RuntimeConfig::default(), store, key)?;

    // 2. A tenant, what it grants its plugins, and its asset inventory.
    let tenant = TenantId::new("acme")?;
    executor.set_grants(&tenant, Grants::allow_all_capabilities());
    let inventory: AssetInventory = serde_json::from_str(&std::fs::read_to_string(
        root.join("examples/inventory.json"),
    )?)?;
    executor.set_inventory(&tenant, inventory);
    let feed = std::fs::read_to_string(root.join("examples/data/ipsum/ipsum.txt"))?;
    executor
        .store()
        .intel_insert(&tenant, rampart::feeds::parse_ipsum("ipsum", &feed)?)?;

    // 3. Plugins (verified against their manifests) and a playbook.
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        let manifest = root.join(format!("target/plugins/{name}.toml"));
        executor
            .add_plugin(&tenant, &manifest)
            .await
            .with_context(|| format!("{} (run `cargo xtask plugins`)", manifest.display()))?;
    }
    let yaml = std::fs::read_to_string(root.join("examples/playbooks/ip-triage.yaml"))?;
    executor.add_playbook(&tenant, "ip-triage.yaml", &yaml)?;

    // 4. An alert in, runs out.
    let alert: Alert = serde_json::from_str(&std::fs::read_to_string(
        root.join("examples/alerts/ssh-bruteforce.json"),
    )?)?;
    let ingested = executor.ingest(&tenant, &alert).await?;
    for id in &ingested.runs {
        let run = executor.get_run(&tenant, id)?;
        println!("run {} of `{}`: {:?}", run.id, run.playbook, run.status);
        for (step, state) in &run.steps {
            let why = state
                .decision
                .as_ref()
                .map(|d| d.reasons.join("; "))
                .unwrap_or_default();
            println!("  {step:<12} {:?} {why}", state.status);
        }
    }

    // 5. The audit trail, verified.
    executor.audit().checkpoint(&tenant)?;
    let report = executor.audit().verify(&tenant)?;
    println!("audit: {} records, intact: {}", report.records, report.ok());
    anyhow::ensure!(report.ok(), "audit chain broken: {:?}", report.breach);
    Ok(())
}
