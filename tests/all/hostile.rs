//! Hostile plugins: each attack ends with its specific error, within 2x its
//! deadline where time is the limit, and good plugins keep working in the
//! same process afterwards.

use std::time::{Duration, Instant};

use rampart::PluginError;
use rampart::tenant::{Grants, Limits};
use rampart::{CallContext, Plugin, Runtime};
use rampart_e2e::{alert, grants_with, load, runtime, tenant};
use tokio::io::AsyncReadExt;

const DEADLINE: Duration = Duration::from_millis(300);

fn tight_limits() -> Option<Limits> {
    Some(Limits {
        memory_bytes: 32 << 20,
        fuel: 20_000_000_000,
        timeout: DEADLINE,
    })
}

async fn setup(edit: impl FnOnce(&mut rampart::tenant::PluginGrant)) -> (Runtime, Plugin, Grants) {
    let (runtime, _store) = runtime();
    let grants = grants_with(tight_limits(), edit);
    let hostile = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile").await;
    (runtime, hostile, grants)
}

async fn attack(plugin: &Plugin, title: &str) -> (PluginError, Duration) {
    let started = Instant::now();
    let result = plugin.enrich(&alert(title), &CallContext::default()).await;
    let elapsed = started.elapsed();
    match result {
        Ok(found) => panic!("attack `{title}` succeeded: {found:?}"),
        Err(err) => (err, elapsed),
    }
}

/// The sandbox still serves: the hostile plugin's own good path and a real plugin.
async fn still_works(runtime: &Runtime, hostile: &Plugin, grants: &Grants) {
    let ok = hostile
        .enrich(&alert("ok"), &CallContext::default())
        .await
        .expect("hostile `ok` after attack");
    assert_eq!(ok.value[0].tags, vec!["ok".to_owned()]);
    let scorer = load(runtime, &tenant("acme"), grants, "risk-scorer").await;
    let score = scorer
        .score(&alert("after"), &[], &CallContext::default())
        .await
        .expect("scorer after attack");
    assert!(score.value.risk > 0);
}

