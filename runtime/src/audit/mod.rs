//! The tamper-evident audit log: one sha256 hash chain per tenant.
//!
//! Each record is stored as the exact JSON bytes that were hashed; record
//! `n`'s hash is `sha256(hash(n-1) || bytes(n))` (the hash of "record 0" is
//! 32 zero bytes), and each record also names its predecessor's hash. A
//! chain alone cannot show a cut-off tail or a full rewrite, so the head is
//! checkpointed — `(seq, hash, time)` signed with HMAC-SHA256 under a key
//! kept outside the data directory — every [`AuditLog::CHECKPOINT_EVERY`]
//! records and whenever [`AuditLog::checkpoint`] is called (the server calls
//! it on shutdown and after each group commit).
//!
//! [`AuditLog::verify`] recomputes the chain and the signatures and names the
//! first bad record: an altered record (its successor no longer links to it,
//! or a checkpoint no longer matches), a missing one (a gap, or a tail cut
//! below the last signed checkpoint), records out of place, or a rewritten
//! and rehashed chain (the signed checkpoints no longer match). What it
//! cannot show: records appended after the last checkpoint and then removed
//! before the next one — checkpoint often.
//!
//! Nothing secret may go in: `detail` is redacted by key name (`secret`,
//! `token`, `password`, `api_key`, `authorization`) before hashing.

mod heads;
mod key;
pub mod seal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use key::{AuditKey, KeyError};

use crate::tenant::TenantId;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// An alert was accepted.
    AlertReceived,
    /// An alert was folded into an existing run by dedup.
    AlertFolded,
    /// A run started.
    RunStarted,
    /// A plugin was called (digest, duration, fuel).
    PluginInvoked,
    /// A step finished.
    StepFinished,
    /// A guardrail decided (allow, approval needed, refuse) and why.
    GuardrailDecision,
    /// An approval was requested.
    ApprovalRequested,
    /// An approver approved.
    ApprovalGranted,
    /// An approver denied.
    ApprovalDenied,
    /// An approval timed out (denied).
    ApprovalExpired,
    /// A responder acted.
    ActionExecuted,
    /// A run finished.
    RunFinished,
    /// An analyst labelled a run.
    FeedbackGiven,
    /// Configuration changed (playbook, plugin, tenant).
    ConfigChanged,
    /// Findings were pushed to the tenant's findings sink (or the push
    /// failed after its retries).
    FindingsExported,
}

/// One record, as hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the tenant's chain, from 1.
    pub seq: u64,
    /// When, Unix milliseconds.
    pub time: i64,
    /// The tenant.
    pub tenant: String,
    /// What happened.
    pub kind: AuditKind,
    /// The run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The step, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    /// Who (principal), if a person or token did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Details (redacted).
    pub detail: serde_json::Value,
    /// The node that wrote it (when nodes share the chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Hex sha256 of the previous record (64 zeros for the first).
    pub prev: String,
}

/// A signed chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The tenant.
    pub tenant: String,
    /// Last record covered.
    pub seq: u64,
    /// Hex hash of that record.
    pub hash: String,
    /// When signed, Unix milliseconds.
    pub time: i64,
    /// Hex HMAC-SHA256 of `tenant|seq|hash|time`.
    pub mac: String,
}

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store failed.
    #[error("audit store: {0}")]
    Store(String),
    /// A record could not be encoded.
    #[error("audit encode: {0}")]
    Encode(String),
}

fn store_err(err: impl std::fmt::Display) -> AuditError {
    AuditError::Store(err.to_string())
}

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breach {
    /// The first bad record's seq.
    pub seq: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The tenant.
    pub tenant: String,
    /// Records checked.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The head hash.
    pub head: String,
    /// The record the signed head kept outside the data directory names
    /// (`None` when the key has no heads file, e.g. an embedder's key).
    pub outside_head: Option<u64>,
    /// The first problem, if any.
    pub breach: Option<Breach>,
}

impl VerifyReport {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.breach.is_none()
    }
}

const ZERO_HASH: [u8; 32] = [0; 32];

fn chain_hash(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(bytes);
    hasher.finalize().into()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Key names whose values never reach the log.
const SECRET_KEYS: [&str; 6] = [
    "secret",
    "token",
    "password",
    "api_key",
    "apikey",
    "authorization",
];

/// Replaces the values of secret-looking keys with `"***"`, recursively.
pub fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                let lowered = key.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|secret| lowered.contains(secret)) {
                    *inner = serde_json::Value::String("***".to_owned());
                } else {
                    redact(inner);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    seq: u64,
    hash: [u8; 32],
}

