//! # rampart-sled
//!
//! The embedded default backend of Rampart's storage seam
//! (`rampart_core::store`): one sled directory. The only crate that names
//! `sled::`.
//!
//! Trees: `kv` (key = tenant \0 plugin \0 key), `kv-usage` (tenant \0
//! plugin → bytes, kept in the same transaction as every kv write, so the
//! quota cannot drift), `memory` and `intel` (tenant \0 kind \0 value →
//! JSON). Other modules open their own trees on the same database through
//! [`SledStore::db`] (audit, runs, approvals).
//!
//! Durability: sled flushes in the background; callers that must not lose a
//! write (an accepted alert, an audit record, an action intent) call
//! [`SledStore::flush`] before acknowledging it.

#![deny(missing_docs)]

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

mod space;

use rampart_core::model::{EntityMemory, IndicatorMatch};
use rampart_core::store::kept::{JsonTrees, kv_key, kv_prefix, read_usage};
use rampart_core::store::{Backend, Keyspace, KvNamespace, Store, StoreError};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory.
    #[error(
        "data directory {path} is in use by another rampart process (sled holds a lock on it); stop that process or talk to it over its API"
    )]
    InUse {
        /// The directory.
        path: String,
    },
    /// sled failed.
    #[error("cannot open data directory {path}: {message}")]
    Sled {
        /// The directory.
        path: String,
        /// What sled said.
        message: String,
    },
}

/// A sled-backed store.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    kv: sled::Tree,
    kv_usage: sled::Tree,
    trees: JsonTrees,
    feeds: rampart_core::store::feeds::PersistentIntel,
    space: Keyspace,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").finish_non_exhaustive()
    }
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn read_u64(bytes: Option<sled::IVec>) -> u64 {
    read_usage(bytes.as_deref())
}

impl SledStore {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|err| match &err {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    OpenError::InUse {
                        path: shown.clone(),
                    }
                }
                other => OpenError::Sled {
                    path: shown.clone(),
                    message: other.to_string(),
                },
            })?;
        Self::from_db(db).map_err(|err| OpenError::Sled {
            path: shown,
            message: err.to_string(),
        })
    }

    /// A store in a temporary directory that sled deletes on drop.
    pub fn temporary() -> Result<Self, OpenError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|err| OpenError::Sled {
                path: "(temporary)".to_owned(),
                message: err.to_string(),
            })?;
        Self::from_db(db).map_err(|err| OpenError::Sled {
            path: "(temporary)".to_owned(),
            message: err.to_string(),
        })
    }

    fn from_db(db: sled::Db) -> Result<Self, rampart_core::store::SpaceError> {
        let space = Keyspace::new(std::sync::Arc::new(space::SledSpace { db: db.clone() }));
        let tree = |name: &str| db.open_tree(name).map_err(space::failed);
        Ok(SledStore {
            kv: tree("kv")?,
            kv_usage: tree("kv-usage")?,
            trees: JsonTrees::open(&space)?,
            feeds: rampart_core::store::feeds::PersistentIntel::open(&space)?,
            space,
            db,
        })
    }

    /// Shared threat-intel feeds and tenants' subscriptions.
    pub fn feeds(&self) -> &rampart_core::store::feeds::PersistentIntel {
        &self.feeds
    }

    /// The keyspace the engine's other state lives in.
    pub fn space(&self) -> &Keyspace {
        &self.space
    }

    /// Waits until every write so far is on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

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
        let result = (&self.kv, &self.kv_usage).transaction(|(kv, usage)| {
            let current = kv.get(&full)?;
            if let Some(expected) = expected
                && current.as_deref() != expected
            {
                return Ok(false);
            }
            let used = read_u64(usage.get(&usage_key)?);
            let old = current.as_ref().map_or(0, |v| (key.len() + v.len()) as u64);
            let added = new.map_or(0, |v| (key.len() + v.len()) as u64);
            let after = used - old.min(used) + added;
            if new.is_some() && after > quota {
                return Err(ConflictableTransactionError::Abort(
                    StoreError::QuotaExceeded { quota },
                ));
            }
            match new {
                Some(value) => {
                    kv.insert(full.as_slice(), value)?;
                }
                None => {
                    kv.remove(full.as_slice())?;
                }
            }
            usage.insert(usage_key.as_slice(), &after.to_be_bytes())?;
            Ok(true)
        });
        match result {
            Ok(done) => Ok(done),
            Err(TransactionError::Abort(err)) => Err(err),
            Err(TransactionError::Storage(err)) => Err(backend(err)),
        }
    }
}

impl Backend for SledStore {
    fn space(&self) -> &Keyspace {
        &self.space
    }
}

impl Store for SledStore {
    fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .kv
            .get(kv_key(ns, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
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
        let existed = self.kv.contains_key(kv_key(ns, key)).map_err(backend)?;
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
        let mut out = Vec::new();
        for entry in self.kv.scan_prefix(kv_key(ns, prefix)) {
            let (key, _) = entry.map_err(backend)?;
            let name = String::from_utf8_lossy(&key[base.len()..]).into_owned();
            if after.is_some_and(|after| name.as_str() <= after) {
                continue;
            }
            out.push(name);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
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
        Ok(read_u64(self.kv_usage.get(kv_prefix(ns)).map_err(backend)?))
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
