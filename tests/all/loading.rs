//! Load-time refusals: each bad package gets its specific error.

use rampart::manifest::{self, ManifestError};
use rampart::sandbox::ArtifactSource;
use rampart::tenant::{Capability, Grants, PluginGrant};
use rampart::{LoadError, Runtime, RuntimeConfig};
use rampart_e2e::{grants_with, manifest as manifest_path, plugins_dir, runtime, tenant};

fn locked(name: &str) -> manifest::LockedManifest {
    let path = manifest_path(name);
    let text = std::fs::read_to_string(&path).expect("manifest");
    manifest::parse(&path.display().to_string(), &text).expect("valid manifest")
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(plugins_dir().join(format!("{name}.wasm"))).expect("component")
}

fn sha256(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = <sha2_digest::Sha256 as sha2_digest::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

mod sha2_digest {
    pub use sha2::{Digest, Sha256};
}

async fn refuse(manifest: manifest::LockedManifest, bytes: &[u8], grants: &Grants) -> LoadError {
    let (runtime, _) = runtime();
    runtime
        .load(&tenant("acme"), grants, manifest, bytes)
        .await
        .expect_err("must be refused")
}

#[tokio::test]
async fn component_for_another_wit_major_is_refused() {
    let bytes = wasm("fixtures/future-major");
    let mut manifest = locked("fixtures/future-major");
    manifest.sha256 = sha256(&bytes);
    let err = refuse(manifest, &bytes, &Grants::allow_all_capabilities()).await;
    assert!(
        matches!(&err, LoadError::WitVersion { found, .. } if found == "1.0.0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("rampart:plugin@1.0.0"), "{err}");
}

#[tokio::test]
async fn core_module_is_refused() {
    let bytes = wat::parse_str("(module (func (export \"enrich\")))").expect("wat");
    let mut manifest = locked("risk-scorer");
    manifest.sha256 = sha256(&bytes);
    let err = refuse(manifest, &bytes, &Grants::allow_all_capabilities()).await;
    assert!(matches!(err, LoadError::NotAComponent), "{err:?}");
}

#[tokio::test]
async fn truncated_component_is_refused() {
    let full = wasm("risk-scorer");
    for cut in [4, full.len() / 2, full.len() - 1] {
        let bytes = &full[..cut];
        let mut manifest = locked("risk-scorer");
        manifest.sha256 = sha256(bytes);
        let err = refuse(manifest, bytes, &Grants::allow_all_capabilities()).await;
        assert!(
            matches!(err, LoadError::NotWasm | LoadError::Compile(_)),
            "cut at {cut}: {err:?}"
        );
    }
}

#[tokio::test]
async fn digest_mismatch_is_refused() {
    let mut bytes = wasm("risk-scorer");
    let manifest = locked("risk-scorer");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let err = refuse(manifest.clone(), &bytes, &Grants::allow_all_capabilities()).await;
    assert!(
        matches!(&err, LoadError::DigestMismatch { expected, .. } if *expected == manifest.sha256),
        "{err:?}"
    );
}

#[tokio::test]
async fn capability_not_granted_is_refused() {
    let grants = Grants {
        default: PluginGrant::with_capabilities([Capability::Log]),
        ..Grants::default()
    };
    let err = refuse(locked("ip-reputation"), &wasm("ip-reputation"), &grants).await;
    match err {
        LoadError::NotGranted { missing, .. } => {
            assert_eq!(
                missing,
                vec![
                    Capability::Kv,
                    Capability::Memory,
                    Capability::Intel,
                    Capability::Config,
                    Capability::Http
                ]
            );
        }
        other => panic!("expected not granted, got {other:?}"),
    }
    // The tenant's own assets and people are a capability like any other.
    let err = refuse(locked("asset-context"), &wasm("asset-context"), &grants).await;
    assert!(
        matches!(&err, LoadError::NotGranted { missing, .. } if *missing == [Capability::Context]),
        "{err:?}"
    );
}

#[tokio::test]
async fn import_not_declared_in_the_manifest_is_refused() {
    let mut manifest = locked("ip-reputation");
    manifest.capabilities.remove(&Capability::Intel);
    let err = refuse(
        manifest,
        &wasm("ip-reputation"),
        &Grants::allow_all_capabilities(),
    )
    .await;
    assert!(
        matches!(
            &err,
            LoadError::UndeclaredImport {
                capability: Capability::Intel,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn component_not_implementing_its_kinds_world_is_refused() {
    let mut manifest = locked("risk-scorer");
    manifest.kind = manifest::PluginKind::Enricher;
    let err = refuse(
        manifest,
        &wasm("risk-scorer"),
        &Grants::allow_all_capabilities(),
    )
    .await;
    assert!(
        matches!(
            &err,
            LoadError::WrongWorld {
                kind: manifest::PluginKind::Enricher,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn tampered_compiled_cache_is_recompiled_not_loaded() {
    let cache = tempfile::tempdir().expect("tempdir");
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let grants = grants_with(None, |_| {});
    let acme = tenant("acme");
    let load = |runtime: Runtime| async move {
        runtime
            .load(
                &acme_clone(),
                &grants_clone(),
                locked("risk-scorer"),
                &wasm("risk-scorer"),
            )
            .await
            .expect("load")
    };
    fn acme_clone() -> rampart::tenant::TenantId {
        tenant("acme")
    }
    fn grants_clone() -> Grants {
        grants_with(None, |_| {})
    }
    let _ = (&grants, &acme);

    let first = load(
        Runtime::new(
            config(),
            std::sync::Arc::new(rampart::store::MemoryStore::default()),
        )
        .expect("rt"),
    )
    .await;
    assert_eq!(first.artifact_source(), ArtifactSource::Compiled);
    let second = load(
        Runtime::new(
            config(),
            std::sync::Arc::new(rampart::store::MemoryStore::default()),
        )
        .expect("rt"),
    )
    .await;
    assert_eq!(second.artifact_source(), ArtifactSource::Cache);

    // Flip bytes in the middle of the artifact (its code), as an attacker or a torn write would.
    let artifact = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .expect("a cached artifact");
    let mut bytes = std::fs::read(&artifact).expect("read artifact");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0xa5;
    }
    std::fs::write(&artifact, &bytes).expect("tamper");

    let third = load(
        Runtime::new(
            config(),
            std::sync::Arc::new(rampart::store::MemoryStore::default()),
        )
        .expect("rt"),
    )
    .await;
    assert_eq!(
        third.artifact_source(),
        ArtifactSource::Compiled,
        "tampered artifact must be recompiled"
    );
    let score = third
        .score(
            &rampart_e2e::alert("x"),
            &[],
            &rampart::CallContext::default(),
        )
        .await
        .expect("works");
    assert!(score.value.risk > 0);
    // And the rewritten cache is good again.
    let fourth = load(
        Runtime::new(
            config(),
            std::sync::Arc::new(rampart::store::MemoryStore::default()),
        )
        .expect("rt"),
    )
    .await;
    assert_eq!(fourth.artifact_source(), ArtifactSource::Cache);
}

#[test]
fn manifest_errors_are_all_reported_with_locations() {
    let text = r#"name = "Bad Name"
version = "one"
kind = "detector"
wit = "0.2.0"
capabilities = ["log", "files", "log"]

[limits]
memory_mib = 0
timeout_ms = 999999999

[component]
path = "../../etc/passwd"
sha256 = "xyz"
"#;
    let err = manifest::parse("bad.toml", text).expect_err("invalid");
    let ManifestError::Invalid { issues, .. } = &err else {
        panic!("{err:?}")
    };
    let fields: Vec<(&str, Option<usize>)> = issues
        .iter()
        .map(|issue| (issue.field.as_str(), issue.line))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("name", Some(1)),
            ("version", Some(2)),
            ("kind", Some(3)),
            ("wit", Some(4)),
            ("capabilities", Some(5)),
            ("capabilities", Some(5)),
            ("limits.memory_mib", Some(8)),
            ("limits.timeout_ms", Some(9)),
            ("component.sha256", Some(13)),
            ("component.path", Some(12)),
        ],
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("4:7: wit: built against rampart:plugin@0.2.0"),
        "{err}"
    );
}

#[test]
fn manifest_syntax_errors_have_a_location() {
    let err = manifest::parse("m.toml", "name = \"x\"\nversion = 1\n").expect_err("wrong type");
    let ManifestError::Syntax { issue, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(issue.line, Some(2), "{err}");
    let err = manifest::parse("m.toml", "name = \"x\"\nunknown_field = true\n")
        .expect_err("unknown field");
    assert!(err.to_string().contains("unknown field"), "{err}");
}
