//! What every persistent backend writes the same way: the byte layout of
//! plugin kv keys and usage counters, and entity memory and a tenant's own
//! indicators as JSON values in keyspace trees (updated by
//! compare-and-swap, so concurrent edits of one key are not lost).

use super::space::{Keyspace, SpaceError, Tree};
use super::{KvNamespace, StoreError};
use crate::model::{EntityMemory, IndicatorMatch};

/// The prefix of every kv key of `ns` (tenant \0 plugin \0), also the key
/// of its usage counter.
pub fn kv_prefix(ns: &KvNamespace) -> Vec<u8> {
    let mut key = Vec::with_capacity(ns.tenant.as_str().len() + ns.plugin.len() + 2);
    key.extend_from_slice(ns.tenant.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(ns.plugin.as_bytes());
    key.push(0);
    key
}

/// The stored key of `key` in `ns`.
pub fn kv_key(ns: &KvNamespace, key: &str) -> Vec<u8> {
    let mut full = kv_prefix(ns);
    full.extend_from_slice(key.as_bytes());
    full
}

/// A usage counter as stored (8 bytes, big-endian; absent or malformed: 0).
pub fn read_usage(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

fn backend(err: SpaceError) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// Entity memory (tree `memory`) and tenants' own indicators (tree
/// `intel`), by [`super::entity_key`].
#[derive(Clone, Debug)]
pub struct JsonTrees {
    memory: Tree,
    intel: Tree,
}

impl JsonTrees {
    /// The two trees of `space`.
    pub fn open(space: &Keyspace) -> Result<Self, SpaceError> {
        Ok(JsonTrees {
            memory: space.open_tree("memory")?,
            intel: space.open_tree("intel")?,
        })
    }

    /// [`super::Store::memory_get`].
    pub fn memory_get(&self, key: &[u8]) -> Result<EntityMemory, StoreError> {
        Ok(self
            .memory
            .get(key)
            .map_err(backend)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// [`super::Store::memory_update`].
    pub fn memory_update(
        &self,
        key: &[u8],
        edit: &dyn Fn(&mut EntityMemory),
    ) -> Result<(), StoreError> {
        self.memory
            .update_and_fetch(key, |old| {
                let mut memory: EntityMemory = old
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                edit(&mut memory);
                serde_json::to_vec(&memory).ok()
            })
            .map(|_| ())
            .map_err(backend)
    }

    /// [`super::Store::intel_own`].
    pub fn intel_own(&self, key: &[u8]) -> Result<Vec<IndicatorMatch>, StoreError> {
        Ok(self
            .intel
            .get(key)
            .map_err(backend)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// [`super::Store::intel_update`].
    pub fn intel_update(
        &self,
        key: &[u8],
        change: &dyn Fn(Vec<IndicatorMatch>) -> Vec<IndicatorMatch>,
    ) -> Result<(), StoreError> {
        self.intel
            .update_and_fetch(key, |old| {
                let list: Vec<IndicatorMatch> = old
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or_default();
                serde_json::to_vec(&change(list)).ok()
            })
            .map(|_| ())
            .map_err(backend)
    }
}
