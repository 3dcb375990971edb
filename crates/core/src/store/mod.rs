//! Storage: what the host persists for plugins (kv namespaces, entity
//! memory, the threat-intel index: [`Store`]) and the ordered keyspace the
//! engine keeps everything else in ([`space::Keyspace`]). A [`Backend`]
//! provides both; sled (embedded, durable) and memory implement it.

pub mod feeds;
pub mod kept;
mod memory;
pub mod space;

pub use memory::MemoryStore;
pub use space::{Keyspace, SpaceError, Tree};

/// A complete storage backend: plugin state, the engine's keyspace and the
/// shared threat-intel feeds kept in it.
pub trait Backend: Store {
    /// The keyspace runs, audit, approvals and control state live in.
    fn space(&self) -> &Keyspace;
    /// Shared threat-intel feeds and tenants' subscriptions.
    fn feeds(&self) -> &feeds::PersistentIntel {
        self.intel_feeds()
    }
}

use crate::intel::ReferencePage;
use crate::model::{Entity, EntityMemory, Feedback, IndicatorMatch, PriorVerdict};
use crate::tenant::TenantId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The write would take the namespace over its quota.
    #[error("kv quota of {quota} bytes exceeded")]
    QuotaExceeded {
        /// The quota in bytes.
        quota: u64,
    },
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
}

/// A plugin's kv namespace: tenant plus plugin name. Chosen by the host,
/// never by the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KvNamespace {
    /// The tenant.
    pub tenant: TenantId,
    /// The plugin name.
    pub plugin: String,
}

