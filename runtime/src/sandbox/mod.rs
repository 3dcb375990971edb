//! The sandbox: loading plugins and running calls under limits.
//!
//! Loading ([`Runtime::load`]) checks the component against its locked
//! manifest and the tenant's grant and refuses, with a specific
//! [`LoadError`], a digest mismatch, a file that is not a component, a
//! contract version this runtime does not speak, a component that does not
//! implement its kind's world, an import the manifest did not declare, and a
//! capability the tenant did not grant. It compiles once per digest (with an
//! on-disk cache, see [`cache`]) and keeps an `InstancePre`.
//!
//! Every call gets a fresh `Store` with the plugin's memory cap, fuel budget
//! and deadline (manifest values under the grant's and runtime's ceilings).
//! The deadline is enforced twice: epoch interruption stops running guest
//! code (and makes a looping guest yield to tokio every tick), and a tokio
//! timeout ends a call blocked in the host (a slow server, a sleep). Every
//! host call is charged fuel. A failure is a [`PluginError`] that says
//! exactly what happened; it ends that call only.

pub mod bounds;
pub mod cache;
mod calls;
pub mod compiler;
mod error;
mod files;
mod hunt_session;
pub mod inspect;
mod instance;
mod io_gate;
mod limits;
mod output;
mod pool;
mod quota;
pub mod redact;
pub mod share;
pub(crate) mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{CallHook, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::bindings::{enricher, host, hunt, responder, scorer, types as wit};
use crate::caps::http::{HttpLimits, HttpPolicy};
use crate::caps::kv::KvAccess;
use crate::caps::log::LogBudget;
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::manifest::{LockedManifest, PluginKind};
use crate::model::OutputViolation;
use crate::store::{KvNamespace, Store as HostStore};
use crate::tenant::{Capability, Grants, Limits, TenantId};
pub use cache::ArtifactSource;
pub use error::{LoadError, PluginError};
use files::MAX_MANIFEST_BYTES;
pub use files::read_regular_file;
pub use hunt_session::HuntSession;
use limits::CallLimiter;
pub use limits::{CallCounter, CallStats};
pub use output::OutputItemCaps;
pub use share::ShareConfig;
use state::{HostState, PluginIdentity};

/// How long a load waits for the compile pool before it gives up.
const COMPILE_QUEUE_WAIT: Duration = Duration::from_secs(60);

/// Runtime configuration.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Engine ceilings and tuning.
    pub engine: EngineConfig,
    /// Where compiled artifacts are cached (`None`: compile every load).
    pub cache_dir: Option<PathBuf>,
    /// Caps on outbound HTTP.
    pub http: HttpLimits,
    /// Per-tenant shares of slots, CPU, compiles and connections (`None`:
    /// [`ShareConfig::for_pool`] of the engine's `max_instances`).
    pub shares: Option<ShareConfig>,
    /// Threads of the call pool every plugin call runs on (`None`: one per
    /// core).
    pub call_threads: Option<usize>,
    /// Compile in a child process with a memory limit and a deadline
    /// (`None`: in this process, bounded only by [`bounds`]).
    pub compiler: Option<compiler::CompilerProcess>,
}

/// A call's result with what it cost.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Called<T> {
    /// The result.
    pub value: T,
    /// The cost.
    pub stats: CallStats,
}

/// Per-call context (who is asking, for logs and spans).
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// The playbook run, if any.
    pub run_id: Option<String>,
    /// The step, if any.
    pub step_id: Option<String>,
    /// Dry run / replay: the plugin gets a throwaway kv and no outbound
    /// HTTP, so an untrusted plugin cannot act even if it ignores `dry_run`.
    pub dry_run: bool,
    /// A tighter deadline than the plugin's own (a playbook step's timeout).
    pub timeout: Option<Duration>,
}

