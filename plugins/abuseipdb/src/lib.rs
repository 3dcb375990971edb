//! IP reputation from AbuseIPDB (a vendor-style enricher over `wasi:http`).
//!
//! For each public IP of an alert: `GET {base_url}/api/v2/check?ipAddress=…
//! &maxAgeInDays=…` with headers `Key: <api_key>` and `Accept:
//! application/json`, as AbuseIPDB's v2 API documents. The answer's
//! `abuseConfidenceScore` (0–100) becomes the verdict: at or above
//! `malicious_at` (default 75) malicious, at or above `suspicious_at`
//! (default 25) suspicious, with the score as confidence; an allow-listed
//! (`isWhitelisted`) address is benign; a score of 0 with no reports says
//! nothing and is left out.
//!
//! Private, loopback, link-local and other reserved addresses are never
//! sent to a third party. Answers are cached in kv for `cache_secs`
//! (default 3600; 0 turns the cache off) to spare the API's daily quota.
//!
//! Errors: missing `api_key` or 401/403 → misconfigured; 422 → invalid
//! input with the API's detail; 429 → unavailable with the server's
//! Retry-After (the executor retries per the step's policy); 5xx and
//! transport failures → unavailable.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rampart_sdk::{
    Alert, Enricher, Enrichment, Entity, EntityKind, PluginError, Verdict, config, http, kv, net,
};
use serde_json::{Value, json};

struct AbuseIpDb;

/// What the tenant configured.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    base_url: String,
    max_age_days: u16,
    cache_secs: u64,
    malicious_at: u8,
    suspicious_at: u8,
}

impl Settings {
    /// Reads the settings through `get`; every bad one is named in one error.
    fn read(get: impl Fn(&str) -> Option<String>) -> Result<Self, PluginError> {
        let mut bad = Vec::new();
        let mut number = |key: &str, default: u64, range: std::ops::RangeInclusive<u64>| -> u64 {
            match get(key) {
                None => default,
                Some(value) => match value.trim().parse::<u64>() {
                    Ok(n) if range.contains(&n) => n,
                    _ => {
                        bad.push(format!(
                            "`{key}` is `{value}`, not a whole number {}-{}",
                            range.start(),
                            range.end()
                        ));
                        default
                    }
                },
            }
        };
        let max_age_days = number("max_age_days", 90, 1..=365);
        let cache_secs = number("cache_secs", 3_600, 0..=7 * 86_400);
        let malicious_at = number("malicious_at", 75, 1..=100);
        let suspicious_at = number("suspicious_at", 25, 1..=100);
        let base_url = get("base_url").unwrap_or_else(|| "https://api.abuseipdb.com".to_owned());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            bad.push(format!("`base_url` is `{base_url}`, not an http(s) URL"));
        }
        if suspicious_at > malicious_at {
            bad.push(format!(
                "`suspicious_at` ({suspicious_at}) is above `malicious_at` ({malicious_at})"
            ));
        }
        if !bad.is_empty() {
            return Err(PluginError::misconfigured(bad.join("; ")));
        }
        Ok(Settings {
            base_url: base_url.trim_end_matches('/').to_owned(),
            max_age_days: u16::try_from(max_age_days).unwrap_or(90),
            cache_secs,
            malicious_at: u8::try_from(malicious_at).unwrap_or(75),
            suspicious_at: u8::try_from(suspicious_at).unwrap_or(25),
        })
    }
}