/// The audit log of every tenant, on a sled database.
#[derive(Clone)]
pub struct AuditLog {
    db: crate::store::Keyspace,
    key: Arc<AuditKey>,
    heads: Arc<Mutex<HashMap<TenantId, Head>>>,
    /// The latest signed heads, beside the key (outside the data directory).
    outside: Option<Arc<heads::HeadFile>>,
    /// The node id written into each record, if any.
    node: Option<Arc<str>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

impl AuditLog {
    /// A checkpoint is signed at least this often.
    pub const CHECKPOINT_EVERY: u64 = 1_000;

    /// The audit log on `db`, signing with `key`.
    /// A key loaded from a file keeps every tenant's latest signed head in
    /// `<key file>.heads` too, so a chain cannot silently go backwards.
    pub fn new(db: crate::store::Keyspace, key: AuditKey) -> Self {
        let outside = key
            .path()
            .map(|path| Arc::new(heads::HeadFile::beside(path)));
        AuditLog {
            db,
            key: Arc::new(key),
            heads: Arc::new(Mutex::new(HashMap::new())),
            outside,
            node: None,
        }
    }

    /// The same log, naming `node` in every record it appends.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = Some(Arc::from(node));
        self
    }

    fn records(&self, tenant: &TenantId) -> Result<crate::store::Tree, AuditError> {
        self.db
            .open_tree(format!("audit/{tenant}/records"))
            .map_err(store_err)
    }

    fn checkpoints(&self, tenant: &TenantId) -> Result<crate::store::Tree, AuditError> {
        self.db
            .open_tree(format!("audit/{tenant}/checkpoints"))
            .map_err(store_err)
    }

    fn load_head(&self, tenant: &TenantId) -> Result<Head, AuditError> {
        let records = self.records(tenant)?;
        match records.last().map_err(store_err)? {
            None => Ok(Head {
                seq: 0,
                hash: ZERO_HASH,
            }),
            Some((key, bytes)) => {
                let seq = <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                let record: AuditRecord = serde_json::from_slice(&bytes)
                    .map_err(|e| AuditError::Encode(e.to_string()))?;
                let prev = hex_to_hash(&record.prev).unwrap_or(ZERO_HASH);
                Ok(Head {
                    seq,
                    hash: chain_hash(&prev, &bytes),
                })
            }
        }
    }

    /// The seq of `tenant`'s latest record as this node knows it (0 when
    /// empty). Another node may have appended since, so it is a lower bound:
    /// every record appended after this call has a greater seq.
    pub fn head_seq(&self, tenant: &TenantId) -> Result<u64, AuditError> {
        let cached = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(tenant)
            .copied();
        match cached {
            Some(head) => Ok(head.seq),
            None => Ok(self.load_head(tenant)?.seq),
        }
    }

    /// Appends a record; returns its seq. Not flushed: call
    /// [`AuditLog::flush`] before acknowledging what it records.
    pub fn append(
        &self,
        tenant: &TenantId,
        kind: AuditKind,
        run_id: Option<&str>,
        step_id: Option<&str>,
        actor: Option<&str>,
        mut detail: serde_json::Value,
    ) -> Result<u64, AuditError> {
        redact(&mut detail);
        let mut heads = self
            .heads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let records = self.records(tenant)?;
        let mut head = match heads.get(tenant) {
            Some(head) => *head,
            None => self.load_head(tenant)?,
        };
        // The record goes in only where the chain's next slot is empty: when
        // nodes share the store, another node may have appended since this
        // one read the head; the database then says so, and the record is
        // chained after the new head instead (the store serialises appends).
        let (record, hash) = loop {
            let record = AuditRecord {
                seq: head.seq + 1,
                time: now_ms(),
                tenant: tenant.to_string(),
                kind,
                run_id: run_id.map(str::to_owned),
                step_id: step_id.map(str::to_owned),
                actor: actor.map(str::to_owned),
                detail: std::mem::take(&mut detail),
                node: self.node.as_deref().map(str::to_owned),
                prev: hex::encode(head.hash),
            };
            let bytes =
                serde_json::to_vec(&record).map_err(|e| AuditError::Encode(e.to_string()))?;
            let hash = chain_hash(&head.hash, &bytes);
            match records
                .compare_and_swap(seq_key(record.seq), None::<&[u8]>, Some(&bytes))
                .map_err(store_err)?
            {
                Ok(()) => break (record, hash),
                Err(_) => {
                    detail = record.detail;
                    head = self.load_head(tenant)?;
                }
            }
        };
        crate::crashpoint::reached("mid-audit");
        let new_head = Head {
            seq: record.seq,
            hash,
        };
        heads.insert(tenant.clone(), new_head);
        drop(heads);
        if record.seq.is_multiple_of(Self::CHECKPOINT_EVERY) {
            self.sign(tenant, new_head)?;
        }
        Ok(record.seq)
    }

