//! `rampart serve` as a process: a config file that is refused before
//! anything is written, and a canary secret that never reaches the logs
//! (at `RUST_LOG=trace`), the data directory, the audit export, API
//! responses or `/metrics`. Needs `cargo xtask plugins` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CANARY: &str = "CANARY-51d0c3-trace-never-logged";

use common::*;

#[test]
fn a_bad_config_file_is_refused_with_every_problem_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rampart.yaml");
    std::fs::write(
        &config,
        "tenants:\n  - id: Acme Corp\n    quotas: { max_concurrent_runs: 0 }\n  - id: beta\n    inventory: nowhere.json\n",
    )
    .unwrap();
    let out = serve_output(
        dir.path(),
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "3 problem(s)",
        "2:9: tenants[0].id",
        "3:13: tenants[0].quotas.max_concurrent_runs",
        "5:16: tenants[1].inventory",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(!dir.path().join("data").exists(), "nothing may be written");
    assert!(!dir.path().join("master.key").exists());
}

#[test]
fn a_canary_secret_never_reaches_trace_logs_disk_audit_api_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rampart.yaml");
    std::fs::write(
        &config,
        "tenants:\n  - id: acme\n    quotas: { max_concurrent_runs: 4 }\n    grants:\n      default: { capabilities: [log, kv, config, http, intel, memory], kv_quota_bytes: 1048576 }\n",
    )
    .unwrap();
    let admin = admin_token(dir.path());
    // First run, at info: the upload. (At trace, cranelift logs every
    // compiler pass: gigabytes for one plugin, and nothing secret is near.)
    let setup_log = dir.path().join("setup.log");
    let served = Served::start(dir.path(), &config, &setup_log, "info");
    let addr = served.addr.clone();

    // The config file made the tenant.
    let (status, quotas) = json_call(
        &addr,
        "GET",
        "/v1/tenants/acme/quotas",
        &admin,
        &Value::Null,
    );
    assert_eq!(
        (status, &quotas["quotas"]["max_concurrent_runs"]),
        (200, &json!(4)),
        "{quotas}"
    );
    let upload = upload_body(&fixtures(), "hostile");
    let (status, reply) = json_call(&addr, "POST", "/v1/tenants/acme/plugins", &admin, &upload);
    assert_eq!(status, 201, "{reply}");
    served.stop();

    // Everything that touches the secret happens at RUST_LOG=trace: setting
    // it, a run that uses it, the queries, and a restart that unseals it.
    let log = dir.path().join("serve.log");
    let served = Served::start(dir.path(), &config, &log, "trace");
    let addr = served.addr.clone();
    let mut responses: Vec<Vec<u8>> = Vec::new();
    let (status, _) = json_call(
        &addr,
        "PUT",
        "/v1/tenants/acme/plugins/hostile/secrets/api_token",
        &admin,
        &json!({"value": CANARY}),
    );
    assert_eq!(status, 204);
    let playbook =
        "name: probe\ntrigger: { alert: 'true' }\nsteps:\n  - id: probe\n    enrich: hostile\n";
    let (status, reply) = call(
        &addr,
        "PUT",
        "/v1/tenants/acme/playbooks/probe",
        &admin,
        Some(playbook.as_bytes()),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let (status, reply) = json_call(
        &addr,
        "POST",
        "/v1/tenants/acme/alerts",
        &admin,
        &json!({"id": "canary-1", "source": "test", "title": "secret api_token"}),
    );
    assert_eq!(status, 200, "{reply}");
    let run = reply["results"][0]["runs"][0].as_str().unwrap().to_owned();
    let (_, shown) = call(
        &addr,
        "GET",
        &format!("/v1/tenants/acme/runs/{run}"),
        &admin,
        None,
    );
    let shown_json: Value = serde_json::from_slice(&shown).unwrap();
    assert_eq!(
        shown_json["steps"]["probe"]["output"]["enrichments"][0]["tags"][0], "secret visible",
        "the plugin got its secret: {shown_json}"
    );
    responses.push(shown);
    // The plugin echoes its secret (as a remote's 400 would) in a log line,
    // in output fields (raw, URL-encoded, in JSON) and in an error: every
    // copy is redacted by value before it is stored, logged or answered.
    for (id, title) in [
        ("leak-1", "leak api_token"),
        ("leak-2", "leak-error api_token"),
    ] {
        let (status, reply) = json_call(
            &addr,
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &json!({"id": id, "source": "test", "title": title}),
        );
        assert_eq!(status, 200, "{reply}");
        let run = reply["results"][0]["runs"][0].as_str().unwrap().to_owned();
        let (_, shown) = call(
            &addr,
            "GET",
            &format!("/v1/tenants/acme/runs/{run}"),
            &admin,
            None,
        );
        assert!(
            String::from_utf8_lossy(&shown).contains("[redacted:api_token]"),
            "{id}: {}",
            String::from_utf8_lossy(&shown)
        );
        responses.push(shown);
    }
    for path in [
        "/v1/tenants/acme/audit/export",
        "/v1/tenants/acme/audit?limit=1000",
        "/v1/tenants/acme/secrets",
        "/v1/tenants/acme/plugins/hostile",
        "/metrics",
    ] {
        let (status, body) = call(&addr, "GET", path, &admin, None);
        assert_eq!(status, 200, "{path}");
        responses.push(body);
    }
    served.stop();
    let restart_log = dir.path().join("restart.log");
    let served = Served::start(dir.path(), &config, &restart_log, "trace");
    let (status, reply) = json_call(
        &served.addr,
        "POST",
        "/v1/tenants/acme/alerts",
        &admin,
        &json!({"id": "canary-2", "source": "test", "title": "secret api_token"}),
    );
    assert_eq!(status, 200, "{reply}");
    let run = reply["results"][0]["runs"][0].as_str().unwrap().to_owned();
    let (_, shown) = call(
        &served.addr,
        "GET",
        &format!("/v1/tenants/acme/runs/{run}"),
        &admin,
        None,
    );
    assert!(
        String::from_utf8_lossy(&shown).contains("secret visible"),
        "after a restart the secret is unsealed for its plugin"
    );
    responses.push(shown);
    served.stop();

    let logs =
        std::fs::read_to_string(&log).unwrap() + &std::fs::read_to_string(&restart_log).unwrap();
    assert!(
        logs.lines().count() > 100 && logs.contains("TRACE"),
        "the server logged at trace level ({} lines)",
        logs.lines().count()
    );
    assert!(!logs.contains(CANARY), "the secret is in the trace log");
    let encoded = CANARY.replace('-', "%2D");
    assert!(
        !logs.contains(&encoded),
        "the URL-encoded secret is in the log"
    );
    assert!(
        logs.contains("[redacted:api_token]"),
        "the plugin's log line echoing the secret was kept, redacted"
    );
    for body in &responses {
        assert!(
            !String::from_utf8_lossy(body).contains(CANARY),
            "an API response leaked the secret"
        );
        assert!(
            !String::from_utf8_lossy(body).contains(&encoded),
            "an API response leaked the URL-encoded secret"
        );
    }
    let hits: Vec<String> = files_containing(dir.path(), CANARY.as_bytes())
        .into_iter()
        .filter(|path| !path.ends_with("rampart.yaml"))
        .collect();
    assert!(hits.is_empty(), "the secret is on disk in clear: {hits:?}");
}

