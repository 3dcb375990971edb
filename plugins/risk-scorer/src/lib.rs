//! Risk scorer: a transparent formula, every term shown in the reasons.
//!
//! ```text
//! risk = clamp(0..100,
//!     base(severity)                  info 5, low 15, medium 30, high 45, critical 60
//!   + w.intel    × threat             strongest TI verdict: malicious 1.0, suspicious 0.4, × its confidence
//!   − w.cleared  × cleared            some entity is benign (an analyst or allow-list cleared it)
//!   + w.asset    × criticality        most critical asset involved: low 0, medium/unrated .25, high .6, critical 1
//!   + w.identity × privilege          privileged account 1.0, account without MFA .4
//!   + w.tactic   × tactic             gravest ATT&CK tactic of the alert's techniques (table below)
//!   + w.memory   × history)           analyst feedback on these entities, (TP − FP − benign) / 2, within ±1
//! ```
//!
//! Default weights: intel 40, cleared 30, asset 20, identity 15, tactic 15,
//! memory 20. A tenant sets its own with the plugin's settings
//! `weight.<name>` (0–100), e.g. a bank that cares about identity more than
//! about assets. A bad setting is a `misconfigured` error naming it.
//!
//! Tactics (ATT&CK v18.1 Enterprise, `crates/core/attack/tactics.tsv`,
//! the one table the runtime uses too): impact,
//! exfiltration 1.0; credential-access, lateral-movement .9;
//! command-and-control .8; privilege-escalation .7; initial-access,
//! persistence, defense-evasion .6; execution, collection .5; discovery .3;
//! reconnaissance, resource-development .2; a technique missing from the
//! table .3. A technique counts for its gravest tactic.
//!
//! Confidence says how much the evidence agrees. Directional evidence is the
//! TI verdicts (+ malicious/suspicious, − benign) and analyst history (+ true
//! positives, − false positives); each has a strength 0–100. Then
//! `confidence = strongest × (½ + ½ × agreement) + 5 per further agreeing
//! piece`, where agreement = |Σ direction × strength| / Σ strength — 1 when
//! all evidence points the same way, 0 when it cancels out. Context (asset,
//! identity, tactic) raises what is at stake, not how sure we are of the
//! verdict, so it moves risk only. Without directional evidence confidence
//! is 20: guardrails keep a human in the loop for alerts nobody could judge.

use rampart_sdk::{
    Alert, Enrichment, Entity, FeedbackLabel, PluginError, Score, Scorer, Severity, Verdict,
    config, memory,
};

/// ATT&CK technique → tactics, one technique per line.
const TACTICS: &str = include_str!("../../../crates/core/attack/tactics.tsv");

struct RiskScorer;

impl Scorer for RiskScorer {
    fn score(alert: Alert, enrichments: Vec<Enrichment>) -> Result<Score, PluginError> {
        let weights = Weights::from_settings(config::get)?;
        Ok(assess(&alert, &enrichments, &weights, &|entity| {
            History::of(&memory::recall(entity))
        }))
    }
}

rampart_sdk::export_scorer!(RiskScorer);

/// How much each term may move risk (points at full strength).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Weights {
    intel: u8,
    cleared: u8,
    asset: u8,
    identity: u8,
    tactic: u8,
    memory: u8,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            intel: 40,
            cleared: 30,
            asset: 20,
            identity: 15,
            tactic: 15,
            memory: 20,
        }
    }
}

impl Weights {
    /// The defaults, overridden by settings `weight.<name>`; every bad
    /// setting is named in one error.
    fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, PluginError> {
        let mut weights = Weights::default();
        let mut bad = Vec::new();
        for (name, slot) in [
            ("intel", &mut weights.intel),
            ("cleared", &mut weights.cleared),
            ("asset", &mut weights.asset),
            ("identity", &mut weights.identity),
            ("tactic", &mut weights.tactic),
            ("memory", &mut weights.memory),
        ] {
            let key = format!("weight.{name}");
            if let Some(value) = get(&key) {
                match value.trim().parse::<u8>() {
                    Ok(weight) if weight <= 100 => *slot = weight,
                    _ => bad.push(format!("`{key}` is `{value}`, not a whole number 0-100")),
                }
            }
        }
        if bad.is_empty() {
            Ok(weights)
        } else {
            Err(PluginError::misconfigured(bad.join("; ")))
        }
    }
}

/// Analyst feedback on one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct History {
    true_positives: u32,
    harmless: u32,
}

impl History {
    fn of(memory: &rampart_sdk::EntityMemory) -> Self {
        let mut history = History::default();
        for feedback in &memory.feedback {
            match feedback.label {
                FeedbackLabel::TruePositive => history.true_positives += 1,
                FeedbackLabel::FalsePositive | FeedbackLabel::Benign => history.harmless += 1,
            }
        }
        history
    }

