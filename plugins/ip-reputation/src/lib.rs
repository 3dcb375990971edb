//! IP reputation enricher.
//!
//! For every IP entity it combines three sources:
//! - an [ipsum](https://github.com/stamparm/ipsum)-format feed (`IP<TAB>count`,
//!   count = how many blocklists list the IP), fetched over HTTP from the
//!   `feed_url` setting and cached per IP in kv for `refresh_secs`;
//! - the tenant's threat-intel index (`intel`);
//! - analyst feedback on earlier runs (`memory`), which can clear an IP.

use std::time::{SystemTime, UNIX_EPOCH};

use rampart_sdk::{
    Alert, Enricher, Enrichment, Entity, EntityKind, IndicatorMatch, PluginError, Verdict, config,
    http, intel, kv, log, memory,
};
use serde_json::json;

struct IpReputation;

impl Enricher for IpReputation {
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
        // A feed outage (or a dry run, which has no network) must not stop
        // enrichment from intel and memory; say so and go on.
        if let Err(err) = refresh_feed() {
            log::warn(&format!("ipsum feed not refreshed: {}", err.message));
        }
        let mut found = Vec::new();
        for ip in alert.entities_of(EntityKind::Ip) {
            if let Some(enrichment) = judge(ip)? {
                found.push(enrichment);
            }
        }
        Ok(found)
    }
}

rampart_sdk::export_enricher!(IpReputation);

/// Judges one IP; `None` when no source knows anything about it.
fn judge(ip: &Entity) -> Result<Option<Enrichment>, PluginError> {
    let address = strip_port(&ip.value);
    let lists = kv::get(&format!("ipsum/{address}"))?
        .and_then(|bytes| bytes.first().copied())
        .unwrap_or(0);
    let hits = intel::lookup(ip);
    let recalled = memory::recall(ip);
    Ok(assess(
        ip,
        lists,
        &hits,
        recalled.analysts_say_harmless(),
        recalled.sightings,
    ))
}

/// The verdict from what the sources said: `lists` block lists in the
/// ipsum feed, `hits` in the intel index, the analysts' clearing and how
/// often the tenant saw the address before.
fn assess(
    ip: &Entity,
    lists: u8,
    hits: &[IndicatorMatch],
    cleared: bool,
    sightings: u32,
) -> Option<Enrichment> {
    let (mut verdict, mut confidence) = match lists {
        0 => (Verdict::Unknown, 0),
        1 | 2 => (Verdict::Suspicious, 30 + 10 * lists),
        n => (
            Verdict::Malicious,
            50u8.saturating_add(n.saturating_mul(8)).min(95),
        ),
    };
    if let Some(best) = hits.iter().map(|hit| hit.confidence).max()
        && best >= confidence
    {
        (verdict, confidence) = (Verdict::Malicious, best);
    }
    let mut tags = Vec::new();
    if cleared {
        // An analyst's word on this tenant beats a shared feed.
        (verdict, confidence) = (Verdict::Benign, 80);
        tags.push("analyst-cleared");
    }
    if verdict == Verdict::Unknown && sightings == 0 {
        return None;
    }
    let families: Vec<&str> = hits
        .iter()
        .filter_map(|hit| hit.family.as_deref())
        .collect();
    let mut enrichment = Enrichment::new(ip.clone(), verdict, confidence).data(&json!({
        "ipsum_lists": lists,
        "intel_matches": hits.len(),
        "families": families,
        "feeds": hits.iter().map(|hit| hit.feed.as_str()).collect::<Vec<_>>(),
        "prior_sightings": sightings,
    }));
    if lists > 0 {
        enrichment = enrichment.tag("ipsum");
    }
    for tag in tags {
        enrichment = enrichment.tag(tag);
    }
    Some(enrichment)
}

/// Fetches the feed into kv when `feed_url` is set and the cache is stale.
fn refresh_feed() -> Result<(), PluginError> {
    let Some(url) = config::get("feed_url") else {
        return Ok(());
    };
    let refresh_secs: u64 = config::get("refresh_secs")
        .and_then(|value| value.parse().ok())
        .unwrap_or(3600);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let fetched_at: Option<u64> = kv::get_json("ipsum/.fetched-at")?;
    if fetched_at.is_some_and(|at| now.saturating_sub(at) < refresh_secs) {
        return Ok(());
    }
    let mut request = http::Request::get(url);
    request.max_body = 8 << 20;
    let response = http::send(&request)?;
    if response.status != 200 {
        return Err(PluginError::unavailable(
            format!("feed answered HTTP {}", response.status),
            Some(60_000),
        ));
    }
    let text = String::from_utf8_lossy(&response.body);
    let mut stored = 0u32;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(address), Some(count)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(count) = count.parse::<u8>() else {
            continue;
        };
        kv::set(&format!("ipsum/{address}"), &[count])?;
        stored += 1;
    }
    kv::set_json("ipsum/.fetched-at", &now)?;
    log::info(&format!("ipsum feed refreshed: {stored} addresses"));
    Ok(())
}

/// `203.0.113.7:443` → `203.0.113.7`; `[2001:db8::1]:443` → `2001:db8::1`.
fn strip_port(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => value,
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip() -> Entity {
        Entity::new(EntityKind::Ip, "77.239.124.102:22")
    }

    fn hit(confidence: u8) -> IndicatorMatch {
        IndicatorMatch {
            indicator: "77.239.124.102".into(),
            feed: "maltrail".into(),
            family: Some("mirai".into()),
            campaign: None,
            confidence,
            references: vec![],
            techniques: vec![],
            first_seen: None,
            last_seen: None,
        }
    }

    #[test]
    fn block_list_count_sets_the_verdict() {
        let verdict =
            |lists| assess(&ip(), lists, &[], false, 0).map(|e| (e.verdict, e.confidence));
        assert_eq!(verdict(0), None, "nobody knows it");
        assert_eq!(verdict(1), Some((Verdict::Suspicious, 40)));
        assert_eq!(verdict(2), Some((Verdict::Suspicious, 50)));
        assert_eq!(verdict(3), Some((Verdict::Malicious, 74)));
        assert_eq!(verdict(10), Some((Verdict::Malicious, 95)), "capped at 95");
    }

    #[test]
    fn intel_can_raise_and_analysts_can_clear() {
        let raised = assess(&ip(), 1, &[hit(90)], false, 0).expect("known");
        assert_eq!(
            (raised.verdict, raised.confidence),
            (Verdict::Malicious, 90)
        );
        let data: serde_json::Value = serde_json::from_str(&raised.data).expect("json");
        assert_eq!(data["families"][0], "mirai");
        let weaker = assess(&ip(), 10, &[hit(60)], false, 0).expect("known");
        assert_eq!(
            weaker.confidence, 95,
            "a weaker intel match does not lower the feed's verdict"
        );
        let cleared = assess(&ip(), 10, &[hit(90)], true, 3).expect("known");
        assert_eq!((cleared.verdict, cleared.confidence), (Verdict::Benign, 80));
        assert!(cleared.tags.contains(&"analyst-cleared".to_owned()));
        let seen = assess(&ip(), 0, &[], false, 2).expect("seen before");
        assert_eq!(seen.verdict, Verdict::Unknown);
    }

    #[test]
    fn ports_are_stripped_from_both_address_families() {
        assert_eq!(strip_port("203.0.113.7:443"), "203.0.113.7");
        assert_eq!(strip_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(strip_port("203.0.113.7"), "203.0.113.7");
    }
}
