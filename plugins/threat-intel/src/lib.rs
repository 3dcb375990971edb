//! Threat-intel enricher.
//!
//! Looks every IP, domain, host name, URL, e-mail address and file hash of
//! the alert up in the tenant's feeds (`intel`). The verdict follows the
//! strongest match: confidence ≥ 60 is malicious, below that suspicious
//! (scanner lists and "suspicious" trails sit there). Several feeds agreeing
//! raise confidence (+5 per extra feed, at most 99). An analyst's
//! false-positive or benign label on this entity (`memory`) clears it: the
//! tenant's own judgement beats a shared feed. Every enrichment says why,
//! with the feed, family, campaign, references and ATT&CK ids.

use std::collections::BTreeSet;

use rampart_sdk::{
    Alert, Enricher, Enrichment, Entity, EntityKind, IndicatorMatch, PluginError, Verdict, intel,
    memory,
};
use serde_json::json;

struct ThreatIntel;

impl Enricher for ThreatIntel {
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for entity in &alert.entities {
            let lookable = matches!(
                entity.kind,
                EntityKind::Ip
                    | EntityKind::Domain
                    | EntityKind::Hostname
                    | EntityKind::Url
                    | EntityKind::Email
                    | EntityKind::FileHash
            );
            if !lookable || !seen.insert((entity.kind, entity.value.clone())) {
                continue;
            }
            let cleared = |entity: &Entity| memory::recall(entity).analysts_say_harmless();
            if let Some(enrichment) = judge(entity, &intel::lookup(entity), cleared) {
                found.push(enrichment);
            }
        }
        Ok(found)
    }
}

rampart_sdk::export_enricher!(ThreatIntel);

/// The verdict on one entity from its matches; `None` when no feed knows it.
/// `cleared` says whether the tenant's analysts called the entity harmless
/// (asked only when some feed knows it).
fn judge(
    entity: &Entity,
    matches: &[IndicatorMatch],
    cleared: impl FnOnce(&Entity) -> bool,
) -> Option<Enrichment> {
    let best = matches.iter().map(|m| m.confidence).max()?;
    let feeds: BTreeSet<&str> = matches.iter().map(|m| m.feed.as_str()).collect();
    let agreement = u8::try_from(feeds.len().saturating_sub(1) * 5).unwrap_or(u8::MAX);
    let mut confidence = best.saturating_add(agreement).min(99);
    let mut verdict = if best >= 60 {
        Verdict::Malicious
    } else {
        Verdict::Suspicious
    };
    let cleared = cleared(entity);
    if cleared {
        verdict = Verdict::Benign;
        confidence = 80;
    }
    let reasons: Vec<String> = matches
        .iter()
        .take(10)
        .map(|m| {
            let mut reason = format!("{} lists {}", m.feed, m.indicator);
            if let Some(family) = &m.family {
                reason.push_str(&format!(" ({family})"));
            }
            reason.push_str(&format!(", confidence {}", m.confidence));
            reason
        })
        .collect();
    let families: BTreeSet<&str> = matches.iter().filter_map(|m| m.family.as_deref()).collect();
    let campaigns: BTreeSet<&str> = matches
        .iter()
        .filter_map(|m| m.campaign.as_deref())
        .collect();
    let references: BTreeSet<&str> = matches
        .iter()
        .flat_map(|m| m.references.iter().map(String::as_str))
        .take(20)
        .collect();
    let techniques: BTreeSet<&str> = matches
        .iter()
        .flat_map(|m| m.techniques.iter().map(String::as_str))
        .collect();
    let mut enrichment = Enrichment::new(entity.clone(), verdict, confidence).data(&json!({
        "reasons": reasons,
        "matches": matches.len(),
        "feeds": feeds,
        "families": families,
        "campaigns": campaigns,
        "references": references,
        "techniques": techniques,
        "analyst_cleared": cleared,
    }));
    for feed in &feeds {
        enrichment = enrichment.tag(format!("feed:{feed}"));
    }
    for family in families.iter().take(5) {
        enrichment = enrichment.tag(format!("family:{family}"));
    }
    if cleared {
        enrichment = enrichment.tag("analyst-cleared");
    }
    Some(enrichment)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hit(feed: &str, confidence: u8, family: Option<&str>) -> IndicatorMatch {
        IndicatorMatch {
            indicator: "mail.hugesoft.org".into(),
            feed: feed.into(),
            family: family.map(str::to_owned),
            campaign: None,
            confidence,
            references: vec!["https://example.org/apt1".into()],
            techniques: vec!["T1071.001".into()],
            first_seen: None,
            last_seen: None,
        }
    }

    fn domain() -> Entity {
        Entity::new(EntityKind::Domain, "mail.hugesoft.org")
    }

    #[test]
    fn strongest_match_decides_and_agreeing_feeds_add_confidence() {
        let one =
            judge(&domain(), &[hit("stix-apt1", 85, Some("APT1"))], |_| false).expect("known");
        assert_eq!((one.verdict, one.confidence), (Verdict::Malicious, 85));
        assert!(one.tags.contains(&"family:APT1".to_owned()));
        let two = judge(
            &domain(),
            &[hit("stix-apt1", 85, None), hit("maltrail", 70, None)],
            |_| false,
        )
        .expect("known");
        assert_eq!(two.confidence, 90, "+5 for a second feed");
        let weak = judge(&domain(), &[hit("maltrail", 40, None)], |_| false).expect("known");
        assert_eq!(weak.verdict, Verdict::Suspicious, "below 60 is suspicious");
        let data: serde_json::Value = serde_json::from_str(&one.data).expect("json");
        assert_eq!(data["references"][0], "https://example.org/apt1");
        assert_eq!(data["techniques"][0], "T1071.001");
    }

    #[test]
    fn an_analysts_clearing_wins_and_unknown_entities_are_silent() {
        let cleared = judge(&domain(), &[hit("stix-apt1", 95, None)], |_| true).expect("known");
        assert_eq!((cleared.verdict, cleared.confidence), (Verdict::Benign, 80));
        assert!(cleared.tags.contains(&"analyst-cleared".to_owned()));
        let mut asked = false;
        assert!(
            judge(&domain(), &[], |_| {
                asked = true;
                false
            })
            .is_none()
        );
        assert!(!asked, "memory is not consulted for entities no feed knows");
    }
}
