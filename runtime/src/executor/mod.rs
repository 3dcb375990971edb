//! The playbook executor: alert → matching playbooks → runs → steps →
//! plugin calls → guardrail decisions → actions → audit.
//!
//! A run is a persisted state machine. Steps run as a DAG: every step whose
//! `needs` are done starts, independent steps concurrently; each finished
//! step is committed (written and flushed) before steps that depend on it
//! start. Responder actions are idempotent across crashes: an intent record
//! is flushed before the plugin is called with the idempotency key, the
//! result after. On restart ([`Executor::resume`]) a step found `running`
//! is redone, except a responder whose intent has no result: it is
//! reconciled by calling the plugin again with the same key (an "already in
//! that state" answer counts as success); if that fails the outcome is
//! unknown and the action goes to a human instead of being retried blindly.
//!
//! Guarantees (sled, one data directory):
//! - an alert is *accepted* once its record is flushed; only then does
//!   [`Executor::ingest`] return, so `kill -9` after that loses nothing;
//! - audit records are flushed with the step that wrote them;
//! - a responder action with the same idempotency key is executed at most
//!   once by a plugin that honours the key (our intent record prevents a
//!   second call except for reconciliation, which the key makes safe).

mod alerts;
pub mod approvals;
mod decisions;
pub mod queue;
mod work;
pub use alerts::{AlertPage, AlertRecord, MAX_ALERT_PAGE};
pub use decisions::Decision;
mod intake;
mod listing;
mod loading;
mod rates;
mod responding;
mod slots;
mod steps;
pub mod tally;
mod waves;
pub use listing::{MAX_SCAN, RunPage, RunQuery};
pub mod guardrails;
pub mod measure;
pub mod run;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditKey, AuditKind, AuditLog};
use crate::model::{Entity, EntityKind, GuestError};
use crate::playbook::{Expr, Playbook, PlaybookError, Step, Variables};
use crate::sandbox::{LoadError, Plugin, PluginError, Runtime, RuntimeConfig, RuntimeError};
use crate::store::{Backend, StoreError};
use crate::tenant::{Grants, TenantId};
use approvals::{Approval, ApprovalError, ApprovalStatus, Approvals};
use run::{Run, StepState};

