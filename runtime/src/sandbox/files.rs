//! Reading plugin files from disk: regular files only, bounded.

use std::path::Path;

use super::LoadError;

/// Largest manifest file read, bytes.
pub(crate) const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Reads `path` if it is a regular file (a symlink to one is fine) of at
/// most `max` bytes. A device (`/dev/zero`), a FIFO (which would block) or
/// a directory is refused before it is opened, and the read stops at `max`
/// whatever the file turns into meanwhile.
pub fn read_regular_file(path: &Path, max: usize) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let refuse = |detail: String| LoadError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, detail),
    };
    let io = |source: std::io::Error| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".to_owned()));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(refuse("not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > max {
        return Err(refuse(format!("larger than the {max} bytes allowed")));
    }
    Ok(bytes)
}
