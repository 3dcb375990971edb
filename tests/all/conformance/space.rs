//! The keyspace contract (`rampart::store::space`), on every backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rampart::store::space::Batch;
use rampart::store::{Backend, Keyspace, MemoryStore, SledStore};

fn keys(
    iter: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), rampart::store::SpaceError>>,
) -> Vec<Vec<u8>> {
    iter.map(|entry| entry.expect("entry").0).collect()
}

fn point_operations(space: &Keyspace) {
    let tree = space.open_tree("points").expect("tree");
    assert_eq!(tree.name(), "points");
    assert_eq!(tree.get("a").expect("get"), None);
    assert!(!tree.insert("a", b"1").expect("insert"), "new key");
    assert!(tree.insert("a", b"2").expect("insert"), "replaced");
    assert_eq!(tree.get("a").expect("get"), Some(b"2".to_vec()));
    assert!(tree.contains_key("a").expect("contains"));
    // Trees are apart.
    let other = space.open_tree("points-other").expect("tree");
    assert_eq!(other.get("a").expect("get"), None);
    // The same name is the same tree.
    let again = space.open_tree("points").expect("tree");
    assert_eq!(again.get("a").expect("get"), Some(b"2".to_vec()));
    assert!(tree.remove("a").expect("remove"));
    assert!(!tree.remove("a").expect("remove"));
    assert!(tree.is_empty().expect("empty"));
    let names = space.tree_names().expect("names");
    assert!(names.iter().any(|n| n == "points"), "{names:?}");
    let ids: std::collections::BTreeSet<u64> =
        (0..100).map(|_| space.generate_id().expect("id")).collect();
    assert_eq!(ids.len(), 100, "generate_id repeated a number");
    space.flush().expect("flush");
}

fn compare_and_swap(space: &Keyspace) {
    let tree = space.open_tree("cas").expect("tree");
    // Absent → value.
    assert_eq!(
        tree.compare_and_swap("k", None::<&[u8]>, Some(b"1"))
            .expect("cas"),
        Ok(())
    );
    // A second insert-if-absent loses and sees the winner.
    let lost = tree
        .compare_and_swap("k", None::<&[u8]>, Some(b"x"))
        .expect("cas")
        .expect_err("already present");
    assert_eq!(lost.current, Some(b"1".to_vec()));
    // Wrong expectation.
    let lost = tree
        .compare_and_swap("k", Some(b"0"), Some(b"2"))
        .expect("cas")
        .expect_err("stale");
    assert_eq!(lost.current, Some(b"1".to_vec()));
    assert_eq!(tree.get("k").expect("get"), Some(b"1".to_vec()));
    // Value → absent.
    assert_eq!(
        tree.compare_and_swap("k", Some(b"1"), None::<&[u8]>)
            .expect("cas"),
        Ok(())
    );
    assert_eq!(tree.get("k").expect("get"), None);
    let lost = tree
        .compare_and_swap("k", Some(b"1"), Some(b"2"))
        .expect("cas")
        .expect_err("absent");
    assert_eq!(lost.current, None);
}