#[test]
fn the_example_config_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/rampart.yaml");
    let config = rampart::config::load(&path).expect("examples/rampart.yaml");
    assert_eq!(config.tenants.len(), 1);
    assert!(
        config.tenants[0]
            .inventory
            .as_ref()
            .is_some_and(|i| !i.assets.is_empty())
    );
    assert!(
        config.tenants[0]
            .identities
            .as_ref()
            .is_some_and(|i| !i.identities.is_empty())
    );
}

/// The example config (tenant, grants, the CSV inventory and directory)
/// and the CLI, end to end as an operator would drive them: upload the
/// plugins, install the malware and identity playbooks, send the sample
/// SOC day, read the summary. The domain controller's containment is
/// refused (protected in the CSV), the privileged account's suspension
/// waits for two analysts, the ordinary user's is not needed.
#[test]
fn the_example_config_and_the_cli_run_a_soc_day() {
    let dir = tempfile::tempdir().unwrap();
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let token = rampart()
        .args(["token", "create", "--principal", "root", "--audit-key"])
        .arg(dir.path().join("audit.key"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(token.status.success());
    let admin = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    let log = dir.path().join("serve.log");
    let served = Served::start(dir.path(), &examples.join("rampart.yaml"), &log, "info");
    let server = format!("http://{}", served.addr);
    let api = |args: &[&str]| {
        let output = rampart()
            .current_dir(examples.join(".."))
            .env("RAMPART_TOKEN", &admin)
            .args(["api", "--server", &server, "--tenant", "local"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for plugin in [
        "threat-intel",
        "asset-context",
        "identity-context",
        "risk-scorer",
        "edr-contain",
        "idp-suspend",
    ] {
        api(&["upload-plugin", &format!("target/plugins/{plugin}.toml")]);
    }
    api(&["put-playbook", "examples/playbooks/malware-triage.yaml"]);
    api(&["put-playbook", "examples/playbooks/identity-triage.yaml"]);
    api(&["send", "--retime", "examples/alerts/soc-day.jsonl"]);
    let summary = api(&["summary"]);
    let line = |prefix: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{summary}"))
            .to_owned()
    };
    assert!(
        line("contain-host (malware-triage)").contains("refused 1"),
        "{summary}"
    );
    let suspend = line("suspend-user (identity-triage)");
    assert!(
        suspend.contains("waiting approval 1") && suspend.contains("not needed 1"),
        "{summary}"
    );
    assert!(
        line("Approvals pending").contains("suspend-user 1"),
        "{summary}"
    );
    assert!(summary.contains("MTTD p50"), "{summary}");
    // A capture larger than one request may be (16 MiB): sent in chunks.
    let capture = dir.path().join("capture.jsonl");
    let padding = "x".repeat(300);
    let lines: Vec<String> = (0..60_000)
        .map(|i| format!("{{\"id\": \"e{i}\", \"time\": {i}, \"data\": {{\"CommandLine\": \"cmd /c echo {padding}\"}}}}"))
        .collect();
    std::fs::write(&capture, lines.join("\n")).unwrap();
    assert!(std::fs::metadata(&capture).unwrap().len() > 16 << 20);
    let sent: Value =
        serde_json::from_str(&api(&["send-events", capture.to_str().unwrap()])).unwrap();
    assert_eq!(sent["stored"], 60_000, "{sent}");
    assert!(sent["requests"].as_u64().unwrap() >= 3, "{sent}");
    served.stop();
}

/// Logs a plugin can cause: a loop of refused outbound requests writes one
/// warning and one summary (not one line per request), and a newline in a
/// plugin's log message is escaped in the text log, so it cannot forge a
/// record.
#[test]
fn a_plugin_cannot_flood_or_forge_the_server_log() {
    let dir = tempfile::tempdir().unwrap();
    let config = hostile_tenant_config(dir.path());
    let admin = admin_token(dir.path());
    let log = dir.path().join("serve.log");
    let served = Served::start(dir.path(), &config, &log, "info");
    let addr = served.addr.clone();
    let upload = upload_body(&fixtures(), "hostile");
    let (status, reply) = json_call(&addr, "POST", "/v1/tenants/acme/plugins", &admin, &upload);
    assert_eq!(status, 201, "{reply}");
    let playbook = "name: probe\ntrigger: { alert: 'true' }\nsteps:\n  - id: probe\n    enrich: hostile\n    on_error: continue\n";
    let (status, _) = call(
        &addr,
        "PUT",
        "/v1/tenants/acme/playbooks/probe",
        &admin,
        Some(playbook.as_bytes()),
    );
    assert_eq!(status, 200);
    let before = std::fs::read_to_string(&log).unwrap().lines().count();
    for (id, title) in [
        ("flood", "http-flood http://not-allowed.example/"),
        ("forge", "log-forge"),
    ] {
        let (status, reply) = json_call(
            &addr,
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &json!({"id": id, "source": "test", "title": title}),
        );
        assert_eq!(status, 200, "{reply}");
    }
    served.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let caused: Vec<&str> = text.lines().skip(before).collect();
    let refused = caused
        .iter()
        .filter(|line| line.contains("outbound request"))
        .count();
    assert!(
        caused.len() < 50,
        "{} log lines for two calls:\n{}",
        caused.len(),
        caused
            .iter()
            .take(20)
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        refused,
        2,
        "one refusal and one summary:\n{}",
        caused.join("\n")
    );
    assert!(
        caused
            .iter()
            .any(|line| line.contains("more outbound requests of this call refused")),
        "{}",
        caused.join("\n")
    );
    // The forged record stays inside the plugin's line, escaped.
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("2026-12-01T00:00:00Z ERROR")),
        "a plugin forged a log record:\n{text}"
    );
    assert!(
        text.contains("innocent\\n2026-12-01T00:00:00Z ERROR rampart: forged record"),
        "{text}"
    );
}

/// A component that passes the static bounds but would compile for long,
/// or need much memory, is refused by the compile worker's deadline and
/// memory limit (`--compile-timeout`, `--compile-memory-mib`), and the
/// server goes on: an ordinary plugin uploads after it.
#[test]
fn compiles_are_bounded_in_time_and_memory_per_upload() {
    use sha2::Digest as _;
    let funcs: String = (0..60_000)
        .map(|_| "(func (local i32) i32.const 7 local.set 0)")
        .collect();
    let heavy = wat::parse_str(format!("(component (core module {funcs}))")).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&heavy));
    let manifest = format!(
        "name = \"heavy\"\nversion = \"0.1.0\"\nkind = \"enricher\"\nwit = \"0.1.0\"\ncapabilities = []\n\n[component]\nsha256 = \"{digest}\"\n"
    );
    let heavy_upload = json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(&heavy)});
    let hostile_upload = upload_body(&fixtures(), "hostile");
    for (flags, expect) in [
        (
            ["--compile-timeout", "1s", "--compile-memory-mib", "2048"],
            "compiling took longer than the 1 s allowed per upload",
        ),
        (
            ["--compile-timeout", "60s", "--compile-memory-mib", "120"],
            "compiling needed more than the 120 MiB of memory allowed per upload",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = hostile_tenant_config(dir.path());
        let admin = admin_token(dir.path());
        let log = dir.path().join("serve.log");
        let served = Served::start_with(dir.path(), &config, &log, "info", &flags);
        let addr = served.addr.clone();
        let (status, reply) = json_call(
            &addr,
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &heavy_upload,
        );
        let logged = || std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(status, 422, "{flags:?}: {reply}");
        assert!(
            reply["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(expect),
            "{flags:?}: {reply}\n{}",
            logged()
        );
        let (status, reply) = json_call(
            &addr,
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &hostile_upload,
        );
        assert_eq!(status, 201, "{flags:?}: {reply}");
        served.stop();
    }
}

/// SIGTERM (what systemd, docker and Kubernetes send) shuts down as
/// gracefully as Ctrl-C: requests finish, audit heads are signed, exit 0.
#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let config = hostile_tenant_config(dir.path());
    let _admin = admin_token(dir.path());
    let log = dir.path().join("serve.log");
    let served = Served::start(dir.path(), &config, &log, "info");
    served.stop_with("-TERM");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("shutting down"), "{text}");
}

