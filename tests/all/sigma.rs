//! The `sigma-hunt` plugin in the sandbox: every one of the 142 SigmaHQ
//! regression pairs fires on its own event (and how many other rules fire
//! on those events is reported), findings carry the DRL attribution, and a
//! tenant's own rule can be added through params.

use std::path::{Path, PathBuf};

use rampart::model::{Event, Severity};
use rampart::tenant::Grants;
use serde_json::{Value, json};

use rampart_e2e::{load, runtime, tenant};

/// (rule id, events) for every regression pair.
fn regression_pairs() -> Vec<(String, Vec<Value>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sigma/regression_data");
    let mut infos = Vec::new();
    let mut stack: Vec<PathBuf> = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "info.yml") {
                infos.push(path);
            }
        }
    }
    infos.sort();
    infos
        .into_iter()
        .map(|info| {
            let text = std::fs::read_to_string(&info).expect("info");
            let id = text
                .split("rule_metadata:")
                .nth(1)
                .and_then(|rest| rest.split("id:").nth(1))
                .and_then(|rest| rest.lines().next())
                .map(|id| id.trim().to_owned())
                .expect("rule id");
            let mut events = Vec::new();
            for entry in std::fs::read_dir(info.parent().expect("parent"))
                .expect("dir")
                .flatten()
            {
                if entry.path().extension().is_some_and(|e| e == "json") {
                    let text = std::fs::read_to_string(entry.path()).expect("json");
                    // Some files hold several concatenated objects.
                    events.extend(
                        serde_json::Deserializer::from_str(&text)
                            .into_iter::<Value>()
                            .map(|v| v.expect("event")),
                    );
                }
            }
            (id, events)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_regression_pair_fires_in_the_sandbox() {
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let plugin = load(
        &runtime,
        &acme,
        &Grants::allow_all_capabilities(),
        "sigma-hunt",
    )
    .await;
    let mut session = plugin
        .open_hunt(&json!({"min_level": "informational"}))
        .await
        .expect("open (compiles the rules)");
    let pairs = regression_pairs();
    assert_eq!(pairs.len(), 142);
    let mut missed = Vec::new();
    let mut others = 0usize;
    let mut events_total = 0usize;
    let mut checked_attribution = false;
    for (index, (id, events)) in pairs.iter().enumerate() {
        let batch: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(n, data)| Event {
                id: format!("pair-{index}-{n}"),
                time: 1_795_700_000_000,
                data: data.clone(),
            })
            .collect();
        events_total += batch.len();
        let found = session.push(&batch).await.expect("push").value;
        if !found.iter().any(|f| f.rule_id == *id) {
            missed.push(id.clone());
        }
        others += found.iter().filter(|f| f.rule_id != *id).count();
        if !checked_attribution
            && let Some(finding) = found
                .iter()
                .find(|f| f.rule_id == *id && !f.techniques.is_empty())
        {
            {
                let detail = &finding.detail;
                assert!(
                    detail["author"].as_str().is_some_and(|a| !a.is_empty()),
                    "{detail}"
                );
                assert!(
                    detail["license"]
                        .as_str()
                        .is_some_and(|l| l.contains("DRL")),
                    "{detail}"
                );
                assert!(
                    finding.references.iter().any(|r| r.starts_with(
                        "https://github.com/SigmaHQ/sigma/blob/8eaafff1f2845a696050e05e72ba1140ee190698/"
                    )),
                    "{:?}",
                    finding.references
                );
                assert!(finding.techniques.iter().all(|t| t.starts_with('T')));
                assert_eq!(finding.event_ids[0], format!("pair-{index}-0"));
                checked_attribution = true;
            }
        }
    }
    eprintln!(
        "sigma regression in the sandbox: {}/{} pairs fire on their own event ({events_total} events); {others} findings of other rules on these events",
        pairs.len() - missed.len(),
        pairs.len()
    );
    assert!(missed.is_empty(), "missed: {missed:?}");
    assert!(checked_attribution);
    session.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_rule_runs_beside_the_bundle_and_levels_filter() {
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let plugin = load(
        &runtime,
        &acme,
        &Grants::allow_all_capabilities(),
        "sigma-hunt",
    )
    .await;
    let own = "title: Acme forbids calc\nid: acme-0001\nauthor: Acme SOC\nlicense: CC-BY-4.0\nreferences:\n  - https://wiki.acme.example/soc/calc\n  - see the runbook\nlevel: critical\nlogsource: { product: windows, category: process_creation }\ndetection:\n  selection:\n    Image|endswith: '\\calc.exe'\n  condition: selection\n---\ntitle: Acme forbids calc too\nid: acme-0002\nauthor: Acme SOC\nlevel: critical\nlogsource: { product: windows, category: process_creation }\ndetection:\n  selection:\n    Image|endswith: '\\calc.exe'\n  condition: selection\n";
    let mut session = plugin
        .open_hunt(&json!({"min_level": "critical", "extra_rules": own}))
        .await
        .expect("open");
    let event = Event {
        id: "e1".into(),
        time: 0,
        data: json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Image": "C:\\Windows\\System32\\calc.exe", "CommandLine": "calc.exe", "Hostname": "wks-7"}),
    };
    let found = session.push(&[event]).await.expect("push").value;
    assert!(
        found.iter().all(|f| f.severity == Severity::Critical),
        "{found:?}"
    );
    let own = found
        .iter()
        .find(|f| f.rule_id == "acme-0001")
        .expect("own rule fired");
    // A tenant's rule carries its own links and licence, never SigmaHQ's.
    assert_eq!(own.references, ["https://wiki.acme.example/soc/calc"]);
    assert_eq!(own.detail["license"], "CC-BY-4.0");
    let bare = found
        .iter()
        .find(|f| f.rule_id == "acme-0002")
        .expect("second own rule fired");
    assert!(bare.references.is_empty(), "{:?}", bare.references);
    assert!(bare.detail["license"].is_null(), "{}", bare.detail);
    assert!(bare.detail["rule_link"].is_null());
    assert!(own.entities.iter().any(|e| e.value == "wks-7"));
    // Bad params are refused with a clear error.
    let refused = plugin.open_hunt(&json!({"min_level": "severe"})).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("min_level")),
        "{refused:?}"
    );
}

