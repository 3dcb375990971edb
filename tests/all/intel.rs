//! Threat intel on real feeds: every format imported into the shared index
//! (counts and skips), the matching semantics through a real plugin in the
//! sandbox, tenant subscriptions, and no malicious verdict on a benign set.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart::RuntimeConfig;
use rampart::intel::formats::{self, Format};
use rampart::model::{Alert, Entity, EntityKind, Severity, Verdict};
use rampart::sandbox::{CallContext, Runtime};
use rampart::store::SledStore;
use rampart::tenant::Grants;
use sha2::Digest as _;

use rampart_e2e::{load, tenant};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/intel")
}

fn entity(kind: EntityKind, value: &str) -> Entity {
    Entity {
        kind,
        value: value.to_owned(),
    }
}

fn alert_with(entities: Vec<Entity>) -> Alert {
    Alert {
        id: "intel-1".into(),
        source: "test".into(),
        title: "intel".into(),
        severity: Severity::Medium,
        time: 0,
        entities,
        techniques: vec![],
        tags: vec![],
        raw: serde_json::json!({}),
    }
}

/// Imports every fixture feed; returns the store and the summaries.
fn import_fixtures(store: &SledStore) -> Vec<rampart::store::feeds::ImportSummary> {
    let feeds: [(&str, Format, PathBuf); 6] = [
        (
            "maltrail",
            Format::Maltrail,
            fixtures().join("maltrail-slice.tar.gz"),
        ),
        (
            "sigbase-hashes",
            Format::Hashes,
            fixtures().join("signature-base/hash-iocs.txt"),
        ),
        (
            "sigbase-c2",
            Format::Maltrail,
            fixtures().join("signature-base/c2-iocs.txt"),
        ),
        (
            "eset",
            Format::Hashes,
            fixtures().join("eset/agrius/samples.sha256"),
        ),
        ("stix-apt1", Format::Stix, fixtures().join("stix/apt1.json")),
        (
            "ipsum",
            Format::Ipsum,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/ipsum/ipsum.txt"),
        ),
    ];
    feeds
        .into_iter()
        .map(|(name, format, path)| {
            let parsed = formats::read(format, &path, &mut |_| {}).expect("read");
            store
                .feeds()
                .import(name, format, parsed, false)
                .expect("import")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_in_every_format_match_through_the_sandbox() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let summaries = import_fixtures(&store);
    let by_feed = |name: &str| summaries.iter().find(|s| s.feed == name).expect("feed");
    // Counts are those of the slices (checked by hand against the files).
    assert!(
        by_feed("maltrail").imported > 1_000,
        "{:?}",
        by_feed("maltrail")
    );
    assert!(by_feed("maltrail").by_type.contains_key("url"));
    assert!(by_feed("maltrail").by_type.contains_key("ip_port"));
    assert_eq!(by_feed("eset").imported, 7);
    // apt1: the x509 AND patterns are skipped and counted, not fatal.
    let apt1 = by_feed("stix-apt1");
    assert_eq!(apt1.imported, 10, "4 CIDRs, 3 domains, 3 hashes: {apt1:?}");
    assert!(
        apt1.skipped.keys().any(|k| k.contains("pattern")),
        "{:?}",
        apt1.skipped
    );

    let acme = tenant("acme");
    let globex = tenant("globex");
    let all: BTreeSet<String> = summaries.iter().map(|s| s.feed.clone()).collect();
    store.feeds().subscribe(&acme, all).expect("subscribe");
    assert!(
        store
            .feeds()
            .subscribe(&globex, ["nope".to_owned()].into())
            .is_err()
    );
    store
        .feeds()
        .subscribe(&globex, ["ipsum".to_owned()].into())
        .expect("subscribe");

    let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(store.clone())).expect("runtime");
    let grants = Grants::allow_all_capabilities();
    let plugin = load(&runtime, &acme, &grants, "threat-intel").await;
    let sha = std::fs::read_to_string(fixtures().join("eset/agrius/samples.sha256")).expect("eset");
    let eset_hash = sha.lines().next().expect("hash").to_uppercase();
    let stix_domain = "hugesoft.org";
    let entities = vec![
        entity(EntityKind::Domain, &format!("mail.{stix_domain}")),
        entity(EntityKind::Ip, "58.247.1.2"), // inside apt1's 58.246.0.0/15
        entity(EntityKind::FileHash, &eset_hash),
        entity(EntityKind::Domain, "nothugesoft.org"),
        entity(EntityKind::Url, &format!("https://{stix_domain}/x.php")),
    ];
    let called = plugin
        .enrich(&alert_with(entities.clone()), &CallContext::default())
        .await
        .expect("enrich");
    let verdict_of = |value: &str| {
        called
            .value
            .iter()
            .find(|e| e.entity.value == value)
            .map(|e| (e.verdict, e.data.clone()))
    };
    let (verdict, data) = verdict_of(&format!("mail.{stix_domain}")).expect("subdomain matched");
    assert_eq!(verdict, Verdict::Malicious);
    assert_eq!(data["feeds"], serde_json::json!(["stix-apt1"]), "{data}");
    assert!(
        data["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("hugesoft.org")),
        "{data}"
    );
    assert!(verdict_of("58.247.1.2").is_some(), "CIDR match");
    let (_, data) = verdict_of(&eset_hash).expect("hash matched case-insensitively");
    assert!(
        data.to_string().contains("agrius"),
        "campaign attribution: {data}"
    );
    assert!(verdict_of("nothugesoft.org").is_none(), "whole labels only");
    assert!(
        verdict_of(&format!("https://{stix_domain}/x.php")).is_some(),
        "URL host"
    );

    // globex subscribes to ipsum only: the same alert finds nothing.
    let other = load(&runtime, &globex, &grants, "threat-intel").await;
    let called = other
        .enrich(&alert_with(entities), &CallContext::default())
        .await
        .expect("enrich");
    assert!(called.value.is_empty(), "{:?}", called.value);

    // Feeds survive a reopen of the store (restart).
    drop(plugin);
    drop(other);
    drop(runtime);
    drop(store);
    let store = SledStore::open(&dir.path().join("data")).expect("reopen");
    let found = rampart::store::Store::intel_lookup(
        &store,
        &acme,
        &entity(EntityKind::Domain, stix_domain),
    )
    .expect("lookup");
    assert_eq!(found.len(), 1, "{found:?}");
}

/// Well-known benign infrastructure and binaries, checked by hand: public
/// resolvers, major vendors' domains and URLs, and this machine's system
/// binaries. Against every feed of the data set (maltrail in full when
/// `../shared/data` is there, else the slice), none may come out malicious.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_benign_set_gets_no_malicious_verdict() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let mut feeds: BTreeSet<String> = import_fixtures(&store)
        .into_iter()
        .map(|s| s.feed)
        .collect();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/ti_maltrail");
    if shared.is_dir() {
        let mut parsed = formats::Parsed::default();
        for part in 1..=4 {
            let path = shared.join(format!("trails_static.part{part}.tar.gz"));
            parsed.extend(formats::read(Format::Maltrail, &path, &mut |_| {}).expect("part"));
        }
        store
            .feeds()
            .import("maltrail-full", Format::Maltrail, parsed, false)
            .expect("import");
        feeds.insert("maltrail-full".to_owned());
    }
    let acme = tenant("acme");
    store.feeds().subscribe(&acme, feeds).expect("subscribe");
    let runtime = Runtime::new(RuntimeConfig::default(), Arc::new(store.clone())).expect("runtime");
    let plugin = load(
        &runtime,
        &acme,
        &Grants::allow_all_capabilities(),
        "threat-intel",
    )
    .await;
    let mut benign: Vec<Entity> = [
        "8.8.8.8",
        "8.8.4.4",
        "1.1.1.1",
        "1.0.0.1",
        "9.9.9.9",
        "208.67.222.222",
        "2001:4860:4860::8888",
    ]
    .iter()
    .map(|v| entity(EntityKind::Ip, v))
    .collect();
    benign.extend(
        [
            "google.com",
            "www.google.com",
            "microsoft.com",
            "www.microsoft.com",
            "windowsupdate.com",
            "update.microsoft.com",
            "office.com",
            "apple.com",
            "icloud.com",
            "amazon.com",
            "amazonaws.com",
            "github.com",
            "cloudflare.com",
            "akamai.net",
            "mozilla.org",
            "ubuntu.com",
        ]
        .iter()
        .map(|v| entity(EntityKind::Domain, v)),
    );
    benign.extend(
        [
            "https://www.google.com/",
            "https://login.microsoftonline.com/common/oauth2/authorize",
            "https://github.com/",
            "https://www.apple.com/",
        ]
        .iter()
        .map(|v| entity(EntityKind::Url, v)),
    );
    // The empty file, and this machine's system binaries.
    benign.push(entity(
        EntityKind::FileHash,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ));
    for binary in ["/bin/sh", "/bin/ls", "/usr/bin/env", "/bin/cat"] {
        if let Ok(bytes) = std::fs::read(binary) {
            benign.push(entity(
                EntityKind::FileHash,
                &hex::encode(sha2::Sha256::digest(&bytes)),
            ));
        }
    }
    let called = plugin
        .enrich(&alert_with(benign.clone()), &CallContext::default())
        .await
        .expect("enrich");
    let malicious: Vec<String> = called
        .value
        .iter()
        .filter(|e| e.verdict == Verdict::Malicious)
        .map(|e| format!("{} ({})", e.entity.value, e.data))
        .collect();
    assert!(
        malicious.is_empty(),
        "benign entities called malicious: {malicious:#?}"
    );
    eprintln!(
        "benign set: {} entities, {} with any match (not malicious), 0 malicious",
        benign.len(),
        called.value.len()
    );
}
