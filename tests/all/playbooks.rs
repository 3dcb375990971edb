//! Playbook validation: the examples are valid; every malformed playbook in
//! `tests/fixtures/playbooks/bad/` gives its specific error with a location
//! (the expected text is in the `.err` file beside it), never a panic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rampart::manifest::PluginKind;
use rampart::playbook::{self, Mode};

pub fn catalog() -> BTreeMap<String, PluginKind> {
    [
        ("ip-reputation", PluginKind::Enricher),
        ("risk-scorer", PluginKind::Scorer),
        ("edl-blocklist", PluginKind::Responder),
        ("cmdline-hunt", PluginKind::Hunt),
    ]
    .into_iter()
    .map(|(name, kind)| (name.to_owned(), kind))
    .collect()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn example_playbooks_are_valid() {
    for (file, mode, steps) in [
        ("ip-triage.yaml", Mode::Autonomous, 3),
        ("supervised-block.yaml", Mode::Supervised, 3),
        ("dry-run-triage.yaml", Mode::DryRun, 3),
    ] {
        let path = root().join("examples/playbooks").join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        let parsed = playbook::parse(file, &text, &catalog()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(parsed.mode, mode, "{file}");
        assert_eq!(parsed.steps.len(), steps, "{file}");
        let position = |id: &str| parsed.steps.iter().position(|s| s.id == id).expect("step");
        assert!(
            position("reputation") < position("risk") && position("risk") < position("block"),
            "{file}: order"
        );
    }
}

/// Every example playbook parses against the manifests `cargo xtask
/// plugins` built (the real catalog, not a list kept by hand).
#[test]
fn every_example_playbook_is_valid_against_the_built_plugins() {
    let mut catalog = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("target/plugins")).expect("built plugins") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let manifest =
                rampart::manifest::parse(&path.display().to_string(), &text).expect("manifest");
            catalog.insert(manifest.name.clone(), manifest.kind);
        }
    }
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root().join("examples/playbooks")).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            let name = path.display().to_string();
            let parsed =
                playbook::parse(&name, &text, &catalog).unwrap_or_else(|err| panic!("{err}"));
            checked.push(parsed.name);
        }
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "dry-run-triage",
            "identity-triage",
            "intel-triage",
            "ip-triage",
            "malware-triage",
            "supervised-block"
        ]
    );
}

#[test]
fn malformed_playbooks_give_specific_located_errors() {
    let dir = root().join("tests/fixtures/playbooks/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "corpus has {} playbooks", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let expected = std::fs::read_to_string(file.with_extension("err")).expect(".err file");
        let expected = expected.trim();
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_owned();
        match std::panic::catch_unwind(|| playbook::parse(&name, &text, &catalog())) {
            Err(_) => failures.push(format!("{name}: PANIC")),
            Ok(Ok(_)) => failures.push(format!("{name}: accepted")),
            Ok(Err(err)) => {
                let message = err.to_string();
                if !message.contains(expected) {
                    failures.push(format!("{name}: expected `{expected}` in:\n{message}"));
                }
                if err.issues().iter().all(|issue| issue.line.is_none()) {
                    failures.push(format!("{name}: no issue has a line: {message}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "name: t\ntrigger: { alert: \"(\" }\nmode: yolo\nsteps:\n  - id: a\n    enrich: nope\n    timeout: soon\n";
    let err = playbook::parse("t.yaml", text, &catalog()).expect_err("invalid");
    let fields: Vec<String> = err.issues().iter().map(|i| i.field.clone()).collect();
    assert_eq!(
        fields,
        vec![
            "trigger.alert",
            "mode",
            "steps[0].enrich",
            "steps[0].timeout"
        ],
        "{err}"
    );
}

#[test]
fn the_shipped_json_schema_is_generated_from_the_types() {
    let shipped = std::fs::read_to_string(root().join("examples/playbook.schema.json"))
        .expect("examples/playbook.schema.json");
    let shipped: serde_json::Value = serde_json::from_str(&shipped).expect("json");
    assert_eq!(
        shipped,
        playbook::json_schema(),
        "regenerate: rampart playbook schema > examples/playbook.schema.json"
    );
    let properties = shipped["properties"].as_object().expect("properties");
    for field in ["name", "trigger", "mode", "dedup", "steps", "guardrails"] {
        assert!(properties.contains_key(field), "{field}");
    }
}