struct RuntimeInner {
    calls: Mutex<HashMap<(TenantId, String, &'static str), CallCounter>>,
    quotas: quota::Quotas,
    /// Each tenant's share of sandbox slots, CPU, compiles, connections.
    shares: share::Shares,
    /// Where calls run (off the caller's async workers).
    pool: pool::CallPool,
    compiler: Option<compiler::CompilerProcess>,
    engine: Engine,
    linker: Linker<HostState>,
    store: Arc<dyn HostStore>,
    cache: cache::ArtifactCache,
    compiled: Mutex<HashMap<String, Component>>,
    http_limits: HttpLimits,
    /// Every tenant's assets and people (the `context` capability).
    context: Arc<crate::context::Directory>,
}

/// Loads plugins and owns what they share: engine, linker, store, caches.
/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be built.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Host functions could not be linked.
    #[error("linking host interfaces: {0}")]
    Link(String),
    /// The call pool's threads could not start.
    #[error("starting the plugin call pool: {0}")]
    Pool(#[source] std::io::Error),
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Runtime {
    /// Runs CPU-heavy host work done for `tenant` (a costly playbook
    /// expression) on the call pool, holding one of the tenant's CPU
    /// permits: it takes no more than the tenant's share of the cores, at
    /// low priority, and never an async worker.
    pub async fn run_heavy<T: Send + 'static>(
        &self,
        tenant: &TenantId,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PluginError> {
        let share = self.inner.shares.tenant(tenant);
        let _permit =
            share.cpu.clone().acquire_owned().await.map_err(|_| {
                PluginError::Unavailable("the tenant's CPU share is closed".to_owned())
            })?;
        self.inner.pool.work(work).await
    }

    /// Builds the engine and links every host interface: all of WASI 0.2
    /// (denying access), wasi:http (through our policy) and ours.
    pub fn new(config: RuntimeConfig, store: Arc<dyn HostStore>) -> Result<Self, RuntimeError> {
        let shares = config
            .shares
            .unwrap_or_else(|| ShareConfig::for_pool(config.engine.max_instances));
        let pool = config.engine.max_instances;
        let call_threads = config.call_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        let engine = Engine::new(config.engine)?;
        let mut linker: Linker<HostState> = Linker::new(engine.wasmtime());
        let link = |err: wasmtime::Error| RuntimeError::Link(err.to_string());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        io_gate::gate_waits(&mut linker).map_err(link)?;
        host::Host_::add_to_linker::<_, crate::caps::CapsOf<HostState>>(&mut linker, |state| {
            crate::caps::Caps(state)
        })
        .map_err(link)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                calls: Mutex::new(HashMap::new()),
                quotas: quota::Quotas::default(),
                shares: share::Shares::new(shares, pool),
                pool: pool::CallPool::new(call_threads).map_err(RuntimeError::Pool)?,
                compiler: config.compiler,
                engine,
                linker,
                store,
                cache: cache::ArtifactCache::new(config.cache_dir),
                compiled: Mutex::new(HashMap::new()),
                http_limits: config.http,
                context: Arc::default(),
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Call counters: (tenant, plugin, outcome) → totals. Outcomes: `ok`,
    /// `guest`, `trap`, `out_of_fuel`, `deadline`, `out_of_memory`,
    /// `capability_denied`, `invalid_output`, `wrong_kind`, `unavailable`.
    pub fn call_counters(&self) -> Vec<(TenantId, String, &'static str, CallCounter)> {
        let calls = self
            .inner
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        calls
            .iter()
            .map(|((t, p, o), c)| (t.clone(), p.clone(), *o, c.clone()))
            .collect()
    }

    /// Every tenant's assets and people: what guardrails check and the
    /// `context` capability answers from. Set a tenant's with
    /// [`Directory::set_assets`](crate::context::Directory::set_assets).
    pub fn context(&self) -> &Arc<crate::context::Directory> {
        &self.inner.context
    }

    /// Sets a tenant's quota on fuel per minute and memory per call (the
    /// default quota clears it). Applies to calls that start afterwards.
    pub fn set_quota(&self, tenant: &TenantId, quota: crate::tenant::TenantQuota) {
        self.inner.quotas.set(tenant, quota);
    }

    /// The host store.
    pub fn store(&self) -> &Arc<dyn HostStore> {
        &self.inner.store
    }

    /// Reads a manifest file and the component it names (relative to the
    /// manifest's directory), then [`Runtime::load`]s it.
    pub async fn load_file(
        &self,
        tenant: &TenantId,
        grants: &Grants,
        manifest_path: &Path,
    ) -> Result<Plugin, LoadError> {
        let text = String::from_utf8_lossy(&read_regular_file(manifest_path, MAX_MANIFEST_BYTES)?)
            .into_owned();
        let manifest = crate::manifest::parse(&manifest_path.display().to_string(), &text)?;
        let Some(relative) = &manifest.component_path else {
            return Err(LoadError::NoComponentPath(manifest.name.clone()));
        };
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        let wasm = read_regular_file(
            &base.join(relative),
            self.inner.engine.config().compile.max_component_bytes,
        )?;
        self.load(tenant, grants, manifest, &wasm).await
    }

    /// Checks `wasm` against `manifest` and the tenant's `grants`, compiles
    /// (or loads from cache) and prepares it.
    pub async fn load(
        &self,
        tenant: &TenantId,
        grants: &Grants,
        manifest: LockedManifest,
        wasm: &[u8],
    ) -> Result<Plugin, LoadError> {
        let actual = sha256_hex(wasm);
        if actual != manifest.sha256 {
            return Err(LoadError::DigestMismatch {
                expected: manifest.sha256.clone(),
                actual,
            });
        }
        match inspect::shape(wasm) {
            inspect::WasmShape::Component => {}
            inspect::WasmShape::CoreModule => return Err(LoadError::NotAComponent),
            inspect::WasmShape::NotWasm => return Err(LoadError::NotWasm),
        }
        // Refuse what the grant does not allow before spending a compile.
        let grant = grants.for_plugin(&manifest.name).clone();
        let missing: Vec<Capability> = manifest
            .capabilities
            .iter()
            .copied()
            .filter(|cap| !grant.capabilities.contains(cap))
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::NotGranted {
                tenant: tenant.clone(),
                plugin: manifest.name.clone(),
                missing,
            });
        }
        bounds::check(wasm, &self.inner.engine.config().compile).map_err(|err| match err {
            bounds::BoundsError::Malformed(parse) => {
                LoadError::Compile(format!("component does not parse: {parse}"))
            }
            heavy => LoadError::TooHeavy(heavy),
        })?;
        let (component, source) = self.compile(tenant, &actual, wasm.to_vec()).await?;
        let engine = self.inner.engine.wasmtime();
        let (imports, exports) = inspect::names(engine, &component);

        let foreign: Vec<String> =
            inspect::rampart_versions(imports.iter().chain(&exports).map(String::as_str))
                .into_iter()
                .filter(|version| {
                    semver::Version::parse(version)
                        .map_or(true, |parsed| !crate::manifest::wit_compatible(&parsed))
                })
                .collect();
        if !foreign.is_empty() {
            return Err(LoadError::WitVersion {
                found: foreign.join(", "),
                speaks: crate::WIT_VERSION,
            });
        }

        for import in &imports {
            if let Some(capability) = Capability::for_import(import)
                && !manifest.capabilities.contains(&capability)
            {
                return Err(LoadError::UndeclaredImport {
                    import: import.clone(),
                    capability,
                });
            }
        }

        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|err| LoadError::UnknownImport(format!("{err:#}")))?;
        let wrong_world = |err: wasmtime::Error| LoadError::WrongWorld {
            kind: manifest.kind,
            detail: format!("{err:#}"),
        };
        let kind_pre = match manifest.kind {
            PluginKind::Enricher => {
                KindPre::Enricher(enricher::EnricherPre::new(pre).map_err(wrong_world)?)
            }
            PluginKind::Scorer => {
                KindPre::Scorer(scorer::ScorerPre::new(pre).map_err(wrong_world)?)
            }
            PluginKind::Responder => {
                KindPre::Responder(responder::ResponderPre::new(pre).map_err(wrong_world)?)
            }
            PluginKind::Hunt => KindPre::Hunt(hunt::HuntPre::new(pre).map_err(wrong_world)?),
        };

        let ceilings = grant
            .limits
            .map_or(self.inner.engine.ceilings(), |granted| {
                granted.min(self.inner.engine.ceilings())
            });
        let limits = manifest.limits.min(ceilings);
        let versions =
            inspect::rampart_versions(imports.iter().chain(&exports).map(String::as_str));
        let inspection = inspect::Inspection {
            sha256: actual.clone(),
            size: wasm.len(),
            kind: inspect::kind_of(exports.iter().map(String::as_str)),
            wit_package: versions
                .first()
                .map(|version| format!("rampart:plugin@{version}")),
            imports,
            exports,
        };
        tracing::info!(tenant = %tenant, plugin = %manifest.name, digest = %actual, ?source, "plugin loaded");
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                runtime: self.inner.clone(),
                identity: Arc::new(PluginIdentity {
                    tenant: tenant.clone(),
                    name: manifest.name.clone(),
                    http: HttpPolicy::new(
                        &grant.http_hosts,
                        &grant.allow_private,
                        self.inner.http_limits,
                    )
                    .with_connection_caps(
                        self.inner.shares.tenant(tenant).connections.clone(),
                        self.inner.shares.config().call_connections,
                    ),
                    redactor: redact::Redactor::new(&grant.secrets),
                    grant,
                    store: self.inner.store.clone(),
                    context: self.inner.context.clone(),
                }),
                manifest,
                limits,
                pre: kind_pre,
                source,
                inspection,
            }),
        })
    }

    async fn compile(
        &self,
        tenant: &TenantId,
        digest: &str,
        wasm: Vec<u8>,
    ) -> Result<(Component, ArtifactSource), LoadError> {
        if let Ok(compiled) = self.inner.compiled.lock()
            && let Some(component) = compiled.get(digest)
        {
            return Ok((component.clone(), ArtifactSource::Memory));
        }
        // Compiling is CPU-bound (tens of ms to seconds): keep it off the
        // async workers, at most one per tenant (so one tenant's heavy
        // upload never holds another's), and give up on a long queue.
        let slots = self
            .inner
            .shares
            .compile_slot(tenant, COMPILE_QUEUE_WAIT)
            .await
            .map_err(|err| LoadError::CompileBusy(err.to_string()))?;
        let inner = self.inner.clone();
        let key = digest.to_owned();
        let (component, source) = tokio::task::spawn_blocking(move || {
            // The slots are released when the compile ends, whoever waits.
            let _slots = slots;
            let engine = inner.engine.wasmtime();
            inner
                .cache
                .load_or_compile(engine, &key, &wasm, |wasm| match &inner.compiler {
                    Some(process) => {
                        compiler::compile(process, engine, &inner.engine.worker_args(), wasm)
                            .map_err(LoadError::Compiler)
                    }
                    None => Component::new(engine, wasm)
                        .map_err(|err| LoadError::Compile(format!("{err:#}"))),
                })
        })
        .await
        .map_err(|err| LoadError::Compile(err.to_string()))??;
        if let Ok(mut compiled) = self.inner.compiled.lock() {
            compiled.insert(digest.to_owned(), component.clone());
        }
        Ok((component, source))
    }
}

