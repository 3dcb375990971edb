//! One conformance suite for every storage backend, run unchanged against
//! the in-memory and the sled backend. A backend added later (the
//! scale-out issue's PostgreSQL) runs the same functions:
//!
//! - `store`: plugin state (kv, entity memory, the intel index);
//! - `space`: the engine's keyspace (point ops, compare-and-swap, ordered
//!   scans from both ends, atomic batches, concurrent updates);
//! - `engine`: the executor on the backend — a run, its approval decided
//!   once under racing analysts, idempotent ingest, the audit chain.

mod engine;
mod space;
mod store;
