//! The host capabilities, one module each. Every module implements the
//! generated `Host` trait of its WIT interface on the sandbox's per-call
//! state; `http` installs the outbound-request policy for `wasi:http`, and
//! `wasi` builds the deny-everything WASI context.

pub mod config;
pub mod context;
pub mod http;
pub mod intel;
pub mod kv;
pub mod log;
pub mod memory;
pub mod wasi;

use crate::bindings::types;
use crate::sandbox::state::HostState;

impl types::Host for HostState {}
