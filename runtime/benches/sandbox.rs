//! Sandbox benchmarks. Run `cargo xtask plugins` first, then
//! `cargo bench -p rampart-runtime --bench sandbox`.
//!
//! - `fresh_sandbox_enrich/*`: a fresh Store + instantiate from the
//!   `InstancePre` + one `enrich` of a ~1 KB alert (pooling allocator), for
//!   the real ip-reputation enricher (4 host calls, JSON output) and for a
//!   minimal enricher (the sandbox's own cost). After criterion, the same
//!   loop is timed per call to print p50 / p99.
//! - `load_plugin/*`: loading a plugin whose compiled artifact is in the
//!   verified disk cache, vs compiling it (a fresh `Runtime` per load is
//!   built outside the timed part).
//! - `deadline`: how long a looping plugin with a 100 ms deadline runs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::sandbox::ArtifactSource;
use rampart::store::MemoryStore;
use rampart::tenant::{Grants, Limits, TenantId};
use rampart::{CallContext, Plugin, Runtime, RuntimeConfig};

fn plugins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

fn alert_1kb(title: &str) -> Alert {
    let alert = Alert {
        id: "bench-0001".into(),
        source: "edr".into(),
        title: title.into(),
        severity: Severity::High,
        time: 1_795_756_800_000,
        entities: vec![
            Entity {
                kind: EntityKind::Ip,
                value: "77.239.124.102".into(),
            },
            Entity {
                kind: EntityKind::Hostname,
                value: "bastion-01.corp.example".into(),
            },
            Entity {
                kind: EntityKind::User,
                value: "svc-backup".into(),
            },
        ],
        techniques: vec!["T1110.001".into(), "T1078".into()],
        tags: vec!["brute_force".into(), "ssh".into()],
        raw: serde_json::json!({"rule": "ssh_bruteforce_then_success", "failures": 412, "window": "10m",
            "detail": "x".repeat(600)}),
    };
    let size = serde_json::to_string(&alert).unwrap().len();
    assert!((900..1200).contains(&size), "alert is {size} bytes");
    alert
}

fn load(tokio: &tokio::runtime::Runtime, runtime: &Runtime, grants: &Grants, name: &str) -> Plugin {
    let tenant = TenantId::new("bench").unwrap();
    tokio
        .block_on(runtime.load_file(&tenant, grants, &plugins().join(format!("{name}.toml"))))
        .unwrap()
}

fn percentiles(tokio: &tokio::runtime::Runtime, plugin: &Plugin, alert: &Alert, label: &str) {
    let context = CallContext::default();
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let started = Instant::now();
            tokio.block_on(plugin.enrich(alert, &context)).unwrap();
            started.elapsed()
        })
        .collect();
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{label}: p50 {:?}, p99 {:?}, max {:?} (20,000 calls)",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let grants = Grants::allow_all_capabilities();
    let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(MemoryStore::default())).unwrap();
    let reputation = load(&tokio, &runtime, &grants, "ip-reputation");
    let minimal = load(&tokio, &runtime, &grants, "fixtures/hostile");
    let reputation_alert =
        alert_1kb("Repeated SSH logon failures followed by a success from an external address");
    let minimal_alert = alert_1kb("ok");
    let context = CallContext::default();

    let mut group = c.benchmark_group("fresh_sandbox_enrich");
    group.bench_function("ip_reputation", |b| {
        b.iter(|| {
            tokio
                .block_on(reputation.enrich(&reputation_alert, &context))
                .unwrap()
        });
    });
    group.bench_function("minimal", |b| {
        b.iter(|| {
            tokio
                .block_on(minimal.enrich(&minimal_alert, &context))
                .unwrap()
        });
    });
    group.finish();
    percentiles(
        &tokio,
        &reputation,
        &reputation_alert,
        "fresh_sandbox_enrich/ip_reputation",
    );
    percentiles(
        &tokio,
        &minimal,
        &minimal_alert,
        "fresh_sandbox_enrich/minimal",
    );

    let cache = tempfile::tempdir().unwrap();
    let cached = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    load(
        &tokio,
        &Runtime::new(cached(), Arc::new(MemoryStore::default())).unwrap(),
        &grants,
        "ip-reputation",
    );
    let mut group = c.benchmark_group("load_plugin");
    group.sample_size(20);
    group.bench_function("from_verified_cache", |b| {
        b.iter_batched(
            || Runtime::new(cached(), Arc::new(MemoryStore::default())).unwrap(),
            |runtime| {
                assert_eq!(
                    load(&tokio, &runtime, &grants, "ip-reputation").artifact_source(),
                    ArtifactSource::Cache
                );
                runtime // dropped outside the timed part
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("compile", |b| {
        b.iter_batched(
            || Runtime::new(RuntimeConfig::default(), Arc::new(MemoryStore::default())).unwrap(),
            |runtime| {
                assert_eq!(
                    load(&tokio, &runtime, &grants, "ip-reputation").artifact_source(),
                    ArtifactSource::Compiled
                );
                runtime
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // A looping plugin with a 100 ms deadline: how long until it is stopped.
    let mut tight = Grants::allow_all_capabilities();
    tight.default.limits = Some(Limits {
        memory_bytes: 32 << 20,
        fuel: u64::MAX,
        timeout: Duration::from_millis(100),
    });
    let looping = load(&tokio, &runtime, &tight, "fixtures/hostile");
    let stops: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let _ = tokio.block_on(looping.enrich(&alert_1kb("loop"), &context));
            started.elapsed()
        })
        .collect();
    println!(
        "deadline 100 ms: looping plugin stopped after min {:?}, max {:?} (20 runs)",
        stops.iter().min().unwrap(),
        stops.iter().max().unwrap()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
