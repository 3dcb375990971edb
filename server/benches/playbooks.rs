//! Playbook and audit benchmarks (`cargo xtask plugins` first, then
//! `cargo bench -p rampart-server --bench playbooks`; `RAMPART_BENCH_PG_URL=postgres://…` runs the in-process part on PostgreSQL). Prints figures; not
//! a criterion harness because each measurement is one long run.
//!
//! - a 4-step playbook (2 enrichers in parallel, 1 scorer, 1 guarded
//!   responder) with the audit log on, through the library API, on a sled
//!   directory: alerts/s with `concurrency` alerts in flight, p50/p99 per alert;
//! - the same playbook over HTTP (`rampart serve`'s router on loopback), one
//!   alert per request from 64 concurrent keep-alive clients, against the
//!   in-process rate with 64 in flight measured in the same run;
//! - `verify` of a 1,000,000-record audit chain.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../../runtime/benches/common/mod.rs"]
mod common;

use common::{PLAYBOOK, bench_alert, plugins};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use rampart::audit::{AuditKey, AuditKind, AuditLog};
use rampart::executor::Executor;
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::store::{SledStore, Store};
use rampart::tenant::{Grants, TenantId};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let in_process = tokio.block_on(playbook_throughput());
    tokio.block_on(http_throughput(in_process));
    audit_verify();
}

/// Runs `total` jobs with `concurrency` workers, each taking the next job
/// as soon as its last one is done; returns (elapsed, sorted latencies).
async fn closed_loop<F, Fut>(concurrency: usize, total: usize, job: F) -> (Duration, Vec<Duration>)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let job = job.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let t = Instant::now();
                    job(i).await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    (elapsed, latencies)
}

fn report(label: &str, total: usize, elapsed: Duration, latencies: &[Duration]) -> f64 {
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "{label}: {total} alerts in {elapsed:.2?} = {rate:.0} alerts/s; per alert p50 {:?}, p99 {:?}",
        at(0.5),
        at(0.99)
    );
    rate
}

/// The engine on sled in `dir`, or, with `RAMPART_BENCH_PG_URL` set, on a
/// fresh database of that PostgreSQL server.
/// Also the store's name, for the figures' labels.
fn bench_executor(dir: &std::path::Path) -> (Executor, &'static str) {
    let key = AuditKey::from_bytes(vec![1; 32]).unwrap();
    match std::env::var("RAMPART_BENCH_PG_URL") {
        Ok(url) => {
            let name = format!("rampart_bench_{}", std::process::id());
            let fresh = rampart_postgres::create_database(&url, &name).unwrap();
            let store = rampart_postgres::PgStore::connect(&fresh, 32).unwrap();
            (
                Executor::new(RuntimeConfig::default(), store, key).unwrap(),
                "PostgreSQL",
            )
        }
        Err(_) => {
            let store = SledStore::open(&dir.join("data")).unwrap();
            (
                Executor::new(RuntimeConfig::default(), store, key).unwrap(),
                "sled",
            )
        }
    }
}

async fn playbook_throughput() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let (executor, store) = bench_executor(dir.path());
    let tenant = TenantId::new("bench").unwrap();
    executor.set_grants(&tenant, Grants::allow_all_capabilities());
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        executor
            .add_plugin(&tenant, &plugins().join(format!("{name}.toml")))
            .await
            .unwrap();
    }
    let feed =
        std::fs::read_to_string(plugins().join("../../examples/data/ipsum/ipsum.txt")).unwrap();
    let indicators = rampart::feeds::parse_ipsum("ipsum", &feed).unwrap();
    let ips: Vec<String> = indicators.iter().map(|(e, _)| e.value.clone()).collect();
    executor.store().intel_insert(&tenant, indicators).unwrap();
    executor
        .add_playbook(&tenant, "bench.yaml", PLAYBOOK)
        .unwrap();

    let mut rate_64 = 0.0;
    for concurrency in [1usize, 64] {
        let total = if concurrency == 1 { 300 } else { 3_000 };
        if concurrency == 64 {
            let space = executor.store().space().clone();
            let flushes_before = space.flushes();
            let executor = executor.clone();
            let tenant = tenant.clone();
            let ips = Arc::new(ips.clone());
            let (elapsed, latencies) = closed_loop(64, total, move |i| {
                let executor = executor.clone();
                let tenant = tenant.clone();
                let alert = bench_alert(format!("loop-{i}"), ips[i % ips.len()].clone());
                async move {
                    executor.ingest(&tenant, &alert).await.unwrap();
                }
            })
            .await;
            rate_64 = report(
                &format!(
                    "4-step playbook, audit on, {store}, in process, 64 workers (closed loop)"
                ),
                total,
                elapsed,
                &latencies,
            );
            println!(
                "  {:.2} flushes per alert (group-committed)",
                (space.flushes() - flushes_before) as f64 / total as f64
            );
        }
        let started = Instant::now();
        let flushes_before = executor.store().space().flushes();
        let mut latencies = Vec::with_capacity(total);
        let mut next = 0usize;
        while next < total {
            let batch: Vec<usize> = (next..(next + concurrency).min(total)).collect();
            next += batch.len();
            let tasks: Vec<_> = batch
                .into_iter()
                .map(|i| {
                    let executor = executor.clone();
                    let tenant = tenant.clone();
                    let ip = ips[i % ips.len()].clone();
                    tokio::spawn(async move {
                        let alert = Alert {
                            id: format!("c{concurrency}-{i}"),
                            source: "edr".into(),
                            title: format!("beacon {i}"),
                            severity: Severity::High,
                            time: 1_795_756_800_000,
                            entities: vec![Entity {
                                kind: EntityKind::Ip,
                                value: ip,
                            }],
                            techniques: vec![],
                            tags: vec![],
                            raw: serde_json::json!({}),
                        };
                        let t = Instant::now();
                        executor.ingest(&tenant, &alert).await.unwrap();
                        t.elapsed()
                    })
                })
                .collect();
            for task in tasks {
                latencies.push(task.await.unwrap());
            }
        }
        let elapsed = started.elapsed();
        let flushes = executor.store().space().flushes() - flushes_before;
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
        println!(
            "4-step playbook, audit on, {store}, {concurrency} in flight: {total} alerts in {elapsed:.2?} = {:.0} alerts/s; per alert p50 {:?}, p99 {:?}; {:.2} flushes per alert ({flushes} in all, group-committed)",
            total as f64 / elapsed.as_secs_f64(),
            at(0.5),
            at(0.99),
            flushes as f64 / total as f64
        );
    }
    let report = executor.audit().verify(&tenant).unwrap();
    assert!(report.ok());
    println!(
        "  audit chain after the runs: {} records, verified",
        report.records
    );
    rate_64
}

