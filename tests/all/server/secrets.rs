//! A canary secret reaches only its plugin: never the disk, the API, the log or the audit chain.

use super::*;

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
