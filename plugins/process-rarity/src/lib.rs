//! Behavioural hunt: rare parent→child process pairs.
//!
//! Not a rule lookup: each tenant's own history is the baseline. Every
//! process-creation event (Sysmon 1, Security 4688; flat or nested shape)
//! gives a pair `parent.exe > child.exe`. A pair seen fewer than
//! `min_seen` times (default 1, i.e. never) in the baseline is a finding —
//! once the baseline holds at least `min_baseline` events (default 50), so
//! a new tenant learns before it alerts. At `close` the session's pairs are
//! added to the baseline (kv key `baseline`), so tomorrow's normal is
//! today's observed. Params: `{"min_seen": 1, "min_baseline": 50}`.

use std::collections::BTreeMap;

use rampart_sdk::{Entity, EntityKind, Event, Finding, Hunt, PluginError, Severity, kv};
use serde_json::{Value, json};

const BASELINE_KEY: &str = "baseline";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Baseline {
    events: u64,
    pairs: BTreeMap<String, u64>,
}

struct ProcessRarity {
    baseline: Baseline,
    seen_now: BTreeMap<String, u64>,
    reported: BTreeMap<String, ()>,
    events_now: u64,
    min_seen: u64,
    min_baseline: u64,
}

/// The lower-cased file name of a Windows path.
fn basename(path: &str) -> String {
    path.rsplit(['\\', '/'])
        .next()
        .unwrap_or(path)
        .trim_matches('"')
        .to_ascii_lowercase()
}

/// (parent image, child image, host, user, command line) of a process creation.
fn process_creation(data: &Value) -> Option<(String, String, String, String, String)> {
    let (fields, id, channel) = match data.get("Event") {
        Some(nested) => (
            nested.get("EventData")?,
            nested.pointer("/System/EventID").and_then(Value::as_u64),
            nested
                .pointer("/System/Channel")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
        None => (
            data,
            data.get("EventID")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())),
            data.get("Channel")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        ),
    };
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| fields.get(*n).and_then(Value::as_str))
            .unwrap_or_default()
            .to_owned()
    };
    let creation = matches!(
        (channel, id),
        ("Microsoft-Windows-Sysmon/Operational", Some(1)) | ("Security", Some(4688))
    );
    if !creation {
        return None;
    }
    let child = get(&["Image", "NewProcessName"]);
    let parent = get(&["ParentImage", "ParentProcessName"]);
    if child.is_empty() || parent.is_empty() {
        return None;
    }
    let host = get(&["Hostname", "Computer"]);
    let host = if host.is_empty() {
        data.pointer("/Event/System/Computer")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    } else {
        host
    };
    Some((
        parent,
        child,
        host,
        get(&["User", "SubjectUserName"]),
        get(&["CommandLine"]),
    ))
}

impl Hunt for ProcessRarity {
    fn open(params: &str) -> Result<Self, PluginError> {
        let params = rampart_sdk::hunt_params(params)?;
        let number = |name: &str, default: u64| -> Result<u64, PluginError> {
            match params.get(name) {
                None => Ok(default),
                Some(value) => value.as_u64().ok_or_else(|| {
                    PluginError::invalid_input(format!("{name} must be a whole number"))
                }),
            }
        };
        Ok(ProcessRarity {
            baseline: kv::get_json(BASELINE_KEY)?.unwrap_or_default(),
            seen_now: BTreeMap::new(),
            reported: BTreeMap::new(),
            events_now: 0,
            min_seen: number("min_seen", 1)?,
            min_baseline: number("min_baseline", 50)?,
        })
    }

    fn push(&mut self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        let learning = self.baseline.events < self.min_baseline;
        for event in events {
            let data = event.value();
            let Some((parent, child, host, user, command_line)) = process_creation(&data) else {
                continue;
            };
            self.events_now += 1;
            let pair = format!("{} > {}", basename(&parent), basename(&child));
            *self.seen_now.entry(pair.clone()).or_default() += 1;
            let seen = self.baseline.pairs.get(&pair).copied().unwrap_or(0);
            if learning || seen >= self.min_seen || self.reported.contains_key(&pair) {
                continue;
            }
            self.reported.insert(pair.clone(), ());
            let mut finding = Finding::new(
                "process-rarity",
                format!("Rare process pair {pair}"),
                Severity::Medium,
                event.time,
            )
            .technique("T1059")
            .event(event.id.clone())
            .entity(Entity::new(EntityKind::Process, child.clone()));
            if !host.is_empty() {
                finding = finding.entity(Entity::new(EntityKind::Hostname, host));
            }
            if !user.is_empty() {
                finding = finding.entity(Entity::new(EntityKind::User, user));
            }
            findings.push(finding.detail(&json!({
                "engine": "baseline",
                "pair": pair,
                "parent": parent,
                "child": child,
                "command_line": command_line,
                "seen_in_baseline": seen,
                "baseline_events": self.baseline.events,
            })));
        }
        Ok(findings)
    }

    fn close(mut self) -> Result<Vec<Finding>, PluginError> {
        for (pair, count) in std::mem::take(&mut self.seen_now) {
            *self.baseline.pairs.entry(pair).or_default() += count;
        }
        self.baseline.events += self.events_now;
        kv::set_json(BASELINE_KEY, &self.baseline)?;
        Ok(Vec::new())
    }
}

rampart_sdk::export_hunt!(ProcessRarity);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_from_both_shapes() {
        let flat = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
            "ParentImage": "C:\\Program Files\\Microsoft Office\\WINWORD.EXE", "Image": "C:\\Windows\\System32\\cmd.exe", "Hostname": "wks"});
        let (parent, child, host, _, _) = process_creation(&flat).unwrap_or_default();
        assert_eq!(
            (basename(&parent), basename(&child), host.as_str()),
            ("winword.exe".into(), "cmd.exe".into(), "wks")
        );
        let nested = json!({"Event": {"System": {"EventID": 4688, "Channel": "Security", "Computer": "dc"},
            "EventData": {"ParentProcessName": "C:\\Windows\\explorer.exe", "NewProcessName": "C:\\x\\a.exe"}}});
        let (_, child, host, _, _) = process_creation(&nested).unwrap_or_default();
        assert_eq!((basename(&child), host.as_str()), ("a.exe".into(), "dc"));
        let not_creation = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3, "Image": "x", "ParentImage": "y"});
        assert!(process_creation(&not_creation).is_none());
    }
}
