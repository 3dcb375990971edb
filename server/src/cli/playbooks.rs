//! `rampart playbook check`, `rampart run`, `rampart replay`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rampart::audit::AuditKey;
use rampart::context::AssetInventory;
use rampart::executor::Executor;
use rampart::executor::run::{Run, StepStatus};
use rampart::manifest::PluginKind;
use rampart::model::Alert;
use rampart::playbook::output::{EnrichOutput, ScoreOutput, from_value, variant_name};
use rampart::store::SledStore;
use rampart::tenant::{Grants, TenantId};
use rampart::{RuntimeConfig, playbook};
use serde_json::json;

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Validate a playbook: every error with line, column and a hint.
    Check {
        /// The playbook YAML.
        file: PathBuf,
        /// Directory of plugin manifests the playbook may use.
        #[arg(long, default_value = "target/plugins")]
        plugins: PathBuf,
    },
    /// Print the JSON Schema of the playbook format.
    Schema,
}

/// Options shared by `run` and `replay`.
#[derive(Debug, Args)]
pub struct Setup {
    /// The playbook YAML.
    #[arg(long)]
    playbook: PathBuf,
    /// Directory of plugin manifests (every `*.toml` is loaded).
    #[arg(long, default_value = "target/plugins")]
    plugins: PathBuf,
    /// Tenant to run as.
    #[arg(long, default_value = "local")]
    tenant: String,
    /// Asset inventory (JSON: {"assets": [{"name", "ips", "tags"}]}).
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// Load an ipsum-format feed into the intel index.
    #[arg(long = "intel-ipsum", value_name = "FILE")]
    intel_ipsum: Option<PathBuf>,
    /// A plugin setting, KEY=VALUE (repeatable; for every plugin).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Allow plugins HTTP to this host[:port] or *.domain (repeatable).
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Allow HTTP to resolve into this internal range (repeatable).
    #[arg(long = "allow-private", value_name = "CIDR")]
    allow_private: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    setup: Setup,
    /// The alert JSON.
    #[arg(long, required_unless_present = "alerts")]
    alert: Option<PathBuf>,
    /// Alerts, one JSON object per line; prints one JSON line per alert as
    /// soon as it is accepted and processed.
    #[arg(long, conflicts_with = "alert")]
    alerts: Option<PathBuf>,
    /// Data directory (sled). Locked while in use.
    #[arg(long, default_value = "rampart-data")]
    data: PathBuf,
    /// Audit checkpoint key, outside the data directory (created if missing).
    #[arg(long, env = "RAMPART_AUDIT_KEY", default_value = "rampart-audit.key")]
    audit_key: PathBuf,
    /// Continue interrupted runs in the data directory before this alert.
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    setup: Setup,
    /// Alerts, one JSON object per line.
    #[arg(long)]
    alerts: PathBuf,
}

fn catalog(dir: &Path) -> Result<BTreeMap<String, PluginKind>, Failure> {
    Ok(manifests(dir)?
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let manifest = rampart::manifest::parse(&path.display().to_string(), &text).ok()?;
            Some((manifest.name, manifest.kind))
        })
        .collect())
}

fn manifests(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|err| {
        Failure::usage(format!(
            "cannot read plugin directory {}: {err} (run `cargo xtask plugins`?)",
            dir.display()
        ))
    })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    Ok(found)
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|err| Failure::usage(format!("cannot read {}: {err}", path.display())))
}

pub fn check(command: PlaybookCommand) -> Result<(), Failure> {
    let (file, plugins) = match command {
        PlaybookCommand::Check { file, plugins } => (file, plugins),
        PlaybookCommand::Schema => {
            print(&playbook::json_schema());
            return Ok(());
        }
    };
    let text = read_text(&file)?;
    match playbook::parse(&file.display().to_string(), &text, &catalog(&plugins)?) {
        Ok(parsed) => {
            let steps: Vec<String> = parsed.steps.iter().map(|s| s.id.clone()).collect();
            println!(
                "{}: ok — playbook `{}` v{}, mode {:?}, steps in order: {}",
                file.display(),
                parsed.name,
                parsed.version,
                parsed.mode,
                steps.join(" → ")
            );
            Ok(())
        }
        Err(err) => Err(Failure::usage(err.to_string())),
    }
}