fn ordered_scans(space: &Keyspace) {
    let tree = space.open_tree("scans").expect("tree");
    // 600 keys: more than one chunk of any backend that pages its scans.
    let mut all: Vec<Vec<u8>> = Vec::new();
    for tenant in ["acme", "acmf", "beta"] {
        for i in 0u16..200 {
            let mut key = tenant.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(&i.to_be_bytes());
            tree.insert(&key, [i as u8]).expect("insert");
            all.push(key);
        }
    }
    tree.insert(b"\xff\xff", b"edge").expect("insert");
    tree.insert(b"\xff\xff\x00", b"edge").expect("insert");
    all.push(b"\xff\xff".to_vec());
    all.push(b"\xff\xff\x00".to_vec());
    all.sort();
    assert_eq!(keys(tree.iter()), all);
    assert_eq!(
        keys(tree.iter().rev()),
        all.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(tree.len().expect("len"), all.len());
    // A prefix stops at its end, also for a tenant that prefixes another.
    let acme = keys(tree.scan_prefix(b"acme\0"));
    assert_eq!(acme.len(), 200);
    assert!(acme.iter().all(|k| k.starts_with(b"acme\0")));
    assert_eq!(keys(tree.scan_prefix(b"acme\0").rev()).len(), 200);
    assert_eq!(keys(tree.scan_prefix(b"\xff\xff")).len(), 2);
    // Ranges: bounds included and excluded, walked from both ends at once.
    let low = b"acmf\0\x00\x0a".to_vec();
    let high = b"beta\0\x00\x14".to_vec();
    let expected: Vec<Vec<u8>> = all
        .iter()
        .filter(|k| **k >= low && **k < high)
        .cloned()
        .collect();
    assert_eq!(keys(tree.range(low.clone()..high.clone())), expected);
    let mut both = tree.range(low.clone()..high.clone());
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        match (both.next(), both.next_back()) {
            (None, None) => break,
            (f, b) => {
                front.extend(f.map(|e| e.expect("entry").0));
                back.extend(b.map(|e| e.expect("entry").0));
            }
        }
    }
    back.reverse();
    front.extend(back);
    assert_eq!(
        front, expected,
        "a scan from both ends yields each entry once"
    );
    assert_eq!(
        keys(tree.range(low.clone()..=low.clone())),
        vec![low.clone()]
    );
    assert!(keys(tree.range(high.clone()..low.clone())).is_empty());
    let (first, _) = tree.first().expect("first").expect("some");
    let (last, _) = tree.last().expect("last").expect("some");
    assert_eq!((first, last), (all[0].clone(), all[all.len() - 1].clone()));
    tree.clear().expect("clear");
    assert!(tree.is_empty().expect("empty"));
    assert_eq!(tree.last().expect("last"), None);
}

fn batches(space: &Keyspace) {
    let tree = space.open_tree("batches").expect("tree");
    tree.insert("gone", b"x").expect("insert");
    let mut batch = Batch::default();
    batch.insert("a", b"1");
    batch.insert("b", b"2");
    batch.remove("gone");
    batch.insert("a", b"3");
    tree.apply_batch(batch).expect("batch");
    assert_eq!(
        tree.get("a").expect("get"),
        Some(b"3".to_vec()),
        "later write wins"
    );
    assert_eq!(tree.get("b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(tree.get("gone").expect("get"), None);
}

/// 16 threads × 200 increments of one counter by `update_and_fetch`: the
/// count is exact, so no update was lost to a concurrent one.
fn concurrent_updates(space: &Keyspace) {
    let tree = space.open_tree("counter").expect("tree");
    let calls = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            let (tree, calls) = (tree.clone(), &calls);
            scope.spawn(move || {
                for _ in 0..200 {
                    tree.update_and_fetch("n", |old| {
                        calls.fetch_add(1, Ordering::Relaxed);
                        let n = old
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map_or(0, u64::from_be_bytes);
                        Some((n + 1).to_be_bytes().to_vec())
                    })
                    .expect("update");
                }
            });
        }
    });
    let end = tree.get("n").expect("get").expect("value");
    assert_eq!(u64::from_be_bytes(end.try_into().expect("8 bytes")), 3_200);
    assert!(calls.load(Ordering::Relaxed) >= 3_200);
}

fn keyspace_conforms(make: impl Fn() -> Arc<dyn Backend>) {
    point_operations(make().space());
    compare_and_swap(make().space());
    ordered_scans(make().space());
    batches(make().space());
    concurrent_updates(make().space());
}

#[test]
fn memory_keyspace_conforms() {
    keyspace_conforms(|| Arc::new(MemoryStore::default()));
}

#[test]
fn sled_keyspace_conforms() {
    keyspace_conforms(|| Arc::new(SledStore::temporary().expect("sled")));
}

#[test]
fn postgres_keyspace_conforms() {
    keyspace_conforms(|| Arc::new(super::fresh_pg()));
}
