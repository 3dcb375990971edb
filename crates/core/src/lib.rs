//! # rampart-core
//!
//! What every part of Rampart shares and nothing of it depends on a sandbox
//! or a database: the contract's data types ([`model`]), tenants and their
//! grants ([`tenant`]), threat-intel feed formats and the in-memory index
//! ([`feeds`], [`intel`]), and the storage seam ([`store`]: the traits, the
//! ordered keyspace, the in-memory backend). Backends (`rampart-sled`) and
//! the engine (`rampart`) build on it; it builds on neither.
#![deny(missing_docs)]

pub mod attack;
pub mod feeds;
pub mod intel;
pub mod model;
pub mod queue;
pub mod store;
pub mod tenant;