async fn executor(
    setup: &Setup,
    store: SledStore,
    key: AuditKey,
) -> Result<(Executor, TenantId, std::sync::Arc<playbook::Playbook>), Failure> {
    let tenant =
        TenantId::new(setup.tenant.clone()).map_err(|err| Failure::usage(err.to_string()))?;
    let executor = Executor::new(RuntimeConfig::default(), store, key)
        .map_err(|err| Failure::load(err.to_string()))?;
    let mut grants = Grants::allow_all_capabilities();
    for entry in &setup.settings {
        let (k, v) = entry
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--setting `{entry}` is not KEY=VALUE")))?;
        grants.default.settings.insert(k.to_owned(), v.to_owned());
    }
    grants.default.http_hosts = setup.allow_http.clone();
    for cidr in &setup.allow_private {
        grants.default.allow_private.push(cidr.parse().map_err(|_| {
            Failure::usage(format!("--allow-private `{cidr}` is not a CIDR range"))
        })?);
    }
    executor.set_grants(&tenant, grants);
    for manifest in manifests(&setup.plugins)? {
        executor
            .add_plugin(&tenant, &manifest)
            .await
            .map_err(|err| Failure::load(format!("{}: {err}", manifest.display())))?;
    }
    if let Some(path) = &setup.inventory {
        let inventory: AssetInventory = serde_json::from_str(&read_text(path)?)
            .map_err(|err| Failure::usage(format!("{}: {err}", path.display())))?;
        executor.set_inventory(&tenant, inventory);
    }
    if let Some(path) = &setup.intel_ipsum {
        let indicators = rampart::feeds::parse_ipsum("ipsum", &read_text(path)?)
            .map_err(|err| Failure::usage(format!("{}: {err}", path.display())))?;
        executor
            .store()
            .intel_insert(&tenant, indicators)
            .map_err(|err| Failure::usage(err.to_string()))?;
    }
    let text = read_text(&setup.playbook)?;
    let parsed = executor
        .add_playbook(&tenant, &setup.playbook.display().to_string(), &text)
        .map_err(|err| Failure::usage(err.to_string()))?;
    Ok((executor, tenant, parsed))
}

fn parse_alert(text: &str, origin: &str) -> Result<Alert, Failure> {
    serde_json::from_str(text)
        .map_err(|err| Failure::usage(format!("{origin}: not a valid alert: {err}")))
}

