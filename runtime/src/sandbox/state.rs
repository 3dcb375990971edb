//! The per-call state inside a wasmtime `Store`: WASI (granting nothing),
//! wasi:http with our policy, the capability back-ends, and the accounting
//! that turns a trap into a precise error.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::limits::CallLimiter;
use crate::caps::CallView;
use crate::caps::http::HttpPolicy;
use crate::caps::kv::{KvAccess, KvView};
use crate::caps::log::LogBudget;
use crate::store::Store;
use crate::tenant::{PluginGrant, TenantId};

/// Who is calling: fixed for a loaded plugin, shared by its calls.
pub(crate) struct PluginIdentity {
    pub(crate) tenant: TenantId,
    pub(crate) name: String,
    pub(crate) grant: PluginGrant,
    pub(crate) store: Arc<dyn Store>,
    /// The tenants' assets and people.
    pub(crate) context: Arc<crate::context::Directory>,
    /// The HTTP rules from the grant, parsed once.
    pub(crate) http: HttpPolicy,
    /// The grant's secret values, to scrub from what the plugin returns.
    pub(crate) redactor: super::redact::Redactor,
}

/// The data of one sandbox's `Store`.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http_ctx: WasiHttpCtx,
    pub(crate) http: HttpPolicy,
    pub(crate) limiter: CallLimiter,
    pub(crate) plugin: Arc<PluginIdentity>,
    pub(crate) kv: KvAccess,
    pub(crate) log: LogBudget,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) deadline: Instant,
    pub(crate) host_calls: u64,
    pub(crate) host_fuel_exhausted: bool,
    /// Bytes of host work since the guest last entered the host (charged
    /// as fuel when the host call returns).
    pub(crate) host_bytes: u64,
    /// Random bytes WASI produced for the guest (charged the same way).
    pub(crate) random_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// The call's hold on its tenant's CPU share.
    pub(crate) cpu: super::share::CpuGate,
    /// Raised at the call's first epoch tick: the call moves to the pool.
    pub(crate) wants_pool: Arc<std::sync::atomic::AtomicBool>,
}

impl HostState {
    /// Books `bytes` of host work against the call (see `host_bytes`).
    pub(crate) fn charge_bytes(&mut self, bytes: usize) {
        self.host_bytes = self
            .host_bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
    }
}

// The capabilities' views of the call (see `caps`): one line per
// capability with state of its own.
impl CallView for HostState {
    fn tenant(&self) -> &TenantId {
        &self.plugin.tenant
    }
    fn plugin_name(&self) -> &str {
        &self.plugin.name
    }
    fn grant(&self) -> &PluginGrant {
        &self.plugin.grant
    }
    fn store(&self) -> &dyn Store {
        &*self.plugin.store
    }
    fn directory(&self) -> &crate::context::Directory {
        &self.plugin.context
    }
    fn redact(&self, text: &str) -> String {
        self.plugin.redactor.text(text)
    }
    fn charge_bytes(&mut self, bytes: usize) {
        HostState::charge_bytes(self, bytes);
    }
    fn log_budget(&mut self) -> &mut LogBudget {
        &mut self.log
    }
}

impl KvView for HostState {
    fn kv(&self) -> &KvAccess {
        &self.kv
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}
