//! The latest signed head of every tenant's chain, kept next to the audit
//! key — outside the data directory — so that a chain cannot silently go
//! backwards: deleting checkpoints, cutting the tail or rewriting records
//! and their successors in the data directory leaves this file naming a
//! record (seq and hash) that is gone or different, and `verify` says so.
//!
//! The file is `<key file>.heads`, JSON `{tenant: checkpoint}`, replaced
//! atomically (write a temporary file, fsync, rename) at every signature.
//! Only the signed head moves it; it never moves backwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{AuditError, Checkpoint};

/// The heads file of one audit key.
#[derive(Debug)]
pub(super) struct HeadFile {
    path: PathBuf,
    /// One writer at a time: read, change one tenant, replace.
    lock: Mutex<()>,
}

fn io_err(path: &Path, err: std::io::Error) -> AuditError {
    AuditError::Store(format!("signed heads {}: {err}", path.display()))
}

impl HeadFile {
    /// The heads file beside `key_path`.
    pub(super) fn beside(key_path: &Path) -> Self {
        let mut name = key_path.as_os_str().to_owned();
        name.push(".heads");
        HeadFile {
            path: PathBuf::from(name),
            lock: Mutex::new(()),
        }
    }

    /// Every tenant's latest signed head (none when the file does not exist
    /// yet). A file that cannot be read as heads is an error, not "none":
    /// replacing it with garbage must not pass for a fresh start.
    pub(super) fn load(&self) -> Result<BTreeMap<String, Checkpoint>, AuditError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                AuditError::Store(format!(
                    "signed heads {} are unreadable: {err}",
                    self.path.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(err) => Err(io_err(&self.path, err)),
        }
    }

    /// Records `checkpoint` as its tenant's head, unless a later one is
    /// already there.
    pub(super) fn record(&self, checkpoint: &Checkpoint) -> Result<(), AuditError> {
        let _one_writer = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut heads = self.load()?;
        if heads
            .get(&checkpoint.tenant)
            .is_some_and(|known| known.seq > checkpoint.seq)
        {
            return Ok(());
        }
        heads.insert(checkpoint.tenant.clone(), checkpoint.clone());
        let bytes =
            serde_json::to_vec_pretty(&heads).map_err(|e| AuditError::Encode(e.to_string()))?;
        let mut temporary = self.path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        write_synced(&temporary, &bytes).map_err(|err| io_err(&temporary, err))?;
        std::fs::rename(&temporary, &self.path).map_err(|err| io_err(&self.path, err))?;
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