pub async fn run(args: RunArgs) -> Result<(), Failure> {
    let key = AuditKey::load_or_create(&args.audit_key, Some(&args.data))
        .map_err(|err| Failure::usage(err.to_string()))?;
    let store = SledStore::open(&args.data).map_err(|err| Failure::load(err.to_string()))?;
    let (executor, tenant, _) = executor(&args.setup, store, key).await?;
    if args.resume {
        let resumed = executor
            .resume()
            .await
            .map_err(|err| Failure::call(err.to_string()))?;
        if !resumed.is_empty() {
            eprintln!("resumed {} interrupted run(s)", resumed.len());
        }
    }
    if let Some(path) = &args.alerts {
        let text = read_text(path)?;
        for (index, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let alert = parse_alert(line, &format!("{}:{}", path.display(), index + 1))?;
            let ingested = executor
                .ingest(&tenant, &alert)
                .await
                .map_err(|err| Failure::call(err.to_string()))?;
            let runs: Vec<Run> = ingested
                .runs
                .iter()
                .filter_map(|id| executor.get_run(&tenant, id).ok())
                .collect();
            let statuses: Vec<_> = runs.iter().map(|run| run.status).collect();
            let errors: Vec<String> = runs
                .iter()
                .flat_map(|run| {
                    run.steps
                        .iter()
                        .filter_map(|(id, step)| step.error.as_ref().map(|e| format!("{id}: {e}")))
                })
                .collect();
            println_flush(
                &json!({"alert": alert.id, "duplicate": ingested.duplicate, "runs": ingested.runs, "statuses": statuses, "errors": errors}),
            );
        }
        executor
            .audit()
            .checkpoint(&tenant)
            .map_err(|err| Failure::call(err.to_string()))?;
        executor
            .audit()
            .flush()
            .map_err(|err| Failure::call(err.to_string()))?;
        return Ok(());
    }
    let Some(path) = &args.alert else {
        return Err(Failure::usage("give --alert FILE or --alerts FILE.jsonl"));
    };
    let alert = parse_alert(&read_text(path)?, &path.display().to_string())?;
    let ingested = executor
        .ingest(&tenant, &alert)
        .await
        .map_err(|err| Failure::call(err.to_string()))?;
    let mut runs = Vec::new();
    for id in ingested.runs.iter().chain(&ingested.folded_into) {
        runs.push(
            executor
                .get_run(&tenant, id)
                .map_err(|err| Failure::call(err.to_string()))?,
        );
    }
    let pending = executor
        .approvals()
        .list(Some(&tenant), true)
        .map_err(|err| Failure::call(err.to_string()))?;
    executor
        .audit()
        .checkpoint(&tenant)
        .map_err(|err| Failure::call(err.to_string()))?;
    executor
        .audit()
        .flush()
        .map_err(|err| Failure::call(err.to_string()))?;
    print(
        &json!({"alert": alert.id, "duplicate": ingested.duplicate, "folded_into": ingested.folded_into, "runs": runs, "pending_approvals": pending}),
    );
    Ok(())
}

