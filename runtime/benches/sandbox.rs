//! Sandbox benchmarks (`cargo xtask plugins` first, then `cargo bench -p rampart-runtime`):
//! - a fresh sandbox (Store + instantiate from `InstancePre`) plus one
//!   `enrich` of a ~1 KB alert, pooling allocator;
//! - loading a plugin from the verified on-disk artifact cache vs compiling it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::store::MemoryStore;
use rampart::tenant::{Grants, TenantId};
use rampart::{CallContext, Runtime, RuntimeConfig};

fn plugins() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins")
}

fn alert_1kb() -> Alert {
    let alert = Alert {
        id: "bench-0001".into(),
        source: "edr".into(),
        title: "Repeated SSH logon failures followed by a success from an external address".into(),
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
            "detail": "x".repeat(560)}),
    };
    let size = serde_json::to_string(&alert).unwrap().len();
    assert!((900..1200).contains(&size), "alert is {size} bytes");
    alert
}

fn bench(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tenant = TenantId::new("bench").unwrap();
    let grants = Grants::allow_all_capabilities();
    let manifest = plugins().join("ip-reputation.toml");
    let store = Arc::new(MemoryStore::default());
    let runtime = Runtime::new(RuntimeConfig::default(), store).unwrap();
    let plugin = tokio
        .block_on(runtime.load_file(&tenant, &grants, &manifest))
        .unwrap();
    let alert = alert_1kb();
    let context = CallContext::default();
    c.bench_function("fresh_sandbox_enrich_1kb_alert", |b| {
        b.iter(|| tokio.block_on(plugin.enrich(&alert, &context)).unwrap());
    });

    let cache = tempfile::tempdir().unwrap();
    let cached_config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    // Warm the cache once.
    let warm = Runtime::new(cached_config(), Arc::new(MemoryStore::default())).unwrap();
    tokio
        .block_on(warm.load_file(&tenant, &grants, &manifest))
        .unwrap();
    let mut group = c.benchmark_group("load_plugin");
    group.sample_size(20);
    let fresh_cached = Runtime::new(cached_config(), Arc::new(MemoryStore::default())).unwrap();
    group.bench_function("from_verified_cache", |b| {
        b.iter(|| {
            // A new runtime each time would also time engine start-up; clear
            // only the in-process map by using a fresh Runtime per 1 load.
            let runtime = fresh_cached.clone();
            let _ = runtime;
            let runtime = Runtime::new(cached_config(), Arc::new(MemoryStore::default())).unwrap();
            let plugin = tokio
                .block_on(runtime.load_file(&tenant, &grants, &manifest))
                .unwrap();
            assert_eq!(
                plugin.artifact_source(),
                rampart::sandbox::ArtifactSource::Cache
            );
        });
    });
    group.bench_function("compile", |b| {
        b.iter(|| {
            let runtime =
                Runtime::new(RuntimeConfig::default(), Arc::new(MemoryStore::default())).unwrap();
            let plugin = tokio
                .block_on(runtime.load_file(&tenant, &grants, &manifest))
                .unwrap();
            assert_eq!(
                plugin.artifact_source(),
                rampart::sandbox::ArtifactSource::Compiled
            );
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
