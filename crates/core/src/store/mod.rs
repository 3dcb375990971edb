//! Storage: what the host persists for plugins (kv namespaces, entity
//! memory, the threat-intel index: [`Store`]) and the ordered keyspace the
//! engine keeps everything else in ([`space::Keyspace`]). A [`Backend`]
//! provides both; sled (embedded, durable) and memory implement it.

pub mod feeds;
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
    fn feeds(&self) -> &feeds::PersistentIntel;
}

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

    /// What the tenant remembers about `entity`.
    fn memory_recall(&self, tenant: &TenantId, entity: &Entity)
    -> Result<EntityMemory, StoreError>;
    /// Records that an alert named `entity` at `time` (Unix ms).
    fn memory_record_sighting(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        time: i64,
    ) -> Result<(), StoreError>;
    /// Records a run's verdict about `entity`.
    fn memory_record_verdict(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        verdict: PriorVerdict,
    ) -> Result<(), StoreError>;
    /// Records analyst feedback about `entity`.
    fn memory_record_feedback(
        &self,
        tenant: &TenantId,
        entity: &Entity,
        feedback: Feedback,
    ) -> Result<(), StoreError>;

    /// Indicators matching `entity` in the tenant's intel index.
    fn intel_lookup(
        &self,
        tenant: &TenantId,
        entity: &Entity,
    ) -> Result<Vec<IndicatorMatch>, StoreError>;
    /// Adds indicators to the tenant's index, keyed by the entity they match.
    fn intel_insert(
        &self,
        tenant: &TenantId,
        indicators: Vec<(Entity, IndicatorMatch)>,
    ) -> Result<usize, StoreError>;
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
