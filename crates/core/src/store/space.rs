//! The engine's storage seam: an ordered keyspace of named trees.
//!
//! Everything the engine keeps besides plugin state (runs, alerts, dedup,
//! rate windows, intents, approvals, the audit chain, tenants, tokens,
//! packages, hunts, webhooks, feeds) lives in trees of one [`Keyspace`].
//! A backend implements two small traits — [`SpaceBackend`] and
//! [`TreeBackend`]: point reads and writes, compare-and-swap, ordered range
//! scans in both directions, atomic batches within a tree and a durability
//! barrier ([`Keyspace::flush`]). Key encoding, sealing, counters and every
//! rule above them are written once, in the modules that own the data, and
//! run unchanged on every backend (`tests/all/conformance.rs`).
//!
//! Why one ordered keyspace rather than a trait per concern: the concerns
//! (run journal, audit, control state) differ in *what* they store, not in
//! the operations they need from storage, and every one of them already
//! encodes its own keys. A per-concern trait would put each module's key
//! layout and invariants into every backend, to be written again (and to
//! drift) for sled, memory and PostgreSQL; this seam keeps them in one place.
//!
//! Durability contract: a write is visible to every later read at once; it
//! survives a crash once a [`Keyspace::flush`] that began after it returns.
//! A [`Batch`] is applied to its tree atomically (all or nothing, also
//! across a crash). A compare-and-swap is atomic against every other write
//! to the same key.

use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The backend failed (I/O, corruption, a lost connection).
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A compare-and-swap found another value than the expected one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasConflict {
    /// What the key holds now (`None`: absent).
    pub current: Option<Vec<u8>>,
}

/// One entry of a scan: key and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A backend's ordered scan, both ends.
pub type EntryIter = Box<dyn DoubleEndedIterator<Item = Result<Entry, SpaceError>> + Send>;

/// Writes applied to one tree together.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// In order: `(key, Some(value))` sets, `(key, None)` removes.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// Sets `key` to `value` when the batch is applied.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.writes
            .push((key.as_ref().to_vec(), Some(value.as_ref().to_vec())));
    }

    /// Removes `key` when the batch is applied.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.writes.push((key.as_ref().to_vec(), None));
    }
}

/// A backend's keyspace: named trees and a durability barrier.
pub trait SpaceBackend: Send + Sync + 'static {
    /// The tree `name`, created empty if it does not exist.
    fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>, SpaceError>;
    /// The names of every tree that exists.
    fn tree_names(&self) -> Result<Vec<String>, SpaceError>;
    /// A number never returned before in this keyspace (also across restarts).
    fn generate_id(&self) -> Result<u64, SpaceError>;
    /// Returns once every write that happened before the call is durable.
    fn flush(&self) -> Result<(), SpaceError>;
}

/// A backend's tree: an ordered map of byte strings.
pub trait TreeBackend: Send + Sync + 'static {
    /// The tree's name.
    fn name(&self) -> &str;
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, SpaceError>;
    /// Sets `key`; whether it had a value (the old value is not copied out:
    /// runs are rewritten whole at every save).
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool, SpaceError>;
    /// Removes `key`; whether it had a value.
    fn remove(&self, key: &[u8]) -> Result<bool, SpaceError>;
    /// Swaps `key` from `expected` to `new` (`None`: absent) atomically.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>, SpaceError>;
    /// Entries between the bounds, in key order (reversible).
    fn range(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> EntryIter;
    /// Hands entries between the bounds to `visit` in key order, borrowed,
    /// until it returns `false`. The default copies each entry through
    /// [`TreeBackend::range`]; a backend that can lend its own buffers
    /// overrides it (long scans such as verifying an audit chain use it).
    fn visit(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), SpaceError> {
        for entry in self.range(lower, upper) {
            let (k, v) = entry?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }
    /// Applies every write of `batch` atomically.
    fn apply_batch(&self, batch: Batch) -> Result<(), SpaceError>;
    /// Number of entries.
    fn len(&self) -> Result<usize, SpaceError>;
    /// Whether the tree has no entry.
    fn is_empty(&self) -> Result<bool, SpaceError> {
        Ok(self
            .range(Bound::Unbounded, Bound::Unbounded)
            .next()
            .transpose()?
            .is_none())
    }
    /// Removes every entry.
    fn clear(&self) -> Result<(), SpaceError>;
    /// Returns once every write to this tree so far is durable.
    fn flush(&self) -> Result<(), SpaceError>;
}

/// A handle on a keyspace; clones share it.
#[derive(Clone)]
pub struct Keyspace {
    backend: Arc<dyn SpaceBackend>,
    /// Durability barriers asked of the backend, keyspace and trees
    /// together (what "flushes per alert" counts).
    flushes: Arc<std::sync::atomic::AtomicU64>,
    /// Trees opened so far: modules open a tree by name per operation (the
    /// audit log per append), so a name is resolved by the backend once.
    opened: Arc<std::sync::RwLock<std::collections::HashMap<String, Arc<dyn TreeBackend>>>>,
}

impl std::fmt::Debug for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyspace").finish_non_exhaustive()
    }
}

impl Keyspace {
    /// A keyspace over `backend`.
    pub fn new(backend: Arc<dyn SpaceBackend>) -> Self {
        Keyspace {
            backend,
            flushes: Arc::default(),
            opened: Arc::default(),
        }
    }

