//! # rampart-postgres
//!
//! Rampart's shared storage backend: the storage seam of `rampart-core`
//! (the [`Keyspace`] and plugin state, [`Store`]) on one PostgreSQL
//! database, so that state outlives a machine and several processes can
//! read it.
//!
//! Schema (applied at [`PgStore::connect`], in order, each migration once,
//! under an advisory lock so nodes starting together do not race):
//! `rampart_entries (tree, key, value)` holds every tree of the keyspace
//! (primary key `(tree, key)`, so a range scan is an index scan in the
//! byte order of `key`), `rampart_trees` their names, `rampart_ids` the
//! sequence behind `generate_id`, `rampart_migrations` what was applied.
//!
//! Plugin kv and its quota are one transaction with the namespace's usage
//! row locked (`SELECT … FOR UPDATE`), so concurrent writers of one
//! namespace can neither lose an update nor pass the quota together;
//! entity memory and a tenant's own intel are compare-and-swap loops over
//! their trees.
//!
//! Durability follows the keyspace's contract, not a commit per statement:
//! the pool's sessions commit with `synchronous_commit = off` (a write is
//! visible to every reader at once, and on disk within PostgreSQL's WAL
//! writer delay), and `flush` is one commit with `synchronous_commit = on`,
//! which returns once the WAL is on disk up to it — and so every commit
//! before it, of any session. The engine's group commit then shares one
//! WAL flush among the alerts it acknowledges together, as it shares one
//! fsync on sled.
//!
//! Why synchronous, over a pool of blocking clients: the seam is
//! synchronous (sled and memory never block), and the engine calls it
//! from async tasks and from inside plugins' host calls. Each call here
//! runs in [`tokio::task::block_in_place`] when it is on a multi-thread
//! runtime's worker, which hands the worker's other tasks to another
//! thread first: a slow query delays only its own task, never a worker's
//! queue.

#![deny(missing_docs)]

mod space;

use postgres::types::Type;
use rampart_core::model::{EntityMemory, IndicatorMatch};
use rampart_core::store::kept::{JsonTrees, kv_key, kv_prefix, read_usage};
use rampart_core::store::{Backend, Keyspace, KvNamespace, Store, StoreError};

type Connections = r2d2::Pool<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>;

/// The connection pool, shared by the store and its trees. Closing a
/// client blocks on the network, which a thread driving async tasks may
/// not do: the last handle closes the pool on a thread of its own.
#[derive(Clone)]
pub(crate) struct Pool(std::sync::Arc<PoolHandle>);

pub(crate) struct PoolHandle(Option<Connections>);

impl Pool {
    fn get(
        &self,
    ) -> Result<
        r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>,
        r2d2::Error,
    > {
        match &self.0.0 {
            Some(connections) => connections.get(),
            // Only `Drop` takes the pool out.
            None => unreachable!("the pool is taken only when its last handle drops"),
        }
    }
}

impl Drop for PoolHandle {
    fn drop(&mut self) {
        if let Some(connections) = self.0.take() {
            std::thread::spawn(move || drop(connections));
        }
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {0}")]
    InvalidUrl(#[source] postgres::Error),
    /// No connection could be made.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] r2d2::Error),
    /// A migration failed.
    #[error("cannot apply the schema (migration {version}): {source}")]
    Migrate {
        /// The migration that failed.
        version: i32,
        /// What PostgreSQL said.
        #[source]
        source: postgres::Error,
    },
    /// Opening a tree failed.
    #[error(transparent)]
    Space(#[from] rampart_core::store::SpaceError),
    /// Another server holds the database ([`PgStore::claim`]).
    #[error(
        "the PostgreSQL database is in use by another rampart server (it holds the server lock): \
         servers share a database only as nodes of a cluster, all with the same shared queue \
         (--queue nats://…); stop that server, give this one another database, or run both as nodes"
    )]
    InUse,
    /// The server lock could not be asked for.
    #[error("cannot take the server lock: {0}")]
    Lock(#[source] postgres::Error),
    /// [`create_database`] was given a name that is not a plain identifier.
    #[error("database name `{0}` must be 1-63 of a-z, 0-9 and _")]
    InvalidDatabaseName(String),
    /// [`create_database`] failed.
    #[error("cannot create database `{name}`: {source}")]
    CreateDatabase {
        /// The database.
        name: String,
        /// What PostgreSQL said.
        #[source]
        source: postgres::Error,
    },
}

/// `url` with its database replaced by `name` (a query string is kept).
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let server = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((host, _)) => format!("{scheme}://{host}"),
            None => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if query.is_empty() {
        format!("{server}/{name}")
    } else {
        format!("{server}/{name}?{query}")
    }
}

/// Creates database `name` on the server `url` names (connecting to
/// `url`'s own database) and returns the new database's URL: a fresh
/// database per test run or benchmark.
pub fn create_database(url: &str, name: &str) -> Result<String, OpenError> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(OpenError::InvalidDatabaseName(name.to_owned()));
    }
    let config: postgres::Config = url.parse().map_err(OpenError::InvalidUrl)?;
    let failed = |source| OpenError::CreateDatabase {
        name: name.to_owned(),
        source,
    };
    off_worker(|| {
        let mut client = config.connect(postgres::NoTls).map_err(failed)?;
        let created = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(failed);
        // Closing blocks: not on a thread that drives tasks.
        std::thread::spawn(move || drop(client));
        created
    })?;
    Ok(database_url(url, name))
}

