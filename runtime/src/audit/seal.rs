//! Sealed trees: state that is not a record of the chain (tokens, tenants
//! and their grants, plugin packages, playbooks, runs) carries an
//! HMAC-SHA256 under a key derived from the audit key, which lives outside
//! the data directory. An entry edited offline — a viewer token turned
//! admin, a run's outcome rewritten — no longer matches its seal and is
//! refused where it is read: at start-up for what is restored (the server
//! will not start, naming the tree and the entry), at use for the rest.
//!
//! The seal is stored in the value itself (`S1` + 32-byte MAC + payload), so
//! one insert writes both and a crash cannot leave them apart. The MAC
//! covers the tree name and the key too, so an entry copied to another key
//! or tree does not verify. A data directory written before seals existed
//! is sealed once, on first open (trust on first use), and marked.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::AuditKey;

/// The value prefix of a sealed entry.
const MAGIC: &[u8; 2] = b"S1";
const MAC_LEN: usize = 32;
/// The key that marks a tree as sealed (sorts before every printable key).
const SEALED_MARK: &[u8] = b"\x00rampart-sealed-v1";

/// Why a sealed tree refused an entry.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The entry does not match its seal: changed outside rampart.
    #[error(
        "{tree} entry {key} was changed outside rampart (its seal does not match); restore it from a backup or remove it"
    )]
    Tampered {
        /// The tree.
        tree: String,
        /// The entry's key, printable.
        key: String,
    },
    /// The store failed.
    #[error("sealed store: {0}")]
    Store(#[from] crate::store::SpaceError),
}

