//! Risk scorer.
//!
//! Risk starts from the alert's severity and rises with what enrichers found;
//! confidence is that of the strongest evidence, so an alert nobody could
//! enrich scores with low confidence and guardrails keep humans in the loop.

use rampart_sdk::{Alert, Enrichment, PluginError, Score, Scorer, Severity, Verdict};

struct RiskScorer;

impl Scorer for RiskScorer {
    fn score(alert: Alert, enrichments: Vec<Enrichment>) -> Result<Score, PluginError> {
        let base: u8 = match alert.severity {
            Severity::Info => 5,
            Severity::Low => 15,
            Severity::Medium => 30,
            Severity::High => 45,
            Severity::Critical => 60,
        };
        let mut reasons = vec![format!("severity {:?} → base {base}", alert.severity)];
        let mut risk = u32::from(base);
        let mut confidence = 20u8;
        for found in &enrichments {
            let (bump, label) = match found.verdict {
                Verdict::Malicious => (40, "malicious"),
                Verdict::Suspicious => (15, "suspicious"),
                Verdict::Benign => (0, "benign"),
                Verdict::Unknown => continue,
            };
            if found.verdict == Verdict::Benign {
                // Cleared evidence lowers risk, and we are as sure as the clearance.
                risk = risk.saturating_sub(30);
            } else {
                risk += bump * u32::from(found.confidence) / 100;
            }
            confidence = confidence.max(found.confidence);
            reasons.push(format!(
                "{} {:?} is {label} (confidence {})",
                found.entity.value, found.entity.kind, found.confidence
            ));
        }
        if !alert.techniques.is_empty() {
            risk += 5;
            reasons.push(format!("ATT&CK {}", alert.techniques.join(", ")));
        }
        let risk = u8::try_from(risk.min(100)).unwrap_or(100);
        let mut score = Score::new(risk, confidence);
        score.reasons = reasons;
        Ok(score)
    }
}

rampart_sdk::export_scorer!(RiskScorer);

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_sdk::{Entity, EntityKind};

    fn alert(severity: Severity, techniques: &[&str]) -> Alert {
        Alert {
            id: "a".into(),
            source: "test".into(),
            title: "t".into(),
            severity,
            time: 0,
            entities: vec![],
            techniques: techniques.iter().map(|t| (*t).to_owned()).collect(),
            tags: vec![],
            raw: "{}".into(),
        }
    }

    fn found(verdict: Verdict, confidence: u8) -> Enrichment {
        Enrichment::new(
            Entity::new(EntityKind::Ip, "203.0.113.9"),
            verdict,
            confidence,
        )
    }

    #[test]
    fn evidence_moves_risk_and_confidence() {
        let bare = RiskScorer::score(alert(Severity::Medium, &[]), vec![])
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(
            (bare.risk, bare.confidence),
            (30, 20),
            "nobody enriched: low confidence"
        );
        let bad = RiskScorer::score(
            alert(Severity::Medium, &["T1071"]),
            vec![found(Verdict::Malicious, 90)],
        )
        .unwrap_or_else(|_| unreachable!());
        assert!(
            bad.risk > bare.risk + 30 && bad.confidence == 90,
            "{:?}",
            (bad.risk, bad.confidence)
        );
        assert!(bad.reasons.iter().any(|r| r.contains("malicious")));
        let cleared = RiskScorer::score(
            alert(Severity::Medium, &[]),
            vec![found(Verdict::Benign, 80)],
        )
        .unwrap_or_else(|_| unreachable!());
        assert!(
            cleared.risk < bare.risk,
            "an analyst-cleared entity lowers risk"
        );
        let capped = RiskScorer::score(
            alert(Severity::Critical, &["T1"]),
            vec![
                found(Verdict::Malicious, 100),
                found(Verdict::Malicious, 100),
                found(Verdict::Malicious, 100),
            ],
        )
        .unwrap_or_else(|_| unreachable!());
        assert_eq!(capped.risk, 100);
    }
}
