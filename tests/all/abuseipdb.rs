//! `abuseipdb` against a local server shaped like AbuseIPDB's v2 API
//! (`GET /api/v2/check`, `Key` header, its JSON and error bodies), which
//! answers from the IPsum sample: an address on N block lists gets an
//! abuse confidence score of min(100, 10 × N) and 4 × N reports; Google's
//! resolver is allow-listed as it is on AbuseIPDB.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rampart::model::{Alert, Entity, EntityKind, Severity, Verdict};
use rampart::sandbox::{CallContext, PluginError};
use rampart::tenant::Secret;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::responders::read_request;
use rampart_e2e::{grants_with, load, runtime, tenant};

const KEY: &str = "abuse-key-0123456789";

#[derive(Default)]
struct Api {
    /// `ok`, `rate` (429 with Retry-After: 3) or `fail` (503).
    mode: String,
    /// The `ipAddress` of every check received.
    checked: Vec<String>,
}

async fn abuseipdb() -> (u16, Arc<Mutex<Api>>) {
    let feed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/data/ipsum/ipsum.txt"
    ))
    .expect("ipsum");
    let lists: HashMap<String, u64> = feed
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (ip, count) = l.split_once('\t')?;
            Some((ip.to_owned(), count.trim().parse().ok()?))
        })
        .collect();
    let lists = Arc::new(lists);
    let state = Arc::new(Mutex::new(Api {
        mode: "ok".into(),
        ..Api::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (state, lists) = (shared.clone(), lists.clone());
            tokio::spawn(async move {
                let Some((method, path, headers, _)) = read_request(&mut socket).await else {
                    return;
                };
                let (status, extra, body) = answer(&state, &lists, &method, &path, &headers);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, state)
}

fn error(status: u16, detail: &str) -> String {
    json!({"errors": [{"detail": detail, "status": status}]}).to_string()
}

fn answer(
    state: &Mutex<Api>,
    lists: &HashMap<String, u64>,
    method: &str,
    path: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> (u16, String, String) {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    if method != "GET" || route != "/api/v2/check" {
        return (404, String::new(), error(404, "no such endpoint"));
    }
    if headers.get("key").map(String::as_str) != Some(KEY) {
        return (
            401,
            String::new(),
            error(
                401,
                "Authentication failed. Your API key is either missing, incorrect, or revoked.",
            ),
        );
    }
    if headers.get("accept").map(String::as_str) != Some("application/json") {
        return (
            406,
            String::new(),
            error(406, "Accept must be application/json"),
        );
    }
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let ip = params.get("ipAddress").cloned().unwrap_or_default();
    state.lock().expect("state").checked.push(ip.clone());
    match state.lock().expect("state").mode.as_str() {
        "rate" => {
            return (
                429,
                "retry-after: 3\r\nx-ratelimit-remaining: 0\r\n".into(),
                error(
                    429,
                    "Daily rate limit of 1000 requests exceeded for this endpoint.",
                ),
            );
        }
        "fail" => return (503, String::new(), error(503, "Service unavailable")),
        _ => {}
    }
    if ip.parse::<std::net::IpAddr>().is_err() {
        return (
            422,
            String::new(),
            error(
                422,
                "The ip address must be a valid IPv4 or IPv6 address (e.g. 8.8.8.8 or 2001:4860:4860::8888).",
            ),
        );
    }
    if !params
        .get("maxAgeInDays")
        .and_then(|d| d.parse::<u32>().ok())
        .is_some_and(|d| (1..=365).contains(&d))
    {
        return (
            422,
            String::new(),
            error(422, "The max age in days must be between 1 and 365."),
        );
    }
    let count = lists.get(&ip).copied().unwrap_or(0);
    let data = json!({
        "ipAddress": ip,
        "isPublic": true,
        "ipVersion": if ip.contains(':') { 6 } else { 4 },
        "isWhitelisted": ip == "8.8.8.8",
        "abuseConfidenceScore": (count * 10).min(100),
        "countryCode": "ZZ",
        "usageType": "Data Center/Web Hosting/Transit",
        "isp": "Example Hosting",
        "domain": "example.net",
        "hostnames": [],
        "isTor": false,
        "totalReports": count * 4,
        "numDistinctUsers": count * 2,
        "lastReportedAt": if count > 0 { json!("2025-11-20T10:00:00+00:00") } else { json!(null) },
    });
    (200, String::new(), json!({"data": data}).to_string())
}

fn alert(ips: &[&str]) -> Alert {
    Alert {
        id: "abuse".into(),
        source: "firewall".into(),
        title: "Inbound connections".into(),
        severity: Severity::Medium,
        time: 1_795_756_800_000,
        entities: ips
            .iter()
            .map(|ip| Entity {
                kind: EntityKind::Ip,
                value: (*ip).into(),
            })
            .collect(),
        techniques: vec![],
        tags: vec![],
        raw: json!({}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuseipdb_enricher_speaks_the_v2_check_api() {
    let (port, state) = abuseipdb().await;
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let grants = |key: Option<&str>, cache_secs: &str| {
        grants_with(None, |grant| {
            grant.http_hosts = vec![format!("127.0.0.1:{port}")];
            grant.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
            grant
                .settings
                .insert("base_url".into(), format!("http://127.0.0.1:{port}"));
            grant
                .settings
                .insert("cache_secs".into(), cache_secs.into());
            if let Some(key) = key {
                grant.secrets.insert("api_key".into(), Secret::new(key));
            }
        })
    };
    let plugin = load(&runtime, &acme, &grants(Some(KEY), "3600"), "abuseipdb").await;
    let context = CallContext::default();
    let ips = [
        "77.239.124.102",  // 10 lists → 100 → malicious
        "62.60.130.242",   // 8 lists → 80 → malicious
        "1.220.233.171",   // 5 lists → 50 → suspicious
        "8.8.8.8:53",      // allow-listed → benign
        "203.0.113.250",   // unknown → nothing to say
        "10.0.0.5",        // internal: never sent out
        "192.168.1.1:445", // internal: never sent out
    ];
    let found = plugin
        .enrich(&alert(&ips), &context)
        .await
        .expect("enrich")
        .value;
    let verdicts: Vec<(&str, Verdict, u8)> = found
        .iter()
        .map(|e| (e.entity.value.as_str(), e.verdict, e.confidence))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("77.239.124.102", Verdict::Malicious, 100),
            ("62.60.130.242", Verdict::Malicious, 80),
            ("1.220.233.171", Verdict::Suspicious, 50),
            ("8.8.8.8:53", Verdict::Benign, 70),
        ]
    );
    let top = found
        .iter()
        .find(|e| e.entity.value == "77.239.124.102")
        .expect("listed");
    assert_eq!(top.data["total_reports"], 40);
    assert_eq!(
        top.data["reference"],
        "https://www.abuseipdb.com/check/77.239.124.102"
    );
    let mut checked = state.lock().expect("state").checked.clone();
    checked.sort();
    assert_eq!(
        checked,
        [
            "1.220.233.171",
            "203.0.113.250",
            "62.60.130.242",
            "77.239.124.102",
            "8.8.8.8"
        ],
        "one check per public address; internal ones never leave"
    );

    // Answers are cached in kv: the same alert costs no request.
    plugin.enrich(&alert(&ips), &context).await.expect("again");
    assert_eq!(state.lock().expect("state").checked.len(), 5);

    // Each failure is its own clear error, and the key is in none of them.
    let uncached = load(&runtime, &acme, &grants(Some(KEY), "0"), "abuseipdb").await;
    let fails = |plugin: rampart::Plugin| async move {
        match plugin
            .enrich(&alert(&["2.57.121.112"]), &CallContext::default())
            .await
        {
            Err(PluginError::Guest(err)) => err,
            other => panic!("expected a plugin error, got {other:?}"),
        }
    };
    state.lock().expect("state").mode = "rate".into();
    let rate = fails(uncached.clone()).await;
    assert_eq!(
        (rate.kind, rate.retry_after_ms),
        (rampart::model::ErrorKind::Unavailable, Some(3_000)),
        "{rate:?}"
    );
    state.lock().expect("state").mode = "fail".into();
    let down = fails(uncached.clone()).await;
    assert!(down.message.contains("(503)"), "{down:?}");
    state.lock().expect("state").mode = "ok".into();
    let wrong = load(&runtime, &acme, &grants(Some("wrong"), "0"), "abuseipdb").await;
    let refused = fails(wrong).await;
    assert_eq!(refused.kind, rampart::model::ErrorKind::Misconfigured);
    assert!(refused.message.contains("(401)") && refused.message.contains("API key"));
    let keyless = load(&runtime, &acme, &grants(None, "0"), "abuseipdb").await;
    let missing = fails(keyless).await;
    assert_eq!(
        (missing.kind, missing.message.as_str()),
        (
            rampart::model::ErrorKind::Misconfigured,
            "secret `api_key` is not set for abuseipdb"
        )
    );
    for err in [&rate, &down, &refused, &missing] {
        assert!(!err.message.contains(KEY), "{err:?}");
    }
}
