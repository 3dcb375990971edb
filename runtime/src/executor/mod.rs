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

pub mod approvals;
mod listing;
mod slots;
pub mod tally;
pub use listing::{MAX_SCAN, RunPage, RunQuery};
pub mod guardrails;
pub mod measure;
pub mod run;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit::{AuditError, AuditKey, AuditKind, AuditLog};
use crate::context::{AssetInventory, IdentityDirectory};
use crate::manifest::PluginKind;
use crate::model::{
    ActionOutcome, ActionRequest, Alert, Enrichment, Entity, EntityKind, GuestError, PriorVerdict,
    Verdict as EntityVerdict,
};
use crate::playbook::{
    self, Expr, Mode, OnError, Playbook, PlaybookError, Step, StepKind, Variables, output,
};
use crate::sandbox::{
    CallContext, LoadError, Plugin, PluginError, Runtime, RuntimeConfig, RuntimeError,
};
use crate::store::{SledStore, Store, StoreError};
use crate::tenant::{Grants, TenantId};
use approvals::{Approval, ApprovalError, ApprovalStatus, Approvals, Approver};
use guardrails::{Situation, Verdict};
use run::{Run, RunStatus, StepState, StepStatus};

/// Why an executor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
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

fn store_err(err: impl std::fmt::Display) -> ExecutorError {
    ExecutorError::Store(err.to_string())
}

impl From<StoreError> for ExecutorError {
    fn from(err: StoreError) -> Self {
        ExecutorError::Store(err.to_string())
    }
}