impl Enricher for AbuseIpDb {
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
        // One lookup per address, in the alert's order, reported on the
        // first entity naming it.
        let mut seen = BTreeSet::new();
        let addresses: Vec<(IpAddr, &Entity)> = alert
            .entities_of(EntityKind::Ip)
            .filter_map(|entity| Some((public_address(&entity.value)?, entity)))
            .filter(|(ip, _)| seen.insert(*ip))
            .collect();
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let settings = Settings::read(config::get)?;
        let key = config::secret("api_key").ok_or_else(|| {
            PluginError::misconfigured("secret `api_key` is not set for abuseipdb")
        })?;
        let now = now_secs();
        let mut found = Vec::new();
        for (ip, entity) in addresses {
            let report = match cached(ip, &settings, now) {
                Some(report) => report,
                None => {
                    let report = check(ip, &settings, &key)?;
                    if settings.cache_secs > 0 {
                        let entry = json!({"at": now, "data": report});
                        kv::set(&cache_key(ip), entry.to_string().as_bytes())?;
                    }
                    report
                }
            };
            if let Some(enrichment) = judge(entity, ip, &report, &settings) {
                found.push(enrichment);
            }
        }
        Ok(found)
    }
}

rampart_sdk::export_enricher!(AbuseIpDb);

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn cache_key(ip: IpAddr) -> String {
    format!("check/{ip}")
}

/// The cached `data` for `ip`, if fresh.
fn cached(ip: IpAddr, settings: &Settings, now: u64) -> Option<Value> {
    if settings.cache_secs == 0 {
        return None;
    }
    let bytes = kv::get(&cache_key(ip)).ok()??;
    let entry: Value = serde_json::from_slice(&bytes).ok()?;
    let at = entry["at"].as_u64()?;
    (now.saturating_sub(at) < settings.cache_secs).then(|| entry["data"].clone())
}

