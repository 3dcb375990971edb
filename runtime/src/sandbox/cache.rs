//! The on-disk cache of compiled components.
//!
//! Compiling takes tens of milliseconds; loading a compiled artifact takes
//! well under one. Artifacts are keyed by the component's sha256 and the
//! engine's compatibility hash (so a wasmtime upgrade or a config change
//! never loads a stale artifact). Deserializing is `unsafe`: the bytes are
//! trusted to be wasmtime output. So at write time we record the artifact's
//! own sha256 beside it, and before every load we recompute and compare; a
//! mismatch (a tampered or torn file) is logged, deleted and recompiled,
//! never loaded. The cache directory must be writable by the runtime only;
//! this check catches a modified artifact, not an attacker who can rewrite
//! both files.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactSource {
    /// Compiled now.
    Compiled,
    /// Loaded from the on-disk cache.
    Cache,
    /// Already in this process.
    Memory,
}

/// The compiled-artifact cache.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactCache {
    dir: Option<PathBuf>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache { dir }
    }

    fn paths(&self, engine: &wasmtime::Engine, digest: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!("{digest}-{:016x}", hasher.finish());
        Some((
            dir.join(format!("{key}.cwasm")),
            dir.join(format!("{key}.sha256")),
        ))
    }

    /// Loads the verified cached artifact of `digest`, or compiles `wasm`
    /// with `compile` (and caches it). `wasm` must already be checked
    /// against `digest`.
    pub(crate) fn load_or_compile<E>(
        &self,
        engine: &wasmtime::Engine,
        digest: &str,
        wasm: &[u8],
        compile: impl FnOnce(&[u8]) -> Result<Component, E>,
    ) -> Result<(Component, ArtifactSource), E> {
        let Some((artifact, checksum)) = self.paths(engine, digest) else {
            return Ok((compile(wasm)?, ArtifactSource::Compiled));
        };
        if let Some(component) = Self::load_verified(engine, &artifact, &checksum) {
            return Ok((component, ArtifactSource::Cache));
        }
        let component = compile(wasm)?;
        if let Err(err) = Self::store(&component, &artifact, &checksum) {
            tracing::warn!(
                "cannot write compiled artifact {}: {err}",
                artifact.display()
            );
        }
        Ok((component, ArtifactSource::Compiled))
    }

    fn load_verified(
        engine: &wasmtime::Engine,
        artifact: &Path,
        checksum: &Path,
    ) -> Option<Component> {
        let bytes = std::fs::read(artifact).ok()?;
        let recorded = std::fs::read_to_string(checksum).ok();
        let actual = sha256_hex(&bytes);
        if recorded.as_deref().map(str::trim) != Some(actual.as_str()) {
            tracing::warn!(
                "compiled artifact {} does not match its recorded sha256; discarding and recompiling",
                artifact.display()
            );
            let _ = std::fs::remove_file(artifact);
            let _ = std::fs::remove_file(checksum);
            return None;
        }
        // SAFETY: the bytes are exactly what `Component::serialize` wrote for
        // this engine configuration: their sha256 matches the one recorded
        // when we wrote them, and the key includes the engine's compatibility
        // hash. wasmtime additionally checks the header and engine settings.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(
                    "cached artifact {} rejected by wasmtime: {err}",
                    artifact.display()
                );
                None
            }
        }
    }

    fn store(component: &Component, artifact: &Path, checksum: &Path) -> std::io::Result<()> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        if let Some(dir) = artifact.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write to temporary names and rename, so a crash never leaves a
        // half-written artifact under the real name.
        let tmp_artifact = artifact.with_extension("cwasm.tmp");
        let tmp_checksum = checksum.with_extension("sha256.tmp");
        std::fs::write(&tmp_artifact, &bytes)?;
        std::fs::write(&tmp_checksum, sha256_hex(&bytes))?;
        std::fs::rename(&tmp_artifact, artifact)?;
        std::fs::rename(&tmp_checksum, checksum)
    }
}
