//! The HTTP API, served for real on a loopback port over a temp data dir:
//! the whole flow, the authorisation matrix, bad input, and a restart.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Server, upload, upload_fixture};

const PLAYBOOK: &str = r#"name: block
trigger: { alert: 'true' }
mode: supervised
steps:
  - id: risk
    score: risk-scorer
  - id: act
    respond: edl-blocklist
    needs: [risk]
    target: 'alert.entities.ip[0]'
    guard: { external_target: true }
"#;

fn alert(id: &str) -> Value {
    json!({"id": id, "source": "edr", "title": "beacon", "severity": "high", "entities": [{"kind": "ip", "value": "203.0.113.9"}]})
}

/// Sets up tenant `name` with plugins and the playbook; returns its tokens by role.
async fn tenant(server: &Server, name: &str) -> std::collections::BTreeMap<&'static str, String> {
    let admin = server.admin.clone();
    assert_eq!(server.json("POST", "/v1/tenants", &admin, &json!({"id": name, "grants": {"default": {"capabilities": ["log", "kv", "memory", "config"], "kv_quota_bytes": 1048576}}})).await.0, 201);
    for plugin in ["risk-scorer", "edl-blocklist"] {
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/{name}/plugins"),
                &admin,
                &upload(plugin),
            )
            .await;
        assert_eq!(status, 201, "{plugin}: {body}");
    }
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenants/{name}/playbooks/block"),
            Some(&admin),
            Some(PLAYBOOK.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/{name}/tokens"),
                &admin,
                &json!({"principal": format!("{role}@{name}"), "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tokens.insert(role, body["token"].as_str().expect("token").to_owned());
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_to_approved_action_over_http_then_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;

    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("a1"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run_id = body["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, again) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("a1"),
        )
        .await;
    assert_eq!(again["results"][0]["duplicate"], true);
    let mut changed = alert("a1");
    changed["title"] = json!("other");
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/alerts",
                &tokens["ingest"],
                &changed
            )
            .await
            .0,
        409
    );

    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    let approval = pending["approvals"][0]["id"]
        .as_str()
        .expect("approval")
        .to_owned();
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{approval}/approve"),
            &tokens["analyst"],
            &json!({"reason": "confirmed C2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["approvals"][0]["principal"], "analyst@acme",
        "approver identity comes from the token"
    );
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["steps"]["act"]["output"]["outcome"], "executed");
    let (_, verify) = server
        .call(
            "GET",
            "/v1/tenants/acme/audit/verify",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(verify["ok"], true, "{verify}");

    // Metrics: named for the admin, anonymous otherwise.
    let (_, metrics) = server
        .call("GET", "/metrics", Some(&server.admin), None)
        .await;
    let text = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains(
            "rampart_plugin_calls_total{tenant=\"acme\",plugin=\"risk-scorer\",outcome=\"ok\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("rampart_mttc_seconds_count{tenant=\"acme\"} 1"),
        "{text}"
    );
    let (_, anonymous) = server.call("GET", "/metrics", None, None).await;
    assert!(!anonymous.as_str().unwrap_or_default().contains("acme"));

    // Feedback goes into the run, entity memory and the measurements.
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/runs/{run_id}/feedback"),
            &tokens["analyst"],
            &json!({"label": "false_positive", "comment": "pentest"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["feedback"][0]["analyst"], "analyst@acme");
    assert_eq!(
        server
            .json(
                "POST",
                &format!("/v1/tenants/acme/runs/{run_id}/feedback"),
                &tokens["viewer"],
                &json!({"label": "benign"})
            )
            .await
            .0,
        403
    );
    assert_eq!(
        server
            .json(
                "POST",
                &format!("/v1/tenants/acme/runs/{run_id}/feedback"),
                &tokens["analyst"],
                &json!({"label": "meh"})
            )
            .await
            .0,
        400
    );
    let (_, stats) = server
        .call(
            "GET",
            "/v1/tenants/acme/measurements",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(
        stats["playbooks"][0]["current"]["false_positive_rate"], 1.0,
        "{stats}"
    );

    // A second alert waits for approval across the restart.
    let (_, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("a2"),
        )
        .await;
    let waiting_run = body["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let admin = server.stop().await;
    let server = Server::start(dir.path(), Some(admin)).await;
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs}");
    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&tokens["analyst"]),
            None,
        )
        .await;
    assert_eq!(
        pending["approvals"][0]["run_id"],
        waiting_run.as_str(),
        "{pending}"
    );
    let (_, playbooks) = server
        .call(
            "GET",
            "/v1/tenants/acme/playbooks",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(playbooks["playbooks"][0]["name"], "block");
    let (_, verify) = server
        .call(
            "GET",
            "/v1/tenants/acme/audit/verify",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(verify["ok"], true, "{verify}");
    // Plugins were restored at start (the upload finds them compiled already).
    let (_, again) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &server.admin,
            &upload("risk-scorer"),
        )
        .await;
    assert_eq!(again["artifact"], "memory", "{again}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix_and_tenant_isolation() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let (_, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &acme["ingest"],
            &alert("a1"),
        )
        .await;
    let run_id = body["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&acme["viewer"]),
            None,
        )
        .await;
    let approval = pending["approvals"][0]["id"]
        .as_str()
        .expect("approval")
        .to_owned();

    // (method, path, body, role that may) for every tenant endpoint.
    let endpoints: Vec<(&str, String, Option<Value>, &[&str])> = vec![
        (
            "GET",
            "/v1/tenants/acme/runs".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            format!("/v1/tenants/acme/runs/{run_id}"),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/playbooks".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/approvals".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/audit/verify".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/measurements".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/audit/export".into(),
            None,
            &["tenant-admin"],
        ),
        (
            "PUT",
            "/v1/tenants/acme/inventory".into(),
            Some(json!({"assets": []})),
            &["tenant-admin"],
        ),
        // A tenant admin may do everything in its tenant.
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            Some(alert("matrix")),
            &["ingest", "tenant-admin"],
        ),
        (
            "POST",
            format!("/v1/tenants/acme/approvals/{approval}/deny"),
            Some(json!({"reason": "matrix"})),
            &["analyst", "tenant-admin"],
        ),
    ];
    for (method, path, body, allowed) in &endpoints {
        for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
            if allowed.contains(&role) {
                continue; // exercised by the allowed calls below
            }
            let (status, reply) = match body {
                Some(body) => server.json(method, path, &acme[role], body).await,
                None => server.call(method, path, Some(&acme[role]), None).await,
            };
            assert_eq!(status, 403, "{role} {method} {path}: {reply}");
            assert!(
                reply["error"].is_string() && reply["detail"].is_string(),
                "error shape: {reply}"
            );
            // Tenant B's tokens of every role see nothing of tenant A.
            let (status, _) = match body {
                Some(body) => server.json(method, path, &globex[role], body).await,
                None => server.call(method, path, Some(&globex[role]), None).await,
            };
            assert_eq!(status, 404, "globex {role} {method} {path}");
        }
        let role = allowed[0];
        let (status, reply) = match body {
            Some(body) => server.json(method, path, &acme[role], body).await,
            None => server.call(method, path, Some(&acme[role]), None).await,
        };
        assert!(status < 300, "{role} {method} {path}: {status} {reply}");
    }
    // Admin-only endpoints.
    for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
        assert_eq!(
            server
                .call("GET", "/v1/tenants", Some(&acme[role]), None)
                .await
                .0,
            403,
            "{role}"
        );
        assert_eq!(
            server
                .json("POST", "/v1/tenants", &acme[role], &json!({"id": "evil"}))
                .await
                .0,
            403,
            "{role}"
        );
    }
    // Only an admin may grant private ranges.
    let grants = json!({"default": {"capabilities": ["http"], "http_hosts": ["10.0.0.5"], "allow_private": ["10.0.0.0/8"]}});
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/grants",
                &acme["tenant-admin"],
                &grants
            )
            .await
            .0,
        403
    );
    // Nothing changed for globex by acme's attempts, and acme's run is intact.
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/globex/runs",
            Some(&globex["viewer"]),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0));
    // No, garbage, revoked and expired tokens.
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some("rmp_forged"), None)
            .await
            .0,
        401
    );
    let (_, made) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &acme["tenant-admin"],
            &json!({"principal": "temp", "role": "viewer", "ttl_secs": 1}),
        )
        .await;
    let temp = made["token"].as_str().expect("token").to_owned();
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&temp), None)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&temp), None)
            .await
            .0,
        401,
        "expired"
    );
    let (_, made) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &acme["tenant-admin"],
            &json!({"principal": "gone", "role": "viewer"}),
        )
        .await;
    let gone = made["token"].as_str().expect("token").to_owned();
    let id = made["id"].as_str().expect("id").to_owned();
    assert_eq!(
        server
            .call(
                "POST",
                &format!("/v1/tenants/acme/tokens/{id}/revoke"),
                Some(&acme["tenant-admin"]),
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&gone), None)
            .await
            .0,
        401,
        "revoked"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_never_a_5xx() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let acme = tenant(&server, "acme").await;
    let ingest = &acme["ingest"];
    let viewer = &acme["viewer"];
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            b"{not json".to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            br#"{"id": 7}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            br#"{"id":"x","source":"s","title":"t","bogus":1}"#.to_vec(),
            400,
        ),
        ("GET", "/v1/tenants/..%2F..%2Fetc/runs".into(), vec![], 404),
        (
            "GET",
            "/v1/tenants/acme/runs/..%2F..%2Fsecrets".into(),
            vec![],
            404,
        ),
        ("GET", "/v1/nothing-here".into(), vec![], 404),
    ];
    // A 17 MiB body: the server answers 413 from the declared length and
    // closes without reading it (a client still writing would see a reset,
    // so this one sends the head only and reads the answer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /v1/tenants/acme/alerts HTTP/1.1\r\nhost: rampart\r\nauthorization: Bearer {ingest}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            17 << 20
        );
        let (mut reader, mut writer) = stream.into_split();
        // Write the whole body on the side; the server may stop reading it.
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let _ = writer.write_all(&vec![b' '; 17 << 20]).await;
            writer
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            reader.read_to_end(&mut answer),
        )
        .await;
        writing.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    for (method, path, body, expected) in cases {
        let token = if method == "GET" { viewer } else { ingest };
        let (status, reply) = server.call(method, &path, Some(token), Some(body)).await;
        assert_eq!(status, expected, "{method} {path}: {reply}");
        assert!(
            reply["error"].is_string(),
            "{path}: not our error shape: {reply}"
        );
    }
    let (status, reply) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/bad",
            Some(&server.admin),
            Some(b"name: bad\ntrigger: { alert: '(' }\nsteps: []\n".to_vec()),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    assert!(reply["location"][0]["line"].is_number(), "{reply}");
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &server.admin,
            &json!({"manifest": "name = 1", "wasm_base64": "AAAA"}),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    // Nothing half-written: no run from the refused alerts, no playbook `bad`.
    let (_, runs) = server
        .call("GET", "/v1/tenants/acme/runs", Some(&acme["viewer"]), None)
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0));
    let (_, playbooks) = server
        .call(
            "GET",
            "/v1/tenants/acme/playbooks",
            Some(&acme["viewer"]),
            None,
        )
        .await;
    assert_eq!(playbooks["playbooks"].as_array().map(Vec::len), Some(1));
    // /metrics needs a token (a `metrics` token sees no tenant names).
    let (status, _) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle)) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_secret_reaches_only_its_plugin_and_never_disk_or_api() {
    const CANARY: &str = "CANARY-7f3a9c1e-do-not-leak";
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let admin = server.admin.clone();
    let mut responses = Vec::new();
    let grants = json!({"default": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"], "kv_quota_bytes": 1048576}});
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants",
                &admin,
                &json!({"id": "acme", "grants": grants})
            )
            .await
            .0,
        201
    );
    for body in [upload_fixture("hostile"), upload("edl-blocklist")] {
        let (status, reply) = server
            .json("POST", "/v1/tenants/acme/plugins", &admin, &body)
            .await;
        assert_eq!(status, 201, "{reply}");
        responses.push(reply);
    }
    let playbook =
        "name: probe\ntrigger: { alert: 'true' }\nsteps:\n  - id: probe\n    enrich: hostile\n";
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/tenants/acme/playbooks/probe",
                Some(&admin),
                Some(playbook.as_bytes().to_vec())
            )
            .await
            .0,
        200
    );
    // Secrets do not travel in grants.
    let leaky = json!({"default": {"capabilities": ["config"], "secrets": {"api_token": CANARY}}});
    assert_eq!(
        server
            .json("PUT", "/v1/tenants/acme/grants", &admin, &leaky)
            .await
            .0,
        400
    );
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/plugins/hostile/secrets/api_token",
            &admin,
            &json!({"value": CANARY}),
        )
        .await;
    assert_eq!(status, 204, "{reply}");
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/plugins/edl-blocklist/secrets/other",
                &admin,
                &json!({"value": format!("{CANARY}-edl")})
            )
            .await
            .0,
        204
    );

    let probe =
        |title: &str| json!({"id": format!("probe-{title}"), "source": "test", "title": title});
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &probe("secret api_token"),
        )
        .await;
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        run["steps"]["probe"]["output"]["enrichments"][0]["tags"][0], "secret visible",
        "{run}"
    );
    responses.extend([reply, run]);
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &probe("secret other"),
        )
        .await;
    let other_run = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{other_run}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        run["steps"]["probe"]["output"]["enrichments"][0]["tags"][0], "secret absent",
        "another plugin's secret: {run}"
    );
    responses.extend([reply, run]);
    let (_, names) = server
        .call("GET", "/v1/tenants/acme/secrets", Some(&admin), None)
        .await;
    assert_eq!(
        names["secrets"].as_array().map(Vec::len),
        Some(2),
        "{names}"
    );
    responses.push(names);
    let (_, export) = server
        .call("GET", "/v1/tenants/acme/audit/export", Some(&admin), None)
        .await;
    responses.push(export);
    let (_, metrics) = server.call("GET", "/metrics", Some(&admin), None).await;
    responses.push(metrics);

    // After a restart with the same master key the secret works again.
    let admin = server.stop().await;
    let server = Server::start(dir.path(), Some(admin.clone())).await;
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &admin,
            &json!({"id": "probe-after", "source": "test", "title": "secret api_token"}),
        )
        .await;
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        run["steps"]["probe"]["output"]["enrichments"][0]["tags"][0], "secret visible",
        "after restart: {run}"
    );
    responses.push(run);
    server.stop().await;

    for response in &responses {
        assert!(
            !response.to_string().contains("CANARY-7f3a9c1e"),
            "an API response leaked the secret: {response}"
        );
    }
    let hits = files_containing(dir.path(), b"CANARY-7f3a9c1e");
    assert!(hits.is_empty(), "the secret is on disk in clear: {hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_detection_findings_are_ingested_as_alerts() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/alerts/ocsf-detection-finding.json"
    ))
    .expect("fixture");
    let finding: Value = serde_json::from_str(&text).expect("json");
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &finding,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    let alert = &run["alert"];
    assert_eq!(alert["id"], "ocsf-finding-0001");
    assert_eq!(alert["source"], "ExampleEDR");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["techniques"], json!(["T1059.001", "T1071"]));
    assert_eq!(
        alert["entities"][0],
        json!({"kind": "ip", "value": "77.239.124.102"}),
        "{alert}"
    );
    assert_eq!(run["steps"]["act"]["target"]["value"], "77.239.124.102");
    // Another OCSF class, or a finding without its uid, is refused with where.
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &json!([alert_value("ok-1"), {"class_uid": 3002}]),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["location"]["index"], 1, "{reply}");
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(1),
        "a refused batch accepts nothing"
    );
    server.stop().await;
}

