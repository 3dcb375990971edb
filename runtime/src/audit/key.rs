//! The key that signs audit checkpoints. It lives outside the data
//! directory, so whoever can rewrite the data cannot re-sign it.

use std::path::{Path, PathBuf};

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file is inside the data directory.
    #[error(
        "audit key {key} is inside the data directory {data}; keep it elsewhere so that rewriting the data cannot re-sign it"
    )]
    InsideDataDir {
        /// Key path.
        key: PathBuf,
        /// Data directory.
        data: PathBuf,
    },
    /// The file could not be read or written.
    #[error("audit key {path}: {message}")]
    Io {
        /// Key path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The file holds fewer than 32 bytes.
    #[error("audit key {0} is shorter than 32 bytes")]
    TooShort(PathBuf),
}

/// An HMAC key (at least 32 bytes), and where it was loaded from. `Debug`
/// never shows it.
pub struct AuditKey {
    bytes: Vec<u8>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(***)")
    }
}

impl AuditKey {
    /// A key from bytes (tests, embedding).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, KeyError> {
        if bytes.len() < 32 {
            return Err(KeyError::TooShort(PathBuf::from("(bytes)")));
        }
        Ok(AuditKey { bytes, path: None })
    }

    /// The key bytes (for deriving other keys; never log them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file the key was loaded from (`None` for a key from bytes).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Loads the key from `path`, creating a random one (mode 0600) if the
    /// file does not exist. Refuses a path inside `data_dir`.
    pub fn load_or_create(path: &Path, data_dir: Option<&Path>) -> Result<Self, KeyError> {
        if let Some(data) = data_dir {
            let canonical_data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
            let parent = path
                .parent()
                .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
            if parent.is_some_and(|parent| parent.starts_with(&canonical_data)) {
                return Err(KeyError::InsideDataDir {
                    key: path.to_path_buf(),
                    data: data.to_path_buf(),
                });
            }
        }
        let io = |err: std::io::Error| KeyError::Io {
            path: path.to_path_buf(),
            message: err.to_string(),
        };
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 32 => Ok(AuditKey {
                bytes,
                path: Some(path.to_path_buf()),
            }),
            Ok(_) => Err(KeyError::TooShort(path.to_path_buf())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = vec![0u8; 32];
                getrandom::fill(&mut bytes).map_err(|err| KeyError::Io {
                    path: path.to_path_buf(),
                    message: err.to_string(),
                })?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                write_private(path, &bytes).map_err(io)?;
                Ok(AuditKey {
                    bytes,
                    path: Some(path.to_path_buf()),
                })
            }
            Err(err) => Err(io(err)),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
