//! An alert to an approved action over HTTP and across a restart; quotas, the plugin lifecycle, switching playbooks and queries.

use super::*;

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

    let body = approve_first_pending(&server, &tokens).await;
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
    // Every run has settled: nothing waits for a worker.
    assert!(text.contains("\nrampart_work_queued 0\n"), "{text}");
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
