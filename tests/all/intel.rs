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
            Format::Loki,
            fixtures().join("signature-base/hash-iocs.txt"),
        ),
        (
            "sigbase-c2",
            Format::Loki,
            fixtures().join("signature-base/c2-iocs.txt"),
        ),
        (
            "eset",
            Format::Eset,
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

/// Maltrail as upstream writes it: `# Reference:` groups, paths with a
/// query (`/bounce.aspx?dx11diag=`, `/malu1?`) and suffix trails
/// (`.onion`), from `maltrail-groups-slice.tar.gz`. A match carries its
/// own group's references, a page of them at most, and their count.
#[test]
fn maltrail_groups_query_paths_and_suffixes() {
    use rampart::intel::ReferencePage;
    use rampart::model::IndicatorMatch;
    use rampart::store::Store;
    let dir = tempfile::tempdir().expect("dir");
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    let parsed = formats::read(
        Format::Maltrail,
        &fixtures().join("maltrail-groups-slice.tar.gz"),
        &mut |_| {},
    )
    .expect("read");
    let summary = store
        .feeds()
        .import("maltrail", Format::Maltrail, parsed, false)
        .expect("import");
    assert!(summary.by_type.contains_key("domain_suffix"), "{summary:?}");
    let acme = tenant("acme");
    store
        .feeds()
        .subscribe(&acme, ["maltrail".to_owned()].into())
        .expect("subscribe");
    let lookup = |kind, value: &str| {
        store
            .intel_lookup(&acme, &entity(kind, value))
            .expect("lookup")
    };
    let only = |found: Vec<IndicatorMatch>| -> IndicatorMatch {
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().expect("one")
    };
    let bounce = only(lookup(
        EntityKind::Url,
        "http://gate.example/bounce.aspx?dx11diag=1a2b&x=1",
    ));
    assert_eq!(bounce.indicator, "/bounce.aspx?dx11diag=");
    assert_eq!(bounce.family.as_deref(), Some("ursnif"));
    assert_eq!(
        bounce.references,
        ["https://twitter.com/JAMESWT_MHT/status/1529390656824692736"],
        "its group's reference only"
    );
    assert_eq!(
        only(lookup(EntityKind::Url, "https://h.example/malu3?u=1")).indicator,
        "/malu3?"
    );
    assert!(lookup(EntityKind::Url, "https://h.example/malu3").is_empty());
    let onion = only(lookup(EntityKind::Domain, "expyuzz4wqqyqhjn.onion"));
    assert_eq!(
        (onion.indicator.as_str(), onion.family.as_deref()),
        (".onion", Some("onion"))
    );
    assert!(
        lookup(EntityKind::Domain, "onion").is_empty(),
        "the suffix, not the name"
    );
    // cobaltstrike-1.txt: 53 reference groups in the slice (10,122
    // upstream); an indicator carries its one report.
    let beacon = only(lookup(EntityKind::Ip, "185.135.72.100:9887"));
    assert_eq!(beacon.references_total, 1);
    assert_eq!(
        beacon.references,
        [
            "https://www.virustotal.com/gui/file/04c7031cb8d42ffd16700ae86b1c6d917f76c433dc479f4fd34a4446d0b27b0e/detection"
        ]
    );
    // A match with many references: a page of them and the count.
    let many: Vec<String> = (0..12).map(|i| format!("https://r.example/{i}")).collect();
    let own = IndicatorMatch {
        indicator: "203.0.113.99".into(),
        feed: "acme-own".into(),
        family: None,
        campaign: None,
        confidence: 80,
        references: many.clone(),
        references_total: 0,
        techniques: Vec::new(),
        first_seen: None,
        last_seen: None,
    };
    let ip = entity(EntityKind::Ip, "203.0.113.99");
    store
        .intel_insert(&acme, vec![(ip.clone(), own)])
        .expect("insert");
    let first = only(store.intel_lookup(&acme, &ip).expect("lookup"));
    assert_eq!(
        (first.references_total, first.references.as_slice()),
        (12, &many[..5])
    );
    let last = only(
        store
            .intel_lookup_paged(&acme, &ip, ReferencePage { from: 10, max: 5 })
            .expect("lookup"),
    );
    assert_eq!(
        (last.references_total, last.references.as_slice()),
        (12, &many[10..])
    );
}

/// ESET's MISP events and LOKI's IOC files, read with their own labels:
/// the event's `info` as campaign and its threat-actor galaxy as family
/// (context attributes left out when the publisher flags indicators);
/// LOKI's `# group` headers and hash comments as the family, their URLs as
/// references, never a directory name.
#[test]
fn misp_events_and_loki_files_carry_their_own_labels() {
    use rampart::store::Store;
    let dir = tempfile::tempdir().expect("dir");
    let store = SledStore::open(&dir.path().join("data")).expect("store");
    for (feed, format, path) in [
        ("telebots", Format::Misp, "eset/telebots/misp-telebots.json"),
        ("sshdoor", Format::Misp, "eset/sshdoor/mimban.json"),
        ("sigbase-c2", Format::Loki, "signature-base/c2-iocs.txt"),
        (
            "sigbase-hashes",
            Format::Loki,
            "signature-base/hash-iocs.txt",
        ),
    ] {
        let parsed = formats::read(format, &fixtures().join(path), &mut |_| {}).expect("read");
        store
            .feeds()
            .import(feed, format, parsed, false)
            .expect("import");
    }
    let acme = tenant("acme");
    let all = ["telebots", "sshdoor", "sigbase-c2", "sigbase-hashes"].map(str::to_owned);
    store
        .feeds()
        .subscribe(&acme, all.into())
        .expect("subscribe");
    let one = |kind, value: &str| {
        let found = store
            .intel_lookup(&acme, &entity(kind, value))
            .expect("lookup");
        assert_eq!(found.len(), 1, "{value}: {found:?}");
        found.into_iter().next().expect("one")
    };
    let telebots = one(EntityKind::Ip, "93.190.137.212");
    assert_eq!(
        telebots.campaign.as_deref(),
        Some("OSINT - The rise of TeleBots: Analyzing disruptive KillDisk attacks")
    );
    assert_eq!(telebots.family.as_deref(), Some("TeleBots"));
    assert!(!telebots.references.is_empty(), "the event's links");
    assert!(
        store
            .intel_lookup(&acme, &entity(EntityKind::Hostname, "api.telegram.org"))
            .expect("lookup")
            .is_empty(),
        "to_ids: false is context, not an indicator"
    );
    let sshdoor = one(EntityKind::Ip, "69.64.47.10:1194");
    assert_eq!(sshdoor.campaign.as_deref(), Some("SSHDoor : Mimban"));
    assert_eq!(sshdoor.family.as_deref(), Some("SSHDoor"));
    let snowman = one(EntityKind::Domain, "suroot.com");
    assert_eq!(snowman.family.as_deref(), Some("FireEye Operation Snowman"));
    assert_eq!(snowman.references, ["https://goo.gl/x1v7mT"]);
    assert_eq!(snowman.campaign, None, "no directory name as a label");
    let hashes =
        std::fs::read_to_string(fixtures().join("signature-base/hash-iocs.txt")).expect("hashes");
    let (hash, comment) = hashes
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.split_once(';').filter(|(_, c)| c.contains("https://")))
        .expect("a hash with a link");
    let found = one(EntityKind::FileHash, hash);
    let family = found.family.expect("family");
    assert!(
        !family.contains("http"),
        "URLs stay out of the family: {family}"
    );
    assert!(
        comment.starts_with(family.split(' ').next().unwrap_or_default()),
        "{family} / {comment}"
    );
    assert!(found.references.iter().all(|r| r.starts_with("http")) && !found.references.is_empty());
}
