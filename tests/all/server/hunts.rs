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
    server.stop().await;
}
