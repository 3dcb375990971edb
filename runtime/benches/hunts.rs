//! Sigma hunt over the Mordor datasets (`cargo xtask plugins` first, then
//! `cargo bench -p rampart-runtime --bench hunts`; needs `../shared/data`):
//! throughput of the full rule set in the sandbox on one core (one hunt
//! session is one thread), on every Windows event as shipped and on the
//! process-creation events only; and, per dataset, the findings and whether
//! the dataset's ATT&CK techniques were flagged.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use rampart::model::Event;
use rampart::sandbox::Runtime;
use rampart::store::MemoryStore;
use rampart::tenant::{Grants, TenantId};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every JSON line of an archive (zip or tar.gz), skipping macOS entries.
fn archive_events(path: &Path) -> Vec<Value> {
    let mut texts = Vec::new();
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".zip") {
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).unwrap();
            if file.name().contains("__MACOSX") || file.is_dir() {
                continue;
            }
            let mut text = String::new();
            if file.read_to_string(&mut text).is_ok() {
                texts.push(text);
            }
        }
    } else if name.ends_with(".tar.gz") {
        let file = std::fs::File::open(path).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().unwrap().flatten() {
            let mut entry = entry;
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_ok() {
                texts.push(text);
            }
        }
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

/// Events per hunt session in the throughput runs.
const SESSION_EVENTS: usize = 5_000;

fn is_process_creation(event: &Value) -> bool {
    let id = event
        .get("EventID")
        .or_else(|| event.pointer("/winlog/event_id"))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    let channel = event
        .get("Channel")
        .or_else(|| event.pointer("/winlog/channel"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    matches!(
        (channel, id),
        ("Microsoft-Windows-Sysmon/Operational", Some(1)) | ("Security", Some(4688))
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mordor = root().join("../shared/data/mordor_security_datasets");
    if !mordor.is_dir() {
        println!("../shared/data/mordor_security_datasets not found; skipping");
        return;
    }
    let index = std::fs::read_to_string(mordor.join("INDEX.csv")).unwrap();
    let mut datasets: Vec<(String, String, BTreeSet<String>, Vec<Value>)> = Vec::new();
    for line in index.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (file, id) = (fields[0], fields[1]);
        if !file.contains("/windows/") && !file.contains("compound") {
            continue;
        }
        let techniques: BTreeSet<String> = fields
            .iter()
            .find(|f| f.starts_with('T') && f.chars().nth(1).is_some_and(|c| c.is_ascii_digit()))
            .map(|f| f.split(';').map(str::to_owned).collect())
            .unwrap_or_default();
        let events = archive_events(&mordor.join(file));
        datasets.push((file.to_owned(), id.to_owned(), techniques, events));
    }
    let all_events: usize = datasets.iter().map(|d| d.3.len()).sum();
    let creation: Vec<Value> = datasets
        .iter()
        .flat_map(|d| d.3.iter().filter(|e| is_process_creation(e)).cloned())
        .collect();
    println!(
        "mordor: {} Windows/compound archives, {all_events} events, {} process-creation events",
        datasets.len(),
        creation.len()
    );

    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(MemoryStore::default())).unwrap();
        let tenant = TenantId::new("bench").unwrap();
        let plugin = runtime
            .load_file(&tenant, &Grants::allow_all_capabilities(), &root().join("target/plugins/sigma-hunt.toml"))
            .await
            .unwrap();
        let params = serde_json::json!({"min_level": "low"});
        let started = Instant::now();
        let session = plugin.open_hunt(&params).await.unwrap();
        println!("session open (decompress + compile 2,357 rules in the sandbox): {:.2?}", started.elapsed());
        drop(session);

        // Throughput: batches of 10 events into a session (a push gets the
        // plugin's fuel budget; process-creation events cost the most). A
        // session has a fuel budget of its own, so a fresh one is opened
        // every SESSION_EVENTS events, as a hunt does per run.
        let run = |events: Vec<Value>| {
            let plugin = plugin.clone();
            let params = params.clone();
            async move {
                let mut session = plugin.open_hunt(&params).await.unwrap();
                let mut in_session = 0usize;
                let batches: Vec<Vec<Event>> = events
                    .chunks(10)
                    .enumerate()
                    .map(|(b, chunk)| {
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(i, data)| Event { id: format!("{b}-{i}"), time: 0, data: data.clone() })
                            .collect()
                    })
                    .collect();
                let mut findings = Vec::new();
                // Matching time only (a session's open is reported above).
                let mut elapsed = Duration::ZERO;
                for batch in &batches {
                    if in_session >= SESSION_EVENTS {
                        findings.extend(session.close().await.unwrap().value);
                        session = plugin.open_hunt(&params).await.unwrap();
                        in_session = 0;
                    }
                    in_session += batch.len();
                    let pushed = Instant::now();
                    findings.extend(session.push(batch).await.unwrap().value);
                    elapsed += pushed.elapsed();
                }
                findings.extend(session.close().await.unwrap().value);
                (elapsed, findings)
            }
        };
        let all: Vec<Value> = datasets.iter().flat_map(|d| d.3.iter().cloned()).collect();
        let (elapsed, findings) = run(all).await;
        report("all Mordor Windows events as shipped", all_events, elapsed, findings.len());
        let (elapsed, findings) = run(creation.clone()).await;
        report("process-creation events only", creation.len(), elapsed, findings.len());

        println!("\nper dataset (findings, distinct rules, dataset techniques flagged by a finding):");
        let mut flagged_sets = 0;
        for (file, id, techniques, events) in &datasets {
            let (_, findings) = run(events.clone()).await;
            let rules: BTreeSet<&str> = findings.iter().map(|f| f.rule_id.as_str()).collect();
            let found: BTreeSet<&str> = findings.iter().flat_map(|f| f.techniques.iter().map(String::as_str)).collect();
            let flagged: Vec<&String> = techniques
                .iter()
                .filter(|t| found.iter().any(|f| f.starts_with(t.as_str()) || t.starts_with(*f)))
                .collect();
            if !flagged.is_empty() {
                flagged_sets += 1;
            }
            let mut top: BTreeMap<&str, usize> = BTreeMap::new();
            for f in &findings {
                *top.entry(f.title.as_str()).or_default() += 1;
            }
            let mut top: Vec<_> = top.into_iter().collect();
            top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
            println!(
                "  {id} {} ({} events): {} findings, {} rules; techniques {:?} flagged {:?}; top: {:?}",
                file.rsplit('/').next().unwrap_or(file),
                events.len(),
                findings.len(),
                rules.len(),
                techniques,
                flagged,
                top.iter().take(2).map(|(t, n)| format!("{t} ×{n}")).collect::<Vec<_>>()
            );
        }
        println!("datasets whose technique was flagged: {flagged_sets} of {}", datasets.len());
    });
}

fn report(label: &str, events: usize, elapsed: Duration, findings: usize) {
    println!(
        "{label}: {events} events in {elapsed:.2?} = {:.0} events/s on one core ({findings} findings)",
        events as f64 / elapsed.as_secs_f64()
    );
}
