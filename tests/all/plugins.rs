//! The first-party plugins do their jobs.

use std::time::Duration;

use rampart::CallContext;
use rampart::model::{ActionOutcome, ActionRequest, Entity, EntityKind, Event, Verdict};
use rampart::store::Store;
use rampart_e2e::{alert, grants_with, load, runtime, tenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `body` over HTTP on loopback; returns the port.
async fn serve(body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_reputation_fetches_the_ipsum_feed_over_allowed_http() {
    let port = serve("# ipsum\n77.239.124.102\t10\n2.57.122.53\t1\n").await;
    let (runtime, _store) = runtime();
    let grants = grants_with(None, |grant| {
        grant.http_hosts = vec![format!("127.0.0.1:{port}")];
        grant.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
        grant.settings.insert(
            "feed_url".into(),
            format!("http://127.0.0.1:{port}/ipsum.txt"),
        );
    });
    let plugin = load(&runtime, &tenant("acme"), &grants, "ip-reputation").await;
    let mut input = alert("feed");
    input.entities.push(Entity {
        kind: EntityKind::Ip,
        value: "2.57.122.53:443".into(),
    });
    input.entities.push(Entity {
        kind: EntityKind::Ip,
        value: "192.0.2.1".into(),
    });
    let found = plugin
        .enrich(&input, &CallContext::default())
        .await
        .expect("enrich");
    assert_eq!(found.value.len(), 2, "{:?}", found.value);
    assert_eq!(found.value[0].verdict, Verdict::Malicious);
    assert_eq!(found.value[0].data["ipsum_lists"], 10);
    assert_eq!(found.value[1].verdict, Verdict::Suspicious);
    assert!(
        found.stats.host_calls > 0 && found.stats.fuel > 0 && found.stats.peak_memory_bytes > 0
    );
}

#[tokio::test]
async fn ip_reputation_uses_intel_and_analyst_feedback() {
    let (runtime, store) = runtime();
    let acme = tenant("acme");
    let feed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/ipsum/ipsum.txt"
    ))
    .expect("feed");
    store
        .intel_insert(
            &acme,
            rampart::feeds::parse_ipsum("ipsum", &feed).expect("parse"),
        )
        .expect("insert");
    let grants = grants_with(None, |_| {});
    let plugin = load(&runtime, &acme, &grants, "ip-reputation").await;
    let found = plugin
        .enrich(&alert("intel"), &CallContext::default())
        .await
        .expect("enrich");
    assert_eq!(found.value[0].verdict, Verdict::Malicious);
    assert_eq!(found.value[0].confidence, 90);

    let ip = Entity {
        kind: EntityKind::Ip,
        value: "77.239.124.102".into(),
    };
    store
        .memory_record_feedback(
            &acme,
            &ip,
            rampart::model::Feedback {
                label: rampart::model::FeedbackLabel::FalsePositive,
                analyst: "dana".into(),
                time: 1,
                run_id: "run-0".into(),
                comment: "our pentest box".into(),
            },
        )
        .expect("feedback");
    let found = plugin
        .enrich(&alert("intel"), &CallContext::default())
        .await
        .expect("enrich");
    assert_eq!(found.value[0].verdict, Verdict::Benign);
    assert!(found.value[0].tags.contains(&"analyst-cleared".to_owned()));
    // Another tenant shares neither the intel nor the feedback.
    let other = load(&runtime, &tenant("globex"), &grants, "ip-reputation").await;
    assert!(
        other
            .enrich(&alert("intel"), &CallContext::default())
            .await
            .expect("enrich")
            .value
            .is_empty()
    );
}

#[tokio::test]
async fn risk_scorer_rises_with_malicious_evidence() {
    let (runtime, _store) = runtime();
    let grants = grants_with(None, |_| {});
    let scorer = load(&runtime, &tenant("acme"), &grants, "risk-scorer").await;
    let bare = scorer
        .score(&alert("s"), &[], &CallContext::default())
        .await
        .expect("score")
        .value;
    let evidence = rampart::model::Enrichment {
        entity: Entity {
            kind: EntityKind::Ip,
            value: "77.239.124.102".into(),
        },
        verdict: Verdict::Malicious,
        confidence: 90,
        tags: vec![],
        data: serde_json::json!({}),
    };
    let backed = scorer
        .score(&alert("s"), &[evidence], &CallContext::default())
        .await
        .expect("score")
        .value;
    assert!(backed.risk > bare.risk + 30, "{bare:?} vs {backed:?}");
    assert_eq!(backed.confidence, 90);
    assert!(bare.confidence < 50);
}

