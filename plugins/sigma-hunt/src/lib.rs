//! Sigma hunt.
//!
//! Runs the SigmaHQ Windows rules bundled in `rules/` (DRL 1.1, pinned
//! commit; see `rules/SOURCE.md`), plus a tenant's own rules, over stored
//! events. Rules are compiled once per session (`open`); each `push` routes
//! every event to the rules written for its log source and matches them.
//!
//! Params (all optional):
//! `{"min_level": "low", "rule_ids": ["…"], "extra_rules": "<YAML, documents separated by ---"}`;
//! `min_level` defaults to `low` (informational rules only tag events).
//!
//! Every finding carries the rule id, title, level, ATT&CK ids, the matching
//! event, and — as the DRL asks — the rule's author, a link to the rule and
//! the licence name.

pub mod engine;
pub mod prefilter;
pub mod shape;
#[cfg(test)]
mod shape_tests;

use engine::{Engine, Level, Selection};
use rampart_sdk::{Entity, EntityKind, Event, Finding, Hunt, PluginError, Severity, log};
use serde_json::{Value, json};

/// The bundled rules, gzipped (see `rules/SOURCE.md`).
const BUNDLE: &[u8] = include_bytes!("../rules/sigmahq.bundle.gz");

/// Reads the bundled rules.
pub fn bundled_rules() -> Result<Vec<(String, String)>, String> {
    use std::io::Read as _;
    let mut text = String::new();
    flate2::read::GzDecoder::new(BUNDLE)
        .read_to_string(&mut text)
        .map_err(|err| format!("bundled rules: {err}"))?;
    Ok(engine::bundle_rules(&text))
}

/// A rule's own `references` carried in each of its findings, at most.
const MAX_RULE_REFERENCES: usize = 8;

struct SigmaHunt {
    engine: Engine,
}

fn severity(level: Level) -> Severity {
    match level {
        Level::Informational => Severity::Info,
        Level::Low => Severity::Low,
        Level::Medium => Severity::Medium,
        Level::High => Severity::High,
        Level::Critical => Severity::Critical,
    }
}

/// The fields worth showing an analyst, when present.
const SHOWN: &[&str] = &[
    "Image",
    "CommandLine",
    "ParentImage",
    "ParentCommandLine",
    "TargetObject",
    "TargetFilename",
    "ImageLoaded",
    "DestinationIp",
    "DestinationPort",
    "QueryName",
    "ScriptBlockText",
    "ServiceName",
    "User",
    "SubjectUserName",
    "TargetUserName",
];

impl Hunt for SigmaHunt {
    fn open(params: &str) -> Result<Self, PluginError> {
        let params = rampart_sdk::hunt_params(params)?;
        let min_level = match params.get("min_level").and_then(Value::as_str) {
            None => Level::Low,
            Some(text) => Level::parse(text).ok_or_else(|| {
                PluginError::invalid_input(format!(
                    "min_level `{text}` is not informational|low|medium|high|critical"
                ))
            })?,
        };
        let ids = params.get("rule_ids").and_then(Value::as_array).map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        });
        let mut rules = bundled_rules().map_err(PluginError::misconfigured)?;
        if let Some(extra) = params.get("extra_rules").and_then(Value::as_str) {
            for document in extra.split("\n---") {
                if !document.trim().is_empty() {
                    rules.push((String::new(), document.to_owned()));
                }
            }
        }
        let total = rules.len();
        let engine = Engine::build(
            rules,
            &Selection {
                min_level: Some(min_level),
                ids,
            },
        );
        log::info(&format!(
            "sigma: {total} rules, {} compiled and active, {} left out by level/ids/log source, {} skipped",
            engine.rules().len(),
            engine.filtered,
            engine.skipped.len()
        ));
        for (path, reason) in engine.skipped.iter().take(20) {
            log::warn(&format!("sigma: skipped {path}: {reason}"));
        }
        Ok(SigmaHunt { engine })
    }

    fn push(&mut self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        for event in events {
            let data = event.value();
            let matched = self.engine.matches(&data);
            if matched.is_empty() {
                continue;
            }
            let flat = shape::flatten(&data);
            for index in matched {
                let rule = &self.engine.rules()[index];
                let mut finding = Finding::new(
                    rule.id.clone(),
                    rule.title.clone(),
                    severity(rule.level),
                    event.time,
                )
                .event(event.id.clone());
                for technique in &rule.techniques {
                    finding = finding.technique(technique.clone());
                }
                if let Some(link) = rule.link() {
                    finding = finding.reference(link);
                }
                for reference in rule.references().take(MAX_RULE_REFERENCES) {
                    finding = finding.reference(reference.to_owned());
                }
                for entity in finding_entities(&flat.fields) {
                    finding = finding.entity(entity);
                }
                let shown: serde_json::Map<String, Value> = SHOWN
                    .iter()
                    .filter_map(|f| flat.fields.get(*f).map(|v| ((*f).to_owned(), v.clone())))
                    .collect();
                findings.push(finding.detail(&json!({
                    "engine": "sigma",
                    "rule_path": rule.path,
                    "rule_link": rule.link(),
                    "author": rule.author,
                    "license": rule.license(),
                    "level": format!("{:?}", rule.level).to_ascii_lowercase(),
                    "tactics": rule.tactics,
                    "channel": flat.channel,
                    "event_id": flat.event_id,
                    "fields": shown,
                })));
            }
        }
        Ok(findings)
    }

    fn close(self) -> Result<Vec<Finding>, PluginError> {
        Ok(Vec::new())
    }
}

