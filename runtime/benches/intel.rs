//! Threat-intel figures (`cargo xtask plugins` first, then
//! `cargo bench -p rampart-runtime --bench intel`): loading the maltrail
//! dev sample (1.29M indicator lines) from `../shared/data`, rebuilding the
//! index from the store (a restart), and lookups, in process and from a
//! plugin in the sandbox (host call included).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use rampart::intel::formats::{self, Format};
use rampart::model::{Alert, Entity, EntityKind, Severity};
use rampart::sandbox::{CallContext, Runtime};
use rampart::store::SledStore;
use rampart::tenant::{Grants, TenantId};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let shared = root().join("../shared/data/ti_maltrail");
    if !shared.is_dir() {
        println!("../shared/data/ti_maltrail not found; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let started = Instant::now();
    let mut parsed = formats::Parsed::default();
    for part in 1..=4 {
        let path = shared.join(format!("trails_static.part{part}.tar.gz"));
        parsed.extend(formats::read(Format::Maltrail, &path, &mut |_| {}).unwrap());
    }
    let lines = parsed.indicators.len();
    let read = started.elapsed();
    let summary = store
        .feeds()
        .import("maltrail", Format::Maltrail, parsed, false)
        .unwrap();
    let total = started.elapsed();
    println!(
        "maltrail import: {lines} indicator lines read in {read:.2?}, {} indexed (duplicates folded), stored and indexed in {total:.2?} total (target <= 5 s)",
        summary.imported
    );
    let tenant = TenantId::new("bench").unwrap();
    store
        .feeds()
        .subscribe(&tenant, ["maltrail".to_owned()].into())
        .unwrap();
    drop(store);
    let started = Instant::now();
    let store = SledStore::open(&dir.path().join("data")).unwrap();
    let feeds = store.feeds().index().feeds();
    println!(
        "restart: index rebuilt from the store in {:.2?} ({feeds:?})",
        started.elapsed()
    );

    // In process.
    let probes: Vec<Entity> = (0..10_000)
        .map(|i| match i % 4 {
            0 => Entity {
                kind: EntityKind::Domain,
                value: format!("host{i}.example.org"),
            },
            1 => Entity {
                kind: EntityKind::Ip,
                value: format!("198.51.{}.{}", i % 200, i % 250),
            },
            2 => Entity {
                kind: EntityKind::Url,
                value: format!("http://site{i}.example/path/{i}.php"),
            },
            _ => Entity {
                kind: EntityKind::Domain,
                value: "a.b.c.sub.emotet-example-miss.com".into(),
            },
        })
        .collect();
    let index = store.feeds().index();
    let mut samples = Vec::new();
    for probe in &probes {
        let t = Instant::now();
        std::hint::black_box(index.lookup(
            &tenant,
            probe,
            rampart::intel::ReferencePage::default(),
        ));
        samples.push(t.elapsed());
    }
    println!(
        "lookup in process: median {:?} over {} mixed probes",
        median(samples),
        probes.len()
    );

    // From a plugin: an enrich call with 1,000 entities minus one with none.
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(store.clone())).unwrap();
        let plugin = runtime
            .load_file(
                &tenant,
                &Grants::allow_all_capabilities(),
                &root().join("target/plugins/threat-intel.toml"),
            )
            .await
            .unwrap();
        let alert = |entities: Vec<Entity>| Alert {
            id: "bench".into(),
            source: "bench".into(),
            title: "bench".into(),
            severity: Severity::Medium,
            time: 0,
            entities,
            techniques: vec![],
            tags: vec![],
            raw: serde_json::json!({}),
        };
        let many = alert(probes[..1_000].to_vec());
        let none = alert(vec![]);
        let context = CallContext::default();
        let mut per_lookup = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            plugin.enrich(&many, &context).await.unwrap();
            let with = t.elapsed();
            let t = Instant::now();
            plugin.enrich(&none, &context).await.unwrap();
            let without = t.elapsed();
            per_lookup.push(with.saturating_sub(without) / 1_000);
        }
        println!(
            "lookup from a plugin (host call, 1,000 entities per call, 50 calls): median {:?} per lookup (target <= 2 µs)",
            median(per_lookup)
        );
    });
}
