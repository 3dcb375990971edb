//! Scheduled hunts fire once per event, and their findings start playbooks.

use super::*;

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
    read_back(&server, &tokens["viewer"], &hunted).await;
    server.stop().await;
}

/// The OCSF 1.8 Detection Finding validator (`fixtures/ocsf`).
fn ocsf_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/ocsf/detection_finding-1.8.0.schema.json"
        ))
        .expect("schema"),
    )
    .expect("schema json");
    jsonschema::validator_for(&schema).expect("compile schema")
}

fn valid_ocsf(validator: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
}

/// The hunt's findings, their alerts and runs read back, as Rampart JSON
/// and as OCSF, paged, and exported as NDJSON.
async fn read_back(server: &Server, viewer: &str, hunted: &[Value]) {
    let get = |path: String| async move { server.call("GET", &path, Some(viewer), None).await };
    let (status, page) = get("/v1/tenants/acme/hunts/cmdline/findings?limit=1".into()).await;
    assert_eq!(status, 200, "{page}");
    let first = &page["findings"][0];
    assert_eq!(
        first["alert_id"], "hunt:cmdline:encoded-powershell:e1",
        "{page}"
    );
    assert_eq!(first["finding"]["rule_id"], "encoded-powershell");
    assert_eq!(first["finding"]["event_ids"], json!(["e1"]));
    let next = page["next"].as_str().expect("a second page").to_owned();
    let (_, second) = get(format!(
        "/v1/tenants/acme/hunts/cmdline/findings?limit=1&after={next}"
    ))
    .await;
    assert_eq!(
        second["findings"].as_array().map(Vec::len),
        Some(1),
        "{second}"
    );
    assert_ne!(second["findings"][0]["alert_id"], first["alert_id"]);
    let (_, last) = get(format!(
        "/v1/tenants/acme/hunts/cmdline/findings?limit=1&after={}",
        second["next"].as_str().unwrap_or_default()
    ))
    .await;
    assert!(
        last["findings"].as_array().is_some_and(Vec::is_empty) && last["next"].is_null(),
        "two findings in all: {last}"
    );
    let validator = ocsf_validator();
    let (_, ocsf) = get("/v1/tenants/acme/hunts/cmdline/findings?format=ocsf".into()).await;
    let docs = ocsf["findings"].as_array().expect("findings");
    assert_eq!(docs.len(), 2, "{ocsf}");
    for doc in docs {
        valid_ocsf(&validator, doc);
        assert_eq!(doc["class_uid"], 2004);
    }
    // The alert a finding became, with its run.
    let (status, alert) =
        get("/v1/tenants/acme/alerts/hunt:cmdline:encoded-powershell:e1".into()).await;
    assert_eq!(status, 200, "{alert}");
    assert_eq!(alert["alert"]["source"], "hunt:cmdline");
    let run_of_finding = &hunted
        .iter()
        .find(|r| r["alert"] == "hunt:cmdline:encoded-powershell:e1")
        .expect("run")["id"];
    assert!(
        alert["runs"]
            .as_array()
            .is_some_and(|runs| runs.contains(run_of_finding)),
        "{alert}"
    );
    assert_eq!(get("/v1/tenants/acme/alerts/nope".into()).await.0, 404);
    // A run as OCSF.
    let run_id = hunted[0]["id"].as_str().expect("run id");
    let (status, run) = get(format!("/v1/tenants/acme/runs/{run_id}?format=ocsf")).await;
    assert_eq!(status, 200, "{run}");
    valid_ocsf(&validator, &run);
    assert_eq!(run["finding_info"]["uid"], run_id);
    assert_eq!(
        get(format!("/v1/tenants/acme/runs/{run_id}?format=xml"))
            .await
            .0,
        400
    );
    // Both as NDJSON for a SIEM.
    let (status, headers, export) = server
        .send(
            "GET",
            "/v1/tenants/acme/ocsf/export",
            Some(viewer),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-ndjson");
    assert_eq!(headers["x-rampart-truncated"], "false");
    let export = export
        .as_str()
        .expect("several lines are not one JSON document")
        .to_owned();
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect();
    let (_, runs) = get("/v1/tenants/acme/runs".into()).await;
    let total = runs["total"].as_u64().expect("total") as usize;
    assert_eq!(
        lines.len(),
        total + 2,
        "every run and both findings: {lines:?}"
    );
    for doc in &lines {
        valid_ocsf(&validator, doc);
    }
    assert_eq!(
        get("/v1/tenants/globex/hunts/cmdline/findings".into())
            .await
            .0,
        404,
        "another tenant's hunts"
    );
}
