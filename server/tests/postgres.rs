//! `rampart serve --store postgres://…` as a process on a real PostgreSQL
//! (`RAMPART_TEST_PG_URL`; `cargo xtask test` starts one): a playbook runs,
//! state outlives the process and its local directory, a second server on
//! the same database is refused, the audit chain verifies. Needs `cargo
//! xtask plugins` first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A fresh database on the test server; its URL. Fails, saying what is
/// missing, when there is no server.
fn fresh_database() -> String {
    let url = std::env::var("RAMPART_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "RAMPART_TEST_PG_URL is not set: this test needs PostgreSQL. `cargo xtask test` \
             starts one; or set it to postgres://user@host:port/db of a server you run"
        )
    });
    let name = format!(
        "rampart_serve_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    rampart_postgres::create_database(&url, &name)
        .unwrap_or_else(|err| panic!("PostgreSQL at RAMPART_TEST_PG_URL: {err}"))
}

#[test]
fn a_server_on_postgres_keeps_its_state_in_the_database() {
    let store = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rampart.yaml");
    std::fs::write(
        &config,
        "tenants:\n  - id: acme\n    grants:\n      default: { capabilities: [log, kv, memory, config], kv_quota_bytes: 1048576 }\n",
    )
    .unwrap();
    let admin = admin_token_with(dir.path(), &["--store", &store]);
    let served = Served::start_with(
        dir.path(),
        &config,
        &dir.path().join("first.log"),
        "info",
        &["--store", &store],
    );
    let addr = served.addr.clone();
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(
        log.contains("store postgres://…@127.0.0.1"),
        "the start line names the store without its credentials: {log}"
    );

    // A second server on the same database is refused, naming why.
    let second = serve_output(
        dir.path(),
        &dir.path().join("other-data"),
        &["--store", &store],
    );
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another rampart server"), "{said}");

    let upload = upload_body(&fixtures().join(".."), "risk-scorer");
    let (status, reply) = json_call(&addr, "POST", "/v1/tenants/acme/plugins", &admin, &upload);
    assert_eq!(status, 201, "{reply}");
    let playbook =
        "name: score\ntrigger: { alert: 'true' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
    let (status, reply) = call(
        &addr,
        "PUT",
        "/v1/tenants/acme/playbooks/score",
        &admin,
        Some(playbook.as_bytes()),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let mut runs = Vec::new();
    for i in 0..20 {
        let (status, reply) = json_call(
            &addr,
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &json!({"id": format!("a{i}"), "source": "edr", "title": "beacon", "severity": "high",
                "entities": [{"kind": "ip", "value": "198.51.100.7"}]}),
        );
        assert_eq!(status, 200, "{reply}");
        runs.push(reply["results"][0]["runs"][0].as_str().unwrap().to_owned());
    }
    // The same alert again is a duplicate, not a second run.
    let (status, reply) = json_call(
        &addr,
        "POST",
        "/v1/tenants/acme/alerts",
        &admin,
        &json!({"id": "a0", "source": "edr", "title": "beacon", "severity": "high",
            "entities": [{"kind": "ip", "value": "198.51.100.7"}]}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["results"][0]["runs"][0].as_str(),
        Some(runs[0].as_str()),
        "{reply}"
    );
    served.stop();

    // Restarted with an empty local directory: everything is in the database.
    std::fs::remove_dir_all(dir.path().join("data")).ok();
    let served = Served::start_with(
        dir.path(),
        &config,
        &dir.path().join("second.log"),
        "info",
        &["--store", &store],
    );
    let addr = served.addr.clone();
    for run in &runs {
        let started = Instant::now();
        loop {
            let (status, shown) = json_call(
                &addr,
                "GET",
                &format!("/v1/tenants/acme/runs/{run}"),
                &admin,
                &Value::Null,
            );
            assert_eq!(status, 200, "{shown}");
            if shown["status"] == "succeeded" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "run {run} never finished: {shown}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let (status, plugins) = json_call(
        &addr,
        "GET",
        "/v1/tenants/acme/plugins",
        &admin,
        &Value::Null,
    );
    assert_eq!(status, 200, "{plugins}");
    assert!(plugins.to_string().contains("risk-scorer"), "{plugins}");
    let (status, verified) = json_call(
        &addr,
        "GET",
        "/v1/tenants/acme/audit/verify",
        &admin,
        &Value::Null,
    );
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["ok"], true, "{verified}");
    served.stop();
}
