//! State edited offline on a stopped data directory is refused at start-up,
//! naming what changed: a viewer token made admin, a run's outcome
//! rewritten, a tenant's grants widened.

use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::executor::Executor;
use rampart::store::SledStore;
use rampart_server::AppState;

use crate::harness::Server;
use crate::{alert, ingest, serial, supervised, tenant};

/// `open`, retried for up to 10 s: a stopped server's last tasks may still
/// hold the data directory's lock for a moment.
fn retrying<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    let mut tries = 0;
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(err) => panic!("opening the data directory: {err:?}"),
        }
    }
}

/// Opens the server state on `dir` as the harness does (same keys).
async fn reopen(dir: &std::path::Path) -> Result<AppState, String> {
    let store = retrying(|| SledStore::open(&dir.join("data")));
    let config = RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeConfig::default()
    };
    let executor = Executor::new(
        config,
        store,
        AuditKey::from_bytes(vec![5; 32]).expect("key"),
    )
    .map_err(|err| err.to_string())?;
    let secrets = rampart::secrets::SecretBox::from_key(&[6u8; 32]).expect("master key");
    AppState::open(executor, secrets)
        .await
        .map_err(|err| err.detail)
}

/// Replaces `from` by `to` in every value of `tree` that contains it (the
/// seal prefix stays as it was: the attacker has no key).
fn edit(dir: &std::path::Path, tree: &str, from: &str, to: &str) -> usize {
    let store = retrying(|| SledStore::open(&dir.join("data")));
    let db = store.space();
    let tree = db.open_tree(tree).expect("tree");
    let mut edited = 0;
    for entry in tree.iter() {
        let (key, value) = entry.expect("entry");
        let text = String::from_utf8_lossy(&value[34.min(value.len())..]).into_owned();
        if text.contains(from) {
            let mut bytes = value[..34].to_vec();
            bytes.extend_from_slice(text.replace(from, to).as_bytes());
            tree.insert(key, bytes).expect("insert");
            edited += 1;
        }
    }
    db.flush().expect("flush");
    edited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_of_tokens_runs_and_grants_refuse_start_up() {
    let _serial = serial().await;
    for (tree, from, to, named) in [
        (
            "tokens",
            "\"role\":\"viewer\"",
            "\"role\":\"admin\"",
            "tokens entry",
        ),
        (
            "runs",
            "\"status\":\"waiting_approval\"",
            "\"status\":\"succeeded\"",
            "runs entry",
        ),
        (
            "api-tenants",
            "\"kv_quota_bytes\":4194304",
            "\"kv_quota_bytes\":4194305",
            "api-tenants entry acme",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let server = Server::start(dir.path(), None).await;
        let tokens = tenant(&server, "acme", &[("one", supervised("one", 1))], 0).await;
        ingest(&server, "acme", &tokens["ingest"], &alert("a1", 1)).await;
        server.stop().await;
        // Untouched, it reopens.
        drop(
            reopen(dir.path())
                .await
                .expect("an untouched directory reopens"),
        );
        assert!(
            edit(dir.path(), tree, from, to) > 0,
            "{tree}: nothing to edit"
        );
        let refused = reopen(dir.path())
            .await
            .err()
            .unwrap_or_else(|| panic!("{tree}: an edited directory started"));
        assert!(
            refused.contains("changed outside rampart") && refused.contains(named),
            "{tree}: {refused}"
        );
    }
}
