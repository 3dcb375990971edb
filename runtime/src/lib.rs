//! # Rampart runtime
//!
//! The host side of Rampart: it loads plugins (WebAssembly components built
//! against the `rampart:plugin` WIT contract), checks them against their
//! manifest and the tenant's grants, and runs every call in a fresh sandbox
//! with a memory cap, a fuel budget and a wall-clock deadline.
//!
//! Where things live:
//!
//! | module | what |
//! |---|---|
//! | [`engine`] | the wasmtime engine: pooling allocator, epoch ticker, ceilings |
//! | [`manifest`] | plugin manifests: parse → validate → lock |
//! | [`tenant`] | tenants and the grants they give plugins |
//! | [`sandbox`] | loading, the compiled-artifact cache, calls and their limits |
//! | [`caps`] | one module per host capability (log, kv, memory, intel, context, config, http) |
//! | [`context`] | the tenant's assets and people (JSON or CSV), for guardrails and plugins |
//! | [`store`] | what the host persists (kv, entity memory, intel) behind a trait |
//! | [`model`] | the contract's data types as host-side Rust/JSON types |
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rampart::{Runtime, RuntimeConfig, store::MemoryStore, tenant::{Grants, TenantId}};
//!
//! let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(MemoryStore::default()))?;
//! let tenant = TenantId::new("acme")?;
//! let grants = Grants::allow_all_capabilities();
//! let plugin = runtime.load_file(&tenant, &grants, "target/plugins/risk-scorer.toml".as_ref()).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod audit;
mod bindings;
pub mod caps;
pub mod cluster;
pub mod config;
pub mod context;
pub mod control;
mod convert;
#[doc(hidden)]
pub mod crashpoint;
pub mod diagnostics;
pub mod engine;
pub mod executor;
pub mod manifest;
pub mod net;
pub mod ocsf;
pub mod playbook;
pub mod sandbox;
pub mod secrets;

// The data model, tenants, intel and the storage seam live in `rampart-core`
// (no wasmtime, no sled), the sled backend in `rampart-sled`; both are
// re-exported at the paths they had before the split.
pub use rampart_core::{attack, feeds, intel, model, tenant};

/// What the host persists, behind one seam: the traits and the in-memory
/// backend (`rampart-core`) and the sled backend (`rampart-sled`). The
/// PostgreSQL backend is the crate `rampart-postgres`.
pub mod store {
    pub use rampart_core::store::*;
    pub use sled_backend::{OpenError, SledStore};
}

pub use engine::{Engine, EngineConfig};
pub use sandbox::{
    CallContext, CallStats, Called, HuntSession, LoadError, OutputItemCaps, Plugin, PluginError,
    Runtime, RuntimeConfig, ShareConfig,
};

/// The version of the `rampart:plugin` WIT package this runtime speaks.
/// Components built against any `0.1.x` load (wasmtime matches on the leftmost
/// non-zero part of the version).
pub const WIT_VERSION: &str = "0.1.0";
