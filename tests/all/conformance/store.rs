//! Plugin state (kv,
//! entity memory, the intel index), run unchanged against `MemoryStore` and
//! `SledStore`. A backend added later (the scale-out issue's PostgreSQL)
//! runs the same functions.

use std::sync::Arc;

use rampart::model::{
    Entity, EntityKind, Feedback, FeedbackLabel, IndicatorMatch, PriorVerdict, Verdict,
};
use rampart::store::{KvNamespace, MEMORY_LIST_CAP, MemoryStore, SledStore, Store, StoreError};
use rampart::tenant::TenantId;

fn ns(tenant: &str, plugin: &str) -> KvNamespace {
    KvNamespace {
        tenant: TenantId::new(tenant).expect("tenant"),
        plugin: plugin.to_owned(),
    }
}

fn ip(value: &str) -> Entity {
    Entity {
        kind: EntityKind::Ip,
        value: value.to_owned(),
    }
}

const QUOTA: u64 = 1 << 20;

fn kv_semantics(store: &dyn Store) {
    let a = ns("acme", "p");
    assert_eq!(store.kv_get(&a, "k").expect("get"), None);
    store.kv_set(&a, "k", b"v1", QUOTA).expect("set");
    store.kv_set(&a, "k", b"v2", QUOTA).expect("overwrite");
    assert_eq!(store.kv_get(&a, "k").expect("get"), Some(b"v2".to_vec()));
    // Namespaces are apart by tenant and by plugin.
    assert_eq!(store.kv_get(&ns("beta", "p"), "k").expect("get"), None);
    assert_eq!(store.kv_get(&ns("acme", "q"), "k").expect("get"), None);
    assert!(store.kv_delete(&a, "k").expect("delete"));
    assert!(!store.kv_delete(&a, "k").expect("delete again"));
    assert_eq!(store.kv_get(&a, "k").expect("get"), None);
}

fn kv_listing(store: &dyn Store) {
    let a = ns("acme", "list");
    for key in ["b/2", "a/1", "b/1", "b/3", "c"] {
        store.kv_set(&a, key, b"x", QUOTA).expect("set");
    }
    store
        .kv_set(&ns("beta", "list"), "b/9", b"x", QUOTA)
        .expect("other tenant");
    assert_eq!(
        store.kv_list(&a, "b/", None, 10).expect("list"),
        ["b/1", "b/2", "b/3"]
    );
    assert_eq!(
        store.kv_list(&a, "b/", Some("b/1"), 1).expect("page"),
        ["b/2"]
    );
    assert_eq!(store.kv_list(&a, "", None, 2).expect("all"), ["a/1", "b/1"]);
    assert!(store.kv_list(&a, "z", None, 10).expect("none").is_empty());
}

fn kv_quota_and_usage(store: &dyn Store) {
    let a = ns("acme", "quota");
    assert_eq!(store.kv_usage(&a).expect("usage"), 0);
    store.kv_set(&a, "key", b"12345", 100).expect("set");
    assert_eq!(
        store.kv_usage(&a).expect("usage"),
        8,
        "key plus value bytes"
    );
    assert_eq!(
        store.kv_set(&a, "big", &[0; 100], 100),
        Err(StoreError::QuotaExceeded { quota: 100 })
    );
    assert_eq!(
        store.kv_get(&a, "big").expect("get"),
        None,
        "a refused write leaves nothing"
    );
    store.kv_set(&a, "key", b"1", 100).expect("shrink");
    assert_eq!(store.kv_usage(&a).expect("usage"), 4);
    store.kv_delete(&a, "key").expect("delete");
    assert_eq!(store.kv_usage(&a).expect("usage"), 0);
}

fn kv_compare_and_swap(store: &dyn Store) {
    let a = ns("acme", "cas");
    assert!(
        store
            .kv_compare_and_swap(&a, "k", None, Some(b"1"), QUOTA)
            .expect("create")
    );
    assert!(
        !store
            .kv_compare_and_swap(&a, "k", None, Some(b"2"), QUOTA)
            .expect("exists")
    );
    assert!(
        !store
            .kv_compare_and_swap(&a, "k", Some(b"x"), Some(b"2"), QUOTA)
            .expect("mismatch")
    );
    assert!(
        store
            .kv_compare_and_swap(&a, "k", Some(b"1"), Some(b"2"), QUOTA)
            .expect("swap")
    );
    assert_eq!(store.kv_get(&a, "k").expect("get"), Some(b"2".to_vec()));
    assert!(
        store
            .kv_compare_and_swap(&a, "k", Some(b"2"), None, QUOTA)
            .expect("delete")
    );
    assert_eq!(store.kv_get(&a, "k").expect("get"), None);
    assert_eq!(store.kv_usage(&a).expect("usage"), 0);
}