/// The behavioural hunt: the tenant's own history is the baseline. Mordor
/// telemetry teaches it; a never-seen pair is then a finding, a known pair
/// is not, and another tenant (no baseline yet) only learns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_process_pair_stands_out_against_the_tenant_baseline() {
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let grants = Grants::allow_all_capabilities();
    let plugin = load(&runtime, &acme, &grants, "process-rarity").await;
    let mordor: Vec<Event> = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events/mordor-lsass-dumps.jsonl"),
    )
    .expect("events")
    .lines()
    .enumerate()
    .map(|(n, line)| Event {
        id: format!("m-{n}"),
        time: 0,
        data: serde_json::from_str(line).expect("json"),
    })
    .collect();
    let params = json!({"min_baseline": 4});
    // Learning: a new tenant reports nothing and keeps what it saw.
    let mut session = plugin.open_hunt(&params).await.expect("open");
    let found = session.push(&mordor).await.expect("push").value;
    assert!(found.is_empty(), "learning: {found:?}");
    session.close().await.expect("close");

    let process = |id: &str, parent: &str, child: &str| Event {
        id: id.into(),
        time: 1,
        data: json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Hostname": "wks-9",
            "ParentImage": parent, "Image": child, "CommandLine": child, "User": "ACME\\eve"}),
    };
    let mut session = plugin.open_hunt(&params).await.expect("open");
    let found = session
        .push(&[
            process(
                "known",
                "C:\\Windows\\System32\\cmd.exe",
                "C:\\Users\\x\\Desktop\\Outflank-Dumpert.exe",
            ),
            process(
                "new",
                "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            ),
            process(
                "again",
                "C:\\Program Files\\Microsoft Office\\WINWORD.EXE",
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            ),
        ])
        .await
        .expect("push")
        .value;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].detail["pair"], "winword.exe > powershell.exe");
    assert_eq!(found[0].event_ids, ["new"]);
    assert!(found[0].entities.iter().any(|e| e.value == "wks-9"));
    session.close().await.expect("close");

    // Another tenant has its own (empty) baseline: it learns, reports nothing.
    let globex = tenant("globex");
    let other = load(&runtime, &globex, &grants, "process-rarity").await;
    let mut session = other.open_hunt(&params).await.expect("open");
    let found = session
        .push(&[process("x", "C:\\x\\winword.exe", "C:\\x\\powershell.exe")])
        .await
        .expect("push")
        .value;
    assert!(found.is_empty(), "{found:?}");
}
