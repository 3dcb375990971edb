//! Intake apart from work: runs and decided approvals go through the
//! executor's queue and run on its workers — not inside the request — so a
//! client that hangs up interrupts nothing, `Prefer: respond-async` answers
//! as soon as the alert is durable, two decisions on one run never
//! overwrite each other, and an approval nobody answers is denied on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::harness::{Server, upload_fixture};
use crate::{alert, audit_count, ingest, serial, tenant};

/// Trials of the two-decisions race.
const TRIALS: u32 = 40;

/// Polls the run until it is no longer `running`.
async fn run_when_done(server: &Server, token: &str, run: &str) -> Value {
    let started = Instant::now();
    loop {
        let (status, shown) = server
            .call(
                "GET",
                &format!("/v1/tenants/acme/runs/{run}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{shown}");
        if shown["status"] != "running" {
            return shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never finished: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A supervised playbook with two actions, one per IP of the alert.
fn two_actions() -> String {
    r#"name: two
trigger: { alert: 'true' }
mode: supervised
steps:
  - id: first
    respond: edl-blocklist
    target: 'alert.entities.ip[0]'
    guard: { approvers: 1, approval_timeout: 1h, external_target: true }
  - id: second
    respond: edl-blocklist
    target: 'alert.entities.ip[1]'
    guard: { approvers: 1, approval_timeout: 1h, external_target: true }
guardrails:
  rate_limits: { edl-blocklist: 100000/h }
"#
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_decisions_on_one_run_at_the_same_moment_both_take_effect() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    let tokens = tenant(&server, "acme", &[("two", two_actions())], 4).await;
    let mut lost = 0;
    for trial in 0..TRIALS {
        let mut body = alert(&format!("pair-{trial}"), trial * 2);
        body["entities"]
            .as_array_mut()
            .expect("entities")
            .push(alert("x", trial * 2 + 1)["entities"][0].clone());
        let run = ingest(&server, "acme", &tokens["ingest"], &body).await;
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        // Each approval gets four voters at once: one wins per approval.
        let tasks = (0..8).map(|i| {
            let server = server.clone();
            let barrier = barrier.clone();
            let step = if i % 2 == 0 { "first" } else { "second" };
            let path = format!("/v1/tenants/acme/approvals/{run}.{step}/approve");
            let token = tokens[&format!("analyst-{}", i / 2 + 1)].clone();
            tokio::spawn(async move {
                barrier.wait().await;
                server
                    .json("POST", &path, &token, &json!({"reason": "both bad"}))
                    .await
                    .0
            })
        });
        let statuses: Vec<u16> = join_all(tasks)
            .await
            .into_iter()
            .map(|s| s.expect("task"))
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            2,
            "one winner per approval: {statuses:?}"
        );
        let shown = run_when_done(&server, &tokens["viewer"], &run).await;
        let both = shown["steps"]["first"]["status"] == "succeeded"
            && shown["steps"]["second"]["status"] == "succeeded"
            && shown["status"] == "succeeded";
        lost += usize::from(!both);
        assert!(both, "trial {trial}: a decision was lost: {shown}");
        let executed =
            audit_count(&server, "acme", &tokens["viewer"], &run, "action_executed").await;
        assert_eq!(executed, 2, "trial {trial}");
    }
    assert_eq!(lost, 0);
}

/// Tenant `acme` with the hostile fixture (it sleeps on request) and a
/// playbook that runs it, all put by the server admin.
async fn slow_tenant(server: &Server) {
    let admin = server.admin.clone();
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &admin,
            &json!({"id": "acme", "grants": {"default": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"], "kv_quota_bytes": 1048576}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload_fixture("hostile"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let playbook = "name: slow\ntrigger: { alert: 'true' }\nsteps:\n  - id: probe\n    enrich: hostile\n    timeout: 5s\n";
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/slow",
            Some(&admin),
            Some(playbook.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

fn sleepy(id: &str, ms: u32) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "source": "edr", "title": format!("sleep-ms {ms}"), "severity": "low"}),
    )
    .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn intake_answers_before_the_work_and_the_work_survives_a_hang_up() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    slow_tenant(&server).await;
    let admin = server.admin.clone();

    // respond-async: accepted (durable, queued), answered before the run.
    let (status, headers, body) = server
        .send(
            "POST",
            "/v1/tenants/acme/alerts",
            Some(&admin),
            Some(sleepy("async-1", 700)),
            None,
            &[("prefer", "respond-async")],
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["settled"], false, "{body}");
    assert_eq!(
        headers.get("preference-applied").map(|v| v.as_bytes()),
        Some(&b"respond-async"[..])
    );
    let run = body["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, shown) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(shown["status"], "running", "{shown}");
    let shown = run_when_done(&server, &admin, &run).await;
    assert_eq!(shown["status"], "succeeded", "{shown}");

    // wait=N: the answer comes when the run is done.
    let (status, _, body) = server
        .send(
            "POST",
            "/v1/tenants/acme/alerts",
            Some(&admin),
            Some(sleepy("wait-1", 200)),
            None,
            &[("prefer", "wait=20")],
        )
        .await;
    assert_eq!((status, &body["settled"]), (200, &json!(true)), "{body}");
    let run = body["results"][0]["runs"][0].as_str().expect("run");
    let (_, shown) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(shown["status"], "succeeded", "{shown}");

    // A client that hangs up mid-run: the run goes on without it. Ten at
    // once, each dropped while its plugin sleeps.
    let hang_ups = (0..10).map(|i| {
        let addr = server.addr;
        let admin = admin.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            let body = sleepy(&format!("gone-{i}"), 600);
            let head = format!(
                "POST /v1/tenants/acme/alerts HTTP/1.1\r\nhost: rampart\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream.write_all(head.as_bytes()).await.expect("write");
            stream.write_all(&body).await.expect("write");
            // Gone while the plugin sleeps.
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(stream);
        }
    });
    join_all(hang_ups).await;
    let (status, listed) = server
        .call("GET", "/v1/tenants/acme/runs?limit=100", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let mut finished = 0;
    for item in listed["runs"].as_array().expect("runs") {
        let id = item["id"].as_str().expect("id");
        let shown = run_when_done(&server, &admin, id).await;
        if shown["alert"]["id"]
            .as_str()
            .is_some_and(|a| a.starts_with("gone-"))
        {
            assert_eq!(shown["status"], "succeeded", "{shown}");
            finished += 1;
        }
    }
    assert_eq!(finished, 10, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approval_nobody_answers_is_denied_when_its_time_is_up() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let short = "name: short\ntrigger: { alert: 'true' }\nmode: supervised\nsteps:\n  - id: act\n    respond: edl-blocklist\n    target: 'alert.entities.ip[0]'\n    guard: { approvers: 1, approval_timeout: 1s, external_target: true }\n";
    let tokens = tenant(&server, "acme", &[("short", short.to_owned())], 1).await;
    let run = ingest(&server, "acme", &tokens["ingest"], &alert("late-1", 1)).await;
    let started = Instant::now();
    let shown = loop {
        let (_, shown) = server
            .call(
                "GET",
                &format!("/v1/tenants/acme/runs/{run}"),
                Some(&tokens["viewer"]),
                None,
            )
            .await;
        if shown["status"] != "waiting_approval" && shown["status"] != "running" {
            break shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never expired: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shown["steps"]["act"]["status"], "denied", "{shown}");
    assert_eq!(
        audit_count(&server, "acme", &tokens["viewer"], &run, "approval_expired").await,
        1
    );
    assert_eq!(
        audit_count(&server, "acme", &tokens["viewer"], &run, "action_executed").await,
        0
    );
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{run}.act/approve"),
            &tokens["analyst-1"],
            &json!({"reason": "too late"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}