    fn sign(&self, tenant: &TenantId, head: Head) -> Result<Checkpoint, AuditError> {
        let time = now_ms();
        let hash = hex::encode(head.hash);
        let mac = self
            .key
            .mac(&checkpoint_message(tenant.as_str(), head.seq, &hash, time));
        let checkpoint = Checkpoint {
            tenant: tenant.to_string(),
            seq: head.seq,
            hash,
            time,
            mac,
        };
        let bytes =
            serde_json::to_vec(&checkpoint).map_err(|e| AuditError::Encode(e.to_string()))?;
        self.checkpoints(tenant)?
            .insert(seq_key(head.seq), bytes)
            .map_err(store_err)?;
        if let Some(outside) = &self.outside {
            // The head kept outside must never point past what is on disk
            // here, or a crash would look like a cut tail.
            self.db.flush().map_err(store_err)?;
            outside.record(&checkpoint)?;
        }
        Ok(checkpoint)
    }

    /// Signs the current head of `tenant`'s chain (no-op when empty).
    pub fn checkpoint(&self, tenant: &TenantId) -> Result<Option<Checkpoint>, AuditError> {
        let head = {
            let heads = self
                .heads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            heads.get(tenant).copied()
        };
        let head = match head {
            Some(head) => head,
            None => self.load_head(tenant)?,
        };
        if head.seq == 0 {
            return Ok(None);
        }
        self.sign(tenant, head).map(Some)
    }