fn assert_deadline(err: &PluginError, elapsed: Duration) {
    assert!(
        matches!(err, PluginError::Deadline { .. }),
        "expected a deadline error, got {err:?}"
    );
    assert!(
        elapsed < DEADLINE * 2,
        "ended after {elapsed:?}, more than twice the {DEADLINE:?} deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_the_deadline() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, elapsed) = attack(&hostile, "loop").await;
    assert_deadline(&err, elapsed);
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_forever_on_a_pollable_hits_the_deadline() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, elapsed) = attack(&hostile, "sleep").await;
    assert_deadline(&err, elapsed);
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_server_hits_the_deadline() {
    // A server that accepts and then never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut sink = [0u8; 1024];
                while let Ok(n) = socket.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
        }
    });
    let (runtime, hostile, grants) = setup(|grant| {
        grant.http_hosts = vec![format!("127.0.0.1:{port}")];
        grant.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    let (err, elapsed) = attack(&hostile, &format!("http http://127.0.0.1:{port}/feed")).await;
    assert_deadline(&err, elapsed);
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn unbounded_memory_growth_is_out_of_memory() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, _) = attack(&hostile, "oom").await;
    assert_eq!(
        err,
        PluginError::OutOfMemory {
            limit_bytes: 32 << 20
        }
    );
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, _) = attack(&hostile, "recurse").await;
    match &err {
        PluginError::Trap { code, .. } => assert!(
            code.contains("call stack exhausted") || code.contains("stack overflow"),
            "{err:?}"
        ),
        other => panic!("expected a stack overflow trap, got {other:?}"),
    }
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn panic_is_a_trap_with_the_panic_message() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, _) = attack(&hostile, "panic").await;
    match &err {
        PluginError::Trap { code, message } => {
            assert!(code.contains("unreachable"), "{err:?}");
            assert!(
                message
                    .as_deref()
                    .unwrap_or("")
                    .contains("hostile plugin panics on purpose"),
                "{err:?}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn host_call_flood_runs_out_of_fuel() {
    let (runtime, _store) = runtime();
    let limits = Some(Limits {
        memory_bytes: 32 << 20,
        fuel: 20_000_000,
        timeout: Duration::from_secs(10),
    });
    let grants = grants_with(limits, |_| {});
    let hostile = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile").await;
    let (err, elapsed) = attack(&hostile, "host-flood").await;
    assert_eq!(err, PluginError::OutOfFuel { budget: 20_000_000 });
    // Host calls are charged: 20M fuel at 10k a call is ~2k calls, not minutes of logging.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn huge_output_is_refused() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let (err, _) = attack(&hostile, "huge-output").await;
    match &err {
        PluginError::InvalidOutput { detail } => {
            assert!(detail.contains("bytes, more than"), "{err:?}")
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
    still_works(&runtime, &hostile, &grants).await;
}

async fn http_denied(
    target: &str,
    edit: impl FnOnce(&mut rampart::tenant::PluginGrant),
    expect: &str,
) {
    let (runtime, hostile, grants) = setup(edit).await;
    let (err, _) = attack(&hostile, &format!("http {target}")).await;
    match &err {
        PluginError::CapabilityDenied { detail } => {
            assert!(detail.contains(expect), "{target}: {err:?}")
        }
        other => panic!("{target}: expected capability denied, got {other:?}"),
    }
    still_works(&runtime, &hostile, &grants).await;
}

#[tokio::test]
async fn http_to_a_host_not_allow_listed_is_denied() {
    http_denied(
        "http://feeds.example.org/ipsum.txt",
        |grant| grant.http_hosts = vec!["api.example.com".into()],
        "not on the plugin's HTTP allow-list",
    )
    .await;
}

#[tokio::test]
async fn http_to_loopback_is_denied() {
    http_denied(
        "http://127.0.0.1:8080/",
        |grant| grant.http_hosts = vec!["127.0.0.1:8080".into()],
        "internal address",
    )
    .await;
}

#[tokio::test]
async fn http_to_ipv4_mapped_loopback_is_denied() {
    http_denied(
        "http://[::ffff:127.0.0.1]:8080/",
        |grant| grant.http_hosts = vec!["[::ffff:127.0.0.1]:8080".into()],
        "internal address",
    )
    .await;
}

#[tokio::test]
async fn http_to_cloud_metadata_is_denied() {
    http_denied(
        "http://169.254.169.254/latest/meta-data/",
        |grant| grant.http_hosts = vec!["169.254.169.254".into()],
        "internal address",
    )
    .await;
}

#[tokio::test]
async fn http_to_an_allow_listed_name_resolving_to_loopback_is_denied() {
    http_denied(
        "http://localhost:8080/",
        |grant| grant.http_hosts = vec!["localhost:8080".into()],
        "internal address",
    )
    .await;
}

#[tokio::test]
async fn kv_cannot_reach_another_plugins_namespace() {
    let (runtime, store) = runtime();
    let grants = grants_with(tight_limits(), |_| {});
    let acme = tenant("acme");
    // The EDL responder writes its list entry in its own namespace.
    let edl = load(&runtime, &acme, &grants, "edl-blocklist").await;
    let request = rampart::model::ActionRequest {
        run_id: "run-1".into(),
        step_id: "block".into(),
        idempotency_key: "run-1/block".into(),
        target: rampart::model::Entity {
            kind: rampart::model::EntityKind::Ip,
            value: "203.0.113.9".into(),
        },
        params: serde_json::json!({"list": "block"}),
    };
    edl.respond(&request, false, &CallContext::default())
        .await
        .expect("edl add");
    let edl_ns = rampart::store::KvNamespace {
        tenant: acme.clone(),
        plugin: "edl-blocklist".into(),
    };
    assert!(
        rampart::store::Store::kv_get(&*store, &edl_ns, "edl/block/203.0.113.9")
            .expect("get")
            .is_some()
    );

    let hostile = load(&runtime, &acme, &grants, "fixtures/hostile").await;
    for key in [
        "edl/block/203.0.113.9",
        "../edl-blocklist/edl/block/203.0.113.9",
        "edl-blocklist/edl/block/203.0.113.9",
        "acme/edl-blocklist/edl/block/203.0.113.9",
    ] {
        let found = hostile
            .enrich(&alert(&format!("kv-read {key}")), &CallContext::default())
            .await
            .expect("kv-read");
        assert_eq!(
            found.value[0].tags,
            vec!["absent".to_owned()],
            "hostile read {key}"
        );
    }
    // Its own writes land in its own namespace only, and another tenant's
    // copy of the same plugin does not see them.
    hostile
        .enrich(
            &alert("kv-write ../edl-blocklist/edl/block/6.6.6.6 1"),
            &CallContext::default(),
        )
        .await
        .expect("write");
    assert!(
        rampart::store::Store::kv_get(&*store, &edl_ns, "edl/block/6.6.6.6")
            .expect("get")
            .is_none()
    );
    let other = load(&runtime, &tenant("globex"), &grants, "fixtures/hostile").await;
    let found = other
        .enrich(
            &alert("kv-read ../edl-blocklist/edl/block/6.6.6.6"),
            &CallContext::default(),
        )
        .await
        .expect("read");
    assert_eq!(found.value[0].tags, vec!["absent".to_owned()]);
}

#[tokio::test]
async fn config_returns_only_the_plugins_own_secrets() {
    let (runtime, _store) = runtime();
    let mut grants = grants_with(tight_limits(), |_| {});
    let mut edl_grant = grants.default.clone();
    edl_grant.secrets.insert(
        "api_token".into(),
        rampart::tenant::Secret::new("s3cr3t-edl"),
    );
    grants.plugins.insert("edl-blocklist".into(), edl_grant);
    let hostile = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile").await;
    let found = hostile
        .enrich(&alert("secret api_token"), &CallContext::default())
        .await
        .expect("secret");
    assert_eq!(found.value[0].tags, vec!["secret absent".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_looping_plugins_do_not_starve_a_good_one() {
    let (runtime, _store) = runtime();
    let limits = Some(Limits {
        memory_bytes: 32 << 20,
        fuel: u64::MAX,
        timeout: Duration::from_millis(1500),
    });
    let grants = grants_with(limits, |_| {});
    let hostile = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile").await;
    let scorer = load(&runtime, &tenant("acme"), &grants, "risk-scorer").await;

    let started = Instant::now();
    let first = tokio::spawn({
        let hostile = hostile.clone();
        async move {
            hostile
                .enrich(&alert("loop"), &CallContext::default())
                .await
        }
    });
    let second = tokio::spawn({
        let hostile = hostile.clone();
        async move {
            hostile
                .enrich(&alert("loop"), &CallContext::default())
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both workers are "busy" with loops, yet the loops yield every epoch
    // tick, so good calls get through while they spin.
    for _ in 0..5 {
        let score = scorer
            .score(&alert("meanwhile"), &[], &CallContext::default())
            .await
            .expect("score while loops run");
        assert!(score.value.risk > 0);
    }
    let good_done = started.elapsed();
    assert!(
        !first.is_finished() && !second.is_finished(),
        "loops ended before the good calls did"
    );
    for handle in [first, second] {
        let err = handle.await.expect("join").expect_err("loop must fail");
        assert!(matches!(err, PluginError::Deadline { .. }), "{err:?}");
    }
    assert!(
        good_done < Duration::from_millis(1500),
        "good calls took {good_done:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "loops ran {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn wasi_filesystem_sockets_and_environment_are_linked_but_grant_nothing() {
    let (runtime, hostile, grants) = setup(|_| {}).await;
    let imports = rampart::sandbox::inspect(
        runtime.engine(),
        &std::fs::read(rampart_e2e::plugins_dir().join("fixtures/hostile.wasm")).expect("wasm"),
    )
    .expect("inspect")
    .imports;
    for interface in [
        "wasi:filesystem/preopens",
        "wasi:sockets/tcp",
        "wasi:cli/environment",
    ] {
        assert!(
            imports.iter().any(|name| name.starts_with(interface)),
            "fixture should import {interface}: {imports:?}"
        );
    }
    for (attack, expect) in [
        ("fs-read /etc/passwd", "fs denied"),
        ("fs-read ./rampart.toml", "fs denied"),
        ("tcp-connect 127.0.0.1:22", "net denied"),
        ("tcp-connect 93.184.216.34:80", "net denied"),
        ("env", "env 0 args 0"),
    ] {
        let found = hostile
            .enrich(&alert(attack), &CallContext::default())
            .await
            .expect(attack);
        let tag = &found.value[0].tags[0];
        assert!(tag.starts_with(expect), "{attack}: {tag}");
    }
    still_works(&runtime, &hostile, &grants).await;
}

/// WASI random bytes are charged as fuel: a loop of 64 KiB requests runs
/// out of a 3e8 budget within a fraction of a second (uncharged, 3e8 fuel
/// buys 30k requests, 2 GB of randomness, far past the 1 s deadline).
#[tokio::test]
async fn wasi_random_bytes_are_charged_as_fuel() {
    let (runtime, _store) = runtime();
    let limits = Some(Limits {
        memory_bytes: 32 << 20,
        fuel: 300_000_000,
        timeout: Duration::from_secs(10),
    });
    let grants = grants_with(limits, |_| {});
    let hostile = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile").await;
    let (err, elapsed) = attack(&hostile, "random-loop").await;
    assert_eq!(
        err,
        PluginError::OutOfFuel {
            budget: 300_000_000
        }
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    still_works(&runtime, &hostile, &grants).await;
}

/// A hunt session has a whole budget: each push stays within the per-call
/// deadline, but the session ends with `SessionBudget` once its total time
/// (or fuel) is spent; another session starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hunt_session_has_a_whole_budget_of_time_and_fuel() {
    let store = std::sync::Arc::new(rampart::store::MemoryStore::default());
    let mut config = rampart::RuntimeConfig::default();
    config.engine.max_session_time = Duration::from_millis(1_500);
    let runtime = Runtime::new(config, store).expect("runtime");
    let grants = grants_with(None, |_| {});
    let spinner = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile-hunt").await;
    let started = Instant::now();
    let mut session = spinner
        .open_hunt(&serde_json::json!({"spin_ms": 300}))
        .await
        .expect("open");
    let mut pushes = 0;
    let err = loop {
        match session.push(&[]).await {
            Ok(_) => pushes += 1,
            Err(err) => break err,
        }
        assert!(pushes < 50, "the session never ran out");
    };
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            PluginError::SessionBudget {
                what: "time",
                limit: 1_500,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        (3..=5).contains(&pushes),
        "{pushes} pushes of 300 ms in 1.5 s"
    );
    assert!(elapsed < Duration::from_secs(3), "session ran {elapsed:?}");
    // The session is over; a new one is not.
    assert!(session.push(&[]).await.is_err());
    let mut fresh = spinner
        .open_hunt(&serde_json::json!({"spin_ms": 10}))
        .await
        .expect("open again");
    fresh.push(&[]).await.expect("a fresh session pushes");

    // Fuel: a budget of 2e9 over pushes that burn CPU for 300 ms each.
    let store = std::sync::Arc::new(rampart::store::MemoryStore::default());
    let mut config = rampart::RuntimeConfig::default();
    config.engine.max_session_fuel = 2_000_000_000;
    let runtime = Runtime::new(config, store).expect("runtime");
    let spinner = load(&runtime, &tenant("acme"), &grants, "fixtures/hostile-hunt").await;
    let mut session = spinner
        .open_hunt(&serde_json::json!({"spin_ms": 300}))
        .await
        .expect("open");
    let err = loop {
        if let Err(err) = session.push(&[]).await {
            break err;
        }
    };
    assert!(
        matches!(
            err,
            PluginError::SessionBudget {
                what: "fuel",
                limit: 2_000_000_000,
                ..
            }
        ),
        "{err:?}"
    );
}
