//! The audit chain: intact chains verify; each kind of tampering is found
//! and the first bad record named.

use rampart::audit::{AuditKey, AuditKind, AuditLog, AuditRecord};
use rampart::store::SledStore;
use rampart::tenant::TenantId;
use serde_json::json;

fn key() -> AuditKey {
    AuditKey::from_bytes(vec![7u8; 32]).expect("key")
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// A log with `n` records and a checkpoint at the end.
fn log_with(n: u64) -> (SledStore, AuditLog) {
    let store = SledStore::temporary().expect("store");
    let log = AuditLog::new(store.space().clone(), key());
    for i in 0..n {
        log.append(
            &tenant(),
            AuditKind::StepFinished,
            Some("run-1"),
            Some("s"),
            None,
            json!({"i": i}),
        )
        .expect("append");
    }
    log.checkpoint(&tenant()).expect("checkpoint");
    (store, log)
}

fn breach(log: &AuditLog) -> (u64, String) {
    let report = log.verify(&tenant()).expect("verify");
    let breach = report.breach.expect("tampering must be found");
    (breach.seq, breach.reason)
}

fn stored(log: &AuditLog, seq: u64) -> Vec<u8> {
    log.records_tree(&tenant())
        .expect("tree")
        .get(seq.to_be_bytes())
        .expect("get")
        .expect("record")
        .to_vec()
}

#[test]
fn an_intact_chain_verifies() {
    let (_store, log) = log_with(2_500);
    let report = log.verify(&tenant()).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 2_500);
    assert_eq!(
        report.checkpoints, 3,
        "every 1000 records and the final one"
    );
}

#[test]
fn a_flipped_byte_names_its_record() {
    let (_store, log) = log_with(50);
    let mut bytes = stored(&log, 20);
    let at = bytes.iter().position(|b| *b == b'"').expect("quote") + 3;
    bytes[at] ^= 0x01;
    log.records_tree(&tenant())
        .expect("tree")
        .insert(20u64.to_be_bytes(), bytes)
        .expect("tamper");
    let (seq, reason) = breach(&log);
    assert_eq!(seq, 20, "{reason}");
}

#[test]
fn a_changed_detail_in_the_last_record_is_caught_by_the_checkpoint() {
    let (_store, log) = log_with(10);
    let mut record: AuditRecord = serde_json::from_slice(&stored(&log, 10)).expect("record");
    record.detail = json!({"i": 999});
    log.records_tree(&tenant())
        .expect("tree")
        .insert(
            10u64.to_be_bytes(),
            serde_json::to_vec(&record).expect("json"),
        )
        .expect("tamper");
    let (seq, reason) = breach(&log);
    assert!(
        seq <= 10 && reason.contains("signed checkpoint"),
        "{seq}: {reason}"
    );
}

