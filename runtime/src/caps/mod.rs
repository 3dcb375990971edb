//! The host capabilities, one module each. A capability reaches the call it
//! serves only through a view (after wasmtime-wasi's `WasiView`):
//! [`CallView`] says who calls and meters host work; a capability with state
//! of its own adds a view trait in its module (`kv::KvView`). Each module
//! implements its generated `Host` trait for every type with its view, so
//! the sandbox links them all through one getter and implements the views on
//! its per-call state: adding a capability is one file here plus one `impl`
//! line in `sandbox/state.rs`, and nothing here imports the sandbox.
//! `http` installs the outbound-request policy for `wasi:http`, and `wasi`
//! builds the deny-everything WASI context.

pub mod config;
pub mod context;
pub mod http;
pub mod intel;
pub mod kv;
pub mod log;
pub mod memory;
pub mod wasi;

use crate::bindings::types;
use crate::store::Store;
use crate::tenant::{PluginGrant, TenantId};

/// What every capability sees of the call it serves. The identity is the
/// host's record of the loaded plugin, never the guest's word.
pub trait CallView {
    /// The calling plugin's tenant.
    fn tenant(&self) -> &TenantId;
    /// The calling plugin's name.
    fn plugin_name(&self) -> &str;
    /// What the tenant granted the plugin (settings, secrets, limits).
    fn grant(&self) -> &PluginGrant;
    /// Where the tenant's entity memory and intel index live.
    fn store(&self) -> &dyn Store;
    /// The tenants' assets and people.
    fn directory(&self) -> &crate::context::Directory;
    /// `text` with the grant's secret values scrubbed.
    fn redact(&self, text: &str) -> String;
    /// Books `bytes` of host work against the call (charged as fuel when
    /// the host call returns).
    fn charge_bytes(&mut self, bytes: usize);
    /// The call's log budget (plugin lines and host warnings share it).
    fn log_budget(&mut self) -> &mut log::LogBudget;
    /// A host warning about this call, counted against its log budget.
    fn host_warn(&mut self, message: &str)
    where
        Self: Sized,
    {
        log::host_warn(self, message);
    }
}

/// What the sandbox links: its per-call state seen through the views. (A
/// wrapper, not a blanket impl on the state: `bindgen!` already implements
/// each `Host` for `&mut T`.)
pub struct Caps<'a, T>(pub &'a mut T);

/// [`Caps`] as wasmtime's `HasData`: `add_to_linker::<_, CapsOf<State>>`
/// hands each host call `Caps(&mut state)`.
pub struct CapsOf<T>(std::marker::PhantomData<T>);

impl<T: 'static> wasmtime::component::HasData for CapsOf<T> {
    type Data<'a> = Caps<'a, T>;
}

impl<T: CallView> types::Host for Caps<'_, T> {}