    /// −1 (analysts keep clearing it) … +1 (analysts keep confirming it).
    fn lean(self) -> f64 {
        ((f64::from(self.true_positives) - f64::from(self.harmless)) / 2.0).clamp(-1.0, 1.0)
    }
}

/// The gravity of an ATT&CK tactic, 0–1.
fn tactic_gravity(tactic: &str) -> f64 {
    match tactic {
        "impact" | "exfiltration" => 1.0,
        "credential-access" | "lateral-movement" => 0.9,
        "command-and-control" => 0.8,
        "privilege-escalation" => 0.7,
        // `stealth` and `defense-impairment` are what later ATT&CK
        // releases split defense-evasion into.
        "initial-access" | "persistence" | "defense-evasion" | "stealth" | "defense-impairment" => {
            0.6
        }
        "execution" | "collection" => 0.5,
        "discovery" => 0.3,
        _ => 0.2,
    }
}

/// The gravest tactic of `technique` (`T1003.001`, `t1003`, `attack.t1003`).
fn gravest_tactic(technique: &str) -> Option<(&'static str, f64)> {
    let id = technique
        .trim()
        .trim_start_matches("attack.")
        .to_ascii_uppercase();
    let line = TACTICS
        .lines()
        .find(|line| line.split('\t').next() == Some(id.as_str()))?;
    line.split('\t')
        .nth(1)?
        .split(';')
        .map(|tactic| (tactic, tactic_gravity(tactic)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn criticality_weight(level: &str) -> Option<f64> {
    match level {
        "low" => Some(0.0),
        "medium" | "unrated" => Some(0.25),
        "high" => Some(0.6),
        "critical" => Some(1.0),
        _ => None,
    }
}

/// Points a term adds: `weight × strength`, rounded.
fn points(weight: u8, strength: f64) -> i32 {
    (f64::from(weight) * strength).round() as i32
}

/// The score of `alert` given the enrichments, the weights and each
/// entity's analyst history.
fn assess(
    alert: &Alert,
    enrichments: &[Enrichment],
    weights: &Weights,
    history: &dyn Fn(&Entity) -> History,
) -> Score {
    let base: i32 = match alert.severity {
        Severity::Info => 5,
        Severity::Low => 15,
        Severity::Medium => 30,
        Severity::High => 45,
        Severity::Critical => 60,
    };
    let mut reasons = vec![format!("severity {:?}: base {base}", alert.severity)];
    let mut risk = base;
    // (direction, strength) of every piece of directional evidence.
    let mut evidence: Vec<(i32, f64)> = Vec::new();

    // Threat intel: the strongest verdict counts; every verdict is evidence.
    let mut threat: Option<(f64, &Enrichment)> = None;
    let mut cleared: Option<&Enrichment> = None;
    for found in enrichments {
        let strength = f64::from(found.confidence.min(100));
        match found.verdict {
            Verdict::Malicious | Verdict::Suspicious => {
                let factor = if found.verdict == Verdict::Malicious {
                    1.0
                } else {
                    0.4
                };
                let value = factor * strength / 100.0;
                if threat.is_none_or(|(best, _)| value > best) {
                    threat = Some((value, found));
                }
                evidence.push((1, strength));
            }
            Verdict::Benign => {
                if cleared.is_none_or(|c| found.confidence > c.confidence) {
                    cleared = Some(found);
                }
                evidence.push((-1, strength));
            }
            Verdict::Unknown => {}
        }
    }
    if let Some((value, found)) = threat {
        let add = points(weights.intel, value);
        risk += add;
        reasons.push(format!(
            "intel: {} is {} (confidence {}): +{add}",
            found.entity.value,
            verdict_name(found.verdict),
            found.confidence
        ));
    }
    if let Some(found) = cleared {
        let sub = points(weights.cleared, f64::from(found.confidence) / 100.0);
        risk -= sub;
        reasons.push(format!(
            "cleared: {} is benign (confidence {}): -{sub}",
            found.entity.value, found.confidence
        ));
    }

    // Asset criticality: the most critical asset involved.
    let asset = enrichments
        .iter()
        .filter_map(|found| {
            let level = found
                .tags
                .iter()
                .find_map(|t| t.strip_prefix("criticality:"))?;
            Some((criticality_weight(level)?, level, found))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((strength, level, found)) = asset {
        let add = points(weights.asset, strength);
        risk += add;
        reasons.push(format!("asset: {} is {level}: +{add}", found.entity.value));
    }

    // Identity privilege.
    let identity = enrichments
        .iter()
        .filter(|found| found.tags.iter().any(|t| t == "identity"))
        .map(|found| {
            let has = |tag: &str| found.tags.iter().any(|t| t == tag);
            let (strength, what) = if has("privileged") {
                (1.0_f64, "a privileged account")
            } else if has("no-mfa") {
                (0.4, "an account without MFA")
            } else {
                (0.0, "an ordinary account")
            };
            (strength, what, found)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((strength, what, found)) = identity {
        let add = points(weights.identity, strength);
        risk += add;
        reasons.push(format!(
            "identity: {} is {what}: +{add}",
            found.entity.value
        ));
    }

    // ATT&CK tactic: the gravest of the alert's techniques, and of the
    // tactics its tags name (`attack.stealth`: a hunt's alert keeps its
    // rule's tactic tags, which name the tactic even when the technique id
    // is newer than the table).
    let tagged = alert
        .tags
        .iter()
        .filter_map(|tag| tag.strip_prefix("attack."))
        .filter(|name| !name.chars().nth(1).is_some_and(|c| c.is_ascii_digit()))
        .filter(|name| tactic_gravity(name) > 0.2)
        .map(|name| (tactic_gravity(name), "tagged", name));
    let tactic = alert
        .techniques
        .iter()
        .map(|technique| match gravest_tactic(technique) {
            Some((tactic, gravity)) => (gravity, technique.as_str(), tactic),
            None => (0.3_f64, technique.as_str(), "unknown tactic"),
        })
        .chain(tagged)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((gravity, technique, name)) = tactic {
        let add = points(weights.tactic, gravity);
        risk += add;
        reasons.push(format!("ATT&CK: {technique} ({name}): +{add}"));
    }

    // Analyst memory: the entity analysts leaned on hardest.
    let mut seen = std::collections::BTreeSet::new();
    let leaning = alert
        .entities
        .iter()
        .filter(|entity| seen.insert((entity.kind, entity.value.as_str())))
        .map(|entity| (history(entity), entity))
        .filter(|(past, _)| past.true_positives + past.harmless > 0)
        .max_by(|a, b| a.0.lean().abs().total_cmp(&b.0.lean().abs()));
    if let Some((past, entity)) = leaning {
        let lean = past.lean();
        let moved = points(weights.memory, lean);
        risk += moved;
        let strength = (50.0 + 15.0 * f64::from(past.true_positives.max(past.harmless))).min(95.0);
        if lean != 0.0 {
            evidence.push((if lean > 0.0 { 1 } else { -1 }, strength));
        }
        reasons.push(format!(
            "memory: {} had {} true and {} false/benign verdicts from analysts: {moved:+}",
            entity.value, past.true_positives, past.harmless
        ));
    }

    let confidence = agreement_confidence(&evidence);
    let mut score = Score::new(
        u8::try_from(risk.clamp(0, 100)).unwrap_or(100),
        confidence.round().clamp(0.0, 100.0) as u8,
    );
    reasons.push(format!("confidence {}", score.confidence));
    score.reasons = reasons;
    score
}

/// Confidence from directional evidence (see the module docs).
fn agreement_confidence(evidence: &[(i32, f64)]) -> f64 {
    let total: f64 = evidence.iter().map(|(_, s)| s).sum();
    if total <= 0.0 {
        return 20.0;
    }
    let net: f64 = evidence.iter().map(|(d, s)| f64::from(*d) * s).sum();
    let agreement = net.abs() / total;
    let strongest = evidence.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let side = net.signum() as i32;
    let agreeing = evidence.iter().filter(|(d, _)| *d == side).count();
    let extra = 5.0 * agreeing.saturating_sub(1) as f64;
    (strongest * (0.5 + 0.5 * agreement) + extra).min(100.0)
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Malicious => "malicious",
        Verdict::Suspicious => "suspicious",
        Verdict::Benign => "benign",
        Verdict::Unknown => "unknown",
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rampart_sdk::EntityKind;

    fn alert(severity: Severity, techniques: &[&str]) -> Alert {
        Alert {
            id: "a".into(),
            source: "test".into(),
            title: "t".into(),
            severity,
            time: 0,
            entities: vec![Entity::new(EntityKind::Ip, "203.0.113.9")],
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

    fn context(kind: EntityKind, value: &str, tags: &[&str]) -> Enrichment {
        let mut e = Enrichment::new(Entity::new(kind, value), Verdict::Unknown, 100);
        e.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        e
    }

    fn no_history(_: &Entity) -> History {
        History::default()
    }

    fn score(alert: &Alert, found: &[Enrichment]) -> Score {
        assess(alert, found, &Weights::default(), &no_history)
    }

    #[test]
    fn nobody_enriched_means_low_confidence() {
        let bare = score(&alert(Severity::Medium, &[]), &[]);
        assert_eq!((bare.risk, bare.confidence), (30, 20));
    }

    #[test]
    fn intel_verdicts_move_risk_and_set_confidence() {
        let bad = score(
            &alert(Severity::Medium, &[]),
            &[found(Verdict::Malicious, 90)],
        );
        assert_eq!((bad.risk, bad.confidence), (66, 90), "{:?}", bad.reasons);
        let odd = score(
            &alert(Severity::Medium, &[]),
            &[found(Verdict::Suspicious, 50)],
        );
        assert_eq!(odd.risk, 38, "suspicious 50 → 0.4 × 0.5 × 40 = 8");
        let cleared = score(&alert(Severity::Medium, &[]), &[found(Verdict::Benign, 80)]);
        assert_eq!(cleared.risk, 6, "30 − 0.8 × 30");
    }

    #[test]
    fn context_raises_risk_by_asset_identity_and_tactic() {
        let dc = context(
            EntityKind::Hostname,
            "dc01",
            &["asset", "criticality:critical"],
        );
        let admin = context(
            EntityKind::User,
            "adm-kim",
            &["identity", "privileged", "no-mfa"],
        );
        let s = score(&alert(Severity::Medium, &["T1003.001"]), &[dc, admin]);
        // 30 + 20 (critical) + 15 (privileged) + 0.9 × 15 (credential-access) = 78.5 → 79
        assert_eq!(s.risk, 79, "{:?}", s.reasons);
        assert_eq!(s.confidence, 20, "context is no verdict");
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("T1003.001 (credential-access)"))
        );
        let ws = context(EntityKind::Hostname, "ws-1", &["asset", "criticality:low"]);
        let user = context(EntityKind::User, "jdoe", &["identity"]);
        let calm = score(&alert(Severity::Medium, &["T1087"]), &[ws, user]);
        // 30 + 0 + 0 + 0.3 × 15 (discovery) = 34.5 → 35 (rounded half away)
        assert_eq!(calm.risk, 35, "{:?}", calm.reasons);
    }

    #[test]
    fn tactic_table_knows_subtechniques_and_sigma_tags() {
        assert_eq!(
            gravest_tactic("T1003.001").map(|t| t.0),
            Some("credential-access")
        );
        assert_eq!(gravest_tactic("attack.t1486").map(|t| t.0), Some("impact"));
        assert_eq!(gravest_tactic("T9999"), None);
    }

    #[test]
    fn a_tactic_tag_names_the_tactic_of_a_technique_newer_than_the_table() {
        let mut newer = alert(Severity::Medium, &["T1685.001"]);
        let unknown = assess(&newer, &[], &Weights::default(), &|_| History::default());
        newer.tags = vec!["attack.stealth".into(), "attack.t1685.001".into()];
        let tagged = assess(&newer, &[], &Weights::default(), &|_| History::default());
        assert!(
            tagged.reasons.iter().any(|r| r.contains("(stealth)")),
            "{:?}",
            tagged.reasons
        );
        assert!(
            tagged.risk > unknown.risk,
            "{} vs {}",
            tagged.risk,
            unknown.risk
        );
    }

    #[test]
    fn analyst_memory_moves_later_scores() {
        let alert = alert(Severity::Medium, &[]);
        let intel = [found(Verdict::Malicious, 70)];
        let before = score(&alert, &intel);
        let confirmed = assess(&alert, &intel, &Weights::default(), &|_| History {
            true_positives: 2,
            harmless: 0,
        });
        let refuted = assess(&alert, &intel, &Weights::default(), &|_| History {
            true_positives: 0,
            harmless: 2,
        });
        assert!(confirmed.risk > before.risk, "{:?}", confirmed.reasons);
        assert!(refuted.risk < before.risk, "{:?}", refuted.reasons);
        assert!(
            confirmed.confidence > before.confidence,
            "agreeing evidence"
        );
        assert!(
            refuted.confidence < before.confidence,
            "conflicting evidence"
        );
    }

    #[test]
    fn weights_come_from_settings_and_bad_ones_are_named() {
        let weights = Weights::from_settings(|key| (key == "weight.asset").then(|| "50".into()))
            .expect("valid");
        assert_eq!(weights.asset, 50);
        assert_eq!(weights.intel, 40);
        let err = Weights::from_settings(|key| match key {
            "weight.intel" => Some("lots".into()),
            "weight.memory" => Some("101".into()),
            _ => None,
        })
        .expect_err("refused");
        assert!(err.message.contains("weight.intel") && err.message.contains("weight.memory"));
        let dc = context(
            EntityKind::Hostname,
            "dc01",
            &["asset", "criticality:critical"],
        );
        let heavy = assess(&alert(Severity::Low, &[]), &[dc], &weights, &no_history);
        assert_eq!(heavy.risk, 65, "15 + 50 × 1.0");
    }

    #[test]
    fn risk_is_capped() {
        let capped = score(
            &alert(Severity::Critical, &["T1486"]),
            &[
                found(Verdict::Malicious, 100),
                found(Verdict::Malicious, 100),
            ],
        );
        assert_eq!((capped.risk, capped.confidence), (100, 100));
    }
}