/// One keep-alive HTTP/1.1 connection.
async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    method: &str,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    sender.ready().await.unwrap();
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bench")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

async fn http_throughput(in_process: f64) {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let executor = Executor::new(
        RuntimeConfig::default(),
        store,
        AuditKey::from_bytes(vec![1; 32]).unwrap(),
    )
    .unwrap();
    let state = rampart_server::AppState::open(
        executor.clone(),
        rampart::secrets::SecretBox::from_key(&[3u8; 32]).unwrap(),
    )
    .await
    .unwrap();
    let (admin, _) = state
        .tokens()
        .create("bench", None, rampart_server::auth::Role::Admin, None)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rampart_server::serve(state, listener, async {
        let _ = stopped.await;
    }));
    let mut setup = connect(addr).await;
    let grants = serde_json::to_value(Grants::allow_all_capabilities()).unwrap();
    let tenant =
        serde_json::json!({"id": "bench", "grants": grants, "ingest_per_second": 1_000_000});
    let (status, _) = send(
        &mut setup,
        "POST",
        "/v1/tenants",
        &admin,
        tenant.to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, 201);
    for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
        let manifest = std::fs::read_to_string(plugins().join(format!("{name}.toml"))).unwrap();
        let wasm = std::fs::read(plugins().join(format!("{name}.wasm"))).unwrap();
        let body = serde_json::json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)});
        let (status, _) = send(
            &mut setup,
            "POST",
            "/v1/tenants/bench/plugins",
            &admin,
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(status, 201, "{name}");
    }
    let (status, _) = send(
        &mut setup,
        "PUT",
        "/v1/tenants/bench/playbooks/bench",
        &admin,
        PLAYBOOK.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let feed =
        std::fs::read_to_string(plugins().join("../../examples/data/ipsum/ipsum.txt")).unwrap();
    let indicators = rampart::feeds::parse_ipsum("ipsum", &feed).unwrap();
    let ips: Arc<Vec<String>> = Arc::new(indicators.iter().map(|(e, _)| e.value.clone()).collect());
    let tenant = TenantId::new("bench").unwrap();
    executor.store().intel_insert(&tenant, indicators).unwrap();

    let total = 3_000;
    // A pool of 64 keep-alive connections, one per worker at a time.
    let pool = Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..64 {
        let connection = connect(addr).await;
        pool.lock().unwrap().push(connection);
    }
    let admin = Arc::new(admin);
    let (elapsed, latencies) = closed_loop(64, total, move |i| {
        let pool = pool.clone();
        let admin = admin.clone();
        let body = serde_json::to_vec(&bench_alert(
            format!("http-{i}"),
            ips[i % ips.len()].clone(),
        ))
        .unwrap();
        async move {
            let mut sender = pool.lock().unwrap().pop().unwrap();
            let (status, reply) = send(
                &mut sender,
                "POST",
                "/v1/tenants/bench/alerts",
                &admin,
                body,
            )
            .await;
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
            pool.lock().unwrap().push(sender);
        }
    })
    .await;
    let rate = report(
        "4-step playbook over HTTP, 64 keep-alive clients, one alert per request",
        total,
        elapsed,
        &latencies,
    );
    println!(
        "  HTTP rate / in-process rate (64 in flight, same run): {:.0} %",
        100.0 * rate / in_process
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

fn audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let log = AuditLog::new(
        store.space().clone(),
        AuditKey::from_bytes(vec![2; 32]).unwrap(),
    );
    let tenant = TenantId::new("bench").unwrap();
    let started = Instant::now();
    for i in 0..1_000_000u64 {
        log.append(
            &tenant,
            AuditKind::StepFinished,
            Some("run-0123456789"),
            Some("enrich"),
            None,
            serde_json::json!({"status": "succeeded", "attempts": 1, "i": i}),
        )
        .unwrap();
    }
    log.checkpoint(&tenant).unwrap();
    log.flush().unwrap();
    println!(
        "audit append: 1,000,000 records in {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let report = log.verify(&tenant).unwrap();
    let elapsed = started.elapsed();
    assert!(report.ok() && report.records == 1_000_000);
    println!(
        "audit verify: 1,000,000 records, {} checkpoints in {elapsed:.2?} (target <= 3 s)",
        report.checkpoints
    );
    let _ = Duration::ZERO;
    let _ = store.kv_usage(&rampart::store::KvNamespace {
        tenant,
        plugin: "x".into(),
    });
}