fn println_flush(value: &serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn print(value: &serde_json::Value) {
    super::print_json(value);
}

pub async fn replay(args: ReplayArgs) -> Result<(), Failure> {
    let file = std::fs::File::open(&args.alerts)
        .map_err(|err| Failure::usage(format!("cannot read {}: {err}", args.alerts.display())))?;
    let lines: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|err| Failure::usage(err.to_string()))?;
    let store = SledStore::temporary().map_err(|err| Failure::load(err.to_string()))?;
    let mut key = vec![0u8; 32];
    let _ = getrandom::fill(&mut key);
    let key = AuditKey::from_bytes(key).map_err(|err| Failure::usage(err.to_string()))?;
    let (executor, tenant, parsed) = executor(&args.setup, store, key).await?;
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} alerts {elapsed} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut summary: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    let mut risk_bands: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut actions: BTreeMap<String, u64> = BTreeMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut run_statuses: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failures: Vec<serde_json::Value> = Vec::new();
    let action_of: BTreeMap<&str, &str> = parsed
        .steps
        .iter()
        .filter(|step| !step.action.is_empty())
        .map(|step| (step.id.as_str(), step.action.as_str()))
        .collect();
    let mut rows = Vec::new();
    let mut bad_lines = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        bar.inc(1);
        if line.trim().is_empty() {
            continue;
        }
        let alert = match parse_alert(line, &format!("{}:{}", args.alerts.display(), index + 1)) {
            Ok(alert) => alert,
            Err(failure) => {
                bad_lines.push(failure.message);
                continue;
            }
        };
        let matched = parsed
            .trigger
            .eval_bool(&playbook::Variables::new(&alert, &json!({})))
            .unwrap_or(false);
        if !matched {
            *summary.entry("not triggered").or_default() += 1;
            continue;
        }
        let run = executor
            .dry_run(&tenant, &parsed, &alert)
            .await
            .map_err(|err| Failure::call(err.to_string()))?;
        *run_statuses.entry(run.status.as_str()).or_default() += 1;
        for (step, state) in &run.steps {
            if let Some(error) = &state.error
                && state.status == StepStatus::Failed
            {
                failures.push(json!({"alert": alert.id, "step": step, "status": state.status, "error": error}));
            }
        }
        for (step, outcome) in classify(&run) {
            *summary.entry(outcome).or_default() += 1;
            let action = action_of
                .get(step.as_str())
                .copied()
                .unwrap_or(step.as_str());
            *actions.entry(format!("{action}: {outcome}")).or_default() += 1;
            rows.push(json!({"alert": alert.id, "step": step, "outcome": outcome}));
        }
        // The strongest verdict any enricher gave, and the highest risk.
        let rank = |v: &str| match v {
            "malicious" => 3,
            "suspicious" => 2,
            "benign" => 1,
            _ => 0,
        };
        let verdict = run
            .steps
            .values()
            .filter_map(|s| from_value::<EnrichOutput>(s.output.as_ref()))
            .flat_map(|found| found.enrichments)
            .map(|e| variant_name(&e.verdict))
            .max_by_key(|v| rank(v))
            .unwrap_or_else(|| "no intel".to_owned());
        *verdicts.entry(verdict).or_default() += 1;
        let risk = run
            .steps
            .values()
            .filter_map(|s| from_value::<ScoreOutput>(s.output.as_ref()))
            .map(|score| score.risk)
            .max();
        let band = match risk {
            Some(r) if r >= 80 => "high (>= 80)",
            Some(r) if r >= 50 => "medium (50-79)",
            Some(_) => "low (< 50)",
            None => "not scored",
        };
        *risk_bands.entry(band).or_default() += 1;
        for state in run.steps.values() {
            if let Some(decision) = &state.decision
                && decision.verdict != rampart::executor::guardrails::Verdict::Execute
            {
                for reason in &decision.reasons {
                    *reasons.entry(super::guardrail_rule(reason)).or_default() += 1;
                }
            }
        }
    }
    bar.finish_and_clear();
    let table = |title: &str, rows: Vec<(String, u64)>| {
        eprintln!("\n{title:<44} {:>8}", "alerts");
        for (label, count) in rows {
            eprintln!("  {label:<42} {count:>8}");
        }
    };
    let owned = |map: &BTreeMap<&'static str, u64>| -> Vec<(String, u64)> {
        map.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    table("runs by status", owned(&run_statuses));
    table("response steps by outcome", owned(&summary));
    table(
        "strongest enrichment verdict",
        verdicts.clone().into_iter().collect(),
    );
    table("risk score", owned(&risk_bands));
    table("actions by kind", actions.clone().into_iter().collect());
    table(
        "why not automatic (guardrail reasons)",
        reasons.clone().into_iter().collect(),
    );
    if !failures.is_empty() {
        eprintln!("\nfailed steps ({}; the first 20):", failures.len());
        for failure in failures.iter().take(20) {
            eprintln!(
                "  {} / {}: {}",
                failure["alert"].as_str().unwrap_or("?"),
                failure["step"].as_str().unwrap_or("?"),
                failure["error"].as_str().unwrap_or("?")
            );
        }
    }
    for problem in &bad_lines {
        eprintln!("skipped: {problem}");
    }
    print(
        &json!({"playbook": parsed.name, "alerts": lines.len(), "runs_by_status": run_statuses, "failures": failures, "summary": summary, "verdicts": verdicts, "risk": risk_bands, "actions_by_kind": actions, "guardrail_reasons": reasons, "actions": rows, "skipped_lines": bad_lines.len()}),
    );
    Ok(())
}

/// What each responder step of a dry run would have done.
fn classify(run: &Run) -> Vec<(String, &'static str)> {
    run.steps
        .iter()
        .filter(|(_, state)| state.decision.is_some() || state.status == StepStatus::Skipped)
        .map(|(id, state)| {
            let outcome = match (state.status, state.decision.as_ref().map(|d| d.verdict)) {
                (_, Some(rampart::executor::guardrails::Verdict::Execute)) => "would execute",
                (_, Some(rampart::executor::guardrails::Verdict::NeedsApproval)) => {
                    "would need approval"
                }
                (_, Some(rampart::executor::guardrails::Verdict::Refuse)) => {
                    "refused by guardrails"
                }
                (StepStatus::Skipped, None) => "not needed (when: false)",
                _ => "other",
            };
            (id.clone(), outcome)
        })
        .collect()
}