fn alert_value(id: &str) -> Value {
    alert(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_the_router_and_hostile_requests_never_get_a_5xx() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let (status, doc) = server.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = rampart::api::openapi::ROUTES;
    assert_eq!(
        doc["paths"].as_object().map(|p| p
            .values()
            .map(|v| v.as_object().map_or(0, |o| o.len()))
            .sum::<usize>()),
        Some(routes.len())
    );
    let admin = server.admin.clone();
    // Every documented route exists (no "no such endpoint").
    for route in routes {
        let path = route
            .path
            .replace("{tenant}", "acme")
            .replace("{plugin}", "edl-blocklist");
        let path = path.replace("{name}", "block").replace("{id}", "x");
        let (_, reply) = server
            .call(
                &route.method.to_ascii_uppercase(),
                &path,
                Some(&admin),
                Some(b"{}".to_vec()),
            )
            .await;
        assert_ne!(
            reply["detail"], "no such endpoint",
            "{} {path} is documented but not routed",
            route.method
        );
    }
    // Hostile requests, generated from the served document: see
    // `schema_driven_requests_never_get_a_5xx`.
    schema_driven_fuzz(&server, &doc, &tokens["viewer"], 400).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_hunt_fires_once_per_event_and_its_finding_starts_a_playbook() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/plugins",
                &admin,
                &upload("cmdline-hunt")
            )
            .await
            .0,
        201
    );
    let playbook = "name: hunted\ntrigger: { alert: 'alert.source == \"hunt:cmdline\"' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/tenants/acme/playbooks/hunted",
                Some(&admin),
                Some(playbook.as_bytes().to_vec())
            )
            .await
            .0,
        200
    );
    let events = concat!(
        "{\"id\": \"e1\", \"time\": 1, \"data\": {\"CommandLine\": \"powershell.exe -nop -enc SQBFAFgA\", \"Hostname\": \"ws-1\"}}\n",
        "{\"id\": \"e2\", \"time\": 2, \"data\": {\"CommandLine\": \"notepad.exe\"}}\n",
    );
    let (status, reply) = server
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tokens["ingest"]),
            Some(events.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(
        (status, reply["stored"].clone()),
        (200, json!(2)),
        "{reply}"
    );
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/hunts/cmdline",
            &admin,
            &json!({"plugin": "cmdline-hunt", "schedule": "*/1 * * * * *"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/hunts/bad",
                &admin,
                &json!({"plugin": "cmdline-hunt", "schedule": "every tuesday"})
            )
            .await
            .0,
        400
    );
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/hunts/bad",
                &admin,
                &json!({"plugin": "risk-scorer", "schedule": "*/5 * * * *"})
            )
            .await
            .0,
        400
    );

    // The scheduler fires within a few seconds; the finding becomes an alert and a run.
    let mut hunted = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, runs) = server
            .call(
                "GET",
                "/v1/tenants/acme/runs",
                Some(&tokens["viewer"]),
                None,
            )
            .await;
        hunted = runs["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["playbook"] == "hunted")
            .collect();
        if !hunted.is_empty() {
            break;
        }
    }
    let (_, hunts) = server
        .call(
            "GET",
            "/v1/tenants/acme/hunts",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(
        hunted.len(),
        1,
        "the hunt's finding should start one run: {hunts}"
    );
    assert_eq!(hunted[0]["alert"], "hunt:cmdline:encoded-powershell:e1");
    // More events: only they are scanned (the watermark moved), nothing rescanned.
    let more = "{\"id\": \"e3\", \"time\": 3, \"data\": {\"CommandLine\": \"vssadmin delete shadows /all\"}}\n";
    server
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tokens["ingest"]),
            Some(more.as_bytes().to_vec()),
        )
        .await;
    let (_, ran) = server
        .call(
            "POST",
            "/v1/tenants/acme/hunts/cmdline/run",
            Some(&admin),
            None,
        )
        .await;
    assert!(
        ran["hunt"]["last_scanned"].as_u64().unwrap_or(99) <= 1,
        "rescanned old events: {ran}"
    );
    for _ in 0..25 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (_, runs) = server
            .call(
                "GET",
                "/v1/tenants/acme/runs",
                Some(&tokens["viewer"]),
                None,
            )
            .await;
        hunted = runs["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["playbook"] == "hunted")
            .collect();
        if hunted.len() >= 2 {
            break;
        }
    }
    assert_eq!(
        hunted.len(),
        2,
        "one run per finding, each event once: {hunted:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_rate_limited_per_tenant() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let admin = server.admin.clone();
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants",
                &admin,
                &json!({"id": "slow", "ingest_per_second": 2})
            )
            .await
            .0,
        201
    );
    let batch: Vec<Value> = (0..4).map(|i| alert(&format!("r{i}"))).collect();
    assert_eq!(
        server
            .json("POST", "/v1/tenants/slow/alerts", &admin, &json!(batch))
            .await
            .0,
        200,
        "burst of 2x the rate"
    );
    let (status, reply) = server
        .json("POST", "/v1/tenants/slow/alerts", &admin, &alert("r9"))
        .await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"], "rate_limited");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_plugin_lifecycle_playbook_switch_and_queries() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    // Taking `memory` away from the loaded risk-scorer would strand it at
    // the next start: refused, naming the plugin and what it needs.
    let narrow = json!({"default": {"capabilities": ["log", "kv", "config", "http"], "kv_quota_bytes": 1048576}});
    let (status, body) = server
        .json("PUT", "/v1/tenants/acme/grants", &admin, &narrow)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "grants_in_use");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`risk-scorer` needs memory")),
        "{body}"
    );
    let grants = json!({"default": {"capabilities": ["log", "kv", "memory", "config", "http", "intel"], "kv_quota_bytes": 1048576}});
    assert_eq!(
        server
            .json("PUT", "/v1/tenants/acme/grants", &admin, &grants)
            .await
            .0,
        200
    );
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload_fixture("hostile"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let probe = "name: probe\ntrigger: { alert: 'alert.source == \"probe\"' }\nsteps:\n  - id: probe\n    enrich: hostile\n    timeout: 300ms\n    on_error: continue\n";
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/probe",
            Some(&admin),
            Some(probe.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let send = |id: &str, title: &str| json!({"id": id, "source": "probe", "title": title});
    let step_error = |run: &Value| {
        run["steps"]["probe"]["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // The tenant's `block` playbook runs on every alert too; `probe` sorts
    // after it.
    let run_of = |reply: &Value| {
        reply["results"][0]["runs"]
            .as_array()
            .and_then(|runs| runs.last())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };

    // Quotas are the operator's: a tenant admin may read but not set them.
    let quota = json!({"memory_per_call_bytes": 2_097_152});
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/quotas",
                &tokens["tenant-admin"],
                &quota
            )
            .await
            .0,
        403
    );
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/quotas",
            &admin,
            &json!({"fuel_per_minute": 0}),
        )
        .await;
    assert_eq!(
        (status, reply["location"]["field"].as_str()),
        (400, Some("fuel_per_minute")),
        "{reply}"
    );
    let (status, reply) = server
        .json("PUT", "/v1/tenants/acme/quotas", &admin, &quota)
        .await;
    assert_eq!(status, 200, "{reply}");
    let (_, read) = server
        .call(
            "GET",
            "/v1/tenants/acme/quotas",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(read["quotas"]["memory_per_call_bytes"], 2_097_152);
    // Memory per call: the same plugin now stops at 2 MiB.
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &send("m1", "oom"),
        )
        .await;
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{}", run_of(&reply)),
            Some(&admin),
            None,
        )
        .await;
    assert!(step_error(&run).contains("2097152"), "{run}");

    // Fuel per minute: a tiny budget runs out, then calls are refused.
    let (status, _) = server
        .json(
            "PUT",
            "/v1/tenants/acme/quotas",
            &admin,
            &json!({"fuel_per_minute": 1000}),
        )
        .await;
    assert_eq!(status, 200);
    for id in ["f1", "f2"] {
        let (_, reply) = server
            .json(
                "POST",
                "/v1/tenants/acme/alerts",
                &tokens["ingest"],
                &send(id, "loop"),
            )
            .await;
        let (_, run) = server
            .call(
                "GET",
                &format!("/v1/tenants/acme/runs/{}", run_of(&reply)),
                Some(&admin),
                None,
            )
            .await;
        assert!(step_error(&run).contains("quota exceeded"), "{id}: {run}");
    }
    let (_, metrics) = server.call("GET", "/metrics", Some(&admin), None).await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(metrics.contains("outcome=\"quota_exceeded\""), "{metrics}");
    assert!(
        metrics.contains(
            "rampart_plugin_call_duration_seconds_bucket{tenant=\"acme\",plugin=\"hostile\""
        ),
        "{metrics}"
    );

    // Concurrent runs: with one slot, three 300 ms runs sent at once take
    // at least three times as long as one.
    let (status, _) = server
        .json(
            "PUT",
            "/v1/tenants/acme/quotas",
            &admin,
            &json!({"max_concurrent_runs": 1}),
        )
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let bodies = ["c1", "c2", "c3"].map(|id| send(id, "sleep"));
    let sends = bodies
        .iter()
        .map(|body| server.json("POST", "/v1/tenants/acme/alerts", &tokens["ingest"], body));
    for (status, reply) in futures::future::join_all(sends).await {
        assert_eq!(status, 200, "{reply}");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // Inspect, then delete: refused while a playbook uses the plugin.
    let (status, found) = server
        .call(
            "GET",
            "/v1/tenants/acme/plugins/hostile",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["used_by"], json!(["probe"]));
    assert!(
        found["component"]["imports"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{found}"
    );
    let (status, reply) = server
        .call(
            "DELETE",
            "/v1/tenants/acme/plugins/hostile",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("playbook probe")
    );
    assert_eq!(
        server
            .call(
                "DELETE",
                "/v1/tenants/acme/plugins/hostile",
                Some(&tokens["analyst"]),
                None
            )
            .await
            .0,
        403
    );
    let unused = "name: probe\ntrigger: { alert: 'alert.source == \"probe\"' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
    assert_eq!(
        server
            .call(
                "PUT",
                "/v1/tenants/acme/playbooks/probe",
                Some(&admin),
                Some(unused.as_bytes().to_vec())
            )
            .await
            .0,
        200
    );
    let (status, reply) = server
        .call(
            "DELETE",
            "/v1/tenants/acme/plugins/hostile",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{reply}");
    assert_eq!(
        server
            .call(
                "GET",
                "/v1/tenants/acme/plugins/hostile",
                Some(&admin),
                None
            )
            .await
            .0,
        404
    );

    // Disable: alerts start no run of that playbook; enable: they do again.
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/tenants/acme/playbooks/probe/disable",
                Some(&tokens["viewer"]),
                None
            )
            .await
            .0,
        403
    );
    let (status, reply) = server
        .call(
            "POST",
            "/v1/tenants/acme/playbooks/probe/disable",
            Some(&tokens["tenant-admin"]),
            None,
        )
        .await;
    assert_eq!((status, &reply["enabled"]), (200, &json!(false)), "{reply}");
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &send("d1", "ok"),
        )
        .await;
    assert_eq!(
        reply["results"][0]["runs"].as_array().map(Vec::len),
        Some(1),
        "only `block` ran: {reply}"
    );
    let (_, listed) = server
        .call("GET", "/v1/tenants/acme/playbooks", Some(&admin), None)
        .await;
    assert!(
        listed["playbooks"].as_array().is_some_and(|l| l
            .iter()
            .any(|p| p["name"] == "probe" && p["enabled"] == false)),
        "{listed}"
    );

    // Run filters.
    let (_, waiting) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("w1"),
        )
        .await;
    let (status, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs?status=waiting_approval",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(
        runs["runs"][0]["id"].as_str(),
        Some(run_of(&waiting).as_str())
    );
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs?playbook=probe&limit=2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(2), "{runs}");
    // The rest of the pages, by cursor: six in all, none twice.
    let mut seen: Vec<String> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut next = runs["next"].as_str().map(str::to_owned);
    while let Some(cursor) = next {
        let (_, page) = server
            .call(
                "GET",
                &format!("/v1/tenants/acme/runs?playbook=probe&limit=2&before={cursor}"),
                Some(&admin),
                None,
            )
            .await;
        seen.extend(
            page["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (6, 6), "{seen:?}");
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs?alert=c2&playbook=probe",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(1), "{runs}");
    let (status, reply) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs?status=sideways",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_query")),
        "{reply}"
    );
    let (status, reply) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs?colour=red",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "{reply}");

    // Audit queries by kind and time, paged; the signed head.
    let (status, page) = server
        .call(
            "GET",
            "/v1/tenants/acme/audit?kind=config_changed&limit=3",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let records = page["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r["kind"] == "config_changed"));
    let after = page["next_after_seq"].as_u64().expect("more pages");
    let (_, next) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/audit?kind=config_changed&after_seq={after}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(
        next["records"][0]["seq"]
            .as_u64()
            .is_some_and(|s| s > after),
        "{next}"
    );
    let future = rampart::executor::now_ms() + 3_600_000;
    let (_, none) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/audit?since={future}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(none["records"], json!([]));
    let (_, head) = server
        .call("GET", "/v1/tenants/acme/audit/head", Some(&admin), None)
        .await;
    let (_, verify) = server
        .call("GET", "/v1/tenants/acme/audit/verify", Some(&admin), None)
        .await;
    assert_eq!(
        head["head"]["hash"], verify["report"]["head"],
        "{head} {verify}"
    );
    assert!(
        head["head"]["mac"].as_str().is_some_and(|m| m.len() == 64),
        "{head}"
    );

    // After a restart: quota, deletion and the disabled switch hold.
    let admin = server.stop().await;
    let server = Server::start(dir.path(), Some(admin.clone())).await;
    let (_, read) = server
        .call("GET", "/v1/tenants/acme/quotas", Some(&admin), None)
        .await;
    assert_eq!(read["quotas"]["max_concurrent_runs"], 1, "{read}");
    assert_eq!(
        server
            .call(
                "GET",
                "/v1/tenants/acme/plugins/hostile",
                Some(&admin),
                None
            )
            .await
            .0,
        404
    );
    let (_, reply) = server
        .json("POST", "/v1/tenants/acme/alerts", &admin, &send("d2", "ok"))
        .await;
    assert_eq!(
        reply["results"][0]["runs"].as_array().map(Vec::len),
        Some(1),
        "only `block` ran: {reply}"
    );
    let (_, plugins) = server
        .call("GET", "/v1/tenants/acme/plugins", Some(&admin), None)
        .await;
    assert!(
        plugins["plugins"]
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|p| p["artifact"] == "cache")),
        "after a restart plugins come from the disk cache: {plugins}"
    );
    server.stop().await;
}

