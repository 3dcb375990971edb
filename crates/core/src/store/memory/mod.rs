//! An in-memory [`Backend`]: for tests, `rampart plugin call` and embedding.

mod space;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{Backend, Keyspace, KvNamespace, Store, StoreError};
use crate::model::{EntityMemory, IndicatorMatch};

#[derive(Default)]
struct Namespace {
    entries: BTreeMap<String, Vec<u8>>,
    bytes: u64,
}

impl Namespace {
    fn size_after(&self, key: &str, value: Option<&[u8]>) -> u64 {
        let old = self
            .entries
            .get(key)
            .map_or(0, |old| (key.len() + old.len()) as u64);
        let new = value.map_or(0, |value| (key.len() + value.len()) as u64);
        self.bytes - old + new
    }

    fn put(&mut self, key: &str, value: Option<&[u8]>) {
        self.bytes = self.size_after(key, value);
        match value {
            Some(value) => {
                self.entries.insert(key.to_owned(), value.to_vec());
            }
            None => {
                self.entries.remove(key);
            }
        }
    }
}

/// Keeps everything in process memory; lost on exit.
pub struct MemoryStore {
    kv: Mutex<HashMap<KvNamespace, Namespace>>,
    /// By [`crate::store::entity_key`].
    memory: Mutex<HashMap<Vec<u8>, EntityMemory>>,
    /// By [`crate::store::entity_key`].
    intel: Mutex<HashMap<Vec<u8>, Vec<IndicatorMatch>>>,
    space: Keyspace,
    feeds: crate::store::feeds::PersistentIntel,
}

impl Default for MemoryStore {
    fn default() -> Self {
        let space = space::MemorySpace::default();
        let feeds = crate::store::feeds::PersistentIntel::from_trees(
            space.tree("intel-feeds"),
            space.tree("intel-subscriptions"),
        );
        MemoryStore {
            kv: Mutex::default(),
            memory: Mutex::default(),
            intel: Mutex::default(),
            space: Keyspace::new(std::sync::Arc::new(space)),
            feeds,
        }
    }
}

impl MemoryStore {
    /// Shared feeds (import with [`crate::store::feeds::PersistentIntel::import`]).
    pub fn feeds(&self) -> &crate::store::feeds::PersistentIntel {
        &self.feeds
    }

    /// The keyspace the engine's other state lives in.
    pub fn space(&self) -> &Keyspace {
        &self.space
    }
}

impl Backend for MemoryStore {
    fn space(&self) -> &Keyspace {
        &self.space
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated in
    // a way that matters more than losing the store, so keep going.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Store for MemoryStore {
    fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.kv)
            .get(ns)
            .and_then(|space| space.entries.get(key).cloned()))
    }

    fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StoreError> {
        let mut kv = lock(&self.kv);
        let space = kv.entry(ns.clone()).or_default();
        if space.size_after(key, Some(value)) > quota {
            return Err(StoreError::QuotaExceeded { quota });
        }
        space.put(key, Some(value));
        Ok(())
    }

    fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, StoreError> {
        let mut kv = lock(&self.kv);
        let Some(space) = kv.get_mut(ns) else {
            return Ok(false);
        };
        let existed = space.entries.contains_key(key);
        space.put(key, None);
        Ok(existed)
    }

    fn kv_list(
        &self,
        ns: &KvNamespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let kv = lock(&self.kv);
        let Some(space) = kv.get(ns) else {
            return Ok(Vec::new());
        };
        Ok(space
            .entries
            .range(prefix.to_owned()..)
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .filter(|key| after.is_none_or(|after| key.as_str() > after))
            .take(limit)
            .cloned()
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
        let mut kv = lock(&self.kv);
        let space = kv.entry(ns.clone()).or_default();
        if space.entries.get(key).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        if new.is_some() && space.size_after(key, new) > quota {
            return Err(StoreError::QuotaExceeded { quota });
        }
        space.put(key, new);
        Ok(true)
    }

    fn kv_usage(&self, ns: &KvNamespace) -> Result<u64, StoreError> {
        Ok(lock(&self.kv).get(ns).map_or(0, |space| space.bytes))
    }

    fn memory_get(&self, key: &[u8]) -> Result<EntityMemory, StoreError> {
        Ok(lock(&self.memory).get(key).cloned().unwrap_or_default())
    }

    fn memory_update(
        &self,
        key: &[u8],
        edit: &dyn Fn(&mut EntityMemory),
    ) -> Result<(), StoreError> {
        edit(lock(&self.memory).entry(key.to_vec()).or_default());
        Ok(())
    }

    fn intel_own(&self, key: &[u8]) -> Result<Vec<IndicatorMatch>, StoreError> {
        Ok(lock(&self.intel).get(key).cloned().unwrap_or_default())
    }

    fn intel_update(
        &self,
        key: &[u8],
        change: &dyn Fn(Vec<IndicatorMatch>) -> Vec<IndicatorMatch>,
    ) -> Result<(), StoreError> {
        let mut intel = lock(&self.intel);
        let list = intel.remove(key).unwrap_or_default();
        intel.insert(key.to_vec(), change(list));
        Ok(())
    }

    fn intel_feeds(&self) -> &crate::store::feeds::PersistentIntel {
        &self.feeds
    }
}