    /// Signs every tenant's head that changed since its last checkpoint.
    pub fn checkpoint_all(&self) -> Result<(), AuditError> {
        let tenants: Vec<TenantId> = {
            let heads = self
                .heads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            heads.keys().cloned().collect()
        };
        for tenant in tenants {
            self.checkpoint(&tenant)?;
        }
        Ok(())
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self, tenant: &TenantId) -> Result<Option<Checkpoint>, AuditError> {
        let last = self.checkpoints(tenant)?.last().map_err(store_err)?;
        Ok(last.and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok()))
    }

    /// Waits until everything appended is on disk.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.db.flush().map(|_| ()).map_err(store_err)
    }

    /// Tenants that have a chain.
    pub fn tenants(&self) -> Result<Vec<String>, AuditError> {
        Ok(self
            .db
            .tree_names()
            .map_err(store_err)?
            .into_iter()
            .filter_map(|name| {
                name.strip_prefix("audit/")?
                    .strip_suffix("/records")
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Records of `tenant` in order, with their hashes (for export and queries).
    pub fn read(
        &self,
        tenant: &TenantId,
        mut visit: impl FnMut(&AuditRecord, &str) -> bool,
    ) -> Result<(), AuditError> {
        let mut prev = ZERO_HASH;
        for entry in self.records(tenant)?.iter() {
            let (_, bytes) = entry.map_err(store_err)?;
            let hash = chain_hash(&prev, &bytes);
            let record: AuditRecord =
                serde_json::from_slice(&bytes).map_err(|e| AuditError::Encode(e.to_string()))?;
            if !visit(&record, &hex::encode(hash)) {
                break;
            }
            prev = hash;
        }
        Ok(())
    }

    /// Records of `tenant` after seq `after`, in order, with their hashes:
    /// a range read from `after`, so a page costs its size (each record's
    /// hash follows from the `prev` link it carries).
    pub fn read_after(
        &self,
        tenant: &TenantId,
        after: u64,
        mut visit: impl FnMut(&AuditRecord, &str) -> bool,
    ) -> Result<(), AuditError> {
        let start = seq_key(after.saturating_add(1));
        for entry in self.records(tenant)?.range(start..) {
            let (_, bytes) = entry.map_err(store_err)?;
            let record: AuditRecord =
                serde_json::from_slice(&bytes).map_err(|e| AuditError::Encode(e.to_string()))?;
            let prev = hex_to_hash(&record.prev).unwrap_or(ZERO_HASH);
            if !visit(&record, &hex::encode(chain_hash(&prev, &bytes))) {
                break;
            }
        }
        Ok(())
    }

    /// Recomputes `tenant`'s chain and checks every signed checkpoint.
    pub fn verify(&self, tenant: &TenantId) -> Result<VerifyReport, AuditError> {
        let records = self.records(tenant)?;
        let mut checkpoints: Vec<Checkpoint> = Vec::new();
        for entry in self.checkpoints(tenant)?.iter() {
            let (_, bytes) = entry.map_err(store_err)?;
            match serde_json::from_slice(&bytes) {
                Ok(checkpoint) => checkpoints.push(checkpoint),
                Err(_) => {
                    return Ok(self.report(
                        tenant,
                        0,
                        0,
                        ZERO_HASH,
                        Some(Breach {
                            seq: 0,
                            reason: "a checkpoint is unreadable".to_owned(),
                        }),
                    ));
                }
            }
        }
        // The head kept outside the data directory joins the checkpoints: a
        // chain that lost or rewrote the record it names fails below.
        let outside_head = match &self.outside {
            Some(outside) => outside.load()?.remove(tenant.as_str()),
            None => None,
        };
        let outside_seq = outside_head.as_ref().map(|head| head.seq);
        if let Some(head) = outside_head {
            match checkpoints.iter().find(|c| c.seq == head.seq) {
                Some(inside) if inside.hash != head.hash => {
                    let breach = Breach {
                        seq: head.seq,
                        reason: format!(
                            "the checkpoint at record {} differs from the signed head kept outside the data directory: the chain was rewritten",
                            head.seq
                        ),
                    };
                    return Ok(self.report_with(
                        tenant,
                        0,
                        0,
                        ZERO_HASH,
                        outside_seq,
                        Some(breach),
                    ));
                }
                Some(_) => {}
                None => checkpoints.push(head),
            }
        }
        // Signatures first: an unsigned "checkpoint" proves nothing.
        for checkpoint in &checkpoints {
            let message = checkpoint_message(
                &checkpoint.tenant,
                checkpoint.seq,
                &checkpoint.hash,
                checkpoint.time,
            );
            if checkpoint.tenant != tenant.as_str() || !self.key.verify(&message, &checkpoint.mac) {
                let breach = Breach {
                    seq: checkpoint.seq,
                    reason: format!(
                        "checkpoint at record {} has an invalid signature (forged, or signed with another key)",
                        checkpoint.seq
                    ),
                };
                return Ok(self.report(tenant, 0, 0, ZERO_HASH, Some(breach)));
            }
        }
        let by_seq: HashMap<u64, &Checkpoint> = checkpoints.iter().map(|c| (c.seq, c)).collect();
        let mut prev_hash = ZERO_HASH;
        let mut count = 0u64;
        let mut checked = 0u64;
        let mut last_good_checkpoint = 0u64;
        // Borrowed scan: a million records are read without copying each.
        let mut expected_seq = 0u64;
        let mut outcome: Option<VerifyReport> = None;
        records
            .visit::<&[u8]>(.., |key, bytes| {
                expected_seq += 1;
                let key_seq = <[u8; 8]>::try_from(key)
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                if key_seq != expected_seq {
                    let reason = if key_seq > expected_seq {
                        format!(
                            "record {expected_seq} is missing (the next stored record is {key_seq})"
                        )
                    } else {
                        format!("record {key_seq} is stored out of order")
                    };
                    outcome = Some(self.report(
                        tenant,
                        count,
                        checked,
                        prev_hash,
                        Some(Breach {
                            seq: expected_seq,
                            reason,
                        }),
                    ));
                    return false;
                }
                let record: AuditRecord = match serde_json::from_slice(bytes) {
                    Ok(record) => record,
                    Err(err) => {
                        let breach = Breach {
                            seq: key_seq,
                            reason: format!("record {key_seq} is not a valid record ({err}): altered"),
                        };
                        outcome = Some(self.report(tenant, count, checked, prev_hash, Some(breach)));
                        return false;
                    }
                };
                if record.seq != key_seq || record.tenant != tenant.as_str() {
                    let breach = Breach {
                        seq: key_seq,
                        reason: format!(
                            "the record stored at {key_seq} says it is record {} of tenant {}: records were moved or swapped",
                            record.seq, record.tenant
                        ),
                    };
                    outcome = Some(self.report(tenant, count, checked, prev_hash, Some(breach)));
                    return false;
                }
                if hex_to_hash(&record.prev) != Some(prev_hash) {
                    // Record n-1 changed after n was written, or n's link was edited.
                    let bad = key_seq.saturating_sub(1).max(1);
                    let breach = Breach {
                        seq: bad,
                        reason: format!(
                            "record {key_seq} does not link to record {bad}'s hash: record {bad} was altered (or the link in {key_seq})"
                        ),
                    };
                    outcome = Some(self.report(tenant, count, checked, prev_hash, Some(breach)));
                    return false;
                }
                let hash = chain_hash(&prev_hash, bytes);
                if let Some(checkpoint) = by_seq.get(&key_seq) {
                    checked += 1;
                    if checkpoint.hash != hex::encode(hash) {
                        let breach = Breach {
                            seq: last_good_checkpoint + 1,
                            reason: format!(
                                "the chain up to record {key_seq} does not match its signed checkpoint: records {}..={key_seq} were rewritten",
                                last_good_checkpoint + 1
                            ),
                        };
                        outcome = Some(self.report(tenant, count, checked, prev_hash, Some(breach)));
                        return false;
                    }
                    last_good_checkpoint = key_seq;
                }
                prev_hash = hash;
                count += 1;
                true
            })
            .map_err(store_err)?;
        if let Some(report) = outcome {
            return Ok(report);
        }
        if let Some(beyond) = checkpoints
            .iter()
            .map(|c| c.seq)
            .filter(|seq| *seq > count)
            .min()
        {
            let breach = Breach {
                seq: count + 1,
                reason: format!(
                    "records {}..={beyond} are missing: a signed checkpoint covers record {beyond} but the chain ends at {count}",
                    count + 1
                ),
            };
            return Ok(self.report(tenant, count, checked, prev_hash, Some(breach)));
        }
        Ok(self.report(tenant, count, checked, prev_hash, None))
    }

    fn report(
        &self,
        tenant: &TenantId,
        records: u64,
        checkpoints: u64,
        head: [u8; 32],
        breach: Option<Breach>,
    ) -> VerifyReport {
        let outside_head = self
            .outside
            .as_ref()
            .and_then(|outside| outside.load().ok())
            .and_then(|mut heads| heads.remove(tenant.as_str()))
            .map(|head| head.seq);
        self.report_with(tenant, records, checkpoints, head, outside_head, breach)
    }

    fn report_with(
        &self,
        tenant: &TenantId,
        records: u64,
        checkpoints: u64,
        head: [u8; 32],
        outside_head: Option<u64>,
        breach: Option<Breach>,
    ) -> VerifyReport {
        VerifyReport {
            tenant: tenant.to_string(),
            records,
            checkpoints,
            head: hex::encode(head),
            outside_head,
            breach,
        }
    }

    /// Writes `tenant`'s records as JSON lines (each with its `hash`).
    pub fn export(
        &self,
        tenant: &TenantId,
        out: &mut dyn std::io::Write,
    ) -> Result<u64, AuditError> {
        let mut written = 0u64;
        let mut failure = None;
        self.read(tenant, |record, hash| {
            let mut line = serde_json::to_value(record).unwrap_or(serde_json::Value::Null);
            if let serde_json::Value::Object(object) = &mut line {
                object.insert(
                    "hash".to_owned(),
                    serde_json::Value::String(hash.to_owned()),
                );
            }
            match writeln!(out, "{line}") {
                Ok(()) => {
                    written += 1;
                    true
                }
                Err(err) => {
                    failure = Some(err);
                    false
                }
            }
        })?;
        match failure {
            Some(err) => Err(AuditError::Store(format!("writing export: {err}"))),
            None => Ok(written),
        }
    }

    /// Raw access for tamper tests and forensics: the records tree.
    #[doc(hidden)]
    pub fn records_tree(&self, tenant: &TenantId) -> Result<crate::store::Tree, AuditError> {
        self.records(tenant)
    }
}

fn checkpoint_message(tenant: &str, seq: u64, hash: &str, time: i64) -> Vec<u8> {
    format!("rampart-audit-checkpoint|{tenant}|{seq}|{hash}|{time}").into_bytes()
}

fn hex_to_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
}

type HmacSha256 = Hmac<Sha256>;

impl AuditKey {
    fn mac(&self, message: &[u8]) -> String {
        match HmacSha256::new_from_slice(self.bytes()) {
            Ok(mut mac) => {
                mac.update(message);
                hex::encode(mac.finalize().into_bytes())
            }
            // HMAC accepts keys of any length; this cannot happen.
            Err(_) => String::new(),
        }
    }

    fn verify(&self, message: &[u8], mac_hex: &str) -> bool {
        let Ok(expected) = hex::decode(mac_hex) else {
            return false;
        };
        match HmacSha256::new_from_slice(self.bytes()) {
            Ok(mut mac) => {
                mac.update(message);
                mac.verify_slice(&expected).is_ok()
            }
            Err(_) => false,
        }
    }
}
