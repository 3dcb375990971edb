//! History must not slow a tenant down (`cargo xtask plugins` first, then
//! `cargo bench -p rampart-runtime --bench history`). Prints figures.
//!
//! Two tenants on one executor and one sled directory run the same 4-step
//! playbook (its responder under a rate limit): `fresh` with no history,
//! `veteran` with 100,000 prior executed actions in its rate history,
//! spread over the last 30 days. The rate history is written straight into
//! the executor's `rates` tree in the executor's own key format
//! (`tenant\0action\0<time ms BE><run><step>`) before the executor opens
//! (it rebuilds its counters from them): executing 100,000 real
//! actions first would take minutes and measure the same thing. Each tenant
//! runs 3,000 alerts with 64 in flight, twice, alternating which goes first.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{PLAYBOOK, bench_alert, plugins};

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::executor::Executor;
use rampart::store::SledStore;
use rampart::tenant::{Grants, TenantId};

const PRIOR_ACTIONS: u64 = 100_000;

async fn run(executor: &Executor, tenant: &TenantId, ips: &Arc<Vec<String>>, round: usize) -> f64 {
    let total = 3_000usize;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (executor, tenant, ips, next) =
                (executor.clone(), tenant.clone(), ips.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let alert =
                        bench_alert(format!("{tenant}-{round}-{i}"), ips[i % ips.len()].clone());
                    let t = Instant::now();
                    executor.ingest(&tenant, &alert).await.unwrap();
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "{tenant} round {round}: {total} alerts in {elapsed:.2?} = {rate:.0} alerts/s; p50 {:?}, p99 {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("data")).unwrap();
        // Written before the executor opens: it rebuilds its minute and
        // hour counters from these entries, as after an upgrade.
        let rates = store.space().open_tree("rates").unwrap();
        let now = rampart::executor::now_ms();
        let span = 30 * 86_400_000i64;
        for i in 0..PRIOR_ACTIONS {
            let time = now - span + (i as i64) * (span / PRIOR_ACTIONS as i64);
            let mut key = b"veteran\0block-ip\0".to_vec();
            key.extend_from_slice(&time.to_be_bytes());
            key.extend_from_slice(format!("run-old-{i}block").as_bytes());
            rates.insert(key, []).unwrap();
        }
        store.space().flush().unwrap();
        let executor = Executor::new(
            RuntimeConfig::default(),
            store,
            AuditKey::from_bytes(vec![1; 32]).unwrap(),
        )
        .unwrap();
        let feed =
            std::fs::read_to_string(plugins().join("../../examples/data/ipsum/ipsum.txt")).unwrap();
        let indicators = rampart::feeds::parse_ipsum("ipsum", &feed).unwrap();
        let ips: Arc<Vec<String>> =
            Arc::new(indicators.iter().map(|(e, _)| e.value.clone()).collect());
        let (fresh, veteran) = (
            TenantId::new("fresh").unwrap(),
            TenantId::new("veteran").unwrap(),
        );
        for tenant in [&fresh, &veteran] {
            executor.set_grants(tenant, Grants::allow_all_capabilities());
            for name in ["ip-reputation", "risk-scorer", "edl-blocklist"] {
                executor
                    .add_plugin(tenant, &plugins().join(format!("{name}.toml")))
                    .await
                    .unwrap();
            }
            executor
                .store()
                .intel_insert(tenant, indicators.clone())
                .unwrap();
            executor
                .add_playbook(tenant, "bench.yaml", PLAYBOOK)
                .unwrap();
        }
        println!("veteran: {PRIOR_ACTIONS} prior actions over 30 days in its rate history");
        let mut fresh_rates = Vec::new();
        let mut veteran_rates = Vec::new();
        // The order alternates: throughput falls as the database grows,
        // so whoever always ran second would look slower.
        for round in 0..2 {
            if round % 2 == 0 {
                fresh_rates.push(run(&executor, &fresh, &ips, round).await);
                veteran_rates.push(run(&executor, &veteran, &ips, round).await);
            } else {
                veteran_rates.push(run(&executor, &veteran, &ips, round).await);
                fresh_rates.push(run(&executor, &fresh, &ips, round).await);
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "veteran / fresh throughput: {:.0} / {:.0} alerts/s = {:.1} %",
            mean(&veteran_rates),
            mean(&fresh_rates),
            100.0 * mean(&veteran_rates) / mean(&fresh_rates)
        );
        // Measurements come from counters: their cost does not grow with
        // the runs (6,000 here), with or without a baseline cut.
        for cut in [None, Some(rampart::executor::now_ms())] {
            let started = Instant::now();
            let stats = executor.measure(&veteran, cut).unwrap();
            println!(
                "measurements (baseline cut {cut:?}) of {} runs in {:.2?}",
                stats
                    .iter()
                    .map(|s| s.current.runs + s.baseline.as_ref().map_or(0, |b| b.runs))
                    .sum::<u64>(),
                started.elapsed()
            );
        }
    });
}