/// Host persistence. Implementations must be safe to share across threads;
/// every method is atomic on its own.
pub trait Store: Send + Sync + 'static {
    /// The value of `key`.
    fn kv_get(&self, ns: &KvNamespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets `key`, refusing if the namespace would exceed `quota` bytes
    /// (keys plus values).
    fn kv_set(
        &self,
        ns: &KvNamespace,
        key: &str,
        value: &[u8],
        quota: u64,
    ) -> Result<(), StoreError>;
    /// Deletes `key`; whether it existed.
    fn kv_delete(&self, ns: &KvNamespace, key: &str) -> Result<bool, StoreError>;
    /// Up to `limit` keys with `prefix`, in byte order, after `after`.
    fn kv_list(
        &self,
        ns: &KvNamespace,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Swaps `key` from `expected` to `new` atomically; whether it swapped.
    fn kv_compare_and_swap(
        &self,
        ns: &KvNamespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: u64,
    ) -> Result<bool, StoreError>;
    /// Bytes used by the namespace.
    fn kv_usage(&self, ns: &KvNamespace) -> Result<u64, StoreError>;

    /// The entity memory stored under `key` (an [`entity_key`]; empty
    /// when there is none).
    fn memory_get(&self, key: &[u8]) -> Result<EntityMemory, StoreError>;
    /// Changes the entity memory under `key` with `edit`, as one atomic
    /// step (concurrent edits of one key are not lost).
    fn memory_update(&self, key: &[u8], edit: &dyn Fn(&mut EntityMemory))
    -> Result<(), StoreError>;

    /// What the tenant remembers about `entity`.
    fn memory_recall(
        &self,
        tenant: &TenantId,
        entity: &Entity,
    ) -> Result<EntityMemory, StoreError> {
        self.memory_get(&entity_key(tenant, entity))
    }
    /// Records that an alert named `entity` at `time` (Unix ms).
    fn memory_record_sighting(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        time: i64,
    ) -> Result<(), StoreError> {
        self.memory_update(&entity_key(tenant, entity), &|memory| {
            memory.record_sighting(time);
        })
    }
    /// Records a run's verdict about `entity` (the newest
    /// [`MEMORY_LIST_CAP`] are kept).
    fn memory_record_verdict(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        verdict: PriorVerdict,
    ) -> Result<(), StoreError> {
        self.memory_update(&entity_key(tenant, entity), &|memory| {
            memory.push_verdict(verdict.clone(), MEMORY_LIST_CAP);
        })
    }
    /// Records analyst feedback about `entity` (the newest
    /// [`MEMORY_LIST_CAP`] are kept).
    fn memory_record_feedback(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        feedback: Feedback,
    ) -> Result<(), StoreError> {
        self.memory_update(&entity_key(tenant, entity), &|memory| {
            memory.push_feedback(feedback.clone(), MEMORY_LIST_CAP);
        })
    }

    /// The tenant's own indicators stored under `key` (an [`entity_key`]).
    fn intel_own(&self, key: &[u8]) -> Result<Vec<IndicatorMatch>, StoreError>;
    /// Replaces the indicators under `key` with `change` of them, as one
    /// atomic step (concurrent changes of one key are not lost).
    fn intel_update(
        &self,
        key: &[u8],
        change: &dyn Fn(Vec<IndicatorMatch>) -> Vec<IndicatorMatch>,
    ) -> Result<(), StoreError>;
    /// The shared feeds this store keeps (their index and subscriptions).
    fn intel_feeds(&self) -> &feeds::PersistentIntel;

    /// Indicators matching `entity`: the tenant's own (under its probe key)
    /// and the shared feeds it subscribes to. Merged here, once, for every
    /// backend.
    fn intel_lookup(
        &self,
        tenant: &TenantId,
        entity: &Entity,
    ) -> Result<Vec<IndicatorMatch>, StoreError> {
        self.intel_lookup_paged(tenant, entity, ReferencePage::default())
    }

    /// [`Store::intel_lookup`] with `page` of each match's references.
    fn intel_lookup_paged(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        page: ReferencePage,
    ) -> Result<Vec<IndicatorMatch>, StoreError> {
        self.intel_lookup_in(self.intel_feeds().index(), tenant, entity, page)
    }

    /// [`Store::intel_lookup_paged`] against the feeds of `index` (for
    /// example [`feeds::PersistentIntel::index_of`] one tenant's).
    fn intel_lookup_in(
        &self,
        index: &crate::intel::IntelIndex,
        tenant: &TenantId,
        entity: &Entity,
        page: ReferencePage,
    ) -> Result<Vec<IndicatorMatch>, StoreError> {
        let mut matches = self.intel_own(&entity_key(tenant, &intel_probe(entity)))?;
        for own in &mut matches {
            page.apply(own);
        }
        matches.extend(index.lookup(tenant, entity, page));
        Ok(matches)
    }

    /// Adds indicators to the tenant's own index under the probe key of the
    /// entity they match; an indicator already there from the same feed is
    /// replaced, not repeated. How many were given.
    fn intel_insert(
        &self,
        tenant: &TenantId,
        indicators: Vec<(Entity, IndicatorMatch)>,
    ) -> Result<usize, StoreError> {
        let count = indicators.len();
        for (entity, indicator) in indicators {
            self.intel_update(&entity_key(tenant, &intel_probe(&entity)), &|mut list| {
                list.retain(|existing| {
                    existing.feed != indicator.feed || existing.indicator != indicator.indicator
                });
                list.push(indicator.clone());
                list
            })?;
        }
        Ok(count)
    }
}

/// The key of an entity's record (entity memory, own intel) for every
/// backend: `tenant \0 kind \0 value`, the value without surrounding space
/// or a trailing dot and, except for URLs and process names, lower-cased.
pub fn entity_key(tenant: &TenantId, entity: &Entity) -> Vec<u8> {
    let kind = serde_json::to_string(&entity.kind).unwrap_or_default();
    let mut value = entity.value.trim().trim_end_matches('.').to_owned();
    if !matches!(
        entity.kind,
        crate::model::EntityKind::Url | crate::model::EntityKind::Process
    ) {
        value = value.to_ascii_lowercase();
    }
    let mut key = Vec::new();
    key.extend_from_slice(tenant.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(kind.trim_matches('"').as_bytes());
    key.push(0);
    key.extend_from_slice(value.as_bytes());
    key
}

/// The key a tenant's own indicators are looked up under: an IP without
/// its port (both backends store them that way).
pub fn intel_probe(entity: &Entity) -> Entity {
    let mut probe = entity.clone();
    if entity.kind == crate::model::EntityKind::Ip {
        probe.value = crate::feeds::strip_port(&entity.value).to_owned();
    }
    probe
}

/// Most entries of a list kept in entity memory (verdicts, feedback).
pub const MEMORY_LIST_CAP: usize = 50;