impl From<sled::Error> for ExecutorError {
    fn from(err: sled::Error) -> Self {
        ExecutorError::Store(err.to_string())
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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
    store: SledStore,
    audit: AuditLog,
    approvals: Approvals,
    /// Runs, sealed: an offline edit of a status or outcome is refused.
    runs: crate::audit::seal::SealedTree,
    seal_key: crate::audit::seal::SealKey,
    /// `tenant\0<created BE><run id>`: runs newest first, a page at a time.
    runs_by_time: sled::Tree,
    /// Runs per tenant.
    run_counts: sled::Tree,
    /// Counters for `/metrics`, moved as runs change.
    tally: tally::Tally,
    intents: sled::Tree,
    rates: sled::Tree,
    dedup: sled::Tree,
    alerts: sled::Tree,
    sources: sled::Tree,
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
    /// Opens an executor over `store`, signing audit checkpoints with `key`.
    /// Approvals whose time ran out while the process was down are denied now.
    pub fn new(
        config: RuntimeConfig,
        store: SledStore,
        key: AuditKey,
    ) -> Result<Self, ExecutorError> {
        let runtime = Runtime::new(config, Arc::new(store.clone()))?;
        let db = store.db().clone();
        let seal_key = crate::audit::seal::SealKey::derive(&key);
        let inner = Inner {
            group_commit: GroupCommit::default(),
            runtime,
            audit: AuditLog::new(db.clone(), key),
            approvals: Approvals::open(&db)?,
            runs: crate::audit::seal::SealedTree::open(&db, "runs", &seal_key)?,
            seal_key,
            runs_by_time: db.open_tree("runs-by-time")?,
            run_counts: db.open_tree("run-counts")?,
            tally: tally::Tally::default(),
            intents: db.open_tree("intents")?,
            rates: db.open_tree("rates")?,
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
        };
        let executor = Executor {
            inner: Arc::new(inner),
        };
        executor.index_existing_runs()?;
        Ok(executor)
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
    pub fn store(&self) -> &SledStore {
        &self.inner.store
    }

    /// The plugin runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Sets a tenant's grants (used by later plugin loads).
    pub fn set_grants(&self, tenant: &TenantId, grants: Grants) {
        write_lock(&self.inner.grants).insert(tenant.clone(), grants);
    }

    /// Sets a tenant's quota: concurrent runs here, fuel per minute and
    /// memory per call in the runtime. Runs already holding a slot keep it.
    pub fn set_quota(&self, tenant: &TenantId, quota: crate::tenant::TenantQuota) {
        let mut slots = write_lock(&self.inner.run_slots);
        match quota.max_concurrent_runs {
            Some(max) => {
                let permits = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
                slots.insert(
                    tenant.clone(),
                    Arc::new(tokio::sync::Semaphore::new(permits)),
                );
            }
            None => {
                slots.remove(tenant);
            }
        }
        self.inner.runtime.set_quota(tenant, quota);
    }

    /// Sends every new approval request (after it is committed) to `sink`,
    /// e.g. for webhooks. Replaces an earlier sink.
    pub fn notify_approvals(&self, sink: tokio::sync::mpsc::UnboundedSender<Approval>) {
        *write_lock(&self.inner.approval_sink) = Some(sink);
    }

    /// Enables or disables a playbook: a disabled one starts no runs (runs
    /// already started go on).
    pub fn set_playbook_enabled(&self, tenant: &TenantId, name: &str, enabled: bool) {
        let mut disabled = write_lock(&self.inner.disabled);
        if enabled {
            disabled.remove(&(tenant.clone(), name.to_owned()));
        } else {
            disabled.insert((tenant.clone(), name.to_owned()));
        }
    }

    /// Evaluates `expr` with `eval` (`Expr::eval_bool`, `Expr::eval_json`);
    /// a costly one runs under the tenant's CPU share on the call pool, off
    /// the async workers.
    async fn evaluate<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        expr: &crate::playbook::Expr,
        variables: &Variables,
        eval: fn(&crate::playbook::Expr, &Variables) -> Result<T, crate::playbook::ExprError>,
    ) -> Result<T, crate::playbook::ExprError> {
        if !expr.costly(variables) {
            return eval(expr, variables);
        }
        let (work_expr, work_vars) = (expr.clone(), variables.clone());
        self.inner
            .runtime
            .run_heavy(tenant, move || eval(&work_expr, &work_vars))
            .await
            .unwrap_or_else(|err| {
                Err(crate::playbook::ExprError::Eval {
                    source_text: expr.source().to_owned(),
                    message: err.to_string(),
                })
            })
    }

    /// Records who owns a playbook (the principal id that put it): that
    /// principal requests its actions and may not approve them.
    pub fn set_playbook_owner(&self, tenant: &TenantId, name: &str, owner: Option<String>) {
        let mut owners = write_lock(&self.inner.owners);
        match owner {
            Some(owner) => owners.insert((tenant.clone(), name.to_owned()), owner),
            None => owners.remove(&(tenant.clone(), name.to_owned())),
        };
    }

    fn playbook_owner(&self, tenant: &TenantId, name: &str) -> Option<String> {
        read_lock(&self.inner.owners)
            .get(&(tenant.clone(), name.to_owned()))
            .cloned()
    }

    /// Whether a playbook may start runs.
    pub fn playbook_enabled(&self, tenant: &TenantId, name: &str) -> bool {
        !read_lock(&self.inner.disabled).contains(&(tenant.clone(), name.to_owned()))
    }

    /// Sets a tenant's asset inventory (guardrails and the `context`
    /// capability see it from the next decision or call on).
    pub fn set_inventory(&self, tenant: &TenantId, inventory: AssetInventory) {
        self.inner.runtime.context().set_assets(tenant, inventory);
    }

    /// Sets a tenant's identity directory (the `context` capability).
    pub fn set_identities(&self, tenant: &TenantId, identities: IdentityDirectory) {
        self.inner
            .runtime
            .context()
            .set_identities(tenant, identities);
    }

    /// Loads a plugin for `tenant` from its manifest; it becomes the
    /// tenant's current version of that name (runs in flight keep theirs).
    pub async fn add_plugin(
        &self,
        tenant: &TenantId,
        manifest: &std::path::Path,
    ) -> Result<Plugin, ExecutorError> {
        let grants = read_lock(&self.inner.grants)
            .get(tenant)
            .cloned()
            .unwrap_or_default();
        let plugin = self
            .inner
            .runtime
            .load_file(tenant, &grants, manifest)
            .await?;
        self.register(tenant, plugin.clone())?;
        Ok(plugin)
    }

    /// Registers an already loaded plugin (a change: audited).
    pub fn register(&self, tenant: &TenantId, plugin: Plugin) -> Result<(), ExecutorError> {
        self.install_plugin(tenant, plugin, true)
    }

    /// Registers a plugin restored at start-up: not a change, so no audit
    /// record (its upload was recorded when it happened).
    pub fn restore_plugin(&self, tenant: &TenantId, plugin: Plugin) -> Result<(), ExecutorError> {
        self.install_plugin(tenant, plugin, false)
    }

    fn install_plugin(
        &self,
        tenant: &TenantId,
        plugin: Plugin,
        audited: bool,
    ) -> Result<(), ExecutorError> {
        let digest = plugin.manifest().sha256.clone();
        let name = plugin.manifest().name.clone();
        write_lock(&self.inner.plugins).insert(
            plugin_key(tenant, &name, &digest),
            Loaded {
                plugin,
                digest: digest.clone(),
            },
        );
        write_lock(&self.inner.current).insert((tenant.clone(), name.clone()), digest.clone());
        if audited {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"plugin": name, "sha256": digest}),
            )?;
        }
        Ok(())
    }

    /// Removes the tenant's current plugin called `name`; runs pinned to
    /// its digest keep their copy while the process lives. Returns whether
    /// there was one.
    pub fn unregister(&self, tenant: &TenantId, name: &str) -> Result<bool, ExecutorError> {
        let removed = write_lock(&self.inner.current).remove(&(tenant.clone(), name.to_owned()));
        if let Some(digest) = &removed {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"plugin_removed": name, "sha256": digest}),
            )?;
        }
        Ok(removed.is_some())
    }

    fn catalog(&self, tenant: &TenantId) -> BTreeMap<String, PluginKind> {
        let current = read_lock(&self.inner.current);
        let plugins = read_lock(&self.inner.plugins);
        current
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter_map(|((_, name), digest)| {
                plugins
                    .get(&plugin_key(tenant, name, digest))
                    .map(|loaded| (name.clone(), loaded.plugin.manifest().kind))
            })
            .collect()
    }

    /// The tenant's current plugin called `name`.
    pub fn plugin(&self, tenant: &TenantId, name: &str) -> Option<Plugin> {
        let digest = read_lock(&self.inner.current)
            .get(&(tenant.clone(), name.to_owned()))
            .cloned()?;
        read_lock(&self.inner.plugins)
            .get(&plugin_key(tenant, name, &digest))
            .map(|loaded| loaded.plugin.clone())
    }

    /// Validates a playbook against the tenant's plugins without installing it.
    pub fn validate_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Playbook, ExecutorError> {
        Ok(playbook::parse(source_name, yaml, &self.catalog(tenant))?)
    }

    /// Validates and installs a playbook for `tenant` (replacing one of the
    /// same name; runs in flight keep the version they started with).
    pub fn add_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        self.install_playbook(tenant, source_name, yaml, true)
    }

    /// Installs a playbook restored at start-up: not a change, so no audit
    /// record.
    pub fn restore_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        self.install_playbook(tenant, source_name, yaml, false)
    }

    fn install_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
        audited: bool,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        let parsed = Arc::new(playbook::parse(source_name, yaml, &self.catalog(tenant))?);
        self.inner
            .sources
            .insert(key(&[tenant.as_str(), &parsed.sha256]), yaml.as_bytes())?;
        write_lock(&self.inner.playbooks)
            .insert((tenant.clone(), parsed.name.clone()), parsed.clone());
        if audited {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"playbook": parsed.name, "version": parsed.version, "sha256": parsed.sha256}),
            )?;
        }
        Ok(parsed)
    }

    /// The tenant's current playbooks.
    pub fn playbooks(&self, tenant: &TenantId) -> Vec<Arc<Playbook>> {
        read_lock(&self.inner.playbooks)
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn playbook_of(&self, run: &Run) -> Result<Arc<Playbook>, ExecutorError> {
        if let Some(current) =
            read_lock(&self.inner.playbooks).get(&(run.tenant.clone(), run.playbook.clone()))
            && current.sha256 == run.playbook_sha256
        {
            return Ok(current.clone());
        }
        // The playbook changed since the run started: use the run's version.
        let source = self
            .inner
            .sources
            .get(key(&[run.tenant.as_str(), &run.playbook_sha256]))?
            .ok_or_else(|| {
                ExecutorError::PlaybookNotFound(format!(
                    "{} ({})",
                    run.playbook, run.playbook_sha256
                ))
            })?;
        let text = String::from_utf8_lossy(&source).into_owned();
        // Validate against the run's pinned plugins, not today's.
        let plugins = read_lock(&self.inner.plugins);
        let catalog: BTreeMap<String, PluginKind> = run
            .plugins
            .iter()
            .filter_map(|(name, digest)| {
                plugins
                    .get(&plugin_key(&run.tenant, name, digest))
                    .map(|l| (name.clone(), l.plugin.manifest().kind))
            })
            .collect();
        Ok(Arc::new(playbook::parse(&run.playbook, &text, &catalog)?))
    }

    fn plugin_for(&self, run: &Run, name: &str) -> Option<Loaded> {
        let digest = run.plugins.get(name)?;
        read_lock(&self.inner.plugins)
            .get(&plugin_key(&run.tenant, name, digest))
            .cloned()
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
        let db = self.inner.store.db().clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|err| ExecutorError::Store(format!("flush task: {err}")))??;
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

    /// Accepts an alert for `tenant`: records it (flushed before returning),
    /// starts a run per matching playbook (or folds it into a recent run by
    /// dedup), and runs them until they finish or wait for a human.
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        alert: &Alert,
    ) -> Result<Ingested, ExecutorError> {
        let problems = alert.problems();
        if !problems.is_empty() {
            return Err(ExecutorError::InvalidAlert {
                id: alert.id.clone(),
                problems,
            });
        }
        let intake = self.cpu_slot(tenant).await;
        let body = serde_json::to_vec(alert).map_err(store_err)?;
        let body_hash = hex::encode(Sha256::digest(&body));
        let alert_key = key(&[tenant.as_str(), &alert.id]);
        if let Some(previous) = self.inner.alerts.get(&alert_key)? {
            let previous: Value = serde_json::from_slice(&previous).map_err(store_err)?;
            if previous["sha256"] != json!(body_hash) {
                return Err(ExecutorError::AlertConflict {
                    id: alert.id.clone(),
                });
            }
            let runs = serde_json::from_value(previous["runs"].clone()).unwrap_or_default();
            let folded_into =
                serde_json::from_value(previous["folded_into"].clone()).unwrap_or_default();
            return Ok(Ingested {
                runs,
                folded_into,
                duplicate: true,
            });
        }
        self.inner.audit.append(tenant, AuditKind::AlertReceived, None, None, None, json!({"alert_id": alert.id, "source": alert.source, "title": alert.title, "sha256": body_hash}))?;
        for entity in &alert.entities {
            self.inner
                .store
                .memory_record_sighting(tenant, entity, alert.time)?;
        }

        let mut started = Vec::new();
        let mut planned = Vec::new();
        let mut folded_into = Vec::new();
        let mut playbooks = self.playbooks(tenant);
        playbooks.sort_by(|a, b| a.name.cmp(&b.name));
        let now = now_ms();
        for playbook in playbooks {
            if !self.playbook_enabled(tenant, &playbook.name) {
                continue;
            }
            let variables = Variables::new(alert, &json!({}));
            match self
                .evaluate(tenant, &playbook.trigger, &variables, Expr::eval_bool)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    self.inner.audit.append(tenant, AuditKind::GuardrailDecision, None, None, None, json!({"playbook": playbook.name, "alert_id": alert.id, "trigger_error": err.to_string()}))?;
                    continue;
                }
            }
            if playbook.mode == Mode::DryRun {
                // Plans only: kept for viewing, but it touches no dedup,
                // rate limit, memory or audit chain.
                let run = self.dry_run(tenant, &playbook, alert).await?;
                self.inner.runs.insert(
                    key(&[tenant.as_str(), &run.id]),
                    serde_json::to_vec(&run).map_err(store_err)?,
                )?;
                self.index_run(&run)?;
                planned.push(run.id);
                continue;
            }
            if let Some(existing) = self.dedup_fold(tenant, &playbook, alert, &variables, now)? {
                folded_into.push(existing);
                continue;
            }
            let run = self.new_run(tenant, &playbook, alert, false, now);
            self.save(&run)?;
            if let Some(dedup) = &playbook.dedup
                && let Some(fingerprint) = fingerprint(&playbook, &dedup.key, &variables)
            {
                let expires = now + i64::try_from(dedup.window.as_millis()).unwrap_or(i64::MAX);
                self.inner.dedup.insert(
                    key(&[tenant.as_str(), &playbook.name, &fingerprint]),
                    serde_json::to_vec(&json!({"run": run.id, "expires": expires}))
                        .map_err(store_err)?,
                )?;
            }
            self.audit_append(&run, AuditKind::RunStarted, None, None, json!({"playbook": playbook.name, "version": playbook.version, "sha256": playbook.sha256, "plugins": run.plugins, "mode": playbook.mode}))?;
            started.push(run.id.clone());
        }
        let all_runs: Vec<String> = started.iter().chain(&planned).cloned().collect();
        let record = json!({"sha256": body_hash, "runs": all_runs, "folded_into": folded_into, "received": now});
        self.inner
            .alerts
            .insert(alert_key, serde_json::to_vec(&record).map_err(store_err)?)?;
        drop(intake);
        // Accepted: flushed before anything acts on it.
        self.commit().await?;
        crate::crashpoint::reached("after-accept");
        for id in &started {
            self.execute(tenant, id).await?;
        }
        Ok(Ingested {
            runs: all_runs,
            folded_into,
            duplicate: false,
        })
    }

    /// Waits for one of the CPU slots for `tenant` (see `Inner::cpu_slots`).
    async fn cpu_slot(&self, tenant: &TenantId) -> slots::CpuSlot {
        self.inner.cpu_slots.acquire(tenant).await
    }

    fn dedup_fold(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
        variables: &Variables,
        now: i64,
    ) -> Result<Option<String>, ExecutorError> {
        let Some(dedup) = &playbook.dedup else {
            return Ok(None);
        };
        let Some(fingerprint) = fingerprint(playbook, &dedup.key, variables) else {
            return Ok(None);
        };
        let dedup_key = key(&[tenant.as_str(), &playbook.name, &fingerprint]);
        let Some(found) = self.inner.dedup.get(&dedup_key)? else {
            return Ok(None);
        };
        let found: Value = serde_json::from_slice(&found).map_err(store_err)?;
        if found["expires"].as_i64().unwrap_or(0) <= now {
            return Ok(None);
        }
        let Some(run_id) = found["run"].as_str() else {
            return Ok(None);
        };
        let mut run = self.get_run(tenant, run_id)?;
        run.folded.push(alert.id.clone());
        self.inner.tally.folded(&run, 1);
        self.save(&run)?;
        self.audit_append(
            &run,
            AuditKind::AlertFolded,
            None,
            None,
            json!({"alert_id": alert.id, "fingerprint": fingerprint}),
        )?;
        Ok(Some(run.id))
    }

    fn new_run(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
        dry_run: bool,
        now: i64,
    ) -> Run {
        let current = read_lock(&self.inner.current);
        let plugins = playbook
            .steps
            .iter()
            .filter_map(|step| {
                current
                    .get(&(tenant.clone(), step.plugin.clone()))
                    .map(|digest| (step.plugin.clone(), digest.clone()))
            })
            .collect();
        Run {
            id: random_id(if dry_run { "dry" } else { "run" }),
            tenant: tenant.clone(),
            playbook: playbook.name.clone(),
            playbook_version: playbook.version,
            playbook_sha256: playbook.sha256.clone(),
            plugins,
            mode: if dry_run { Mode::DryRun } else { playbook.mode },
            dry_run: dry_run || playbook.mode == Mode::DryRun,
            alert: alert.clone(),
            folded: Vec::new(),
            status: RunStatus::Running,
            steps: playbook
                .steps
                .iter()
                .map(|step| (step.id.clone(), StepState::pending()))
                .collect(),
            acted: Vec::new(),
            created: now,
            verdict_at: None,
            contained_at: None,
            finished: None,
            feedback: Vec::new(),
        }
    }

    /// Runs `playbook` on `alert` as a dry run: nothing is persisted, no
    /// action executes, no rate limit, dedup, memory or audit is touched;
    /// plugins get a throwaway kv and no network. The clock is the alert's.
    pub async fn dry_run(
        &self,
        tenant: &TenantId,
        playbook: &Playbook,
        alert: &Alert,
    ) -> Result<Run, ExecutorError> {
        let mut run = self.new_run(tenant, playbook, alert, true, alert.time);
        self.drive(&mut run, playbook).await?;
        Ok(run)
    }

    /// Continues a persisted run until it finishes or waits for a human.
    pub async fn execute(&self, tenant: &TenantId, run_id: &str) -> Result<Run, ExecutorError> {
        let mut run = self.get_run(tenant, run_id)?;
        let playbook = self.playbook_of(&run)?;
        self.drive(&mut run, &playbook).await?;
        Ok(run)
    }

    /// After a restart: denies approvals that expired while down, reconciles
    /// interrupted actions and continues every unfinished run.
    pub async fn resume(&self) -> Result<Vec<String>, ExecutorError> {
        self.expire_approvals(now_ms()).await?;
        let mut resumed = Vec::new();
        let mut unfinished = Vec::new();
        for entry in self.inner.runs.iter() {
            let (_, bytes) = entry?;
            if let Ok(run) = serde_json::from_slice::<Run>(&bytes)
                && run.status == RunStatus::Running
            {
                unfinished.push(run);
            }
        }
        for run in unfinished {
            self.execute(&run.tenant, &run.id).await?;
            resumed.push(run.id);
        }
        Ok(resumed)
    }

    fn now_for(run: &Run) -> i64 {
        if run.dry_run {
            run.alert.time
        } else {
            now_ms()
        }
    }

    async fn drive(&self, run: &mut Run, playbook: &Playbook) -> Result<(), ExecutorError> {
        // The tenant's share of concurrent runs (its quota, or
        // DEFAULT_RUN_SHARE): a tenant's burst waits for its own slots and
        // never for another tenant's.
        let existing = read_lock(&self.inner.run_slots).get(&run.tenant).cloned();
        let slots = match existing {
            Some(slots) => slots,
            None => write_lock(&self.inner.run_slots)
                .entry(run.tenant.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(DEFAULT_RUN_SHARE)))
                .clone(),
        };
        let _slot = slots
            .acquire_owned()
            .await
            .map_err(|_| ExecutorError::Store("run slots closed".to_owned()))?;
        let mut requested: Vec<Approval> = Vec::new();
        loop {
            // Steps interrupted by a crash run again (responders reconcile).
            let mut ready = Vec::new();
            for step in &playbook.steps {
                let Some(state) = run.steps.get(&step.id) else {
                    continue;
                };
                if !matches!(state.status, StepStatus::Pending | StepStatus::Running) {
                    continue;
                }
                let needs: Vec<StepStatus> = step
                    .needs
                    .iter()
                    .filter_map(|need| run.steps.get(need).map(|s| s.status))
                    .collect();
                if needs.iter().all(|status| status.is_final()) {
                    ready.push(step.clone());
                }
            }
            if ready.is_empty() {
                break;
            }
            let cpu = self.cpu_slot(&run.tenant).await;
            let now = Self::now_for(run);
            for step in &ready {
                if let Some(state) = run.steps.get_mut(&step.id)
                    && state.status == StepStatus::Pending
                {
                    state.status = StepStatus::Running;
                    state.started = Some(now);
                }
            }
            self.save(run)?;
            let snapshot = run.clone();
            // Plugin calls hold CPU permits of their own.
            drop(cpu);
            let results = futures::future::join_all(
                ready
                    .iter()
                    .map(|step| self.run_step(&snapshot, playbook, step)),
            )
            .await;
            let cpu = self.cpu_slot(&run.tenant).await;
            let mut fail = false;
            for result in results {
                fail |= self.apply(run, playbook, result?, None, &mut requested)?;
            }
            self.save(run)?;
            drop(cpu);
            if !run.dry_run {
                self.commit().await?;
            }
            if let Some(sink) = read_lock(&self.inner.approval_sink).as_ref() {
                for approval in requested.drain(..) {
                    let _ = sink.send(approval);
                }
            }
            if fail {
                run.status = RunStatus::Failed;
                break;
            }
        }
        let cpu = self.cpu_slot(&run.tenant).await;
        self.finish(run, playbook)?;
        drop(cpu);
        if !run.dry_run {
            self.commit().await?;
        }
        Ok(())
    }

    /// Applies one step's result to `run` — the one place a result becomes
    /// state, for every path (a wave of `drive`, an approved action): the
    /// verdict and containment times (the step's finish time), the targets
    /// acted on, an approval request (kept; queued in `requested` to be
    /// announced once durable), the step's audit records (by `actor`, when
    /// a person caused it) and the step state. Whether the run must fail
    /// (a failed step whose `on_error` does not continue).
    fn apply(
        &self,
        run: &mut Run,
        playbook: &Playbook,
        result: StepResult,
        actor: Option<&str>,
        requested: &mut Vec<Approval>,
    ) -> Result<bool, ExecutorError> {
        let fails_run = result.state.status == StepStatus::Failed
            && playbook.step(&result.id).is_some_and(|s| {
                s.on_error == OnError::Fail || matches!(s.on_error, OnError::Retry { .. })
            });
        let finished = result.state.finished.unwrap_or_else(|| Self::now_for(run));
        if result.scored && run.verdict_at.is_none() {
            run.verdict_at = Some(finished);
        }
        if let Some(target) = result.acted {
            if !run.acted.contains(&target) {
                run.acted.push(target);
            }
            run.contained_at.get_or_insert(finished);
        }
        if let Some(approval) = &result.approval
            && !run.dry_run
        {
            self.inner.approvals.put(approval)?;
            requested.push(approval.clone());
        }
        for (kind, detail) in result.audit {
            self.audit_append(run, kind, Some(&result.id), actor, detail)?;
        }
        run.steps.insert(result.id, result.state);
        Ok(fails_run)
    }

    fn finish(&self, run: &mut Run, playbook: &Playbook) -> Result<(), ExecutorError> {
        if run.status != RunStatus::Failed {
            let waiting = run
                .steps
                .values()
                .any(|s| s.status == StepStatus::WaitingApproval);
            let unfinished = run
                .steps
                .values()
                .any(|s| !s.status.is_final() && s.status != StepStatus::WaitingApproval);
            run.status = if waiting {
                RunStatus::WaitingApproval
            } else if unfinished {
                RunStatus::Running
            } else if run.steps.values().any(|s| s.status == StepStatus::Failed) {
                RunStatus::SucceededWithErrors
            } else {
                RunStatus::Succeeded
            };
        }
        // Steps that can no longer run (a need failed, was denied, refused or skipped).
        if run.status != RunStatus::Running {
            for step in &playbook.steps {
                let blocked = step.needs.iter().any(|need| {
                    run.steps.get(need).is_some_and(|s| {
                        matches!(
                            s.status,
                            StepStatus::Failed
                                | StepStatus::Refused
                                | StepStatus::Denied
                                | StepStatus::Skipped
                        )
                    })
                });
                if let Some(state) = run.steps.get_mut(&step.id)
                    && state.status == StepStatus::Pending
                    && (blocked || run.status == RunStatus::Failed)
                {
                    state.status = StepStatus::Skipped;
                }
            }
        }
        if run.status.is_finished() {
            run.finished = Some(Self::now_for(run));
            let mttd = run.verdict_at.map(|at| at - run.alert.time);
            let mttc = run.contained_at.map(|at| at - run.alert.time);
            self.audit_append(run, AuditKind::RunFinished, None, None, json!({"status": run.status, "mttd_ms": mttd, "mttc_ms": mttc, "folded": run.folded.len()}))?;
            if !run.dry_run {
                self.record_verdicts(run)?;
            }
        }
        self.save(run)?;
        Ok(())
    }

    /// Writes what the run's enrichers found into the tenant's entity
    /// memory — only for entities the alert names (an enricher cannot
    /// plant a verdict on 8.8.8.8 for later runs), and never a benign
    /// verdict over an analyst's true-positive: an enricher cannot clear
    /// what a human marked malicious.
    fn record_verdicts(&self, run: &Run) -> Result<(), ExecutorError> {
        let named: std::collections::HashSet<(EntityKind, String)> =
            run.alert.entities.iter().map(memory_key).collect();
        for state in run.steps.values() {
            let Some(found) = output::from_value::<output::EnrichOutput>(state.output.as_ref())
            else {
                continue;
            };
            for enrichment in found.enrichments {
                if !named.contains(&memory_key(&enrichment.entity)) {
                    tracing::debug!(run = %run.id, entity = %enrichment.entity.value, "verdict for an entity the alert does not name: not remembered");
                    continue;
                }
                if enrichment.verdict == EntityVerdict::Benign {
                    let known = self
                        .inner
                        .store
                        .memory_recall(&run.tenant, &enrichment.entity)?;
                    if known
                        .feedback
                        .first()
                        .is_some_and(|f| f.label == crate::model::FeedbackLabel::TruePositive)
                    {
                        continue;
                    }
                }
                self.inner.store.memory_record_verdict(
                    &run.tenant,
                    &enrichment.entity,
                    PriorVerdict {
                        verdict: enrichment.verdict,
                        confidence: enrichment.confidence,
                        run_id: run.id.clone(),
                        playbook: run.playbook.clone(),
                        time: run.finished.unwrap_or(run.created),
                    },
                )?;
            }
        }
        Ok(())
    }

    fn steps_json(run: &Run) -> Value {
        Value::Object(
            run.steps
                .iter()
                .filter_map(|(id, state)| state.output.clone().map(|o| (id.clone(), o)))
                .collect(),
        )
    }

    async fn run_step(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
    ) -> Result<StepResult, ExecutorError> {
        let now = Self::now_for(run);
        let mut state = run
            .steps
            .get(&step.id)
            .cloned()
            .unwrap_or_else(StepState::pending);
        let mut result = StepResult {
            id: step.id.clone(),
            state: state.clone(),
            audit: Vec::new(),
            approval: None,
            acted: None,
            scored: false,
        };
        // A step whose needs did not all succeed does not run.
        let blocked = step.needs.iter().any(|need| {
            run.steps
                .get(need)
                .is_some_and(|s| s.status != StepStatus::Succeeded)
        });
        if blocked {
            state.status = StepStatus::Skipped;
            state.finished = Some(now);
            state.error = Some("a step it needs did not succeed".to_owned());
            result.state = state;
            return Ok(result);
        }
        let variables = Variables::new(&run.alert, &Self::steps_json(run));
        if let Some(when) = &step.when {
            match self
                .evaluate(&run.tenant, when, &variables, Expr::eval_bool)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    state.status = StepStatus::Skipped;
                    state.finished = Some(now);
                    result.audit.push((
                        AuditKind::StepFinished,
                        json!({"status": "skipped", "when": when.source()}),
                    ));
                    result.state = state;
                    return Ok(result);
                }
                Err(err) => {
                    return Ok(self.failed(result, state, now, format!("when: {err}")));
                }
            }
        }
        let Some(loaded) = self.plugin_for(run, &step.plugin) else {
            return Ok(self.failed(
                result,
                state,
                now,
                format!(
                    "plugin `{}` (as pinned by the run) is not loaded",
                    step.plugin
                ),
            ));
        };
        match step.kind {
            StepKind::Respond => {
                self.respond_step(run, playbook, step, &variables, &loaded, result, state)
                    .await
            }
            _ => {
                let context = CallContext {
                    run_id: Some(run.id.clone()),
                    step_id: Some(step.id.clone()),
                    dry_run: run.dry_run,
                    timeout: Some(step.timeout),
                };
                let mut attempts = 0u32;
                loop {
                    attempts += 1;
                    let started = std::time::Instant::now();
                    let outcome = self
                        .call_plugin(run, playbook, step, &loaded.plugin, &context)
                        .await;
                    let (ok, stats) = match &outcome {
                        Ok((_, stats)) => (true, Some(*stats)),
                        Err(_) => (false, None),
                    };
                    result.audit.push((AuditKind::PluginInvoked, json!({
                        "plugin": step.plugin, "digest": loaded.digest, "attempt": attempts, "ok": ok,
                        "duration_us": stats.map_or(started.elapsed().as_micros() as u64, |s| s.duration.as_micros() as u64),
                        "fuel": stats.map(|s| s.fuel), "peak_memory": stats.map(|s| s.peak_memory_bytes),
                        "error": outcome.as_ref().err().map(ToString::to_string),
                    })));
                    match outcome {
                        Ok((output, _)) => {
                            state.status = StepStatus::Succeeded;
                            state.attempts = attempts;
                            state.finished = Some(Self::now_for(run));
                            result.scored = step.kind == StepKind::Score;
                            result.audit.push((
                                AuditKind::StepFinished,
                                json!({"status": "succeeded", "attempts": attempts}),
                            ));
                            state.output = Some(output);
                            result.state = state;
                            return Ok(result);
                        }
                        Err(err) => {
                            let retry = match step.on_error {
                                OnError::Retry { max, backoff }
                                    if attempts <= max && retriable(&err) =>
                                {
                                    Some(retry_delay(&err, backoff, attempts))
                                }
                                _ => None,
                            };
                            if let Some(delay) = retry {
                                if !run.dry_run {
                                    tokio::time::sleep(delay).await;
                                }
                                continue;
                            }
                            state.attempts = attempts;
                            return Ok(self.failed(
                                result,
                                state,
                                Self::now_for(run),
                                err.to_string(),
                            ));
                        }
                    }
                }
            }
        }
    }

    fn failed(
        &self,
        mut result: StepResult,
        mut state: StepState,
        now: i64,
        error: String,
    ) -> StepResult {
        state.status = StepStatus::Failed;
        state.finished = Some(now);
        result.audit.push((
            AuditKind::StepFinished,
            json!({"status": "failed", "error": error}),
        ));
        state.error = Some(error);
        result.state = state;
        result
    }

    async fn call_plugin(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        plugin: &Plugin,
        context: &CallContext,
    ) -> Result<(Value, crate::sandbox::CallStats), PluginError> {
        match step.kind {
            StepKind::Enrich => {
                let called = plugin.enrich(&run.alert, context).await?;
                Ok((
                    output::to_value(&output::EnrichOutput::new(called.value)),
                    called.stats,
                ))
            }
            StepKind::Score => {
                let sources: Vec<&str> = if step.needs.is_empty() {
                    playbook
                        .steps
                        .iter()
                        .filter(|s| s.kind == StepKind::Enrich)
                        .map(|s| s.id.as_str())
                        .collect()
                } else {
                    step.needs.iter().map(String::as_str).collect()
                };
                let enrichments: Vec<Enrichment> = sources
                    .iter()
                    .filter_map(|id| {
                        output::from_value::<output::EnrichOutput>(
                            run.steps.get(*id)?.output.as_ref(),
                        )
                    })
                    .flat_map(|found| found.enrichments)
                    .collect();
                let called = plugin.score(&run.alert, &enrichments, context).await?;
                Ok((
                    output::to_value(&output::ScoreOutput::from(called.value)),
                    called.stats,
                ))
            }
            StepKind::Hunt => {
                let mut session = plugin.open_hunt_with(&step.with, context).await?;
                let events: Vec<crate::model::Event> = run
                    .alert
                    .raw
                    .get("events")
                    .cloned()
                    .and_then(|e| serde_json::from_value(e).ok())
                    .unwrap_or_default();
                let mut findings = session.push(&events).await?.value;
                let closed = session.close().await?;
                let stats = closed.stats;
                findings.extend(closed.value);
                Ok((output::to_value(&output::HuntOutput::new(findings)), stats))
            }
            StepKind::Respond => Err(PluginError::Unavailable(
                "respond steps go through guardrails".to_owned(),
            )),
        }
    }

    /// The confidence of the nearest score step this step (transitively) needs.
    fn deciding_confidence(run: &Run, playbook: &Playbook, step: &Step) -> Option<u8> {
        let mut queue: Vec<&str> = step.needs.iter().map(String::as_str).collect();
        let mut seen = Vec::new();
        while let Some(id) = queue.first().copied() {
            queue.remove(0);
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let Some(need) = playbook.step(id) else {
                continue;
            };
            if need.kind == StepKind::Score {
                return output::from_value::<output::ScoreOutput>(
                    run.steps.get(id)?.output.as_ref(),
                )
                .map(|score| score.confidence.min(100));
            }
            queue.extend(need.needs.iter().map(String::as_str));
        }
        None
    }

    /// Actions of kind `action` in the last `per`, counted up to `cap` (the
    /// guardrail only needs to know whether the limit is reached). The rate
    /// keys are `tenant\0action\0<time BE><run><step>`, so this reads only
    /// the window, whatever the history.
    fn recent_actions(
        &self,
        tenant: &TenantId,
        action: &str,
        per: Duration,
        now: i64,
        cap: u32,
    ) -> Result<u32, ExecutorError> {
        let since = now.saturating_sub(i64::try_from(per.as_millis()).unwrap_or(i64::MAX));
        let prefix = key(&[tenant.as_str(), action, ""]);
        let mut start = prefix.clone();
        start.extend_from_slice(&since.saturating_add(1).max(0).to_be_bytes());
        let mut count = 0u32;
        for entry in self.inner.rates.range(start..rate_prefix_end(&prefix)) {
            entry?;
            count += 1;
            if count >= cap {
                break;
            }
        }
        Ok(count)
    }

    /// Drops a few of this bucket's rate entries older than the longest
    /// window a playbook may set, so history does not pile up.
    fn prune_rates(&self, tenant: &TenantId, action: &str, now: i64) -> Result<(), ExecutorError> {
        let window =
            i64::try_from(crate::playbook::MAX_RATE_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let prefix = key(&[tenant.as_str(), action, ""]);
        let mut end = prefix.clone();
        end.extend_from_slice(&now.saturating_sub(window).max(0).to_be_bytes());
        // A bounded batch per action: pruning keeps pace with inserting.
        let old: Vec<sled::IVec> = self
            .inner
            .rates
            .range(prefix..end)
            .keys()
            .take(16)
            .collect::<Result<_, _>>()?;
        for key in old {
            self.inner.rates.remove(key)?;
        }
        Ok(())
    }

    fn situation(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        target: &Entity,
        now: i64,
    ) -> Result<Situation, ExecutorError> {
        let limit = playbook
            .guardrails
            .rate_limits
            .get(&step.action)
            .copied()
            .unwrap_or(guardrails::DEFAULT_RATE_LIMIT);
        let recent = if run.dry_run {
            0
        } else {
            self.recent_actions(&run.tenant, &step.action, limit.per, now, limit.count)?
        };
        let label = target_label(target);
        Ok(Situation {
            confidence: Self::deciding_confidence(run, playbook, step),
            recent_actions: recent,
            run_targets: run.acted.iter().filter(|t| **t != label).count() as u32,
            target_already_counted: run.acted.contains(&label),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn respond_step(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        variables: &Variables,
        loaded: &Loaded,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        let now = Self::now_for(run);
        let evaluated = match &step.target {
            Some(expr) => Some(
                self.evaluate(&run.tenant, expr, variables, Expr::eval_json)
                    .await,
            ),
            None => None,
        };
        let target = match evaluated {
            Some(Ok(value)) => match entity_from_json(&value) {
                Some(entity) => entity,
                None => {
                    return Ok(self.failed(
                        result,
                        state,
                        now,
                        format!("target evaluated to {value}, not an entity or address"),
                    ));
                }
            },
            Some(Err(err)) => return Ok(self.failed(result, state, now, format!("target: {err}"))),
            None => {
                return Ok(self.failed(
                    result,
                    state,
                    now,
                    "respond step without target".to_owned(),
                ));
            }
        };
        state.target = Some(target.clone());
        let idempotency_key = idempotency_key(run, step, &target);

        // Interrupted by a crash after the intent was written: reconcile.
        if state.status == StepStatus::Running
            && !run.dry_run
            && let Some(intent) = self
                .inner
                .intents
                .get(key(&[run.tenant.as_str(), &idempotency_key]))?
        {
            let intent: Value = serde_json::from_slice(&intent).map_err(store_err)?;
            let Some(recorded) = intent.get("result") else {
                return self
                    .reconcile(run, step, loaded, target, idempotency_key, result, state)
                    .await;
            };
            // The action finished before the crash; only the step state was lost.
            state.finished = Some(now);
            match serde_json::from_value::<crate::model::ActionResult>(recorded.clone()) {
                Ok(done) => {
                    state.status = StepStatus::Succeeded;
                    result.acted = Some(target_label(&target));
                    // The crash may have taken the action's audit record with
                    // it: record the action from its intent, marked recovered.
                    result.audit.push((
                        AuditKind::ActionExecuted,
                        json!({"target": target, "action": step.action, "outcome": done.outcome, "summary": done.summary, "recovered": true}),
                    ));
                    state.output = Some(output::to_value(&output::RespondOutput::executed(&done)));
                }
                Err(_) => {
                    state.status = StepStatus::Failed;
                    state.error = Some(format!("action failed before the restart: {recorded}"));
                }
            }
            result.audit.push((
                AuditKind::StepFinished,
                json!({"status": state.status, "recovered": true}),
            ));
            result.state = state;
            return Ok(result);
        }

        let context = self.inner.runtime.context().get(&run.tenant);
        let situation = self.situation(run, playbook, step, &target, now)?;
        let decision = guardrails::decide(playbook, step, &target, &context, situation);
        result.audit.push((
            AuditKind::GuardrailDecision,
            json!({"target": target, "action": step.action, "decision": decision}),
        ));
        state.decision = Some(decision.clone());

        if run.dry_run {
            // Plan only: the plugin runs in a sandbox with no network and a throwaway kv.
            let context = CallContext {
                run_id: Some(run.id.clone()),
                step_id: Some(step.id.clone()),
                dry_run: true,
                timeout: Some(step.timeout),
            };
            let request = ActionRequest {
                run_id: run.id.clone(),
                step_id: step.id.clone(),
                idempotency_key,
                target: target.clone(),
                params: step.with.clone(),
            };
            let planned = loaded.plugin.respond(&request, true, &context).await;
            state.status = StepStatus::Succeeded;
            state.finished = Some(now);
            let would = output::variant_name(&decision.verdict);
            state.output = Some(output::to_value(&match planned {
                Ok(called) => output::RespondOutput::planned(&called.value, would),
                Err(err) => output::RespondOutput::planning_failed(err.to_string(), would),
            }));
            result.state = state;
            return Ok(result);
        }

        match decision.verdict {
            Verdict::Refuse => {
                state.status = StepStatus::Refused;
                state.finished = Some(now);
                state.error = Some(decision.reasons.join("; "));
                result.audit.push((
                    AuditKind::StepFinished,
                    json!({"status": "refused", "reasons": decision.reasons}),
                ));
                result.state = state;
                Ok(result)
            }
            Verdict::NeedsApproval => {
                let mut approval = new_approval(
                    run,
                    step,
                    &target,
                    &loaded.digest,
                    decision.reasons.clone(),
                    now,
                );
                approval.requested_by = self.playbook_owner(&run.tenant, &run.playbook);
                result.audit.push((AuditKind::ApprovalRequested, json!({"approval": approval.id, "target": target, "reasons": decision.reasons, "required": approval.required, "expires": approval.expires})));
                state.status = StepStatus::WaitingApproval;
                state.approval_id = Some(approval.id.clone());
                result.approval = Some(approval);
                result.state = state;
                Ok(result)
            }
            Verdict::Execute => {
                self.act(
                    run,
                    step,
                    loaded,
                    target,
                    idempotency_key,
                    result,
                    state,
                    None,
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        idempotency_key: String,
        mut result: StepResult,
        mut state: StepState,
        approved_by: Option<&Approval>,
    ) -> Result<StepResult, ExecutorError> {
        crate::crashpoint::reached("before-intent");
        let intent_key = key(&[run.tenant.as_str(), &idempotency_key]);
        let intent = json!({"run": run.id, "step": step.id, "target": target, "plugin": loaded.digest, "started": now_ms()});
        self.inner.intents.insert(
            intent_key.clone(),
            serde_json::to_vec(&intent).map_err(store_err)?,
        )?;
        self.commit().await?;
        let request = ActionRequest {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            idempotency_key: idempotency_key.clone(),
            target: target.clone(),
            params: step.with.clone(),
        };
        let context = CallContext {
            run_id: Some(run.id.clone()),
            step_id: Some(step.id.clone()),
            dry_run: false,
            timeout: Some(step.timeout),
        };
        let outcome = loaded.plugin.respond(&request, false, &context).await;
        crate::crashpoint::reached("after-call");
        self.finish_action(
            run,
            step,
            loaded,
            target,
            intent,
            intent_key,
            outcome,
            &mut result,
            &mut state,
            approved_by,
        )?;
        result.state = state;
        Ok(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_action(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        mut intent: Value,
        intent_key: Vec<u8>,
        outcome: Result<crate::sandbox::Called<crate::model::ActionResult>, PluginError>,
        result: &mut StepResult,
        state: &mut StepState,
        approved_by: Option<&Approval>,
    ) -> Result<(), ExecutorError> {
        let now = now_ms();
        match outcome {
            Ok(called) => {
                intent["result"] = json!(called.value);
                self.inner
                    .intents
                    .insert(intent_key, serde_json::to_vec(&intent).map_err(store_err)?)?;
                let mut rate_key = key(&[run.tenant.as_str(), &step.action, ""]);
                rate_key.extend_from_slice(&now.to_be_bytes());
                rate_key.extend_from_slice(run.id.as_bytes());
                rate_key.extend_from_slice(step.id.as_bytes());
                self.inner.rates.insert(rate_key, &[])?;
                self.prune_rates(&run.tenant, &step.action, now)?;
                result.audit.push((AuditKind::PluginInvoked, json!({"plugin": step.plugin, "digest": loaded.digest, "ok": true, "duration_us": called.stats.duration.as_micros() as u64, "fuel": called.stats.fuel, "peak_memory": called.stats.peak_memory_bytes})));
                result.audit.push((AuditKind::ActionExecuted, json!({"target": target, "action": step.action, "outcome": called.value.outcome, "summary": called.value.summary, "approval": approved_by.map(|a| &a.id), "approvers": approved_by.map(|a| a.approvals.iter().map(|v| v.principal.clone()).collect::<Vec<_>>())})));
                if matches!(
                    called.value.outcome,
                    ActionOutcome::Executed | ActionOutcome::AlreadyInState
                ) {
                    result.acted = Some(target_label(&target));
                }
                state.status = StepStatus::Succeeded;
                state.output = Some(output::to_value(&output::RespondOutput::executed(
                    &called.value,
                )));
            }
            Err(err) => {
                intent["result"] = json!({"error": err.to_string()});
                self.inner
                    .intents
                    .insert(intent_key, serde_json::to_vec(&intent).map_err(store_err)?)?;
                result.audit.push((AuditKind::PluginInvoked, json!({"plugin": step.plugin, "digest": loaded.digest, "ok": false, "error": err.to_string()})));
                state.status = StepStatus::Failed;
                state.error = Some(err.to_string());
            }
        }
        state.finished = Some(now);
        result
            .audit
            .push((AuditKind::StepFinished, json!({"status": state.status})));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        run: &Run,
        step: &Step,
        loaded: &Loaded,
        target: Entity,
        idempotency_key: String,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        // Same key: a plugin honouring it either reports what it did, or
        // that the target is already in that state. Never a second effect.
        let intent_key = key(&[run.tenant.as_str(), &idempotency_key]);
        let intent: Value = self
            .inner
            .intents
            .get(&intent_key)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(json!({}));
        let request = ActionRequest {
            run_id: run.id.clone(),
            step_id: step.id.clone(),
            idempotency_key: idempotency_key.clone(),
            target: target.clone(),
            params: step.with.clone(),
        };
        let context = CallContext {
            run_id: Some(run.id.clone()),
            step_id: Some(step.id.clone()),
            dry_run: false,
            timeout: Some(step.timeout),
        };
        match loaded.plugin.respond(&request, false, &context).await {
            Ok(called) => {
                result.audit.push((
                    AuditKind::GuardrailDecision,
                    json!({"reconciled": true, "target": target, "outcome": called.value.outcome}),
                ));
                self.finish_action(
                    run,
                    step,
                    loaded,
                    target,
                    intent,
                    intent_key,
                    Ok(called),
                    &mut result,
                    &mut state,
                    None,
                )?;
            }
            Err(err) => {
                // Unknown outcome: a human decides; no blind retry.
                let now = now_ms();
                let mut approval = new_approval(
                    run,
                    step,
                    &target,
                    &loaded.digest,
                    vec![format!("outcome unknown after a restart: {err}")],
                    now,
                );
                approval.requested_by = self.playbook_owner(&run.tenant, &run.playbook);
                result.audit.push((
                    AuditKind::ApprovalRequested,
                    json!({"approval": approval.id, "reason": "unknown outcome after restart"}),
                ));
                state.status = StepStatus::WaitingApproval;
                state.approval_id = Some(approval.id.clone());
                result.approval = Some(approval);
            }
        }
        result.state = state;
        Ok(result)
    }

    /// An analyst labels a run; the label goes into the tenant's entity
    /// memory for every entity of the alert (plugins read it through
    /// `memory`), onto the run, and into the audit log.
    pub fn feedback(
        &self,
        tenant: &TenantId,
        run_id: &str,
        label: crate::model::FeedbackLabel,
        analyst: &str,
        comment: &str,
    ) -> Result<Run, ExecutorError> {
        let mut run = self.get_run(tenant, run_id)?;
        let feedback = crate::model::Feedback {
            label,
            analyst: analyst.to_owned(),
            time: now_ms(),
            run_id: run.id.clone(),
            comment: comment.to_owned(),
        };
        for entity in &run.alert.entities {
            self.inner
                .store
                .memory_record_feedback(tenant, entity, feedback.clone())?;
        }
        let previous = run.feedback.last().map(|f| f.label);
        run.feedback.push(feedback);
        self.save(&run)?;
        self.inner.tally.relabelled(&run, previous, label);
        self.inner.audit.append(
            tenant,
            AuditKind::FeedbackGiven,
            Some(&run.id),
            None,
            Some(analyst),
            json!({"label": label, "comment": comment}),
        )?;
        self.inner.store.flush()?;
        Ok(run)
    }

    /// An approver approves; at quorum the action is re-checked and executed
    /// and the run continues. The vote is one compare-and-swap on the
    /// approval, so of concurrent votes exactly one meets the quorum and
    /// only that one executes the action.
    pub async fn approve(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let approver = approver.into();
        let principal = approver.name.as_str();
        let now = now_ms();
        let decided = self
            .inner
            .approvals
            .approve(tenant, approval_id, &approver, reason, now);
        let approval = self.closing_if_expired(tenant, decided).await?;
        let mut run = self.get_run(tenant, &approval.run_id)?;
        self.audit_append(&run, AuditKind::ApprovalGranted, Some(&approval.step_id), Some(principal), json!({"approval": approval.id, "reason": reason, "count": approval.approvals.len(), "required": approval.required}))?;
        self.commit().await?;
        if approval.status != ApprovalStatus::Approved {
            return Ok(approval);
        }
        let playbook = self.playbook_of(&run)?;
        let Some(step) = playbook.step(&approval.step_id).cloned() else {
            return Err(ExecutorError::PlaybookNotFound(approval.step_id.clone()));
        };
        let state = run
            .steps
            .get(&step.id)
            .cloned()
            .unwrap_or_else(StepState::pending);
        let result = StepResult {
            id: step.id.clone(),
            state: state.clone(),
            audit: Vec::new(),
            approval: None,
            acted: None,
            scored: false,
        };
        let result = self
            .execute_approved(&run, &playbook, &step, &approval, result, state)
            .await?;
        // An approved action asks for no further approval.
        let mut requested = Vec::new();
        if self.apply(&mut run, &playbook, result, Some(principal), &mut requested)? {
            // The approved action failed and its step does not continue:
            // the run fails, as it would have in a wave of `drive`.
            run.status = RunStatus::Failed;
            self.finish(&mut run, &playbook)?;
            self.commit().await?;
            return Ok(approval);
        }
        run.status = RunStatus::Running;
        self.save(&run)?;
        self.commit().await?;
        self.drive(&mut run, &playbook).await?;
        Ok(approval)
    }

    async fn execute_approved(
        &self,
        run: &Run,
        playbook: &Playbook,
        step: &Step,
        approval: &Approval,
        mut result: StepResult,
        mut state: StepState,
    ) -> Result<StepResult, ExecutorError> {
        let now = now_ms();
        let Some(loaded) = self.plugin_for(run, &step.plugin) else {
            return Ok(self.failed(result, state, now, "pinned plugin not loaded".to_owned()));
        };
        let target = state
            .target
            .clone()
            .unwrap_or_else(|| approval.target.clone());
        // Bound to exactly this action.
        if let Err(difference) = approval.covers(
            &run.id,
            &step.id,
            &target,
            &approvals::params_hash(&step.with),
            &loaded.digest,
        ) {
            state.status = StepStatus::Refused;
            state.finished = Some(now);
            state.error = Some(format!("approval does not cover this action: {difference}"));
            result.audit.push((
                AuditKind::GuardrailDecision,
                json!({"approval": approval.id, "refused": difference}),
            ));
            result.state = state;
            return Ok(result);
        }
        // Checked again at execution time: protected assets, rate, blast radius.
        let inventory = self.inner.runtime.context().get(&run.tenant).assets;
        let mut recheck = Vec::new();
        if let Some(reason) =
            guardrails::protected_by(&playbook.guardrails.protected_assets, &target, &inventory)
        {
            recheck.push(format!("protected: {reason}"));
        }
        let situation = self.situation(run, playbook, step, &target, now)?;
        recheck.extend(guardrails::capacity_reasons(playbook, step, situation));
        if !recheck.is_empty() {
            state.status = StepStatus::Refused;
            state.finished = Some(now);
            state.error = Some(recheck.join("; "));
            result.audit.push((
                AuditKind::GuardrailDecision,
                json!({"approval": approval.id, "recheck": recheck}),
            ));
            result.state = state;
            return Ok(result);
        }
        let idempotency_key = idempotency_key(run, step, &target);
        self.act(
            run,
            step,
            &loaded,
            target,
            idempotency_key,
            result,
            state,
            Some(approval),
        )
        .await
    }

    /// An approver denies (one denial is enough); the run continues without
    /// the action.
    pub async fn deny(
        &self,
        tenant: &TenantId,
        approval_id: &str,
        approver: impl Into<Approver>,
        reason: &str,
    ) -> Result<Approval, ExecutorError> {
        let approver = approver.into();
        let principal = approver.name.as_str();
        let decided = self
            .inner
            .approvals
            .deny(tenant, approval_id, &approver, reason, now_ms());
        let approval = self.closing_if_expired(tenant, decided).await?;
        self.close_denied(
            &approval,
            AuditKind::ApprovalDenied,
            Some(principal),
            reason,
        )
        .await?;
        Ok(approval)
    }

    /// A decision's result; when the decision found the approval expired
    /// (and so moved it to `expired` itself), the step is closed as denied
    /// before the error is returned.
    async fn closing_if_expired(
        &self,
        tenant: &TenantId,
        decided: Result<Approval, ApprovalError>,
    ) -> Result<Approval, ExecutorError> {
        match decided {
            Ok(approval) => Ok(approval),
            Err(ApprovalError::Expired(id)) => {
                let approval = self.inner.approvals.get(tenant, &id)?;
                self.close_denied(&approval, AuditKind::ApprovalExpired, None, "expired")
                    .await?;
                Err(ApprovalError::Expired(id).into())
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn close_denied(
        &self,
        approval: &Approval,
        kind: AuditKind,
        principal: Option<&str>,
        reason: &str,
    ) -> Result<(), ExecutorError> {
        let mut run = self.get_run(&approval.tenant, &approval.run_id)?;
        self.audit_append(
            &run,
            kind,
            Some(&approval.step_id),
            principal,
            json!({"approval": approval.id, "reason": reason}),
        )?;
        if let Some(state) = run.steps.get_mut(&approval.step_id)
            && state.status == StepStatus::WaitingApproval
        {
            state.status = StepStatus::Denied;
            state.finished = Some(now_ms());
            state.error = Some(format!("{kind:?}: {reason}"));
        }
        run.status = RunStatus::Running;
        self.save(&run)?;
        self.commit().await?;
        let playbook = self.playbook_of(&run)?;
        self.drive(&mut run, &playbook).await
    }

    /// Denies every approval whose time is up (fail closed).
    pub async fn expire_approvals(&self, now: i64) -> Result<Vec<Approval>, ExecutorError> {
        let expired = self.inner.approvals.expire_due(now)?;
        for approval in &expired {
            self.close_denied(
                approval,
                AuditKind::ApprovalExpired,
                None,
                "approval timed out",
            )
            .await?;
        }
        Ok(expired)
    }
}

/// The first key after every key that starts with `prefix` (which ends in
/// the `\0` separator): the same bytes with that separator raised to `\x01`.
fn rate_prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    end
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