/// Why an executor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// Plugin state (kv, entity memory) failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The keyspace failed.
    #[error("store: {0}")]
    Space(#[from] crate::store::SpaceError),
    /// A record did not encode or decode.
    #[error("record: {0}")]
    Record(#[from] serde_json::Error),
    /// The flush ran on a task that did not finish.
    #[error("flush task: {0}")]
    FlushTask(#[from] tokio::task::JoinError),
    /// A page cursor is not one this list handed out.
    #[error("`{0}` is not a cursor of this list")]
    InvalidCursor(String),
    /// A worker panicked on a work item (the run resumes at the next start).
    #[error("a worker panicked on {0}")]
    WorkerPanicked(String),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A playbook is invalid.
    #[error(transparent)]
    Playbook(#[from] PlaybookError),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An approval operation was refused.
    #[error(transparent)]
    Approval(#[from] ApprovalError),
    /// The work queue refused an item.
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    /// A worker failed on a run this caller waited for.
    #[error("run {run}: {failure}")]
    Worker {
        /// The run.
        run: String,
        /// What the worker ran into.
        #[source]
        failure: Arc<ExecutorError>,
    },
    /// Another node's worker failed on a run this caller waited for.
    #[error("on node {node}: {failure}")]
    Remote {
        /// The node.
        node: String,
        /// What it ran into.
        failure: String,
    },
    /// Stored state does not match its seal: it was changed offline.
    #[error(transparent)]
    Sealed(#[from] crate::audit::seal::SealError),
    /// The same alert id arrived with a different body.
    #[error("alert `{id}` was already received with a different body")]
    AlertConflict {
        /// The alert id.
        id: String,
    },
    /// No such run (for this tenant).
    #[error("no run {0}")]
    RunNotFound(String),
    /// No such playbook.
    #[error("no playbook {0}")]
    PlaybookNotFound(String),
    /// The alert names entities no lookup should take (see
    /// [`Alert::problems`]).
    #[error("alert `{id}` refused: {}", problems.join("; "))]
    InvalidAlert {
        /// The alert id.
        id: String,
        /// Every problem, located.
        problems: Vec<String>,
    },
}

fn store_err(err: serde_json::Error) -> ExecutorError {
    ExecutorError::Record(err)
}

pub use crate::model::now_ms;

/// Concurrent runs per tenant without a `max_concurrent_runs` quota.
pub const DEFAULT_RUN_SHARE: usize = 64;

fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::fill(&mut bytes);
    format!("{prefix}-{:011x}-{}", now_ms(), hex::encode(bytes))
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{0}").into_bytes()
}

/// Where a loaded plugin is kept: its identity is tenant + name, pinned
/// by digest. Two names with the same bytes are two plugins, each with its
/// own manifest, grant, settings and secrets (they share compiled code,
/// which the runtime caches by digest, and nothing else).
fn plugin_key(tenant: &TenantId, name: &str, digest: &str) -> String {
    format!("{tenant}\u{0}{name}\u{0}{digest}")
}

#[derive(Clone)]
struct Loaded {
    plugin: Plugin,
    digest: String,
}

/// Group-commit bookkeeping (see [`Executor::commit`]).
#[derive(Default)]
struct GroupCommit {
    issued: std::sync::atomic::AtomicU64,
    durable: std::sync::atomic::AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

struct Inner {
    group_commit: GroupCommit,
    runtime: Runtime,
    store: Arc<dyn Backend>,
    audit: AuditLog,
    approvals: Approvals,
    /// Runs, sealed: an offline edit of a status or outcome is refused.
    runs: crate::audit::seal::SealedTree,
    seal_key: crate::audit::seal::SealKey,
    /// `tenant\0<created BE><run id>`: runs newest first, a page at a time.
    runs_by_time: crate::store::Tree,
    /// Runs per tenant.
    run_counts: crate::store::Tree,
    /// Counters for `/metrics`, moved as runs change.
    tally: tally::Tally,
    intents: crate::store::Tree,
    rates: crate::store::Tree,
    /// Minute and hour counters of `rates` (see `rates.rs`).
    rate_counts: crate::store::Tree,
    dedup: crate::store::Tree,
    alerts: crate::store::Tree,
    sources: crate::store::Tree,
    plugins: RwLock<HashMap<String, Loaded>>,
    current: RwLock<HashMap<(TenantId, String), String>>,
    playbooks: RwLock<HashMap<(TenantId, String), Arc<Playbook>>>,
    grants: RwLock<HashMap<TenantId, Grants>>,
    /// Tenants with a cap on concurrent runs: one permit per run slot.
    run_slots: RwLock<HashMap<TenantId, Arc<tokio::sync::Semaphore>>>,
    /// Per tenant, how many of its synchronous sections — intake (dedup, a
    /// memory write per entity, triggers) and the bookkeeping of a run's
    /// waves (saving the run, audit records, applying results) — may run at
    /// once (half the cores). A tenant's burst of large alerts then keeps
    /// at most that many async workers busy, however many of its runs are
    /// in flight waiting on plugins.
    cpu_slots: Arc<slots::CpuSlots>,
    disabled: RwLock<std::collections::HashSet<(TenantId, String)>>,
    /// The principal id that owns each playbook: the requester of the
    /// actions it asks approval for (and so not one of their approvers).
    owners: RwLock<HashMap<(TenantId, String), String>>,
    /// Told of every approval request once it is durable.
    approval_sink: RwLock<Option<tokio::sync::mpsc::UnboundedSender<Approval>>>,
    /// Told (tenant, run id) of every run that finished, once it is saved.
    finished_sink: RwLock<Option<tokio::sync::mpsc::UnboundedSender<(TenantId, String)>>>,
    /// Accepted runs and decided approvals waiting for a worker.
    queue: Arc<dyn queue::WorkQueue>,
    /// The task that hands queued work to workers (see `work.rs`).
    dispatcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Per run, work queued or in flight and who waits for it to settle.
    outstanding: std::sync::Mutex<HashMap<(TenantId, String), work::Outstanding>>,
    /// This node's id (in audit records, logs and metrics).
    node: String,
    /// Run and timer leases, when the queue is shared with other nodes.
    leases: Option<crate::cluster::Leases>,
    /// Brings this node's copy of the control state (tenants, plugins,
    /// playbooks) up to date with the shared store before a worker starts
    /// on an item that another node may have queued.
    refresh: RwLock<Option<Refresh>>,
}

/// See [`Executor::set_refresh`].
pub type Refresh = Arc<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

impl Drop for Inner {
    fn drop(&mut self) {
        // The dispatcher holds the queue, not the executor: closing it ends
        // the dispatcher's task.
        self.queue.close();
    }
}

/// Runs playbooks for many tenants over one store and audit log.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// What ingesting one alert did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ingested {
    /// Runs started (or, for a repeated alert, the runs it started before).
    pub runs: Vec<String>,
    /// Runs the alert was folded into by dedup.
    pub folded_into: Vec<String>,
    /// Whether the alert had been received before (same id, same body).
    pub duplicate: bool,
}

/// Result of one step's work, before it is applied to the run.
struct StepResult {
    id: String,
    state: StepState,
    audit: Vec<(AuditKind, Value)>,
    approval: Option<Approval>,
    acted: Option<String>,
    scored: bool,
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Executor {
    /// Opens an executor over `store`, signing audit checkpoints with `key`,
    /// with the in-process work queue (a node of its own).
    pub fn new(
        config: RuntimeConfig,
        store: impl Backend,
        key: AuditKey,
    ) -> Result<Self, ExecutorError> {
        let node = crate::cluster::Node {
            id: "local".to_owned(),
            queue: Arc::new(queue::LocalQueue::new(DEFAULT_RUN_SHARE)),
        };
        Self::on_node(config, store, key, node)
    }

    /// Opens an executor over `store` as `node`: with its id in every audit
    /// record, taking work from its queue. When the queue is shared (other
    /// nodes on the same store take from it too) each run is worked on under
    /// a lease in the store, and the cluster-wide timers run on one node.
    pub fn on_node(
        config: RuntimeConfig,
        store: impl Backend,
        key: AuditKey,
        node: crate::cluster::Node,
    ) -> Result<Self, ExecutorError> {
        let store: Arc<dyn Backend> = Arc::new(store);
        let runtime = Runtime::new(config, store.clone())?;
        let db = store.space().clone();
        let seal_key = crate::audit::seal::SealKey::derive(&key);
        let inner = Inner {
            group_commit: GroupCommit::default(),
            runtime,
            // Records name their node when nodes share the chain.
            audit: if node.queue.shared() {
                AuditLog::new(db.clone(), key).on_node(&node.id)
            } else {
                AuditLog::new(db.clone(), key)
            },
            approvals: Approvals::open(&db)?,
            runs: crate::audit::seal::SealedTree::open(&db, "runs", &seal_key)?,
            seal_key,
            runs_by_time: db.open_tree("runs-by-time")?,
            run_counts: db.open_tree("run-counts")?,
            tally: tally::Tally::default(),
            intents: db.open_tree("intents")?,
            rates: db.open_tree("rates")?,
            rate_counts: db.open_tree("rate-counts")?,
            dedup: db.open_tree("dedup")?,
            alerts: db.open_tree("alerts")?,
            sources: db.open_tree("playbook-sources")?,
            store,
            plugins: RwLock::new(HashMap::new()),
            current: RwLock::new(HashMap::new()),
            playbooks: RwLock::new(HashMap::new()),
            grants: RwLock::new(HashMap::new()),
            run_slots: RwLock::new(HashMap::new()),
            cpu_slots: slots::CpuSlots::for_this_machine(),
            disabled: RwLock::new(std::collections::HashSet::new()),
            owners: RwLock::new(HashMap::new()),
            approval_sink: RwLock::new(None),
            finished_sink: RwLock::new(None),
            leases: if node.queue.shared() {
                Some(crate::cluster::Leases::open(&db, &node.id)?)
            } else {
                None
            },
            queue: node.queue,
            node: node.id,
            refresh: RwLock::new(None),
            dispatcher: std::sync::Mutex::new(None),
            outstanding: std::sync::Mutex::new(HashMap::new()),
        };
        let executor = Executor {
            inner: Arc::new(inner),
        };
        executor.index_existing_runs()?;
        executor.rebuild_rate_counts()?;
        Ok(executor)
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    /// The cluster's leases (`None` on a node of its own).
    pub fn leases(&self) -> Option<&crate::cluster::Leases> {
        self.inner.leases.as_ref()
    }

    /// Sets what a worker calls before it works on an item from a shared
    /// queue: the control plane's refresh, so that a playbook or plugin
    /// installed through another node is known here first.
    pub fn set_refresh(&self, refresh: Refresh) {
        *write_lock(&self.inner.refresh) = Some(refresh);
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.inner.audit
    }

    /// The key that seals stored state (tokens, tenants, packages,
    /// playbooks, runs) against offline edits.
    pub fn seal_key(&self) -> &crate::audit::seal::SealKey {
        &self.inner.seal_key
    }

    /// The approvals.
    pub fn approvals(&self) -> &Approvals {
        &self.inner.approvals
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Backend> {
        &self.inner.store
    }

    /// The plugin runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    fn save(&self, run: &Run) -> Result<(), ExecutorError> {
        if run.dry_run {
            return Ok(());
        }
        let bytes = serde_json::to_vec(run).map_err(store_err)?;
        self.inner
            .runs
            .insert(key(&[run.tenant.as_str(), &run.id]), bytes)?;
        self.index_run(run)
    }

    /// Waits until everything this task wrote so far is on disk — group
    /// commit: every caller takes a ticket after its writes; one caller at a
    /// time flushes on behalf of all tickets issued before its flush began,
    /// and callers whose ticket is already covered return without an fsync.
    /// The fsync runs on the blocking pool so concurrent runs do not stall
    /// the executor's workers (sled's `flush_async` hung under 64 concurrent
    /// runs, so it is not used).
    async fn commit(&self) -> Result<(), ExecutorError> {
        use std::sync::atomic::Ordering;
        let group = &self.inner.group_commit;
        let ticket = group.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let _flusher = group.lock.lock().await;
        if group.durable.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let covered = group.issued.load(Ordering::SeqCst);
        let db = self.inner.store.space().clone();
        tokio::task::spawn_blocking(move || db.flush()).await??;
        group.durable.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    /// A run of `tenant` (another tenant's run is "not found").
    pub fn get_run(&self, tenant: &TenantId, id: &str) -> Result<Run, ExecutorError> {
        let bytes = self
            .inner
            .runs
            .get(key(&[tenant.as_str(), id]))?
            .ok_or_else(|| ExecutorError::RunNotFound(id.to_owned()))?;
        serde_json::from_slice(&bytes).map_err(store_err)
    }

    /// Runs whose seal does not hold (changed outside rampart).
    pub fn tampered_runs(&self) -> Result<Vec<String>, ExecutorError> {
        Ok(self.inner.runs.tampered()?)
    }

    /// Every run of `tenant`.
    pub fn runs(&self, tenant: &TenantId) -> Result<Vec<Run>, ExecutorError> {
        let mut out = Vec::new();
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        for entry in self.inner.runs.scan_prefix(prefix) {
            let (_, bytes) = entry?;
            if let Ok(run) = serde_json::from_slice::<Run>(&bytes) {
                out.push(run);
            }
        }
        out.sort_by_key(|run| run.created);
        Ok(out)
    }

    fn audit_append(
        &self,
        run: &Run,
        kind: AuditKind,
        step: Option<&str>,
        actor: Option<&str>,
        detail: Value,
    ) -> Result<(), ExecutorError> {
        if run.dry_run {
            return Ok(());
        }
        self.inner
            .audit
            .append(&run.tenant, kind, Some(&run.id), step, actor, detail)?;
        Ok(())
    }
}

/// A pending approval bound to exactly this action.
fn new_approval(
    run: &Run,
    step: &Step,
    target: &Entity,
    plugin_digest: &str,
    reasons: Vec<String>,
    now: i64,
) -> Approval {
    Approval {
        id: format!("{}.{}", run.id, step.id),
        tenant: run.tenant.clone(),
        run_id: run.id.clone(),
        step_id: step.id.clone(),
        action: step.action.clone(),
        target: target.clone(),
        params_hash: approvals::params_hash(&step.with),
        plugin_digest: plugin_digest.to_owned(),
        reasons,
        required: step.guard.approvers,
        approvals: Vec::new(),
        denial: None,
        status: ApprovalStatus::Pending,
        created: now,
        expires: now + i64::try_from(step.guard.approval_timeout.as_millis()).unwrap_or(i64::MAX),
        requested_by: None,
    }
}

fn retriable(err: &PluginError) -> bool {
    !matches!(
        err,
        PluginError::CapabilityDenied { .. }
            | PluginError::InvalidOutput { .. }
            | PluginError::WrongKind { .. }
            | PluginError::Guest(GuestError {
                kind: crate::model::ErrorKind::InvalidInput
                    | crate::model::ErrorKind::Misconfigured,
                ..
            })
    )
}

/// An entity as entity memory keys it (case and trailing dots aside).
fn memory_key(entity: &Entity) -> (EntityKind, String) {
    let value = entity.value.trim().trim_end_matches('.');
    let value = match entity.kind {
        EntityKind::Url | EntityKind::Process => value.to_owned(),
        _ => value.to_ascii_lowercase(),
    };
    (entity.kind, value)
}

fn retry_delay(err: &PluginError, backoff: Duration, attempt: u32) -> Duration {
    if let PluginError::Guest(GuestError {
        retry_after_ms: Some(ms),
        ..
    })
    | PluginError::QuotaExceeded {
        retry_after_ms: ms, ..
    } = err
    {
        return Duration::from_millis((*ms).min(60_000));
    }
    backoff.saturating_mul(1 << attempt.saturating_sub(1).min(10))
}

fn target_label(target: &Entity) -> String {
    let kind = serde_json::to_value(target.kind)
        .ok()
        .and_then(|k| k.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "{kind}:{}",
        target
            .value
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    )
}

fn idempotency_key(run: &Run, step: &Step, target: &Entity) -> String {
    let digest = Sha256::digest(
        format!("{}\u{0}{}\u{0}{}", run.id, step.id, target_label(target)).as_bytes(),
    );
    hex::encode(&digest[..16])
}

/// A target from CEL output: `{kind, value}`, or a string (IP or host name).
fn entity_from_json(value: &Value) -> Option<Entity> {
    match value {
        Value::String(text) if !text.trim().is_empty() => {
            let kind = if crate::feeds::strip_port(text)
                .parse::<std::net::IpAddr>()
                .is_ok()
            {
                EntityKind::Ip
            } else {
                EntityKind::Hostname
            };
            Some(Entity {
                kind,
                value: text.trim().to_owned(),
            })
        }
        Value::Object(_) => serde_json::from_value::<Entity>(value.clone())
            .ok()
            .filter(|e| !e.value.trim().is_empty()),
        _ => None,
    }
}

/// A dedup fingerprint, or `None` when a key is missing (such an alert is
/// never folded). A list value counts as a whole, sorted.
fn fingerprint(playbook: &Playbook, keys: &[Expr], variables: &Variables) -> Option<String> {
    let mut parts = Vec::new();
    for key in keys {
        let mut value = key.eval_json(variables).ok()?;
        if value.is_null() {
            return None;
        }
        if let Value::Array(items) = &mut value {
            items.sort_by_key(ToString::to_string);
        }
        parts.push(value);
    }
    Some(hex::encode(Sha256::digest(
        format!("{}\u{0}{}", playbook.name, Value::Array(parts)).as_bytes(),
    )))
}
