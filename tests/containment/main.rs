//! Sandbox containment through the real server with two tenants: `acme`
//! runs the hostile fixture (or a hostile alert), `beta` runs an ordinary
//! playbook (the risk scorer) and must keep its latency. Each attack ends
//! with its specific error; the other tenant's p99 stays within twice its
//! p99 on the idle server (figures printed with `--nocapture`).
//!
//! A test binary of its own, its tests one at a time (`serial`): latency is
//! measured on a machine that runs nothing else of the suite (cargo runs
//! test binaries one after another).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../all/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use serde_json::{Value, json};

use crate::harness::{Server, upload, upload_fixture};

/// One containment test at a time (a test that panics releases it).
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Tenant `acme`'s grant: everything the hostile fixture imports.
fn hostile_grants() -> Value {
    json!({"default": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"], "kv_quota_bytes": 1048576}})
}

struct Pair {
    server: Arc<Server>,
    _dir: tempfile::TempDir,
}

/// A server with `acme` (hostile fixture, playbook `probe`: one enrich step
/// under `on_error: continue`) and `beta` (risk scorer, playbook `good`).
async fn pair(config: RuntimeConfig, acme_grants: Value) -> Pair {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_configured(dir.path(), None, None, config).await;
    let admin = server.admin.clone();
    for (tenant, grants) in [
        ("acme", acme_grants),
        (
            "beta",
            json!({"default": {"capabilities": ["log", "kv", "memory", "config"]}}),
        ),
    ] {
        let (status, body) = server
            .json(
                "POST",
                "/v1/tenants",
                &admin,
                &json!({"id": tenant, "grants": grants}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for (tenant, body) in [
        ("acme", upload_fixture("hostile")),
        ("beta", upload("risk-scorer")),
    ] {
        let (status, reply) = server
            .json(
                "POST",
                &format!("/v1/tenants/{tenant}/plugins"),
                &admin,
                &body,
            )
            .await;
        assert_eq!(status, 201, "{tenant}: {reply}");
    }
    let probe = "name: probe\ntrigger: { alert: 'alert.source == \"probe\"' }\nsteps:\n  - id: probe\n    enrich: hostile\n    on_error: continue\n";
    let good =
        "name: good\ntrigger: { alert: 'true' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
    for (tenant, name, yaml) in [("acme", "probe", probe), ("beta", "good", good)] {
        let (status, body) = server
            .call(
                "PUT",
                &format!("/v1/tenants/{tenant}/playbooks/{name}"),
                Some(&admin),
                Some(yaml.as_bytes().to_vec()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    Pair {
        server: Arc::new(server),
        _dir: dir,
    }
}

fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{prefix}-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Sends `alert` to `tenant` and returns its first run as stored.
async fn run_of(server: &Server, tenant: &str, alert: Value) -> Value {
    let admin = server.admin.clone();
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/{tenant}/alerts"),
            &admin,
            &alert,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = body["results"][0]["runs"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no run: {body}"))
        .to_owned();
    let (status, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/runs/{run}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run
}

/// A hostile alert for `acme`'s probe; returns the probe step.
async fn probe(server: &Server, title: &str) -> Value {
    let alert = json!({"id": unique("probe"), "source": "probe", "title": title,
        "entities": [{"kind": "ip", "value": "203.0.113.7"}]});
    let run = run_of(server, "acme", alert).await;
    run["steps"]["probe"].clone()
}

/// One ordinary alert of `beta`: how long it took end to end.
async fn good_call(server: &Server) -> Duration {
    let alert = json!({"id": unique("good"), "source": "edr", "title": "beacon", "severity": "high",
        "entities": [{"kind": "ip", "value": "198.51.100.20"}]});
    let started = Instant::now();
    let run = run_of(server, "beta", alert).await;
    let took = started.elapsed();
    assert_eq!(run["status"], "succeeded", "beta's run: {run}");
    took
}

/// `beta`'s latencies over `count` sequential alerts, sorted.
async fn good_latencies(server: &Server, count: usize) -> Vec<Duration> {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        took.push(good_call(server).await);
    }
    took.sort();
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The idle server's p99 of beta's good path.
async fn idle_p99(server: &Server) -> Duration {
    // Warm up (first calls fill caches), then measure.
    good_latencies(server, 5).await;
    let idle = good_latencies(server, 100).await;
    percentile(&idle, 0.99)
}

/// beta's p99 while `attack` runs in the background, against the idle one.
async fn assert_other_tenant_keeps_latency(label: &str, server: &Server, idle: Duration) {
    let loaded = good_latencies(server, 100).await;
    let p50 = percentile(&loaded, 0.5);
    let p99 = percentile(&loaded, 0.99);
    eprintln!(
        "[{label}] beta idle p99 {:.1} ms; under attack p50 {:.1} ms, p99 {:.1} ms",
        idle.as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    // Twice the idle p99, with 10 ms of room: on a 2-core machine the
    // attacker's share is one whole core, and the OS (not Rampart)
    // schedules what is left between beta's threads and the test client.
    let bound = (idle * 2).max(idle + Duration::from_millis(10));
    assert!(
        p99 <= bound,
        "[{label}] beta's p99 rose from {idle:?} (idle) to {p99:?} under attack (bound {bound:?})"
    );
}

/// Starts `count` copies of a hostile probe in the background; each task
/// yields the probe step.
fn attack(server: &Arc<Server>, title: &str, count: usize) -> Vec<tokio::task::JoinHandle<Value>> {
    (0..count)
        .map(|_| {
            let server = server.clone();
            let title = title.to_owned();
            tokio::spawn(async move { probe(&server, &title).await })
        })
        .collect()
}

async fn healthz_worst(server: &Server, samples: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..samples {
        let started = Instant::now();
        let (status, _) = server.call("GET", "/healthz", None, None).await;
        assert_eq!(status, 200);
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worst
}

/// Item 1 with first-party plugins only: an alert naming a 400 KB domain
/// is refused at intake with where and why; the largest DNS name runs
/// through `threat-intel` in one lookup per label; `/healthz` stays under
/// 50 ms throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_domain_alert_is_refused_and_never_stalls_the_server() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    let admin = server.admin.clone();
    let grants = json!({"default": {"capabilities": ["log", "kv", "intel", "memory"]}});
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &admin,
            &json!({"id": "acme", "grants": grants}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload("threat-intel"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let playbook =
        "name: ti\ntrigger: { alert: 'true' }\nsteps:\n  - id: ti\n    enrich: threat-intel\n";
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/ti",
            Some(&admin),
            Some(playbook.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let watcher = {
        let server = server.clone();
        tokio::spawn(async move { healthz_worst(&server, 150).await })
    };
    let long = "a.".repeat(200_000) + "example.com";
    for round in 0..5 {
        let alert = json!({"id": format!("long-{round}"), "source": "dns", "title": "long name",
            "entities": [{"kind": "ip", "value": "192.0.2.1"}, {"kind": "domain", "value": long}]});
        let (status, body) = server
            .json("POST", "/v1/tenants/acme/alerts", &admin, &alert)
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_alert", "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("entities[1]") && detail.contains("more than the 8192 allowed"),
            "{body}"
        );
        assert_eq!(body["location"]["index"], 0, "{body}");
    }
    // A label over 63 bytes, and a name over 253, are named as such.
    for (value, expect) in [
        ("x".repeat(64) + ".example", "64-byte label"),
        ("abc.".repeat(70) + "example", "a DNS name has at most 253"),
    ] {
        let alert = json!({"id": unique("dns"), "source": "dns", "title": "bad name",
            "entities": [{"kind": "domain", "value": value}]});
        let (status, body) = server
            .json("POST", "/v1/tenants/acme/alerts", &admin, &alert)
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(expect),
            "{body}"
        );
    }
    // The longest legal name (126 labels, 253 bytes) is looked up and the
    // run finishes.
    let widest = "a.".repeat(120) + "example.com";
    assert!(widest.len() <= 253);
    for round in 0..5 {
        let alert = json!({"id": format!("wide-{round}"), "source": "dns", "title": "wide name",
            "entities": [{"kind": "domain", "value": widest}, {"kind": "url", "value": format!("http://{widest}/x")}]});
        let run = run_of(&server, "acme", alert).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert_eq!(run["steps"]["ti"]["status"], "succeeded", "{run}");
    }
    let worst = watcher.await.expect("watcher");
    eprintln!(
        "[long domain] worst /healthz {:.1} ms",
        worst.as_secs_f64() * 1e3
    );
    assert!(worst < Duration::from_millis(50), "/healthz took {worst:?}");
}

/// Item 1 with a hostile plugin: a loop of intel lookups of a 400 KB name
/// is refused call by call (no lookup runs), charged by its bytes, and ends
/// at the deadline; `/healthz` and the other tenant are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lookups_of_a_huge_domain_end_at_the_deadline() {
    let _serial = serial().await;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let idle = idle_p99(server).await;
    let attacks = attack(server, "intel-long 400000", 4);
    let watcher = {
        let server = server.clone();
        tokio::spawn(async move { healthz_worst(&server, 100).await })
    };
    assert_other_tenant_keeps_latency("intel-long", server, idle).await;
    for step in futures::future::join_all(attacks).await {
        let step = step.expect("attack task");
        let error = step["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("deadline of 1000 ms exceeded") || error.contains("out of fuel"),
            "{step}"
        );
    }
    let worst = watcher.await.expect("watcher");
    eprintln!(
        "[intel-long] worst /healthz {:.1} ms",
        worst.as_secs_f64() * 1e3
    );
    assert!(worst < Duration::from_millis(50), "/healthz took {worst:?}");
}

/// Item 2: the same component bytes uploaded under two names are two
/// plugins: each keeps its own grant, settings, secret and allow-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_under_two_names_keep_their_own_grants() {
    let _serial = serial().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let grants = json!({
        "default": {"capabilities": ["log"]},
        "plugins": {
            "hostile": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"],
                "http_hosts": [format!("127.0.0.1:{port}")], "allow_private": ["127.0.0.0/8"],
                "settings": {"who": "first"}, "kv_quota_bytes": 65536},
            "hostile-twin": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"],
                "settings": {"who": "twin"}, "kv_quota_bytes": 65536}
        }
    });
    let pair = pair(RuntimeConfig::default(), grants).await;
    let server = &pair.server;
    let admin = server.admin.clone();
    // The twin: the same wasm, another name.
    let mut twin = upload_fixture("hostile");
    let manifest = twin["manifest"]
        .as_str()
        .expect("manifest")
        .replace("name = \"hostile\"", "name = \"hostile-twin\"");
    twin["manifest"] = json!(manifest);
    let (status, body) = server
        .json("POST", "/v1/tenants/acme/plugins", &admin, &twin)
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "PUT",
            "/v1/tenants/acme/plugins/hostile/secrets/api_token",
            &admin,
            &json!({"value": "first-only"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let twin_book = "name: twin\ntrigger: { alert: 'alert.source == \"twin\"' }\nsteps:\n  - id: probe\n    enrich: hostile-twin\n    on_error: continue\n";
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/twin",
            Some(&admin),
            Some(twin_book.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let as_twin = |title: &str| json!({"id": unique("twin"), "source": "twin", "title": title});
    let tag = |step: &Value| step["output"]["enrichments"][0]["tags"][0].clone();
    // Uploading the twin last must not have changed the first plugin.
    for _ in 0..3 {
        assert_eq!(
            tag(&probe(server, "secret api_token").await),
            "secret visible"
        );
        let twin_secret = run_of(server, "acme", as_twin("secret api_token")).await;
        assert_eq!(
            tag(&twin_secret["steps"]["probe"]),
            "secret absent",
            "{twin_secret}"
        );
        let url = format!("http http://127.0.0.1:{port}/");
        assert_eq!(tag(&probe(server, &url).await), "status 200");
        let twin_http = run_of(server, "acme", as_twin(&url)).await;
        let error = twin_http["steps"]["probe"]["error"]
            .as_str()
            .unwrap_or_default();
        assert!(
            error.contains("capability denied") && error.contains("allow-list"),
            "{twin_http}"
        );
        // Each has its own kv namespace too.
        let written = probe(server, "kv-write k first").await;
        assert_eq!(tag(&written), "written", "{written}");
        let twin_kv = run_of(server, "acme", as_twin("kv-read k")).await;
        assert_eq!(tag(&twin_kv["steps"]["probe"]), "absent", "{twin_kv}");
    }
}

/// Item 3: tenant A's calls fill only A's share of sandbox slots (its
/// extra calls wait, then fail with a specific error, and their runs say
/// `succeeded_with_errors`); tenant B's runs all get a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_take_every_sandbox_slot() {
    let _serial = serial().await;
    let mut config = RuntimeConfig::default();
    config.engine.max_instances = 24;
    let pair = pair(config, hostile_grants()).await;
    let server = &pair.server;
    let share = 24 / 4;
    for round in 0..3 {
        // 3x acme's share of calls that each sleep 800 ms of a 1 s deadline.
        let attacks = attack(server, "sleep-ms 800", share * 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let goods: Vec<_> = (0..20)
            .map(|_| {
                let server = server.clone();
                tokio::spawn(async move { good_call(&server).await })
            })
            .collect();
        for good in futures::future::join_all(goods).await {
            good.expect("beta's runs all succeed");
        }
        let (mut ok, mut refused) = (0, 0);
        for step in futures::future::join_all(attacks).await {
            let step = step.expect("attack");
            if step["status"] == "succeeded" {
                ok += 1;
            } else {
                let error = step["error"].as_str().unwrap_or_default();
                assert!(
                    error.contains("tenant acme already holds its 6 sandbox slots"),
                    "{step}"
                );
                refused += 1;
            }
        }
        eprintln!("[slots] round {round}: acme {ok} ran, {refused} refused; beta 20/20");
        assert!(ok >= share, "acme ran {ok} of its share {share}");
        assert!(refused > 0, "acme was never held to its share");
    }
    // A run whose step failed under `continue` says so.
    let alert = json!({"id": unique("panic"), "source": "probe", "title": "panic"});
    let run = run_of(server, "acme", alert).await;
    assert_eq!(run["status"], "succeeded_with_errors", "{run}");
}

/// Item 3 (CPU): eight looping calls of A use A's CPU share only; B's
/// p99 stays within twice its idle p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_calls_of_one_tenant_keep_to_their_cpu_share() {
    let _serial = serial().await;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let idle = idle_p99(server).await;
    for _ in 0..2 {
        let attacks = attack(server, "loop", 8);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_other_tenant_keeps_latency("cpu loops", server, idle).await;
        for step in futures::future::join_all(attacks).await {
            let step = step.expect("attack");
            assert!(
                step["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("deadline of 1000 ms"),
                "{step}"
            );
        }
    }
}

/// Item 4: output is capped by item count, not only bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_capped_by_item_count() {
    let _serial = serial().await;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let idle = idle_p99(server).await;
    let attacks = attack(server, "many-enrichments 200000", 4);
    assert_other_tenant_keeps_latency("many enrichments", server, idle).await;
    for step in futures::future::join_all(attacks).await {
        let step = step.expect("attack");
        assert_eq!(
            step["error"], "invalid output: enrichments: 200000 returned, at most 1000 allowed",
            "{step}"
        );
    }
    let step = probe(server, "many-tags 100000").await;
    assert_eq!(
        step["error"], "invalid output: enrichment 0: tags: 100000 returned, at most 64 allowed",
        "{step}"
    );
}

/// Item 5: one WASI random request is bounded (a 64 MiB one traps at
/// once), and a loop of allowed ones ends at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_random_requests_are_bounded_and_keep_the_deadline() {
    let _serial = serial().await;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let step = probe(server, "random-huge").await;
    let error = step["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("requested len 67108864 exceeds limit 65536"),
        "{step}"
    );
    let idle = idle_p99(server).await;
    let started = Instant::now();
    let attacks = attack(server, "random-loop", 8);
    assert_other_tenant_keeps_latency("random loops", server, idle).await;
    for step in futures::future::join_all(attacks).await {
        let step = step.expect("attack");
        let error = step["error"].as_str().unwrap_or_default();
        assert!(error.contains("deadline of 1000 ms exceeded"), "{step}");
        let elapsed: u64 = error
            .split("ended after ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(u64::MAX);
        assert!(
            elapsed < 2_000,
            "a random loop ran {elapsed} ms past a 1 s deadline"
        );
    }
    eprintln!("[random] 8 loops done in {:?}", started.elapsed());
}

/// Item 8: an enricher's verdicts are remembered only for entities the
/// alert names, and a benign verdict never clears an analyst's true
/// positive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichers_write_memory_only_for_the_alerts_own_entities() {
    let _serial = serial().await;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let admin = server.admin.clone();
    // The analyst marks a run about 203.0.113.7 a true positive.
    let first = run_of(
        server,
        "acme",
        json!({"id": unique("tp"), "source": "probe", "title": "ok", "entities": [{"kind": "ip", "value": "203.0.113.7"}]}),
    )
    .await;
    let run_id = first["id"].as_str().expect("run id");
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/runs/{run_id}/feedback"),
            &admin,
            &json!({"label": "true_positive", "comment": "confirmed C2"}),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    // The hostile enricher claims 8.8.8.8 malicious and 203.0.113.7 benign.
    let planted = probe(server, "plant").await;
    assert_eq!(planted["status"], "succeeded", "{planted}");
    let tag = |step: &Value| step["output"]["enrichments"][0]["tags"][0].clone();
    assert_eq!(
        tag(&probe(server, "recall 8.8.8.8").await),
        "verdicts 0 latest none"
    );
    let own = tag(&probe(server, "recall 203.0.113.7").await);
    let own = own.as_str().unwrap_or_default().to_owned();
    assert!(!own.ends_with("latest benign"), "{own}");
}

/// Item 9: compile bombs are refused before compiling, with what is too
/// big; a tenant's heavy (in-bounds) compile never holds another tenant's
/// upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bombs_are_refused_and_never_hold_another_tenants_upload() {
    let _serial = serial().await;
    use base64::Engine as _;
    use sha2::Digest as _;
    let pair = pair(RuntimeConfig::default(), hostile_grants()).await;
    let server = &pair.server;
    let admin = server.admin.clone();
    let upload_of = |wasm: &[u8]| {
        let digest = hex::encode(sha2::Sha256::digest(wasm));
        let manifest = format!(
            "name = \"bomb\"\nversion = \"0.1.0\"\nkind = \"enricher\"\nwit = \"0.1.0\"\ncapabilities = []\n\n[component]\nsha256 = \"{digest}\"\n"
        );
        json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
    };
    let component = |functions: usize, body: &str| {
        let funcs: String = (0..functions).map(|_| format!("(func {body})")).collect();
        wat::parse_str(format!("(component (core module {funcs}))")).expect("wat")
    };
    // 300k tiny functions; one function of 300k branches (a 1.2 MB body).
    let many = component(300_000, "");
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload_of(&many),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("more than 100000 functions"),
        "{body}"
    );
    let branches = "(block ".to_owned() + &"local.get 0 br_if 0 ".repeat(300_000) + ")";
    let wide = component(1, &format!("(param i32) {branches}"));
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload_of(&wide),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("-byte body, more than the 1048576"),
        "{body}"
    );
    // An in-bounds but heavy component for acme (tens of thousands of
    // functions: seconds of compiling), and beta's ordinary upload at the
    // same moment: beta's is done first.
    let heavy = component(60_000, "(local i32) i32.const 7 local.set 0");
    let heavy_upload = {
        let server = server.clone();
        let admin = admin.clone();
        let body = upload_of(&heavy);
        tokio::spawn(async move {
            let reply = server
                .json("POST", "/v1/tenants/acme/plugins", &admin, &body)
                .await;
            (Instant::now(), reply)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/beta/plugins",
            &admin,
            &upload("cmdline-hunt"),
        )
        .await;
    let beta_done = Instant::now();
    assert_eq!(status, 201, "{body}");
    let (acme_done, (status, body)) = heavy_upload.await.expect("heavy upload");
    // The heavy one compiles, then is refused: it implements no world.
    assert_eq!(status, 422, "{body}");
    assert!(
        beta_done < acme_done,
        "beta's upload waited for acme's compile ({:?} after it)",
        beta_done - acme_done
    );
}

/// Item 10: outbound connections are capped per call (past it, refused at
/// once) and per tenant (the server never sees more than the tenant's
/// share open at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_are_capped_per_call_and_per_tenant() {
    let _serial = serial().await;
    // A server that accepts and never answers; counts what is open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (open, most) = (open.clone(), most.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            while let Ok((mut socket, _)) = listener.accept().await {
                let now = open.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut sink = [0u8; 1024];
                    while let Ok(n) = socket.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                    open.fetch_sub(1, SeqCst);
                });
            }
        });
    }
    let grants = json!({"default": {"capabilities": ["log", "kv", "config", "http", "intel", "memory"],
        "http_hosts": [format!("127.0.0.1:{port}")], "allow_private": ["127.0.0.0/8"]}});
    let mut config = RuntimeConfig::default();
    // The tenant's share is waited for up to the connect timeout.
    config.http.connect_timeout = Duration::from_millis(300);
    config.shares = Some(rampart::ShareConfig {
        tenant_connections: 12,
        call_connections: 8,
        ..rampart::ShareConfig::for_pool(config.engine.max_instances)
    });
    let pair = pair(config, grants).await;
    let server = &pair.server;
    let step = probe(server, &format!("connections 9 127.0.0.1:{port}")).await;
    let error = step["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("capability denied")
            && error.contains("more than 8 outbound connections open in one call"),
        "{step}"
    );
    // Let the first call's connections close (the server sees a close a
    // moment after the client makes it), then count afresh.
    tokio::time::sleep(Duration::from_millis(500)).await;
    most.store(
        open.load(std::sync::atomic::Ordering::SeqCst),
        std::sync::atomic::Ordering::SeqCst,
    );
    // Two calls of eight each against a tenant share of twelve: between
    // them they get twelve, and what waits past the connect timeout is
    // refused. (More calls would hand permits on as the refused ones close,
    // and the server sees a close a moment after it happens.)
    let attacks = attack(server, &format!("connections 8 127.0.0.1:{port}"), 2);
    let mut errors = Vec::new();
    for step in futures::future::join_all(attacks).await {
        errors.push(
            step.expect("attack")["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let most = most.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("[connections] most open at once: {most}; errors: {errors:?}");
    assert!(
        most <= 12,
        "{most} connections open at once, the tenant's share is 12"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("the tenant's outbound connections are all in use")),
        "{errors:?}"
    );
}