/// The schema, one migration per entry: never edit one that has shipped,
/// add the next.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE rampart_trees (name text PRIMARY KEY);
     CREATE TABLE rampart_entries (
         tree text NOT NULL,
         key bytea NOT NULL,
         value bytea NOT NULL,
         PRIMARY KEY (tree, key)
     );
     CREATE SEQUENCE rampart_ids;",
    ),
    (
        2,
        "CREATE TABLE rampart_flushes (id integer PRIMARY KEY, n bigint NOT NULL);
     INSERT INTO rampart_flushes VALUES (1, 0);",
    ),
];

/// Any number, the same in every node: the lock migrations are applied
/// under.
const MIGRATION_LOCK: i64 = 0x7261_6d70_6172_7401;

/// Runs `work`, which blocks on the network, without stalling an async
/// worker: on a multi-thread runtime's worker (or its `block_on` thread)
/// in `block_in_place`; on a current-thread runtime, where that is not
/// allowed, on a scoped thread; elsewhere directly.
pub(crate) fn off_worker<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(work).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
        Err(_) => work(),
    }
}

/// The advisory lock a server holds on its database for as long as it
/// runs ([`PgStore::claim`]).
const SERVER_LOCK: i64 = 0x7261_6d70_6172_7402;

/// A database claimed by one server: released when dropped (or when the
/// process dies and its connection closes).
pub struct ServerLock(Option<postgres::Client>);

impl std::fmt::Debug for ServerLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerLock").finish_non_exhaustive()
    }
}