/// Receives HTTP requests and hands each (head, body) to the test.
async fn webhook_receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (sink, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut bytes = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                let Ok(read) = socket.read(&mut buf).await else {
                    break (String::new(), Vec::new());
                };
                if read == 0 {
                    break (String::new(), Vec::new());
                }
                bytes.extend_from_slice(&buf[..read]);
                let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    break (head, bytes[end + 4..end + 4 + length].to_vec());
                }
            };
            let _ = socket
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = sink.send((head, body));
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_is_announced_to_a_signed_webhook() {
    use hmac::Mac as _;
    const SECRET: &str = "whsec-0123456789abcdef";
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let (port, mut received) = webhook_receiver().await;
    let hook = json!({"url": format!("http://127.0.0.1:{port}/hooks/rampart"), "secret": SECRET});
    // A loopback receiver is an internal address: a tenant admin may not
    // point the server at it, an admin may.
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/webhooks/approvals",
            &tokens["tenant-admin"],
            &hook,
        )
        .await;
    assert_eq!(status, 403, "{reply}");
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/webhooks/approvals",
            &admin,
            &json!({"url": "ftp://x/", "secret": SECRET}),
        )
        .await;
    assert_eq!(
        (status, reply["location"]["field"].as_str()),
        (400, Some("url")),
        "{reply}"
    );
    let (status, reply) = server
        .json("PUT", "/v1/tenants/acme/webhooks/approvals", &admin, &hook)
        .await;
    assert_eq!(status, 200, "{reply}");
    let (_, shown) = server
        .call(
            "GET",
            "/v1/tenants/acme/webhooks/approvals",
            Some(&admin),
            None,
        )
        .await;
    assert!(!shown.to_string().contains(SECRET), "{shown}");

    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("hook-1"),
        )
        .await;
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (head, body) = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
        .await
        .expect("the webhook was called")
        .expect("a request");
    assert!(head.starts_with("post /hooks/rampart "), "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    // The receiver's check, written independently of the server's code.
    let timestamp = header("x-rampart-timestamp");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header("x-rampart-signature"), expected);
    let now = rampart::executor::now_ms() / 1000;
    assert!((now - timestamp.parse::<i64>().expect("timestamp")).abs() < 60);
    let announced: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(announced["event"], "approval.requested");
    assert_eq!(announced["approval"]["run_id"], json!(run_id));
    let approval = announced["approval"]["id"].as_str().expect("id");
    assert_eq!(
        announced["approve"],
        json!(format!("/v1/tenants/acme/approvals/{approval}/approve"))
    );
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    // The announced approval is the pending one, and can be approved.
    let (status, decided) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{approval}/approve"),
            &tokens["analyst"],
            &json!({"reason": "paged via webhook"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let (_, shown) = server
        .call(
            "GET",
            "/v1/tenants/acme/webhooks/approvals",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(shown["deliveries"]["delivered"], 1, "{shown}");
    assert_eq!(
        server
            .call(
                "DELETE",
                "/v1/tenants/acme/webhooks/approvals",
                Some(&admin),
                None
            )
            .await
            .0,
        204
    );
    let _ = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("hook-2"),
        )
        .await;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "a removed webhook is not called"
    );
    let files = files_containing(dir.path(), SECRET.as_bytes());
    assert!(
        files.is_empty(),
        "the webhook secret is on disk in clear: {files:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let missing =
        rampart::api::tls::server_config(&fixtures.join("nope.pem"), &fixtures.join("key.pem"));
    assert!(
        missing
            .as_ref()
            .is_err_and(|e| e.to_string().contains("nope.pem")),
        "{missing:?}"
    );
    let swapped =
        rampart::api::tls::server_config(&fixtures.join("key.pem"), &fixtures.join("cert.pem"));
    assert!(swapped.is_err(), "a key file is not a certificate");
    let config =
        rampart::api::tls::server_config(&fixtures.join("cert.pem"), &fixtures.join("key.pem"))
            .expect("fixture cert");
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_with(dir.path(), None, Some(config)).await;

    // A client that trusts only the fixture certificate.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixtures.join("ca.pem")).expect("ca");
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    // A silent client that never handshakes holds up nobody.
    let _silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, stream).await.expect("handshake");
    let request = format!(
        "GET /v1/tenants HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        server.admin
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"tenants\""), "{answer}");
    // Plain HTTP on the TLS port gets no API answer.
    let (status, _) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut plain = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let _ = plain
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        (String::from_utf8_lossy(&buf).into_owned(), ())
    })
    .await
    .expect("the server closes a plain-HTTP connection");
    assert!(!status.contains("200 OK"), "{status}");
    server.stop().await;
}