/// One `GET /api/v2/check`; the response's `data` object.
fn check(ip: IpAddr, settings: &Settings, key: &str) -> Result<Value, PluginError> {
    let url = format!(
        "{}/api/v2/check?ipAddress={ip}&maxAgeInDays={}",
        settings.base_url, settings.max_age_days
    );
    let response = http::send(
        &http::Request::get(url)
            .header("key", key)
            .header("accept", "application/json"),
    )?;
    let detail = || {
        response
            .json()
            .ok()
            .and_then(|body| body["errors"][0]["detail"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    match response.status {
        200 => response
            .json()
            .map_err(|err| {
                PluginError::unavailable(format!("AbuseIPDB answer for {ip}: {err}"), None)
            })
            .and_then(|body| {
                let data = body["data"].clone();
                if data.is_object() {
                    Ok(data)
                } else {
                    Err(PluginError::unavailable(
                        format!("AbuseIPDB answer for {ip} has no `data` object"),
                        None,
                    ))
                }
            }),
        401 | 403 => Err(PluginError::misconfigured(format!(
            "AbuseIPDB refused the API key ({}): {}",
            response.status,
            detail()
        ))),
        422 => Err(PluginError::invalid_input(format!(
            "AbuseIPDB rejected {ip}: {}",
            detail()
        ))),
        429 => Err(PluginError::unavailable(
            "rate limited by AbuseIPDB (429)",
            Some(response.retry_after_ms().unwrap_or(60_000)),
        )),
        status => Err(PluginError::unavailable(
            format!("AbuseIPDB failed ({status})"),
            Some(2_000),
        )),
    }
}

/// The enrichment for one address from the API's `data`.
fn judge(entity: &Entity, ip: IpAddr, data: &Value, settings: &Settings) -> Option<Enrichment> {
    let score = data["abuseConfidenceScore"]
        .as_u64()
        .map_or(0, |s| u8::try_from(s.min(100)).unwrap_or(100));
    let reports = data["totalReports"].as_u64().unwrap_or(0);
    let allowed = data["isWhitelisted"].as_bool().unwrap_or(false);
    let (verdict, confidence) = if allowed {
        (Verdict::Benign, 70)
    } else if score >= settings.malicious_at {
        (Verdict::Malicious, score)
    } else if score >= settings.suspicious_at {
        (Verdict::Suspicious, score)
    } else if score == 0 && reports == 0 {
        return None;
    } else {
        (Verdict::Unknown, score)
    };
    let mut found = Enrichment::new(entity.clone(), verdict, confidence).tag("abuseipdb");
    if data["isTor"].as_bool() == Some(true) {
        found = found.tag("tor-exit");
    }
    if let Some(usage) = data["usageType"].as_str() {
        found = found.tag(format!("usage:{usage}"));
    }
    Some(found.data(&json!({
        "source": "AbuseIPDB",
        "abuse_confidence_score": score,
        "total_reports": reports,
        "distinct_users": data["numDistinctUsers"],
        "last_reported_at": data["lastReportedAt"],
        "country": data["countryCode"],
        "isp": data["isp"],
        "usage_type": data["usageType"],
        "whitelisted": allowed,
        "reference": format!("https://www.abuseipdb.com/check/{ip}"),
    })))
}

/// The address of an `ip` entity if it is public; internal addresses are
/// never sent to a third party.
fn public_address(value: &str) -> Option<IpAddr> {
    net::address(value).filter(|ip| !net::is_reserved(*ip))
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        Settings::read(|_| None).expect("defaults")
    }

    #[test]
    fn the_score_decides_the_verdict() {
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let entity = Entity::new(EntityKind::Ip, "203.0.113.9:443");
        let verdict =
            |data: Value| judge(&entity, ip, &data, &defaults()).map(|e| (e.verdict, e.confidence));
        assert_eq!(
            verdict(json!({"abuseConfidenceScore": 100, "totalReports": 80})),
            Some((Verdict::Malicious, 100))
        );
        assert_eq!(
            verdict(json!({"abuseConfidenceScore": 40, "totalReports": 3})),
            Some((Verdict::Suspicious, 40))
        );
        assert_eq!(
            verdict(json!({"abuseConfidenceScore": 5, "totalReports": 1})),
            Some((Verdict::Unknown, 5))
        );
        assert_eq!(
            verdict(json!({"abuseConfidenceScore": 0, "totalReports": 0})),
            None
        );
        assert_eq!(
            verdict(json!({"abuseConfidenceScore": 90, "isWhitelisted": true})),
            Some((Verdict::Benign, 70)),
            "an allow-listed address is benign whatever its reports"
        );
        let tagged = judge(
            &entity,
            ip,
            &json!({"abuseConfidenceScore": 90, "isTor": true, "usageType": "Data Center/Web Hosting/Transit"}),
            &defaults(),
        )
        .expect("reported");
        assert_eq!(
            tagged.tags,
            [
                "abuseipdb",
                "tor-exit",
                "usage:Data Center/Web Hosting/Transit"
            ]
        );
    }

    #[test]
    fn internal_addresses_are_never_sent_out() {
        for internal in [
            "10.1.2.3",
            "192.168.0.1:443",
            "127.0.0.1",
            "169.254.1.1",
            "fd00::1",
            "[fe80::1]:22",
            "::ffff:10.0.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            assert_eq!(public_address(internal), None, "{internal}");
        }
        assert_eq!(
            public_address("203.0.113.9:8080"),
            "203.0.113.9".parse().ok()
        );
        assert_eq!(
            public_address("[2001:db8::1]:443"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(public_address("not an ip"), None);
    }

    #[test]
    fn settings_are_checked_and_every_bad_one_named() {
        let custom = Settings::read(|key| match key {
            "base_url" => Some("http://127.0.0.1:9999/".into()),
            "malicious_at" => Some("90".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(custom.base_url, "http://127.0.0.1:9999");
        assert_eq!((custom.malicious_at, custom.suspicious_at), (90, 25));
        let err = Settings::read(|key| match key {
            "max_age_days" => Some("0".into()),
            "cache_secs" => Some("soon".into()),
            "base_url" => Some("ftp://x".into()),
            _ => None,
        })
        .expect_err("refused");
        for key in ["max_age_days", "cache_secs", "base_url"] {
            assert!(err.message.contains(key), "{}", err.message);
        }
    }
}