/// `rampart api` speaks TLS: with `--ca-cert` it trusts the server's CA; a
/// server whose certificate it cannot verify is refused.
#[test]
fn the_cli_client_speaks_tls() {
    let dir = tempfile::tempdir().unwrap();
    let config = hostile_tenant_config(dir.path());
    let admin = admin_token(dir.path());
    let tls = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
    let cert = tls.join("cert.pem").display().to_string();
    let key = tls.join("key.pem").display().to_string();
    let log = dir.path().join("serve.log");
    let served = Served::start_with(
        dir.path(),
        &config,
        &log,
        "info",
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let port = served.addr.rsplit(':').next().unwrap().to_owned();
    let api = |extra: &[&str]| {
        rampart()
            .args([
                "api",
                "--server",
                &format!("https://localhost:{port}"),
                "--token",
                &admin,
                "--tenant",
                "acme",
            ])
            .args(extra)
            .arg("runs")
            .output()
            .unwrap()
    };
    let trusted = api(&["--ca-cert", &tls.join("ca.pem").display().to_string()]);
    assert!(
        trusted.status.success(),
        "{}{}",
        String::from_utf8_lossy(&trusted.stdout),
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("runs"));
    let untrusted = api(&[]);
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    served.stop();
}

/// The approval's decision is durable and the process is SIGKILLed before
/// its continuation was queued: after a restart the approved action runs,
/// exactly once, and the run finishes.
#[test]
fn killed_after_an_approval_decision_the_action_runs_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rampart.yaml");
    std::fs::write(
        &config,
        "tenants:\n  - id: acme\n    grants:\n      default: { capabilities: [log, kv, memory, config], kv_quota_bytes: 1048576 }\n",
    )
    .unwrap();
    let admin = admin_token(dir.path());
    let first_log = dir.path().join("first.log");
    let mut served = Served::start_env(
        dir.path(),
        &config,
        &first_log,
        "info",
        &[],
        &[("RAMPART_CRASH_AT", "after-decision")],
    );
    let addr = served.addr.clone();
    let upload = upload_body(&fixtures().join(".."), "edl-blocklist");
    let (status, reply) = json_call(&addr, "POST", "/v1/tenants/acme/plugins", &admin, &upload);
    assert_eq!(status, 201, "{reply}");
    let playbook = "name: block\ntrigger: { alert: 'true' }\nmode: supervised\nsteps:\n  - id: act\n    respond: edl-blocklist\n    target: 'alert.entities.ip[0]'\n    guard: { approvers: 1, approval_timeout: 1h, external_target: true }\n";
    let (status, reply) = call(
        &addr,
        "PUT",
        "/v1/tenants/acme/playbooks/block",
        &admin,
        Some(playbook.as_bytes()),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let (status, reply) = json_call(
        &addr,
        "POST",
        "/v1/tenants/acme/tokens",
        &admin,
        &json!({"principal": "alice", "role": "analyst"}),
    );
    assert_eq!(status, 201, "{reply}");
    let analyst = reply["token"].as_str().unwrap().to_owned();
    let (status, reply) = json_call(
        &addr,
        "POST",
        "/v1/tenants/acme/alerts",
        &admin,
        &json!({"id": "a1", "source": "edr", "title": "beacon", "severity": "high",
            "entities": [{"kind": "ip", "value": "198.51.100.7"}]}),
    );
    assert_eq!(status, 200, "{reply}");
    let run = reply["results"][0]["runs"][0].as_str().unwrap().to_owned();
    let run_path = format!("/v1/tenants/acme/runs/{run}");
    let (_, shown) = json_call(&addr, "GET", &run_path, &admin, &Value::Null);
    assert_eq!(shown["status"], "waiting_approval", "{shown}");

    // The vote's request stops at the crash point; it never answers.
    let approve_path = format!("/v1/tenants/acme/approvals/{run}.act/approve");
    let voter = std::thread::spawn({
        let addr = addr.clone();
        move || {
            let _ = std::panic::catch_unwind(|| {
                json_call(
                    &addr,
                    "POST",
                    &approve_path,
                    &analyst,
                    &json!({"reason": "beacon confirmed"}),
                )
            });
        }
    });
    let started = Instant::now();
    while !std::fs::read_to_string(&first_log)
        .unwrap_or_default()
        .contains("CRASHPOINT after-decision")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the crash point was never reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    served.child.kill().unwrap(); // SIGKILL
    let _ = served.child.wait();
    let _ = voter.join();

    let served = Served::start(dir.path(), &config, &dir.path().join("second.log"), "info");
    let addr = served.addr.clone();
    let started = Instant::now();
    let shown = loop {
        let (_, shown) = json_call(&addr, "GET", &run_path, &admin, &Value::Null);
        if shown["status"] != "waiting_approval" && shown["status"] != "running" {
            break shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never continued after the restart: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(shown["status"], "succeeded", "{shown}");
    assert_eq!(shown["steps"]["act"]["status"], "succeeded", "{shown}");
    let count = |kind: &str| {
        let (status, body) = json_call(
            &addr,
            "GET",
            &format!("/v1/tenants/acme/audit?run={run}&kind={kind}&limit=100"),
            &admin,
            &Value::Null,
        );
        assert_eq!(status, 200, "{body}");
        body["records"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(count("approval_granted"), 1);
    assert_eq!(count("action_executed"), 1);
    served.stop();
}