rampart_sdk::export_hunt!(SigmaHunt);

/// The entities a finding is about, from the event's fields: the host
/// (`Computer`, or `Hostname` in Mordor's exports), the account (`User`, or
/// the Security log's subject and target as `DOMAIN\user`, machine accounts
/// and placeholders left out), the process image, the remote address, and
/// the SHA-256 from Sysmon's `Hashes` (so threat intel can judge it).
fn finding_entities(fields: &serde_json::Map<String, Value>) -> Vec<Entity> {
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "-")
    };
    let mut entities = Vec::new();
    let mut push = |kind: EntityKind, value: String| {
        let entity = Entity::new(kind, value);
        if !entities.contains(&entity) {
            entities.push(entity);
        }
    };
    if let Some(host) = text("Computer").or_else(|| text("Hostname")) {
        push(EntityKind::Hostname, host.to_owned());
    }
    let person = |user: &str| {
        let upper = user.to_ascii_uppercase();
        !user.ends_with('$')
            && !matches!(
                upper.as_str(),
                "SYSTEM" | "LOCAL SERVICE" | "NETWORK SERVICE" | "ANONYMOUS LOGON"
            )
    };
    if let Some(user) = text("User").filter(|u| person(u.rsplit('\\').next().unwrap_or(u))) {
        push(EntityKind::User, user.to_owned());
    }
    for (name, domain) in [
        ("SubjectUserName", "SubjectDomainName"),
        ("TargetUserName", "TargetDomainName"),
    ] {
        if let Some(user) = text(name).filter(|u| person(u)) {
            let value = match text(domain) {
                Some(domain) => format!("{domain}\\{user}"),
                None => user.to_owned(),
            };
            push(EntityKind::User, value);
        }
    }
    if let Some(image) = text("Image").or_else(|| text("NewProcessName")) {
        push(EntityKind::Process, image.to_owned());
    }
    for name in ["DestinationIp", "IpAddress"] {
        if let Some(ip) = text(name).filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()) {
            push(EntityKind::Ip, ip.to_owned());
        }
    }
    if let Some(hashes) = text("Hashes") {
        for part in hashes.split(',') {
            if let Some((algorithm, value)) = part.split_once('=')
                && algorithm.trim().eq_ignore_ascii_case("SHA256")
            {
                push(EntityKind::FileHash, value.trim().to_ascii_lowercase());
            }
        }
    }
    entities
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entities(fields: Value) -> Vec<(EntityKind, String)> {
        let Value::Object(map) = fields else {
            panic!("object")
        };
        finding_entities(&map)
            .into_iter()
            .map(|e| (e.kind, e.value))
            .collect()
    }

    #[test]
    fn security_log_subjects_become_domain_accounts() {
        // A Mordor 4663 (LSASS handle) as exported: `Hostname`, subject.
        let found = entities(json!({
            "Hostname": "WORKSTATION5", "SubjectUserName": "wardog",
            "SubjectDomainName": "WORKSTATION5", "TargetUserName": "-",
            "IpAddress": "-"
        }));
        assert_eq!(
            found,
            [
                (EntityKind::Hostname, "WORKSTATION5".to_owned()),
                (EntityKind::User, "WORKSTATION5\\wardog".to_owned()),
            ]
        );
    }

    #[test]
    fn sysmon_fields_give_process_address_and_sha256() {
        let found = entities(json!({
            "Computer": "ws-1.corp.example", "User": "CORP\\jdoe",
            "Image": "C:\\Windows\\System32\\rundll32.exe",
            "DestinationIp": "203.0.113.9",
            "Hashes": "SHA1=AA,MD5=BB,SHA256=9CCF9817DA1EE8C1AB33A364A3C03A28769AB68A42C437295DAE47448A6C5138,IMPHASH=CC"
        }));
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found.contains(&(
            EntityKind::FileHash,
            "9ccf9817da1ee8c1ab33a364a3c03a28769ab68a42c437295dae47448a6c5138".to_owned()
        )));
    }

    #[test]
    fn machine_accounts_and_service_identities_are_not_people() {
        let found = entities(json!({
            "SubjectUserName": "WORKSTATION5$", "TargetUserName": "SYSTEM",
            "User": "NT AUTHORITY\\SYSTEM"
        }));
        assert!(found.is_empty(), "{found:?}");
    }
}
