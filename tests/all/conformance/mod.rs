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

/// A fresh, empty PostgreSQL database on the server `RAMPART_TEST_PG_URL`
/// names (`cargo xtask test` starts one), as a store. Fails, saying what is
/// missing, when there is no server: never skipped.
pub(crate) fn fresh_pg() -> rampart_postgres::PgStore {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let url = std::env::var("RAMPART_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "RAMPART_TEST_PG_URL is not set: the PostgreSQL conformance tests need a server. \
             `cargo xtask test` starts one (initdb from Debian's postgresql package); or set it \
             to postgres://user@host:port/db of a server you run"
        )
    });
    let name = format!(
        "rampart_t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let fresh = rampart_postgres::create_database(&url, &name)
        .unwrap_or_else(|err| panic!("PostgreSQL at RAMPART_TEST_PG_URL: {err}"));
    rampart_postgres::PgStore::connect(&fresh, 8).expect("connect to the fresh database")
}