/// Requests generated from the OpenAPI document with proptest: every
/// operation, its path parameters (hostile strings, traversal, huge,
/// other tenants), its query parameters by declared type (and garbage),
/// and bodies (hostile, arbitrary JSON, raw bytes). Never a 5xx; every
/// error in our JSON shape.
async fn schema_driven_fuzz(server: &Server, doc: &Value, viewer: &str, cases: u32) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    // The document is a valid OpenAPI 3.1 document: it parses, every
    // reference resolves, every templated path parameter is declared.
    let text = doc.to_string();
    let spec = oas3::from_json(&text).expect("OpenAPI 3.1 document");
    assert!(
        spec.validate_version()
            .is_ok_and(|v| v.major == 3 && v.minor == 1)
    );
    let mut operations = Vec::new();
    for (path, method, operation) in spec.operations() {
        let parameters = operation.parameters(&spec).expect("parameters resolve");
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    parameters.iter().any(|p| p.name == name),
                    "{method} {path}: {{{name}}} undeclared"
                );
            }
        }
        operation
            .request_body(&spec)
            .expect("request body resolves");
        let raw = &doc["paths"][&path][method.as_str().to_ascii_lowercase()]["responses"];
        assert_eq!(
            operation.responses(&spec).len(),
            raw.as_object().map_or(0, |o| o.len()),
            "{method} {path}: every response resolves"
        );
        let query: Vec<(String, String)> = parameters
            .iter()
            .filter(|p| matches!(p.location, oas3::spec::ParameterIn::Query))
            .map(|p| {
                let kind = doc["paths"][&path][method.as_str().to_ascii_lowercase()]["parameters"]
                    .as_array()
                    .and_then(|all| all.iter().find(|q| q["name"] == json!(p.name)))
                    .and_then(|q| q["schema"]["type"].as_str())
                    .unwrap_or("string")
                    .to_owned();
                (p.name.clone(), kind)
            })
            .collect();
        operations.push((method.as_str().to_owned(), path.clone(), query));
    }
    assert_eq!(operations.len(), rampart::api::openapi::ROUTES.len());

    let segment = prop_oneof![
        Just("acme".to_owned()),
        Just("globex".to_owned()),
        Just("..".to_owned()),
        Just("..%2F..%2Fetc".to_owned()),
        Just("%00".to_owned()),
        Just("%FF%FE".to_owned()),
        Just("%E2%80%AE".to_owned()),
        Just("z".repeat(3000)),
        "[a-z0-9-]{1,12}",
        "\\PC{0,16}".prop_map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>()),
    ];
    let query_value = |kind: &str| -> BoxedStrategy<String> {
        match kind {
            "integer" => prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just("-1".to_owned()),
                Just("1e400".to_owned()),
                "[a-z%]{0,8}",
            ]
            .boxed(),
            _ => prop_oneof![
                Just("running".to_owned()),
                Just("action_executed".to_owned()),
                "[a-z_%0-9]{0,20}",
            ]
            .boxed(),
        }
    };
    let json_leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    let json_value = json_leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("grants".to_owned()),
                    Just("value".to_owned()),
                    Just("manifest".to_owned()),
                    Just("url".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        json_value.prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        Just(
            b"name: x\ntrigger: {alert: 'true'}\nsteps: [{id: a, enrich: risk-scorer}]\n".to_vec()
        ),
        Just(br#"{"class_uid": 2004, "finding_info": {"uid": 5}}"#.to_vec()),
        Just(br#"{"manifest": "name = \"x\"", "wasm_base64": "!!!"}"#.to_vec()),
    ];
    let ops = operations.clone();
    let request = (0..ops.len()).prop_flat_map(move |index| {
        let (_, path, query) = ops[index].clone();
        let names: Vec<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let query_strategies: Vec<BoxedStrategy<Option<(String, String)>>> = query
            .iter()
            .map(|(name, kind)| {
                let name = name.clone();
                proptest::option::of(query_value(kind).prop_map(move |v| (name.clone(), v))).boxed()
            })
            .collect();
        (
            Just(index),
            proptest::collection::vec(segment.clone(), names.len()),
            query_strategies,
            body.clone(),
            any::<bool>(),
        )
    });
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let admin = server.admin.clone();
    let sent = std::sync::atomic::AtomicU32::new(0);
    let by_status = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&request, |(index, segments, query, body, as_viewer)| {
            let (method, template, _) = &operations[index];
            let mut segments = segments.into_iter();
            let mut path = template
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        segments.next().unwrap_or_default()
                    } else {
                        s.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let pairs: Vec<String> = query
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !pairs.is_empty() {
                path = format!("{path}?{}", pairs.join("&"));
            }
            let token = if as_viewer { viewer } else { admin.as_str() };
            let (status, reply) = handle.block_on(server.call(
                &method.to_ascii_uppercase(),
                &path,
                Some(token),
                Some(body),
            ));
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *by_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(status)
                .or_default() += 1;
            prop_assert!(status < 500, "{method} {path}: {status} {reply}");
            if status >= 400 {
                prop_assert!(
                    reply["error"].is_string(),
                    "{method} {path}: {status} not our error shape: {reply}"
                );
            }
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(sent.into_inner(), cases);
    let by_status = by_status
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The generator reaches past authorisation and validation too.
    assert!(
        by_status.keys().any(|s| *s < 300) && by_status.keys().any(|s| *s == 400),
        "{by_status:?}"
    );
    eprintln!("schema-driven fuzz: {cases} requests by status {by_status:?}");
}

/// The EDL a firewall polls: plain text, basic auth with a tenant token,
/// only the tenant's own list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edl_is_served_to_firewalls_with_basic_auth() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("edl-1"),
        )
        .await;
    assert!(reply["results"][0]["runs"][0].is_string(), "{reply}");
    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    let approval = pending["approvals"][0]["id"]
        .as_str()
        .expect("approval")
        .to_owned();
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{approval}/approve"),
            &tokens["analyst"],
            &json!({"reason": "confirmed C2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let basic = |token: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("firewall:{token}"))
        )
    };
    let get = |auth: Option<String>, path: &'static str| {
        let addr = server.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let auth = auth
                .map(|a| format!("authorization: {a}\r\n"))
                .unwrap_or_default();
            let request =
                format!("GET {path} HTTP/1.1\r\nhost: fw\r\n{auth}connection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let listed = get(Some(basic(&tokens["viewer"])), "/edl/acme/block").await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains("content-type: text/plain"), "{listed}");
    assert!(listed.ends_with("203.0.113.9\n"), "{listed}");
    let anonymous = get(None, "/edl/acme/block").await;
    assert!(
        anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("www-authenticate: Basic"),
        "{anonymous}"
    );
    let forged = get(Some(basic("rmp_forged")), "/edl/acme/block").await;
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    let foreign = get(Some(basic(&globex["viewer"])), "/edl/acme/block").await;
    assert!(
        foreign.starts_with("HTTP/1.1 404"),
        "another tenant's token: {foreign}"
    );
    let empty = get(Some(basic(&globex["viewer"])), "/edl/globex/block").await;
    assert!(
        empty.starts_with("HTTP/1.1 200") && empty.ends_with("\r\n\r\n\n"),
        "{empty}"
    );
    let traversal = get(Some(basic(&tokens["viewer"])), "/edl/acme/..%2Fidem").await;
    assert!(traversal.starts_with("HTTP/1.1 404"), "{traversal}");
    server.stop().await;
}

/// Inventory and identity imports over HTTP: the example CSVs are accepted
/// and read back; a file with problems is refused with every problem (line
/// and column) and the old table stays in place; roles apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_identities_import_as_csv() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/context");
    let assets = std::fs::read_to_string(format!("{examples}/assets.csv")).expect("assets");
    let users = std::fs::read_to_string(format!("{examples}/users.csv")).expect("users");

    let (status, body) = server
        .csv("/v1/tenants/acme/inventory", &admin, &assets)
        .await;
    assert_eq!((status, &body["assets"]), (200, &json!(11)), "{body}");
    let (status, body) = server
        .csv("/v1/tenants/acme/identities", &admin, &users)
        .await;
    assert_eq!((status, &body["identities"]), (200, &json!(6)), "{body}");

    let bad = "hostname,ips,criticality\nweb-1,10.0.0.300,extreme\nweb-1,,low\n";
    let (status, body) = server.csv("/v1/tenants/acme/inventory", &admin, bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_table");
    let problems = body["location"]["problems"].as_array().expect("problems");
    let lines: Vec<(u64, &str)> = problems
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().expect("line"),
                p["column"].as_str().expect("column"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [(2, "ips"), (2, "criticality"), (3, "hostname")],
        "{body}"
    );

    let viewer = &tokens["viewer"];
    let (status, inventory) = server
        .call("GET", "/v1/tenants/acme/inventory", Some(viewer), None)
        .await;
    assert_eq!(status, 200);
    let assets = inventory["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 11, "the refused file replaced nothing");
    let dc = assets
        .iter()
        .find(|a| a["name"] == "MORDORDC.theshire.local")
        .expect("dc");
    assert_eq!(
        (&dc["criticality"], &dc["protected"]),
        (&json!("critical"), &json!(true))
    );
    let (status, people) = server
        .call("GET", "/v1/tenants/acme/identities", Some(viewer), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(people["identities"][0]["user"], "wardog");
    assert_eq!(people["identities"][0]["privileged"], true);
    let (status, _) = server
        .csv("/v1/tenants/acme/identities", viewer, &users)
        .await;
    assert_eq!(status, 403, "a viewer cannot replace the directory");
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/identities",
            Some(&admin),
            Some(b"{\"identities\": 3}".to_vec()),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_json")),
        "{body}"
    );
}
