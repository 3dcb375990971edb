//! The control plane as a library, without HTTP: what an embedder gets.
//! Concurrent creates, the grants rule on plugins the embedder added, the
//! "in use" rule on packages, and restore from a reopened directory.

use std::path::Path;

use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::control::{Control, ControlError, NewTenant};
use rampart::executor::Executor;
use rampart::secrets::SecretBox;
use rampart::store::SledStore;
use rampart::tenant::{Capability, Grants};
use rampart_e2e::{manifest, tenant};

fn open(dir: &Path) -> Control {
    let store = SledStore::open(&dir.join("data")).expect("store");
    let executor = Executor::new(
        RuntimeConfig::default(),
        store,
        AuditKey::from_bytes(vec![3u8; 32]).expect("key"),
    )
    .expect("executor");
    Control::open(executor, SecretBox::from_key(&[6u8; 32]).expect("box")).expect("control")
}

fn new_tenant(id: &str) -> NewTenant {
    NewTenant {
        id: id.to_owned(),
        grants: Some(Grants::allow_all_capabilities()),
        ..NewTenant::default()
    }
}

/// Sixteen threads create the same tenant at once, twenty times over:
/// each time exactly one succeeds and the others are told it exists.
#[test]
fn concurrent_creates_of_one_tenant_make_it_once() {
    let dir = tempfile::tempdir().expect("dir");
    let control = open(dir.path());
    for round in 0..20 {
        let id = format!("t{round}");
        let barrier = std::sync::Barrier::new(16);
        let outcomes: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let (control, id, barrier) = (&control, id.clone(), &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        match control.tenants().create(new_tenant(&id), "admin") {
                            Ok(_) => Ok(()),
                            Err(ControlError::TenantExists(_)) => Err("exists".to_owned()),
                            Err(other) => Err(other.to_string()),
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let created = outcomes.iter().filter(|o| o.is_ok()).count();
        let exists = outcomes
            .iter()
            .filter(|o| o.as_ref().err().is_some_and(|e| e == "exists"))
            .count();
        assert_eq!((created, exists), (1, 15), "round {round}: {outcomes:?}");
    }
    let audit = control.executor().audit();
    let mut created_records = 0;
    audit
        .read(&tenant("t0"), |record, _| {
            created_records += usize::from(record.detail["tenant"] == "created");
            true
        })
        .expect("audit");
    assert_eq!(created_records, 1, "one creation, one audit record");
}

/// Grants that would take `intel` from a plugin the embedder loaded are
/// refused (the plugin could not load again), naming what it needs; grants
/// with secrets and private ranges without the right are refused too.
#[tokio::test]
async fn grants_never_strand_a_loaded_plugin() {
    let dir = tempfile::tempdir().expect("dir");
    let control = open(dir.path());
    let acme = control
        .tenants()
        .create(new_tenant("acme"), "admin")
        .expect("create")
        .id;
    control
        .executor()
        .add_plugin(&acme, &manifest("threat-intel"))
        .await
        .expect("plugin");
    let mut narrower = Grants::allow_all_capabilities();
    narrower
        .default
        .capabilities
        .retain(|c| *c != Capability::Intel);
    let refused = control
        .tenants()
        .set_grants(&acme, narrower, true, "admin")
        .expect_err("stranding grants");
    assert!(
        matches!(&refused, ControlError::GrantsInUse(why) if why.iter().any(|w| w.contains("threat-intel") && w.contains("intel"))),
        "{refused}"
    );
    let mut private = Grants::allow_all_capabilities();
    private.default.allow_private = vec!["10.0.0.0/8".parse().expect("net")];
    assert!(matches!(
        control
            .tenants()
            .set_grants(&acme, private, false, "analyst"),
        Err(ControlError::PrivateRanges)
    ));
    // The refusals changed nothing.
    let grants = control.tenants().get(&acme).expect("get").grants;
    assert!(grants.default.capabilities.contains(&Capability::Intel));
}

fn upload_files(name: &str) -> (String, Vec<u8>) {
    let path = manifest(name);
    (
        std::fs::read_to_string(&path).expect("manifest"),
        std::fs::read(path.with_extension("wasm")).expect("wasm"),
    )
}

/// Creates tenant `acme` and uploads `plugins` to it.
async fn acme_with(control: &Control, plugins: &[&str]) -> rampart::tenant::TenantId {
    let acme = control
        .tenants()
        .create(new_tenant("acme"), "admin")
        .expect("create")
        .id;
    for name in plugins {
        let (text, wasm) = upload_files(name);
        control
            .packages()
            .upload(&acme, &text, &wasm)
            .await
            .expect("upload");
    }
    acme
}

/// A package a playbook uses is not deleted; once the playbook is gone
/// from the tenant's set... it is. Everything comes back after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_and_playbooks_are_kept_and_restored() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let control = open(dir.path());
        let acme = acme_with(&control, &["ip-reputation", "risk-scorer"]).await;
        let yaml = "name: triage\ntrigger: { alert: 'true' }\nsteps:\n  - id: rep\n    enrich: ip-reputation\n  - id: risk\n    score: risk-scorer\n    needs: [rep]\n";
        control
            .playbooks()
            .put(&acme, "triage", yaml, "prn-author")
            .expect("playbook");
        let wrong = control
            .playbooks()
            .put(&acme, "other-name", yaml, "prn-author")
            .expect_err("name mismatch");
        assert!(
            matches!(wrong, ControlError::PlaybookName { .. }),
            "{wrong}"
        );
        let in_use = control
            .packages()
            .delete(&acme, "risk-scorer", "admin")
            .expect_err("in use");
        assert!(
            matches!(&in_use, ControlError::PluginInUse { users, .. } if users == &["playbook triage".to_owned()]),
            "{in_use}"
        );
        control
            .playbooks()
            .set_enabled(&acme, "triage", false, "admin")
            .expect("disable");
        assert!(matches!(
            control.packages().delete(&acme, "nope", "admin"),
            Err(ControlError::NoPlugin(_))
        ));
    }
    // Reopened: tenant, both packages, the playbook (still disabled, same owner).
    let control = open(dir.path());
    control.restore().await.expect("restore");
    let acme = tenant("acme");
    assert_eq!(
        control.tenants().list().expect("list"),
        vec!["acme".to_owned()]
    );
    let mut plugins: Vec<String> = control
        .packages()
        .list(&acme)
        .expect("packages")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    plugins.sort();
    assert_eq!(plugins, ["ip-reputation", "risk-scorer"]);
    let stored = control.playbooks().get(&acme, "triage").expect("playbook");
    assert_eq!(stored.owner.as_deref(), Some("prn-author"));
    assert!(!stored.enabled);
    assert!(!control.executor().playbook_enabled(&acme, "triage"));
    assert_eq!(control.executor().playbooks(&acme).len(), 1);
}