impl Drop for ServerLock {
    fn drop(&mut self) {
        // Closing a client blocks: not on a thread that drives tasks.
        if let Some(client) = self.0.take() {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// A PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    config: postgres::Config,
    pool: Pool,
    space: Keyspace,
    trees: JsonTrees,
    feeds: rampart_core::store::feeds::PersistentIntel,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// The first key after every key that starts with `prefix` (`None`: there
/// is none, the prefix is all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn migrate(client: &mut postgres::Client) -> Result<(), OpenError> {
    let failed = |version: i32| move |source| OpenError::Migrate { version, source };
    let mut transaction = client.transaction().map_err(failed(0))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(failed(0))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS rampart_migrations (
                 version integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(failed(0))?;
    let applied: i32 = transaction
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM rampart_migrations",
            &[],
        )
        .map_err(failed(0))?
        .get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        transaction.batch_execute(sql).map_err(failed(*version))?;
        transaction
            .execute(
                "INSERT INTO rampart_migrations (version) VALUES ($1)",
                &[version],
            )
            .map_err(failed(*version))?;
    }
    transaction.commit().map_err(failed(0))
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`), applies
    /// the migrations it has not seen and opens the keyspace. `connections`
    /// bounds the pool.
    pub fn connect(url: &str, connections: u32) -> Result<Self, OpenError> {
        let config: postgres::Config = url.parse().map_err(OpenError::InvalidUrl)?;
        let mut pooled = config.clone();
        pooled.options("-c synchronous_commit=off");
        let manager = r2d2_postgres::PostgresConnectionManager::new(pooled, postgres::NoTls);
        let pool = off_worker(|| {
            r2d2::Pool::builder()
                .max_size(connections.max(1))
                .min_idle(Some(1))
                .connection_timeout(std::time::Duration::from_secs(10))
                // No test query per checkout (a round trip per operation): a
                // connection that broke fails its next operation and is
                // dropped by the pool.
                .test_on_check_out(false)
                .build(manager)
        })
        .map_err(OpenError::Connect)?;
        let pool = Pool(std::sync::Arc::new(PoolHandle(Some(pool))));
        off_worker(|| {
            let mut client = pool.get().map_err(OpenError::Connect)?;
            migrate(&mut client)
        })?;
        let space = Keyspace::new(std::sync::Arc::new(space::PgSpace { pool: pool.clone() }));
        Ok(PgStore {
            config,
            trees: JsonTrees::open(&space)?,
            feeds: rampart_core::store::feeds::PersistentIntel::open(&space)?,
            space,
            pool,
        })
    }

    /// The keyspace the engine's other state lives in.
    pub fn space(&self) -> &Keyspace {
        &self.space
    }

    /// Claims the database for one server, on a connection of its own
    /// held until the lock is dropped: a second server on the same database
    /// is refused ([`OpenError::InUse`]) rather than left to run hunts and
    /// timers twice and to serve from caches the first one does not see.
    /// Nodes of a cluster (sharing a work queue) claim it together instead:
    /// see [`PgStore::claim_as_node`].
    pub fn claim(&self) -> Result<ServerLock, OpenError> {
        self.claim_with("SELECT pg_try_advisory_lock($1)")
    }

    /// Claims the database for one node of a cluster: any number of nodes
    /// hold it together (they share the work queue, take leases for what
    /// runs once and refresh their caches from the store), and a server of
    /// its own ([`PgStore::claim`]) is refused while they do — as they are
    /// while it runs.
    pub fn claim_as_node(&self) -> Result<ServerLock, OpenError> {
        self.claim_with("SELECT pg_try_advisory_lock_shared($1)")
    }

    fn claim_with(&self, statement: &'static str) -> Result<ServerLock, OpenError> {
        let config = self.config.clone();
        off_worker(move || {
            let mut client = config.connect(postgres::NoTls).map_err(OpenError::Lock)?;
            let held: bool = client
                .query_one(statement, &[&SERVER_LOCK])
                .map_err(OpenError::Lock)?
                .get(0);
            let lock = ServerLock(Some(client));
            if held {
                Ok(lock)
            } else {
                Err(OpenError::InUse)
            }
        })
    }

    /// The schema version this database is at.
    pub fn schema_version(&self) -> Result<i32, StoreError> {
        self.with_client(|client| {
            Ok(client
                .query_one(
                    "SELECT COALESCE(max(version), 0) FROM rampart_migrations",
                    &[],
                )?
                .get(0))
        })
    }

    fn with_client<T: Send>(
        &self,
        work: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_worker(|| {
            let mut client = self.pool.get().map_err(backend)?;
            work(&mut client).map_err(backend)
        })
    }

    /// One kv write and its usage in one transaction, the namespace's usage
    /// row locked: `expected` (when given) must match the current value.
    fn write_kv(
        &self,
        ns: &KvNamespace,
        key: &str,
        expected: Option<Option<&[u8]>>,
        new: Option<&[u8]>,
        quota: u64,
    ) -> Result<bool, StoreError> {
        let full = kv_key(ns, key);
        let usage_key = kv_prefix(ns);
        let zero = 0u64.to_be_bytes().to_vec();
        self.with_client(|client| {
            let mut transaction = client.transaction()?;
            transaction.execute_typed(
                "INSERT INTO rampart_entries (tree, key, value) VALUES ('kv-usage', $1, $2) \
                 ON CONFLICT DO NOTHING",
                &[(&usage_key, Type::BYTEA), (&zero, Type::BYTEA)],
            )?;
            let used: Vec<u8> = transaction
                .query_typed_one(
                    "SELECT value FROM rampart_entries WHERE tree = 'kv-usage' AND key = $1 \
                     FOR UPDATE",
                    &[(&usage_key, Type::BYTEA)],
                )?
                .get(0);
            let current: Option<Vec<u8>> = transaction
                .query_typed_opt(
                    "SELECT value FROM rampart_entries WHERE tree = 'kv' AND key = $1",
                    &[(&full, Type::BYTEA)],
                )?
                .map(|row| row.get(0));
            if let Some(expected) = expected
                && current.as_deref() != expected
            {
                return Ok(Ok(false));
            }
            let used = read_usage(Some(&used));
            let old = current.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
            let added = new.map_or(0, |v| (key.len() + v.len()) as u64);
            let after = used - old.min(used) + added;
            if new.is_some() && after > quota {
                return Ok(Err(StoreError::QuotaExceeded { quota }));
            }
            match new {
                Some(value) => transaction.execute_typed(
                    "INSERT INTO rampart_entries (tree, key, value) VALUES ('kv', $1, $2) \
                     ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
                    &[(&full, Type::BYTEA), (&value, Type::BYTEA)],
                )?,
                None => transaction.execute_typed(
                    "DELETE FROM rampart_entries WHERE tree = 'kv' AND key = $1",
                    &[(&full, Type::BYTEA)],
                )?,
            };
            transaction.execute_typed(
                "UPDATE rampart_entries SET value = $2 WHERE tree = 'kv-usage' AND key = $1",
                &[
                    (&usage_key, Type::BYTEA),
                    (&after.to_be_bytes().to_vec(), Type::BYTEA),
                ],
            )?;
            transaction.commit()?;
            Ok(Ok(true))
        })?
    }
}

impl Backend for PgStore {
    fn space(&self) -> &Keyspace {
        &self.space
    }
}

impl Store for PgStore {
    fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let full = kv_key(ns, key);
        self.with_client(|client| {
            Ok(client
                .query_typed_opt(
                    "SELECT value FROM rampart_entries WHERE tree = 'kv' AND key = $1",
                    &[(&full, Type::BYTEA)],
                )?
                .map(|row| row.get(0)))
        })
    }

    fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StoreError> {
        self.write_kv(ns, key, None, Some(value), quota).map(|_| ())
    }

    fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, StoreError> {
        let existed = self.kv_get(ns, key)?.is_some();
        if existed {
            self.write_kv(ns, key, None, None, u64::MAX)?;
        }
        Ok(existed)
    }

    fn kv_list(
        &self,
        ns: &KvNamespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let base = kv_prefix(ns);
        let start = kv_key(ns, prefix);
        let end = prefix_end(&start);
        // Keys after `after` (exclusive) or from the prefix on.
        let from = match after {
            Some(after) if kv_key(ns, after) >= start => kv_key(ns, after),
            _ => Vec::new(),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with_client(|client| {
            client.query_typed(
                "SELECT key FROM rampart_entries WHERE tree = 'kv' AND key >= $1 \
                 AND ($2::bytea IS NULL OR key < $2) AND key > $3 ORDER BY key LIMIT $4",
                &[
                    (&start, Type::BYTEA),
                    (&end, Type::BYTEA),
                    (&from, Type::BYTEA),
                    (&limit, Type::INT8),
                ],
            )
        })?;
        Ok(rows
            .iter()
            .map(|row| {
                let key: Vec<u8> = row.get(0);
                String::from_utf8_lossy(&key[base.len().min(key.len())..]).into_owned()
            })
            .collect())
    }

    fn kv_compare_and_swap(
        &self,
        ns: &KvNamespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: u64,
    ) -> Result<bool, StoreError> {
        self.write_kv(ns, key, Some(expected), new, quota)
    }

    fn kv_usage(&self, ns: &KvNamespace) -> Result<u64, StoreError> {
        let usage_key = kv_prefix(ns);
        let used: Option<Vec<u8>> = self.with_client(|client| {
            Ok(client
                .query_typed_opt(
                    "SELECT value FROM rampart_entries WHERE tree = 'kv-usage' AND key = $1",
                    &[(&usage_key, Type::BYTEA)],
                )?
                .map(|row| row.get(0)))
        })?;
        Ok(read_usage(used.as_deref()))
    }

    fn memory_get(&self, key: &[u8]) -> Result<EntityMemory, StoreError> {
        self.trees.memory_get(key)
    }

    fn memory_update(
        &self,
        key: &[u8],
        edit: &dyn Fn(&mut EntityMemory),
    ) -> Result<(), StoreError> {
        self.trees.memory_update(key, edit)
    }

    fn intel_own(&self, key: &[u8]) -> Result<Vec<IndicatorMatch>, StoreError> {
        self.trees.intel_own(key)
    }

    fn intel_update(
        &self,
        key: &[u8],
        change: &dyn Fn(Vec<IndicatorMatch>) -> Vec<IndicatorMatch>,
    ) -> Result<(), StoreError> {
        self.trees.intel_update(key, change)
    }

    fn intel_feeds(&self) -> &rampart_core::store::feeds::PersistentIntel {
        &self.feeds
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_database_name_must_be_an_identifier() {
        assert!(matches!(
            super::create_database("postgres://h/db", "x; DROP"),
            Err(super::OpenError::InvalidDatabaseName(_))
        ));
    }

    #[test]
    fn a_database_url_keeps_the_server_and_the_query() {
        use super::database_url;
        assert_eq!(
            database_url("postgres://u:p@h:5/postgres", "t1"),
            "postgres://u:p@h:5/t1"
        );
        assert_eq!(database_url("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(
            database_url("postgresql://h/db?sslmode=disable", "t1"),
            "postgresql://h/t1?sslmode=disable"
        );
    }

    #[test]
    fn the_end_of_a_prefix_is_the_next_key_after_all_it_starts() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