#[test]
fn a_deleted_middle_record_is_named() {
    let (_store, log) = log_with(30);
    log.records_tree(&tenant())
        .expect("tree")
        .remove(12u64.to_be_bytes())
        .expect("delete");
    let (seq, reason) = breach(&log);
    assert_eq!(seq, 12, "{reason}");
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn a_deleted_last_record_is_found_by_the_signed_checkpoint() {
    let (_store, log) = log_with(30);
    log.records_tree(&tenant())
        .expect("tree")
        .remove(30u64.to_be_bytes())
        .expect("delete");
    let (seq, reason) = breach(&log);
    assert_eq!(seq, 30, "{reason}");
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn two_swapped_records_are_found() {
    let (_store, log) = log_with(30);
    let tree = log.records_tree(&tenant()).expect("tree");
    let (a, b) = (stored(&log, 7), stored(&log, 8));
    tree.insert(7u64.to_be_bytes(), b).expect("swap");
    tree.insert(8u64.to_be_bytes(), a).expect("swap");
    let (seq, reason) = breach(&log);
    assert_eq!(seq, 7, "{reason}");
}

#[test]
fn a_rewritten_and_rehashed_chain_fails_its_signed_checkpoints() {
    let (store, log) = log_with(40);
    // The attacker rewrites every record from 5 on and recomputes the chain
    // (without the key, they cannot re-sign the checkpoint).
    let forged = AuditLog::new(
        store.space().clone(),
        AuditKey::from_bytes(vec![9u8; 32]).expect("key"),
    );
    let tree = log.records_tree(&tenant()).expect("tree");
    for seq in 5..=40u64 {
        tree.remove(seq.to_be_bytes()).expect("remove");
    }
    let rewriter = AuditLog::new(
        store.space().clone(),
        AuditKey::from_bytes(vec![9u8; 32]).expect("key"),
    );
    for i in 5..=40u64 {
        rewriter
            .append(
                &tenant(),
                AuditKind::StepFinished,
                Some("run-1"),
                Some("s"),
                None,
                json!({"i": i, "forged": true}),
            )
            .expect("append");
    }
    let report = log.verify(&tenant()).expect("verify");
    let breach = report.breach.expect("rewrite must be found");
    assert!(breach.reason.contains("rewritten"), "{breach:?}");
    // Re-signing with their own key is refused as a bad signature.
    forged.checkpoint(&tenant()).expect("forged checkpoint");
    let (_, reason) = breach_of(&log);
    assert!(
        reason.contains("invalid signature") || reason.contains("rewritten"),
        "{reason}"
    );
}

fn breach_of(log: &AuditLog) -> (u64, String) {
    breach(log)
}

#[test]
fn secrets_are_redacted_before_hashing() {
    let (_store, log) = log_with(0);
    log.append(
        &tenant(),
        AuditKind::ConfigChanged,
        None,
        None,
        Some("admin"),
        json!({"plugin": "x", "api_key": "sk-live-123", "nested": {"password": "hunter2"}}),
    )
    .expect("append");
    let mut out = Vec::new();
    log.export(&tenant(), &mut out).expect("export");
    let text = String::from_utf8(out).expect("utf8");
    assert!(
        !text.contains("sk-live-123") && !text.contains("hunter2"),
        "{text}"
    );
    assert!(text.contains("\"hash\""));
    assert!(log.verify(&tenant()).expect("verify").ok());
}

#[test]
fn chains_are_per_tenant() {
    let (_store, log) = log_with(5);
    let other = TenantId::new("globex").expect("tenant");
    log.append(
        &other,
        AuditKind::AlertReceived,
        None,
        None,
        None,
        json!({}),
    )
    .expect("append");
    assert_eq!(log.verify(&other).expect("verify").records, 1);
    assert_eq!(log.verify(&tenant()).expect("verify").records, 5);
}

/// A log whose key is a file outside the data directory (as `rampart
/// serve` has it): its signed heads are also kept beside the key.
fn log_with_key_file(n: u64) -> (tempfile::TempDir, SledStore, AuditLog) {
    let dir = tempfile::tempdir().expect("dir");
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let key = AuditKey::load_or_create(
        &dir.path().join("audit.key"),
        Some(&dir.path().join("data")),
    )
    .expect("key");
    let log = AuditLog::new(store.space().clone(), key);
    for i in 0..n {
        log.append(
            &tenant(),
            AuditKind::StepFinished,
            Some("run-1"),
            Some("s"),
            None,
            json!({"i": i}),
        )
        .expect("append");
    }
    log.checkpoint(&tenant()).expect("checkpoint");
    (dir, store, log)
}

fn delete_checkpoints_from(store: &SledStore, from: u64) {
    let tree = store
        .space()
        .open_tree("audit/acme/checkpoints")
        .expect("tree");
    for entry in tree.iter() {
        let (key, _) = entry.expect("entry");
        let seq = u64::from_be_bytes(<[u8; 8]>::try_from(key.as_ref()).expect("key"));
        if seq >= from {
            tree.remove(key).expect("remove");
        }
    }
}

/// Rewrites records `from..=to` (new details) and recomputes the chain
/// after them, as an attacker without the key would.
fn rewrite_and_rehash(store: &SledStore, log: &AuditLog, from: u64, to: u64) {
    let tree = log.records_tree(&tenant()).expect("tree");
    for seq in from..=to {
        tree.remove(seq.to_be_bytes()).expect("remove");
    }
    let rewriter = AuditLog::new(
        store.space().clone(),
        AuditKey::from_bytes(vec![9u8; 32]).expect("key"),
    );
    for i in from..=to {
        rewriter
            .append(
                &tenant(),
                AuditKind::StepFinished,
                Some("run-1"),
                Some("s"),
                None,
                json!({"i": i, "forged": true}),
            )
            .expect("append");
    }
}

#[test]
fn deleting_every_checkpoint_leaves_the_head_kept_outside() {
    let (_dir, store, log) = log_with_key_file(3_000);
    delete_checkpoints_from(&store, 0);
    let report = log.verify(&tenant()).expect("verify");
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.outside_head, Some(3_000));
    assert_eq!(
        report.checkpoints, 1,
        "the head outside still checks the chain"
    );
    // ... so a rewrite after deleting every checkpoint is found.
    rewrite_and_rehash(&store, &log, 5, 3_000);
    let (_, reason) = breach(&log);
    assert!(reason.contains("rewritten"), "{reason}");
}

#[test]
fn cutting_the_tail_and_its_checkpoints_is_found() {
    let (_dir, store, log) = log_with_key_file(3_000);
    let tree = log.records_tree(&tenant()).expect("tree");
    for seq in 2_001..=3_000u64 {
        tree.remove(seq.to_be_bytes()).expect("remove");
    }
    delete_checkpoints_from(&store, 2_001);
    let (seq, reason) = breach(&log);
    assert_eq!(seq, 2_001, "{reason}");
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn rewriting_rehashing_and_deleting_later_checkpoints_is_found() {
    let (_dir, store, log) = log_with_key_file(3_000);
    rewrite_and_rehash(&store, &log, 2_500, 3_000);
    delete_checkpoints_from(&store, 2_500);
    let (_, reason) = breach(&log);
    assert!(reason.contains("rewritten"), "{reason}");
}

#[test]
fn a_page_from_a_cursor_has_the_chain_hashes() {
    let (_store, log) = log_with(50);
    let mut all = Vec::new();
    log.read(&tenant(), |record, hash| {
        all.push((record.seq, hash.to_owned()));
        true
    })
    .expect("read");
    let mut page = Vec::new();
    log.read_after(&tenant(), 25, |record, hash| {
        page.push((record.seq, hash.to_owned()));
        page.len() < 10
    })
    .expect("read after");
    assert_eq!(page, all[25..35].to_vec());
}
