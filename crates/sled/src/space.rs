//! The keyspace on sled: a tree per name, sled's own CAS, batches and flush.

use std::ops::Bound;
use std::sync::Arc;

use rampart_core::store::space::{
    Batch, CasConflict, Entry, EntryIter, SpaceBackend, SpaceError, TreeBackend,
};

pub(super) fn failed(err: sled::Error) -> SpaceError {
    SpaceError::Backend(Box::new(err))
}

/// A sled database as a keyspace.
pub(super) struct SledSpace {
    pub(super) db: sled::Db,
}

struct SledTree {
    name: String,
    tree: sled::Tree,
}

impl SpaceBackend for SledSpace {
    fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>, SpaceError> {
        Ok(Arc::new(SledTree {
            name: name.to_owned(),
            tree: self.db.open_tree(name).map_err(failed)?,
        }))
    }

    fn tree_names(&self) -> Result<Vec<String>, SpaceError> {
        Ok(self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| String::from_utf8(name.to_vec()).ok())
            .collect())
    }

    fn generate_id(&self) -> Result<u64, SpaceError> {
        self.db.generate_id().map_err(failed)
    }

    fn flush(&self) -> Result<(), SpaceError> {
        self.db.flush().map(|_| ()).map_err(failed)
    }
}

fn entry(item: sled::Result<(sled::IVec, sled::IVec)>) -> Result<Entry, SpaceError> {
    item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(failed)
}

impl TreeBackend for SledTree {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, SpaceError> {
        Ok(self.tree.get(key).map_err(failed)?.map(|v| v.to_vec()))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool, SpaceError> {
        Ok(self.tree.insert(key, value).map_err(failed)?.is_some())
    }

    fn remove(&self, key: &[u8]) -> Result<bool, SpaceError> {
        Ok(self.tree.remove(key).map_err(failed)?.is_some())
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>, SpaceError> {
        Ok(self
            .tree
            .compare_and_swap(key, expected, new)
            .map_err(failed)?
            .map_err(|err| CasConflict {
                current: err.current.map(|v| v.to_vec()),
            }))
    }

    fn range(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> EntryIter {
        Box::new(self.tree.range::<Vec<u8>, _>((lower, upper)).map(entry))
    }

    fn visit(
        &self,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), SpaceError> {
        for item in self.tree.range::<Vec<u8>, _>((lower, upper)) {
            let (k, v) = item.map_err(failed)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn apply_batch(&self, batch: Batch) -> Result<(), SpaceError> {
        let mut writes = sled::Batch::default();
        for (key, value) in batch.writes {
            match value {
                Some(value) => writes.insert(key, value),
                None => writes.remove(key),
            }
        }
        self.tree.apply_batch(writes).map_err(failed)
    }

    fn len(&self) -> Result<usize, SpaceError> {
        Ok(self.tree.len())
    }

    fn clear(&self) -> Result<(), SpaceError> {
        self.tree.clear().map_err(failed)
    }

    fn flush(&self) -> Result<(), SpaceError> {
        self.tree.flush().map(|_| ()).map_err(failed)
    }
}