#[tokio::test]
async fn edl_responder_is_idempotent_and_dry_run_changes_nothing() {
    let (runtime, store) = runtime();
    let acme = tenant("acme");
    let grants = grants_with(None, |_| {});
    let edl = load(&runtime, &acme, &grants, "edl-blocklist").await;
    let ns = rampart::store::KvNamespace {
        tenant: acme.clone(),
        plugin: "edl-blocklist".into(),
    };
    let request = |key: &str| ActionRequest {
        run_id: "run-7".into(),
        step_id: "block".into(),
        idempotency_key: key.into(),
        target: Entity {
            kind: EntityKind::Ip,
            value: "198.51.100.23".into(),
        },
        params: serde_json::json!({"list": "block"}),
    };
    let planned = edl
        .respond(&request("k1"), true, &CallContext::default())
        .await
        .expect("dry run");
    assert_eq!(planned.value.outcome, ActionOutcome::Planned);
    assert_eq!(
        store.kv_usage(&ns).expect("usage"),
        0,
        "dry run wrote to kv"
    );

    let first = edl
        .respond(&request("k1"), false, &CallContext::default())
        .await
        .expect("add");
    assert_eq!(first.value.outcome, ActionOutcome::Executed);
    let replay = edl
        .respond(&request("k1"), false, &CallContext::default())
        .await
        .expect("replay");
    assert_eq!(replay.value.outcome, ActionOutcome::AlreadyInState);
    let again = edl
        .respond(&request("k2"), false, &CallContext::default())
        .await
        .expect("same target");
    assert_eq!(again.value.outcome, ActionOutcome::AlreadyInState);
    assert!(
        store
            .kv_get(&ns, "edl/block/198.51.100.23")
            .expect("get")
            .is_some()
    );

    let mut bad = request("k3");
    bad.target.value = "not-an-ip".into();
    let err = edl
        .respond(&bad, false, &CallContext::default())
        .await
        .expect_err("invalid target");
    assert!(
        matches!(err, rampart::PluginError::Guest(ref guest) if guest.kind == rampart::model::ErrorKind::InvalidInput),
        "{err:?}"
    );
}

#[tokio::test]
async fn cmdline_hunt_keeps_state_across_batches() {
    let (runtime, _store) = runtime();
    let grants = grants_with(None, |_| {});
    let hunt = load(&runtime, &tenant("acme"), &grants, "cmdline-hunt").await;
    let event = |id: &str, command_line: &str, nested: bool| Event {
        id: id.into(),
        time: 1,
        data: if nested {
            serde_json::json!({"Event": {"System": {"EventID": 1, "Computer": "ws-1"}, "EventData": {"CommandLine": command_line, "Image": "C:\\Windows\\System32\\cmd.exe"}}})
        } else {
            serde_json::json!({"EventID": 1, "Hostname": "ws-2", "CommandLine": command_line, "Image": "C:\\Windows\\powershell.exe"})
        },
    };
    let mut session = hunt
        .open_hunt(&serde_json::json!({"min_severity": "low"}))
        .await
        .expect("open");
    let first = session
        .push(&[
            event("e1", "powershell.exe -nop -enc SQBFAFgA", false),
            event("e2", "notepad.exe", false),
        ])
        .await
        .expect("push 1");
    assert_eq!(first.value.len(), 1);
    assert_eq!(first.value[0].rule_id, "encoded-powershell");
    assert_eq!(first.value[0].event_ids, vec!["e1".to_owned()]);
    let second = session
        .push(&[event("e3", "vssadmin.exe Delete Shadows /All /Quiet", true)])
        .await
        .expect("push 2");
    assert_eq!(second.value[0].techniques, vec!["T1490".to_owned()]);
    let closed = session.close().await.expect("close");
    assert_eq!(closed.value[0].rule_id, "cmdline-summary");
    assert_eq!(closed.value[0].detail["scanned"], 3);

    let err = hunt
        .open_hunt(&serde_json::json!({"min_severity": "extreme"}))
        .await
        .expect_err("bad params");
    assert!(err.to_string().contains("min_severity"), "{err}");
    let _ = Duration::ZERO;
}
