//! Rampart is a library first. This program embeds it the way a SOC product
//! would, with no HTTP: open a store, create a tenant, upload plugins and
//! store a playbook through the control plane, process an alert, approve
//! the action it waits for (two analysts), then read the run and prove the
//! audit log intact. Reopening the store restores tenant, plugins, playbook.
//!
//! `cargo xtask plugins && cargo run -p rampart-embed-example`

use std::path::{Path, PathBuf};

use anyhow::Context;
use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::context::AssetInventory;
use rampart::control::{Control, NewTenant};
use rampart::executor::Executor;
use rampart::intel::formats::{self, Format};
use rampart::model::Alert;
use rampart::secrets::SecretBox;
use rampart::store::SledStore;
use rampart::tenant::{Grants, TenantId};

/// The engine and its control plane over the data directory in `scratch`.
fn open(scratch: &Path) -> anyhow::Result<Control> {
    let data = scratch.join("data");
    let store = SledStore::open(&data)?;
    // Keys are kept outside the data directory.
    let key = AuditKey::load_or_create(&scratch.join("keys/audit.key"), Some(&data))?;
    let secrets = SecretBox::open(&scratch.join("keys/master.key"), Some(&data))?;
    let executor = Executor::new(RuntimeConfig::default(), store, key)?;
    Ok(Control::open(executor, secrets)?)
}

/// Uploads the plugins as packages: verified against their manifests,
/// loaded under the tenant's grants, stored to be restored at the next open.
async fn upload_plugins(control: &Control, tenant: &TenantId, root: &Path) -> anyhow::Result<()> {
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        let manifest = root.join(format!("target/plugins/{name}.toml"));
        let read = |path: &Path| {
            std::fs::read(path)
                .with_context(|| format!("{} (run `cargo xtask plugins`)", path.display()))
        };
        let text = String::from_utf8(read(&manifest)?)?;
        let wasm = read(&manifest.with_extension("wasm"))?;
        control.packages().upload(tenant, &text, &wasm).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scratch = tempfile::tempdir()?;
    let control = open(scratch.path())?;
    let executor = control.executor().clone();

    // 1. A tenant, what it grants its plugins, its assets and threat intel.
    let record = control.tenants().create(
        NewTenant {
            id: "acme".into(),
            grants: Some(Grants::allow_all_capabilities()),
            ..NewTenant::default()
        },
        "embedder",
    )?;
    let tenant = record.id.clone();
    let mut record = control.tenants().get(&tenant)?;
    record.inventory = serde_json::from_str::<AssetInventory>(&std::fs::read_to_string(
        root.join("examples/inventory.json"),
    )?)?;
    control.tenants().put(&record)?;
    let feeds = executor.store().feeds();
    let ipsum = std::fs::read(root.join("examples/data/ipsum/ipsum.txt"))?;
    let parsed = formats::read_bytes(Format::Ipsum, "ipsum", &ipsum)?;
    let summary = feeds.import("ipsum", Format::Ipsum, parsed, false)?;
    feeds.subscribe(&tenant, ["ipsum".to_owned()].into())?;
    println!("intel: {} indicators from ipsum", summary.imported);

    // 2. Plugins (verified against their manifests) and a supervised
    //    playbook, stored: `detection-eng` put it, so it may not approve it.
    upload_plugins(&control, &tenant, &root).await?;
    let yaml = std::fs::read_to_string(root.join("examples/playbooks/supervised-block.yaml"))?;
    control
        .playbooks()
        .put(&tenant, "supervised-block", &yaml, "detection-eng")?;

    // 3. An alert in; the block waits for two analysts.
    let alert: Alert = serde_json::from_str(&std::fs::read_to_string(
        root.join("examples/alerts/ssh-bruteforce.json"),
    )?)?;
    let ingested = executor.ingest(&tenant, &alert).await?;
    let run_id = ingested.runs.first().context("the alert started no run")?;
    let pending = executor.approvals().pending(Some(&tenant))?;
    let approval = pending.first().context("the run asked no approval")?;
    println!(
        "run {run_id} waits: {} {} needs {} approver(s)",
        approval.action, approval.target.value, approval.required
    );
    let refused = executor
        .approve(&tenant, &approval.id, "detection-eng", "my own playbook")
        .await;
    println!(
        "  the playbook's owner approving: {}",
        refused
            .err()
            .map_or("accepted?!".to_owned(), |e| e.to_string())
    );
    executor
        .approve(&tenant, &approval.id, "alice", "beacon confirmed in EDR")
        .await?;
    let decided = executor
        .approve(&tenant, &approval.id, "bob", "agree, block it")
        .await?;
    println!("  alice and bob approve: {:?}", decided.status);

    let run = executor.get_run(&tenant, run_id)?;
    println!("run {} of `{}`: {:?}", run.id, run.playbook, run.status);
    for (step, state) in &run.steps {
        let why = state
            .decision
            .as_ref()
            .map(|d| d.reasons.join("; "))
            .unwrap_or_default();
        println!("  {step:<12} {:?} {why}", state.status);
    }

    // 4. The audit trail, verified.
    executor.audit().checkpoint(&tenant)?;
    let report = executor.audit().verify(&tenant)?;
    println!("audit: {} records, intact: {}", report.records, report.ok());
    anyhow::ensure!(report.ok(), "audit chain broken: {:?}", report.breach);

    // 5. Reopened, the tenant, its plugins and playbook come back.
    drop((control, executor));
    let control = open(scratch.path())?;
    control.restore().await?;
    let names: Vec<String> = control
        .executor()
        .playbooks(&tenant)
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let plugins: Vec<String> = control
        .packages()
        .list(&tenant)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    println!(
        "reopened: tenants {:?}, plugins {plugins:?}, playbooks {names:?}",
        control.tenants().list()?
    );
    anyhow::ensure!(plugins.len() == 3, "plugins not restored");
    anyhow::ensure!(names == ["supervised-block"], "playbook not restored");
    Ok(())
}