enum KindPre {
    Enricher(enricher::EnricherPre<HostState>),
    Scorer(scorer::ScorerPre<HostState>),
    Responder(responder::ResponderPre<HostState>),
    Hunt(hunt::HuntPre<HostState>),
}

struct PluginInner {
    runtime: Arc<RuntimeInner>,
    identity: Arc<PluginIdentity>,
    manifest: LockedManifest,
    limits: Limits,
    pre: KindPre,
    source: ArtifactSource,
    inspection: inspect::Inspection,
}

/// A loaded, verified plugin. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.manifest.name)
            .field("tenant", &self.inner.identity.tenant)
            .field("sha256", &self.inner.manifest.sha256)
            .finish()
    }
}

/// A call in progress: its store and when it started.
struct Sandbox {
    store: Store<HostState>,
    started: Instant,
    fuel_budget: u64,
    limits: Limits,
    /// The fuel budget is what was left of the tenant's minute.
    fuel_cut_by_quota: bool,
    /// The tenant's and the pool's slot; declared after `store` so that
    /// the instance is back in the pool before the slot is.
    _slot: share::SlotPermit,
}

impl Plugin {
    /// The locked manifest.
    pub fn manifest(&self) -> &LockedManifest {
        &self.inner.manifest
    }

    /// The effective limits of each call.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The tenant that loaded it.
    pub fn tenant(&self) -> &TenantId {
        &self.inner.identity.tenant
    }