    /// The tree `name`, created empty if it does not exist.
    pub fn open_tree(&self, name: impl AsRef<str>) -> Result<Tree, SpaceError> {
        let name = name.as_ref();
        let known = self
            .opened
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        let backend = match known {
            Some(backend) => backend,
            None => {
                let backend = self.backend.open_tree(name)?;
                self.opened
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(name.to_owned())
                    .or_insert(backend)
                    .clone()
            }
        };
        Ok(Tree {
            backend,
            flushes: self.flushes.clone(),
        })
    }

    /// Flushes asked so far, of the keyspace and of its trees.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The names of every tree that exists.
    pub fn tree_names(&self) -> Result<Vec<String>, SpaceError> {
        self.backend.tree_names()
    }

    /// A number never returned before in this keyspace.
    pub fn generate_id(&self) -> Result<u64, SpaceError> {
        self.backend.generate_id()
    }

    /// Returns once every write that happened before the call is durable.
    pub fn flush(&self) -> Result<(), SpaceError> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.backend.flush()
    }
}

/// A handle on one tree; clones share it.
#[derive(Clone)]
pub struct Tree {
    backend: Arc<dyn TreeBackend>,
    flushes: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("name", &self.backend.name())
            .finish_non_exhaustive()
    }
}

/// An ordered scan of a tree.
pub struct Iter {
    inner: EntryIter,
}

impl Iterator for Iter {
    type Item = Result<Entry, SpaceError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back()
    }
}

impl Iter {
    /// Keys only.
    pub fn keys(self) -> impl DoubleEndedIterator<Item = Result<Vec<u8>, SpaceError>> {
        self.map(|entry| entry.map(|(k, _)| k))
    }

    /// Values only.
    pub fn values(self) -> impl DoubleEndedIterator<Item = Result<Vec<u8>, SpaceError>> {
        self.map(|entry| entry.map(|(_, v)| v))
    }
}

/// The first key after every key that starts with `prefix` (`None`: no
/// such key, the prefix is all `0xff`).
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

fn owned(bound: Bound<&impl AsRef<[u8]>>) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl Tree {
    /// A handle on `backend`.
    pub fn new(backend: Arc<dyn TreeBackend>) -> Self {
        Tree {
            backend,
            flushes: Arc::default(),
        }
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        self.backend.name()
    }

    /// The value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, SpaceError> {
        self.backend.get(key.as_ref())
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, SpaceError> {
        Ok(self.get(key)?.is_some())
    }

    /// Sets `key`; whether it had a value.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, SpaceError> {
        self.backend.insert(key.as_ref(), value.as_ref())
    }

    /// Removes `key`; whether it had a value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool, SpaceError> {
        self.backend.remove(key.as_ref())
    }

    /// Swaps `key` from `expected` to `new` (`None`: absent) atomically.
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<impl AsRef<[u8]>>,
        new: Option<impl AsRef<[u8]>>,
    ) -> Result<Result<(), CasConflict>, SpaceError> {
        self.backend.compare_and_swap(
            key.as_ref(),
            expected.as_ref().map(AsRef::as_ref),
            new.as_ref().map(AsRef::as_ref),
        )
    }

    /// Replaces the value of `key` by `update(current)` (`None`: remove),
    /// retrying on a concurrent write; the new value.
    pub fn update_and_fetch(
        &self,
        key: impl AsRef<[u8]>,
        mut update: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, SpaceError> {
        let key = key.as_ref();
        let mut current = self.backend.get(key)?;
        loop {
            let new = update(current.as_deref());
            match self
                .backend
                .compare_and_swap(key, current.as_deref(), new.as_deref())?
            {
                Ok(()) => return Ok(new),
                Err(conflict) => current = conflict.current,
            }
        }
    }

    /// Entries in `range`, in key order.
    pub fn range<K: AsRef<[u8]>>(&self, range: impl RangeBounds<K>) -> Iter {
        Iter {
            inner: self
                .backend
                .range(owned(range.start_bound()), owned(range.end_bound())),
        }
    }

    /// Hands every entry in `range` to `visit` in key order, borrowed (no
    /// copy where the backend can lend its buffers), until it returns
    /// `false`.
    pub fn visit<K: AsRef<[u8]>>(
        &self,
        range: impl RangeBounds<K>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), SpaceError> {
        self.backend.visit(
            owned(range.start_bound()),
            owned(range.end_bound()),
            &mut visit,
        )
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        let prefix = prefix.as_ref();
        let upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        Iter {
            inner: self.backend.range(Bound::Included(prefix.to_vec()), upper),
        }
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter {
        Iter {
            inner: self.backend.range(Bound::Unbounded, Bound::Unbounded),
        }
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Result<Option<Entry>, SpaceError> {
        self.iter().next().transpose()
    }

    /// The entry with the largest key.
    pub fn last(&self) -> Result<Option<Entry>, SpaceError> {
        self.iter().next_back().transpose()
    }

    /// Applies every write of `batch` atomically.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), SpaceError> {
        self.backend.apply_batch(batch)
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize, SpaceError> {
        self.backend.len()
    }

    /// Whether the tree has no entry.
    pub fn is_empty(&self) -> Result<bool, SpaceError> {
        self.backend.is_empty()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<(), SpaceError> {
        self.backend.clear()
    }

    /// Returns once every write to this tree so far is durable.
    pub fn flush(&self) -> Result<(), SpaceError> {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.backend.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