/// The key that seals state, derived from the audit key.
#[derive(Clone)]
pub struct SealKey(Arc<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

impl SealKey {
    /// The state-sealing key of `audit`: a separate key, so a seal is never
    /// a valid checkpoint signature or the other way round.
    pub fn derive(audit: &AuditKey) -> Self {
        let mut mac = hmac(audit.bytes());
        mac.update(b"rampart-state-seal-v1");
        SealKey(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, tree: &str, key: &[u8], payload: &[u8]) -> [u8; 32] {
        let mut mac = hmac(self.0.as_slice());
        mac.update(&(tree.len() as u64).to_be_bytes());
        mac.update(tree.as_bytes());
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key);
        mac.update(payload);
        mac.finalize().into_bytes().into()
    }
}

/// A tree whose every value is sealed.
#[derive(Clone, Debug)]
pub struct SealedTree {
    tree: crate::store::Tree,
    name: String,
    key: SealKey,
}

fn printable(key: &[u8]) -> String {
    String::from_utf8_lossy(key).replace('\u{0}', "/")
}

impl SealedTree {
    /// Opens tree `name` of `db`, sealing what an older version left
    /// unsealed the first time.
    pub fn open(db: &crate::store::Keyspace, name: &str, key: &SealKey) -> Result<Self, SealError> {
        let sealed = SealedTree {
            tree: db.open_tree(name)?,
            name: name.to_owned(),
            key: key.clone(),
        };
        if sealed.tree.get(SEALED_MARK)?.is_none() {
            for entry in sealed.tree.iter() {
                let (k, v) = entry?;
                if !v.starts_with(MAGIC) {
                    sealed.tree.insert(&k, sealed.wrap(&k, &v))?;
                }
            }
            sealed.tree.insert(SEALED_MARK, b"1".as_slice())?;
        }
        Ok(sealed)
    }

    fn wrap(&self, key: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut value = Vec::with_capacity(MAGIC.len() + MAC_LEN + payload.len());
        value.extend_from_slice(MAGIC);
        value.extend_from_slice(&self.key.mac(&self.name, key, payload));
        value.extend_from_slice(payload);
        value
    }

    fn unwrap(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>, SealError> {
        let tampered = || SealError::Tampered {
            tree: self.name.clone(),
            key: printable(key),
        };
        let rest = value.strip_prefix(MAGIC.as_slice()).ok_or_else(tampered)?;
        if rest.len() < MAC_LEN {
            return Err(tampered());
        }
        let (mac, payload) = rest.split_at(MAC_LEN);
        let mut check = hmac(self.key.0.as_slice());
        check.update(&(self.name.len() as u64).to_be_bytes());
        check.update(self.name.as_bytes());
        check.update(&(key.len() as u64).to_be_bytes());
        check.update(key);
        check.update(payload);
        check.verify_slice(mac).map_err(|_| tampered())?;
        Ok(payload.to_vec())
    }

    /// Stores `value` at `key`, sealed.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), SealError> {
        let key = key.as_ref();
        self.tree.insert(key, self.wrap(key, value.as_ref()))?;
        Ok(())
    }

    /// Stores `value` at `key`, sealed, only if `key` has no value; whether
    /// it was stored (one compare-and-swap: of two racing callers, one wins).
    pub fn insert_if_absent(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool, SealError> {
        let key = key.as_ref();
        let sealed = self.wrap(key, value.as_ref());
        Ok(self
            .tree
            .compare_and_swap(key, None::<&[u8]>, Some(sealed))?
            .is_ok())
    }

    /// The value at `key`, if its seal holds.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, SealError> {
        let key = key.as_ref();
        match self.tree.get(key)? {
            Some(value) => self.unwrap(key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, SealError> {
        Ok(self.tree.contains_key(key)?)
    }

    /// Removes `key`.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), SealError> {
        self.tree.remove(key)?;
        Ok(())
    }

    /// Every entry in key order, each checked.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), SealError>> + '_ {
        self.checked(self.tree.iter())
    }

    /// Entries whose key starts with `prefix`, each checked.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), SealError>> + '_ {
        self.checked(self.tree.scan_prefix(prefix))
    }

    fn checked<'a>(
        &'a self,
        entries: crate::store::space::Iter,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), SealError>> + 'a {
        entries.filter_map(move |entry| match entry {
            Err(err) => Some(Err(SealError::Store(err))),
            Ok((k, _)) if k.as_slice() == SEALED_MARK => None,
            Ok((k, v)) => Some(self.unwrap(&k, &v).map(|payload| (k.to_vec(), payload))),
        })
    }

    /// Every entry whose seal does not hold (for start-up checks).
    pub fn tampered(&self) -> Result<Vec<String>, SealError> {
        let mut bad = Vec::new();
        for entry in self.iter() {
            match entry {
                Ok(_) => {}
                Err(SealError::Tampered { key, .. }) => bad.push(key),
                Err(err) => return Err(err),
            }
        }
        Ok(bad)
    }

    /// Waits until everything written is on disk.
    pub fn flush(&self) -> Result<(), SealError> {
        self.tree.flush()?;
        Ok(())
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_entry_is_refused_and_a_moved_one_too() {
        let store = crate::store::MemoryStore::default();
        let db = store.space();
        let key = SealKey::derive(&AuditKey::from_bytes(vec![3; 32]).unwrap());
        let tree = SealedTree::open(db, "tokens", &key).unwrap();
        tree.insert("a", br#"{"role":"viewer"}"#).unwrap();
        assert_eq!(tree.get("a").unwrap().unwrap(), br#"{"role":"viewer"}"#);
        // Offline edit of the payload.
        let raw = db.open_tree("tokens").unwrap();
        let mut value = raw.get("a").unwrap().unwrap().to_vec();
        let at = value.len() - 8;
        value[at..].copy_from_slice(b"admin\"}\n");
        raw.insert("a", value.clone()).unwrap();
        assert!(matches!(tree.get("a"), Err(SealError::Tampered { .. })));
        // A valid entry copied under another key.
        tree.insert("b", b"x").unwrap();
        raw.insert("c", raw.get("b").unwrap().unwrap()).unwrap();
        assert!(matches!(tree.get("c"), Err(SealError::Tampered { .. })));
        assert_eq!(
            tree.tampered().unwrap(),
            vec!["a".to_owned(), "c".to_owned()]
        );
    }

    #[test]
    fn an_unsealed_tree_is_sealed_once_on_first_open() {
        let store = crate::store::MemoryStore::default();
        let db = store.space();
        db.open_tree("runs").unwrap().insert("r1", b"{}").unwrap();
        let key = SealKey::derive(&AuditKey::from_bytes(vec![3; 32]).unwrap());
        let tree = SealedTree::open(db, "runs", &key).unwrap();
        assert_eq!(tree.get("r1").unwrap().unwrap(), b"{}");
        // Written unsealed after the first open: refused.
        db.open_tree("runs").unwrap().insert("r2", b"{}").unwrap();
        let tree = SealedTree::open(db, "runs", &key).unwrap();
        assert!(tree.get("r2").is_err());
    }
}