    /// What the component imports and exports, as found at load (no
    /// recompilation).
    pub fn inspection(&self) -> &inspect::Inspection {
        &self.inner.inspection
    }

    /// Where the compiled artifact came from at load.
    pub fn artifact_source(&self) -> ArtifactSource {
        self.inner.source
    }

    fn wrong_kind(&self, call: &'static str) -> PluginError {
        PluginError::WrongKind {
            plugin: self.inner.manifest.name.clone(),
            kind: self.inner.manifest.kind,
            call,
        }
    }
}

/// Reads a wasm file and reports what it is (no manifest needed).
pub fn inspect(engine: &Engine, wasm: &[u8]) -> Result<inspect::Inspection, LoadError> {
    match inspect::shape(wasm) {
        inspect::WasmShape::Component => {}
        inspect::WasmShape::CoreModule => return Err(LoadError::NotAComponent),
        inspect::WasmShape::NotWasm => return Err(LoadError::NotWasm),
    }
    let component = Component::new(engine.wasmtime(), wasm)
        .map_err(|err| LoadError::Compile(format!("{err:#}")))?;
    let (imports, exports) = inspect::names(engine.wasmtime(), &component);
    let versions = inspect::rampart_versions(imports.iter().chain(&exports).map(String::as_str));
    Ok(inspect::Inspection {
        sha256: sha256_hex(wasm),
        size: wasm.len(),
        kind: inspect::kind_of(exports.iter().map(String::as_str)),
        wit_package: versions
            .first()
            .map(|version| format!("rampart:plugin@{version}")),
        imports,
        exports,
    })
}

/// How long a call may run at most, for callers that wait on one.
pub fn max_call_time(plugin: &Plugin) -> Duration {
    plugin.limits().timeout
}
