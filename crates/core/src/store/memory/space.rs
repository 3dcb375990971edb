//! The keyspace in memory: a `BTreeMap` per tree behind a lock. Nothing is
//! durable, so `flush` returns at once; scans read in chunks so that no lock
//! is held between two items of an iterator.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::store::space::{
    Batch, CasConflict, Entry, EntryIter, SpaceBackend, SpaceError, TreeBackend,
};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Entries a scan copies out per lock.
const CHUNK: usize = 256;

/// Trees in memory.
#[derive(Default)]
pub(super) struct MemorySpace {
    trees: Mutex<HashMap<String, Arc<MemoryTree>>>,
    ids: AtomicU64,
}

struct MemoryTree {
    name: String,
    map: Arc<RwLock<Map>>,
}

fn read(map: &RwLock<Map>) -> std::sync::RwLockReadGuard<'_, Map> {
    map.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(map: &RwLock<Map>) -> std::sync::RwLockWriteGuard<'_, Map> {
    map.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemorySpace {
    /// The tree `name`, created if missing (in memory this cannot fail).
    pub(super) fn tree(&self, name: &str) -> crate::store::Tree {
        crate::store::Tree::new(self.named(name))
    }

    fn named(&self, name: &str) -> Arc<MemoryTree> {
        let mut trees = self
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tree = trees.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(MemoryTree {
                name: name.to_owned(),
                map: Arc::default(),
            })
        });
        tree.clone()
    }
}

impl SpaceBackend for MemorySpace {
    fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>, SpaceError> {
        Ok(self.named(name))
    }

    fn tree_names(&self) -> Result<Vec<String>, SpaceError> {
        let trees = self
            .trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(trees.keys().cloned().collect())
    }

    fn generate_id(&self) -> Result<u64, SpaceError> {
        Ok(self.ids.fetch_add(1, Ordering::SeqCst))
    }

    fn flush(&self) -> Result<(), SpaceError> {
        Ok(())
    }
}

impl TreeBackend for MemoryTree {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, SpaceError> {
        Ok(read(&self.map).get(key).cloned())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool, SpaceError> {
        Ok(write(&self.map)
            .insert(key.to_vec(), value.to_vec())
            .is_some())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, SpaceError> {
        Ok(write(&self.map).remove(key).is_some())
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>, SpaceError> {
        let mut map = write(&self.map);
        let current = map.get(key);
        if current.map(Vec::as_slice) != expected {
            return Ok(Err(CasConflict {
                current: current.cloned(),
            }));
        }
        match new {
            Some(value) => map.insert(key.to_vec(), value.to_vec()),
            None => map.remove(key),
        };
        Ok(Ok(()))
    }

    fn range(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> EntryIter {
        Box::new(Chunks {
            map: self.map.clone(),
            lower,
            upper,
            front: VecDeque::new(),
            back: VecDeque::new(),
        })
    }

    fn apply_batch(&self, batch: Batch) -> Result<(), SpaceError> {
        let mut map = write(&self.map);
        for (key, value) in batch.writes {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
        Ok(())
    }

    fn len(&self) -> Result<usize, SpaceError> {
        Ok(read(&self.map).len())
    }

    fn clear(&self) -> Result<(), SpaceError> {
        write(&self.map).clear();
        Ok(())
    }

    fn flush(&self) -> Result<(), SpaceError> {
        Ok(())
    }
}

/// A scan that copies `CHUNK` entries at a time from either end. Each
/// bound moves past the last key buffered at its end, so the two ends never
/// hand out the same entry.
struct Chunks {
    map: Arc<RwLock<Map>>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    front: VecDeque<Entry>,
    back: VecDeque<Entry>,
}

fn is_empty_range(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(l), Bound::Included(u)) => l > u,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(u))
        | (Bound::Excluded(l), Bound::Included(u)) => l >= u,
        _ => false,
    }
}

impl Chunks {
    fn fill(&mut self, from_front: bool) {
        if is_empty_range(&self.lower, &self.upper) {
            return;
        }
        let map = read(&self.map);
        let range = map.range((self.lower.clone(), self.upper.clone()));
        let chunk: Vec<Entry> = if from_front {
            range
                .take(CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            range
                .rev()
                .take(CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        drop(map);
        if let Some((last, _)) = chunk.last() {
            if from_front {
                self.lower = Bound::Excluded(last.clone());
            } else {
                self.upper = Bound::Excluded(last.clone());
            }
        }
        if from_front {
            self.front.extend(chunk);
        } else {
            self.back.extend(chunk);
        }
    }
}

impl Iterator for Chunks {
    type Item = Result<Entry, SpaceError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.front.is_empty() {
            self.fill(true);
        }
        // What the front could not buffer any more was buffered at the back.
        self.front
            .pop_front()
            .or_else(|| self.back.pop_back())
            .map(Ok)
    }
}

impl DoubleEndedIterator for Chunks {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.back.is_empty() {
            self.fill(false);
        }
        self.back
            .pop_front()
            .or_else(|| self.front.pop_back())
            .map(Ok)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tree(n: u32) -> MemoryTree {
        let tree = MemoryTree {
            name: "t".to_owned(),
            map: Arc::default(),
        };
        for i in 0..n {
            tree.insert(&i.to_be_bytes(), b"v").unwrap();
        }
        tree
    }

    fn key(entry: Option<Result<Entry, SpaceError>>) -> Option<u32> {
        entry.map(|e| {
            let (k, _) = e.unwrap();
            u32::from_be_bytes(k.try_into().unwrap())
        })
    }

    #[test]
    fn a_scan_from_both_ends_yields_every_entry_once_in_order() {
        for n in [0, 1, 2, 255, 256, 257, 1000] {
            let tree = tree(n);
            let mut scan = tree.range(Bound::Unbounded, Bound::Unbounded);
            let (mut low, mut high) = (Vec::new(), Vec::new());
            for step in 0.. {
                let item = if step % 3 == 0 {
                    scan.next_back()
                } else {
                    scan.next()
                };
                match (step % 3 == 0, key(item)) {
                    (true, Some(k)) => high.push(k),
                    (false, Some(k)) => low.push(k),
                    (_, None) => break,
                }
            }
            high.reverse();
            low.extend(high);
            assert_eq!(low, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
    }

    #[test]
    fn a_scan_sees_writes_made_after_its_last_chunk() {
        let tree = tree(300);
        let mut scan = tree.range(Bound::Unbounded, Bound::Unbounded);
        assert_eq!(key(scan.next()), Some(0));
        tree.insert(&1000u32.to_be_bytes(), b"v").unwrap();
        assert_eq!(scan.count(), 300);
    }
}