/// Hunts as a library: registered with their rules checked, fired over the
/// events after the watermark (each event scanned once), findings turned
/// into alerts that start a playbook, the watermark kept across a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunts_scan_each_event_once_without_http() {
    use rampart::control::NewHunt;
    let dir = tempfile::tempdir().expect("dir");
    let event = |id: &str, line: &str| rampart::model::Event {
        id: id.to_owned(),
        time: 1,
        data: serde_json::json!({"CommandLine": line, "Hostname": "ws-1"}),
    };
    let new_hunt = |plugin: &str, schedule: &str| NewHunt {
        plugin: plugin.to_owned(),
        schedule: schedule.to_owned(),
        params: serde_json::Value::Null,
    };
    {
        let control = open(dir.path());
        let acme = acme_with(&control, &["cmdline-hunt", "risk-scorer"]).await;
        let yaml = "name: hunted\ntrigger: { alert: 'alert.source == \"hunt:cmdline\"' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
        control
            .playbooks()
            .put(&acme, "hunted", yaml, "prn-author")
            .expect("playbook");
        let hunts = control.hunts();
        for (name, hunt, expected) in [
            ("Bad Name", new_hunt("cmdline-hunt", "* * * * *"), "names"),
            (
                "cmdline",
                new_hunt("cmdline-hunt", "every minute"),
                "fields",
            ),
            (
                "cmdline",
                new_hunt("risk-scorer", "* * * * *"),
                "not a hunt",
            ),
            ("cmdline", new_hunt("nope", "* * * * *"), "no plugin"),
        ] {
            let refused = hunts.put(&acme, name, hunt, "admin").expect_err(name);
            assert!(refused.to_string().contains(expected), "{refused}");
        }
        assert!(hunts.list(&acme).expect("list").is_empty());
        hunts
            .put(
                &acme,
                "cmdline",
                new_hunt("cmdline-hunt", "0 0 1 1 *"),
                "admin",
            )
            .expect("put");
        let stored = hunts
            .events()
            .append(
                &acme,
                vec![
                    event("e1", "powershell.exe -nop -enc SQBFAFgA"),
                    event("e2", "notepad.exe"),
                ],
                rampart::model::now_ms(),
            )
            .expect("events");
        assert_eq!(stored, 2);
        let (record, alerts) = hunts.fire(&acme, "cmdline").await.expect("fire");
        assert_eq!((record.last_scanned, alerts.len()), (2, 1), "{record:?}");
        assert_eq!(record.last_error, None);
        let runs = control.executor().runs(&acme).expect("runs");
        assert_eq!(runs.len(), 1, "the finding started the playbook");
        // Nothing new: nothing scanned again.
        let (again, alerts) = hunts.fire(&acme, "cmdline").await.expect("fire");
        assert_eq!((again.last_scanned, alerts.len()), (0, 0));
        assert!(matches!(
            hunts.fire(&acme, "nope").await,
            Err(ControlError::NoHunt(_))
        ));
        let in_use = control
            .packages()
            .delete(&acme, "cmdline-hunt", "admin")
            .expect_err("in use");
        assert!(in_use.to_string().contains("hunt cmdline"), "{in_use}");
    }
    let control = open(dir.path());
    control.restore().await.expect("restore");
    let acme = tenant("acme");
    let listed = control.hunts().list(&acme).expect("list");
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].watermark > 0,
        "the watermark survives: {listed:?}"
    );
    control
        .hunts()
        .events()
        .append(
            &acme,
            vec![event("e3", "powershell.exe -enc AAAA")],
            rampart::model::now_ms(),
        )
        .expect("events");
    let (record, _) = control.hunts().fire(&acme, "cmdline").await.expect("fire");
    assert_eq!(record.last_scanned, 1, "only the new event: {record:?}");
}

/// The ingest rate as a library: a burst of twice the rate passes, the
/// next alert is refused with a wait, a refused request's charge comes
/// back, and a batch past the burst is refused as too large.
#[test]
fn ingest_limits_hold_without_http() {
    let dir = tempfile::tempdir().expect("dir");
    let control = open(dir.path());
    let acme = control
        .tenants()
        .create(
            NewTenant {
                ingest_per_second: Some(5),
                ..new_tenant("acme")
            },
            "admin",
        )
        .expect("create")
        .id;
    let limits = control.ingest();
    limits.take(&acme, 10).expect("a burst of twice the rate");
    match limits.take(&acme, 1) {
        Err(ControlError::RateLimited {
            rate,
            retry_after_s,
            ..
        }) => assert_eq!((rate, retry_after_s >= 1), (5, true)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    limits.give_back(&acme, 1);
    limits.take(&acme, 1).expect("the charge came back");
    assert!(matches!(
        limits.check_batch(&acme, 11),
        Err(ControlError::BatchTooLarge { burst: 10, .. })
    ));
    limits.check_batch(&acme, 10).expect("a batch of the burst");
    assert!(matches!(
        limits.take(&tenant("nobody"), 1),
        Err(ControlError::NoTenant(_))
    ));
}