/// 32 threads, 50 rounds: each round, every thread tries to move the
/// counter from the value it read; exactly one wins per value, so the
/// counter ends at the number of wins.
fn kv_compare_and_swap_under_contention(store: Arc<dyn Store>) {
    let a = ns("acme", "race");
    store.kv_set(&a, "n", b"0", QUOTA).expect("seed");
    let wins = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..32 {
            let (store, a, wins) = (store.clone(), a.clone(), &wins);
            scope.spawn(move || {
                for _ in 0..50 {
                    let seen = store.kv_get(&a, "n").expect("get").expect("value");
                    let n: u64 = String::from_utf8_lossy(&seen).parse().expect("number");
                    let next = (n + 1).to_string();
                    if store
                        .kv_compare_and_swap(&a, "n", Some(&seen), Some(next.as_bytes()), QUOTA)
                        .expect("cas")
                    {
                        wins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let end = store.kv_get(&a, "n").expect("get").expect("value");
    let wins = wins.load(std::sync::atomic::Ordering::Relaxed);
    assert!(wins > 0);
    assert_eq!(String::from_utf8_lossy(&end), wins.to_string());
}

fn entity_memory(store: &dyn Store) {
    let acme = TenantId::new("acme").expect("tenant");
    let host = ip("203.0.113.7");
    assert_eq!(
        store.memory_recall(&acme, &host).expect("recall").sightings,
        0
    );
    for time in [200, 100, 300] {
        store
            .memory_record_sighting(&acme, &host, time)
            .expect("sighting");
    }
    let memory = store.memory_recall(&acme, &host).expect("recall");
    assert_eq!(
        (memory.sightings, memory.first_seen, memory.last_seen),
        (3, Some(100), Some(300))
    );
    for i in 0..(MEMORY_LIST_CAP + 5) {
        store
            .memory_record_verdict(
                &acme,
                &host,
                PriorVerdict {
                    verdict: Verdict::Malicious,
                    confidence: 80,
                    run_id: format!("run-{i}"),
                    playbook: "p".to_owned(),
                    time: i as i64,
                },
            )
            .expect("verdict");
    }
    store
        .memory_record_feedback(
            &acme,
            &host,
            Feedback {
                label: FeedbackLabel::TruePositive,
                analyst: "alice".to_owned(),
                time: 1,
                run_id: "run-1".to_owned(),
                comment: String::new(),
            },
        )
        .expect("feedback");
    let memory = store.memory_recall(&acme, &host).expect("recall");
    assert_eq!(memory.verdicts.len(), MEMORY_LIST_CAP, "capped");
    assert_eq!(
        memory.verdicts[0].run_id,
        format!("run-{}", MEMORY_LIST_CAP + 4),
        "newest first"
    );
    assert_eq!(memory.feedback[0].analyst, "alice");
    // Another tenant remembers nothing of it.
    let beta = TenantId::new("beta").expect("tenant");
    assert_eq!(
        store.memory_recall(&beta, &host).expect("recall").sightings,
        0
    );
}

fn intel_index(store: &dyn Store) {
    let acme = TenantId::new("acme").expect("tenant");
    let indicator = |feed: &str| IndicatorMatch {
        indicator: "198.51.100.9".to_owned(),
        feed: feed.to_owned(),
        family: None,
        campaign: None,
        confidence: 70,
        references: vec![],
        references_total: 0,
        techniques: vec![],
        first_seen: None,
        last_seen: None,
    };
    let bad = ip("198.51.100.9");
    let added = store
        .intel_insert(
            &acme,
            vec![
                (bad.clone(), indicator("ipsum")),
                (bad.clone(), indicator("feodo")),
            ],
        )
        .expect("insert");
    assert_eq!(added, 2);
    let mut feeds: Vec<String> = store
        .intel_lookup(&acme, &bad)
        .expect("lookup")
        .into_iter()
        .map(|m| m.feed)
        .collect();
    feeds.sort();
    assert_eq!(feeds, ["feodo", "ipsum"]);
    assert!(
        store
            .intel_lookup(&acme, &ip("198.51.100.10"))
            .expect("miss")
            .is_empty()
    );
    let beta = TenantId::new("beta").expect("tenant");
    assert!(
        store
            .intel_lookup(&beta, &bad)
            .expect("other tenant")
            .is_empty()
    );
    // The same indicator of the same feed again replaces it; one written
    // with a port and in capitals is found by the bare address.
    store
        .intel_insert(&acme, vec![(bad.clone(), indicator("ipsum"))])
        .expect("again");
    assert_eq!(store.intel_lookup(&acme, &bad).expect("lookup").len(), 2);
    store
        .intel_insert(&acme, vec![(ip("198.51.100.77:443"), indicator("ipsum"))])
        .expect("with a port");
    assert_eq!(
        store
            .intel_lookup(&acme, &ip("198.51.100.77"))
            .expect("bare")
            .len(),
        1
    );
    let host = |value: &str| Entity {
        kind: EntityKind::Hostname,
        value: value.to_owned(),
    };
    store
        .intel_insert(&acme, vec![(host("Evil.Example."), indicator("ipsum"))])
        .expect("host");
    assert_eq!(
        store
            .intel_lookup(&acme, &host("evil.example"))
            .expect("normalised")
            .len(),
        1
    );
}

/// Every check on one fresh backend from `make`.
fn conformance(make: impl Fn() -> Arc<dyn Store>) {
    kv_semantics(&*make());
    kv_listing(&*make());
    kv_quota_and_usage(&*make());
    kv_compare_and_swap(&*make());
    kv_compare_and_swap_under_contention(make());
    entity_memory(&*make());
    intel_index(&*make());
}

#[test]
fn memory_store_conforms() {
    conformance(|| Arc::new(MemoryStore::default()));
}

#[test]
fn sled_store_conforms() {
    conformance(|| Arc::new(SledStore::temporary().expect("sled")));
}

#[test]
fn postgres_store_conforms() {
    conformance(|| Arc::new(super::fresh_pg()));
}
