//! Per-rule precision from analyst feedback, the values false positives
//! share, a filter to review, and muting a rule (audited, honoured by the
//! next hunt run).

use super::*;

const RULE: &str = "title: Acme calc\nid: acme-calc\nauthor: Acme SOC\nlevel: critical\nlogsource: { product: windows, category: process_creation }\ndetection:\n  selection:\n    Image|endswith: '\\\\calc.exe'\n  condition: selection\n";

fn calc(id: &str, parent: &str) -> String {
    let event = json!({"id": id, "time": 1, "data": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
        "Image": "C:\\Windows\\System32\\calc.exe", "CommandLine": "calc.exe", "ParentImage": parent, "Hostname": format!("ws-{id}")}});
    format!("{event}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_report_precision_from_feedback_and_a_muted_rule_stays_quiet() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let viewer = tokens["viewer"].as_str();
    let served = &server;
    let get = |path: String| async move { served.call("GET", &path, Some(viewer), None).await };
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload("sigma-hunt"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let explorer = "C:\\Windows\\explorer.exe";
    let events = [
        calc("e1", explorer),
        calc("e2", explorer),
        calc("e3", "C:\\Program Files\\Office\\WINWORD.EXE"),
    ]
    .concat();
    let (status, _) = server
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tokens["ingest"]),
            Some(events.into_bytes()),
        )
        .await;
    assert_eq!(status, 200);
    let hunt = json!({"plugin": "sigma-hunt", "schedule": "0 0 1 1 *", "params": {"min_level": "critical", "extra_rules": RULE}});
    let (status, body) = server
        .json("PUT", "/v1/tenants/acme/hunts/sigma", &admin, &hunt)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, ran) = server
        .call(
            "POST",
            "/v1/tenants/acme/hunts/sigma/run",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ran}");
    // Each finding's alert has a run; analysts label them.
    for (event, label) in [
        ("e1", "false_positive"),
        ("e2", "false_positive"),
        ("e3", "true_positive"),
    ] {
        let (_, alert) = get(format!(
            "/v1/tenants/acme/alerts/hunt:sigma:acme-calc:{event}"
        ))
        .await;
        let run = alert["runs"][0]
            .as_str()
            .unwrap_or_else(|| panic!("a run for {event}: {alert}"))
            .to_owned();
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/acme/runs/{run}/feedback"),
                &tokens["analyst"],
                &json!({"label": label}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, report) = get("/v1/tenants/acme/detections".to_owned()).await;
    assert_eq!(status, 200, "{report}");
    let rules = report["detections"].as_array().expect("detections");
    let calc_rule = rules
        .iter()
        .find(|r| r["rule_id"] == "acme-calc")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(calc_rule["hunt"], "sigma");
    assert_eq!(
        (
            calc_rule["findings"].as_u64(),
            calc_rule["true_positives"].as_u64(),
            calc_rule["false_positives"].as_u64()
        ),
        (Some(3), Some(1), Some(2)),
        "{calc_rule}"
    );
    let precision = calc_rule["precision"].as_f64().expect("precision");
    assert!((precision - 1.0 / 3.0).abs() < 1e-9, "{precision}");
    assert_eq!(
        calc_rule["false_positive_fields"][0],
        json!(["ParentImage", explorer, 2]),
        "{calc_rule}"
    );
    let filter = calc_rule["suggested_filter"].as_str().expect("a filter");
    assert!(
        filter.contains("ParentImage: 'C:\\Windows\\explorer.exe'"),
        "{filter}"
    );
    assert!(report["truncated"] == false);

    // Muting: a viewer may not; a reason is required; then the next run drops it.
    let mute = "/v1/tenants/acme/detections/acme-calc/mute";
    assert_eq!(
        server
            .json("PUT", mute, &tokens["viewer"], &json!({"reason": "noisy"}))
            .await
            .0,
        403
    );
    assert_eq!(
        server
            .json(
                "PUT",
                mute,
                &tokens["tenant-admin"],
                &json!({"reason": " "})
            )
            .await
            .0,
        400
    );
    let (status, body) = server
        .json(
            "PUT",
            mute,
            &tokens["tenant-admin"],
            &json!({"reason": "explorer launches calc all day"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let more = calc("e4", explorer);
    server
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tokens["ingest"]),
            Some(more.into_bytes()),
        )
        .await;
    let (_, ran) = server
        .call(
            "POST",
            "/v1/tenants/acme/hunts/sigma/run",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(ran["hunt"]["last_muted"], 1, "{ran}");
    assert_eq!(ran["alerts"], json!([]), "{ran}");
    assert_eq!(
        get("/v1/tenants/acme/alerts/hunt:sigma:acme-calc:e4".to_owned())
            .await
            .0,
        404
    );
    let (_, report) = get("/v1/tenants/acme/detections?hunt=sigma".to_owned()).await;
    let calc_rule = report["detections"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["rule_id"] == "acme-calc"))
        .cloned()
        .expect("rule");
    assert_eq!(
        calc_rule["muted"]["reason"],
        "explorer launches calc all day"
    );
    let (_, audit) = get("/v1/tenants/acme/audit?kind=config_changed".to_owned()).await;
    assert!(
        audit.to_string().contains("acme-calc"),
        "the mute is audited: {audit}"
    );
    assert_eq!(
        server
            .call("DELETE", mute, Some(&tokens["tenant-admin"]), None)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("DELETE", mute, Some(&tokens["tenant-admin"]), None)
            .await
            .0,
        404
    );
    server.stop().await;
}
