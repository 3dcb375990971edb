//! Command-line hunt.
//!
//! Flags process-creation events whose command line matches known attacker
//! tradecraft (encoded PowerShell, download cradles, LOLBins fetching code,
//! shadow-copy deletion). Reads `CommandLine`, `Image`, host and user from both
//! shapes of Windows telemetry: flat (NXLog/Mordor) and nested
//! `Event.EventData` (Sigma test events). Params: `{"min_severity": "low"}`.

use std::collections::BTreeMap;

use rampart_sdk::{Entity, EntityKind, Event, Finding, Hunt, PluginError, Severity};
use serde_json::{Value, json};

/// A pattern: every needle must appear (case-insensitive) in the command line.
struct Pattern {
    id: &'static str,
    title: &'static str,
    needles: &'static [&'static str],
    technique: &'static str,
    severity: Severity,
}

const PATTERNS: &[Pattern] = &[
    Pattern {
        id: "encoded-powershell",
        title: "PowerShell with an encoded command",
        needles: &["powershell", " -enc"],
        technique: "T1059.001",
        severity: Severity::High,
    },
    Pattern {
        id: "encoded-powershell-long",
        title: "PowerShell with an encoded command",
        needles: &["powershell", "-encodedcommand"],
        technique: "T1059.001",
        severity: Severity::High,
    },
    Pattern {
        id: "download-cradle",
        title: "PowerShell download cradle",
        needles: &["downloadstring("],
        technique: "T1105",
        severity: Severity::High,
    },
    Pattern {
        id: "iex-web",
        title: "Invoke-Expression of web content",
        needles: &["iex", "net.webclient"],
        technique: "T1059.001",
        severity: Severity::High,
    },
    Pattern {
        id: "certutil-download",
        title: "certutil used to download a file",
        needles: &["certutil", "-urlcache"],
        technique: "T1105",
        severity: Severity::Medium,
    },
    Pattern {
        id: "bitsadmin-transfer",
        title: "bitsadmin transfer",
        needles: &["bitsadmin", "/transfer"],
        technique: "T1197",
        severity: Severity::Medium,
    },
    Pattern {
        id: "mshta-url",
        title: "mshta running remote script",
        needles: &["mshta", "http"],
        technique: "T1218.005",
        severity: Severity::High,
    },
    Pattern {
        id: "regsvr32-squiblydoo",
        title: "regsvr32 loading a remote scriptlet",
        needles: &["regsvr32", "/i:http"],
        technique: "T1218.010",
        severity: Severity::High,
    },
    Pattern {
        id: "rundll32-javascript",
        title: "rundll32 running JavaScript",
        needles: &["rundll32", "javascript:"],
        technique: "T1218.011",
        severity: Severity::High,
    },
    Pattern {
        id: "shadow-delete-vssadmin",
        title: "Shadow copies deleted",
        needles: &["vssadmin", "delete", "shadows"],
        technique: "T1490",
        severity: Severity::Critical,
    },
    Pattern {
        id: "shadow-delete-wmic",
        title: "Shadow copies deleted",
        needles: &["wmic", "shadowcopy", "delete"],
        technique: "T1490",
        severity: Severity::Critical,
    },
    Pattern {
        id: "lsass-dump",
        title: "LSASS memory dump via comsvcs",
        needles: &["comsvcs", "minidump"],
        technique: "T1003.001",
        severity: Severity::Critical,
    },
];

struct CmdlineHunt {
    min_severity: Severity,
    hits_by_rule: BTreeMap<&'static str, u64>,
    scanned: u64,
}

