//! End-to-end tests of the runtime with real plugin components, one module
//! per topic (after wasmtime's `tests/all`). Components come from
//! `cargo xtask plugins`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod abuseipdb;
mod audit;
mod conformance;
mod control;
mod executor;
mod harness;
mod hostile;
mod intel;
mod loading;
mod playbooks;
mod plugins;
mod responders;
mod server;
mod sigma;
mod versioning;