impl Hunt for CmdlineHunt {
    fn open(params: &str) -> Result<Self, PluginError> {
        let params = rampart_sdk::hunt_params(params)?;
        let min_severity = match params
            .get("min_severity")
            .and_then(Value::as_str)
            .unwrap_or("low")
        {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "min_severity `{other}` is not info|low|medium|high|critical"
                )));
            }
        };
        Ok(CmdlineHunt {
            min_severity,
            hits_by_rule: BTreeMap::new(),
            scanned: 0,
        })
    }

    fn push(&mut self, events: Vec<Event>) -> Result<Vec<Finding>, PluginError> {
        let mut findings = Vec::new();
        for event in events {
            self.scanned += 1;
            let data = event.value();
            let Some(command_line) = field(&data, "CommandLine") else {
                continue;
            };
            let lowered = command_line.to_ascii_lowercase();
            for pattern in PATTERNS {
                if (pattern.severity as u8) < (self.min_severity as u8)
                    || !pattern
                        .needles
                        .iter()
                        .all(|needle| lowered.contains(needle))
                {
                    continue;
                }
                *self.hits_by_rule.entry(pattern.id).or_default() += 1;
                let mut finding =
                    Finding::new(pattern.id, pattern.title, pattern.severity, event.time)
                        .technique(pattern.technique)
                        .event(event.id.clone())
                        .entity(Entity::new(
                            EntityKind::Process,
                            field(&data, "Image").unwrap_or(command_line),
                        ));
                for (name, kind) in [
                    ("Hostname", EntityKind::Hostname),
                    ("Computer", EntityKind::Hostname),
                    ("User", EntityKind::User),
                ] {
                    if let Some(value) = field(&data, name) {
                        finding = finding.entity(Entity::new(kind, value));
                    }
                }
                findings.push(finding.detail(&json!({"command_line": command_line})));
                break;
            }
        }
        Ok(findings)
    }

    fn close(self) -> Result<Vec<Finding>, PluginError> {
        if self.hits_by_rule.is_empty() {
            return Ok(Vec::new());
        }
        let total: u64 = self.hits_by_rule.values().sum();
        Ok(vec![
            Finding::new(
                "cmdline-summary",
                format!(
                    "{total} suspicious command lines in {} events",
                    self.scanned
                ),
                Severity::Info,
                0,
            )
            .detail(&json!({"by_rule": self.hits_by_rule, "scanned": self.scanned})),
        ])
    }
}

rampart_sdk::export_hunt!(CmdlineHunt);

/// A string field from a flat event, `Event.EventData`, `Event.System` or
/// winlogbeat's `winlog.event_data`.
fn field<'a>(data: &'a Value, name: &str) -> Option<&'a str> {
    data.get(name)
        .or_else(|| data.get("Event")?.get("EventData")?.get(name))
        .or_else(|| data.get("Event")?.get("System")?.get(name))
        .or_else(|| data.get("winlog")?.get("event_data")?.get(name))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, data: Value) -> Event {
        Event {
            id: id.into(),
            time: 0,
            data: data.to_string(),
        }
    }

    #[test]
    fn tradecraft_in_both_shapes_and_severity_floor() {
        let mut hunt = CmdlineHunt::open("").unwrap_or_else(|_| unreachable!());
        let found = hunt
            .push(vec![
                event("flat", json!({"CommandLine": "vssadmin.exe Delete Shadows /All /Quiet", "Hostname": "wks"})),
                event("nested", json!({"Event": {"EventData": {"CommandLine": "powershell -enc SQBFAFgA", "Image": "C:\\x\\powershell.exe"}}})),
                event("benign", json!({"CommandLine": "notepad.exe report.txt"})),
            ])
            .unwrap_or_else(|_| unreachable!());
        let ids: Vec<&str> = found.iter().map(|f| f.rule_id.as_str()).collect();
        assert_eq!(ids, ["shadow-delete-vssadmin", "encoded-powershell"]);
        let mut critical_only =
            CmdlineHunt::open(r#"{"min_severity": "critical"}"#).unwrap_or_else(|_| unreachable!());
        let found = critical_only
            .push(vec![event(
                "e",
                json!({"CommandLine": "powershell -enc AAAA"}),
            )])
            .unwrap_or_else(|_| unreachable!());
        assert!(found.is_empty());
        assert!(CmdlineHunt::open(r#"{"min_severity": "apocalyptic"}"#).is_err());
    }
}
