//! The Sigma engine: rules compiled once (with `sigma-rust`), routed by log
//! source to the events they are written for, and matched against events
//! in either field shape of Windows telemetry.
//!
//! Routing follows pySigma's Windows mapping: `category: process_creation`
//! is Sysmon 1 or Security 4688, `image_load` Sysmon 7, `service: security`
//! the Security channel, and so on (see [`Route::of`]). A rule whose log
//! source we cannot route applies to every event of its product rather than
//! to none. Events of every supported shape are flattened first
//! ([`crate::shape`]).

use std::collections::BTreeMap;

use serde_json::Value;
use sigma_rust::{Event as SigmaEvent, Rule};

use crate::shape::{Flat, flatten};

/// The pinned SigmaHQ commit the bundled rules come from.
pub const SIGMA_COMMIT: &str = "8eaafff1f2845a696050e05e72ba1140ee190698";

/// Rule severity, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// informational.
    Informational,
    /// low.
    Low,
    /// medium.
    Medium,
    /// high.
    High,
    /// critical.
    Critical,
}

impl Level {
    /// Parses a Sigma level name.
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }
}

/// Which events a rule is written for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Events with one of these (channel, event id) pairs; `None` id: any.
    Events(Vec<(&'static str, Option<u32>)>),
    /// Events of a channel whose lower-cased name contains this.
    ChannelContains(String),
    /// Every event.
    Any,
    /// Not Windows telemetry: never.
    Never,
}

const SYSMON: &str = "microsoft-windows-sysmon/operational";
const SECURITY: &str = "security";
const PS_OPERATIONAL: &str = "microsoft-windows-powershell/operational";
const PS_CLASSIC: &str = "windows powershell";

impl Route {
    /// The route of a rule's log source.
    pub fn of(product: Option<&str>, category: Option<&str>, service: Option<&str>) -> Route {
        if product.is_some_and(|p| p != "windows") {
            return Route::Never;
        }
        let sysmon =
            |ids: &[u32]| Route::Events(ids.iter().map(|id| (SYSMON, Some(*id))).collect());
        if let Some(category) = category {
            return match category {
                "process_creation" => {
                    Route::Events(vec![(SYSMON, Some(1)), (SECURITY, Some(4688))])
                }
                "file_change" => sysmon(&[2]),
                "network_connection" => sysmon(&[3]),
                "sysmon_status" => sysmon(&[4, 16]),
                "process_termination" => sysmon(&[5]),
                "driver_load" => sysmon(&[6]),
                "image_load" => sysmon(&[7]),
                "create_remote_thread" => sysmon(&[8]),
                "raw_access_thread" => sysmon(&[9]),
                "process_access" => sysmon(&[10]),
                "file_event" => sysmon(&[11]),
                "registry_add" | "registry_delete" => sysmon(&[12]),
                "registry_set" => sysmon(&[13]),
                "registry_rename" => sysmon(&[14]),
                "registry_event" => sysmon(&[12, 13, 14]),
                "create_stream_hash" => sysmon(&[15]),
                "pipe_created" => sysmon(&[17, 18]),
                "wmi_event" => sysmon(&[19, 20, 21]),
                "dns_query" => sysmon(&[22]),
                "file_delete" => sysmon(&[23, 26]),
                "clipboard_capture" => sysmon(&[24]),
                "process_tampering" => sysmon(&[25]),
                "file_block_executable" => sysmon(&[27]),
                "file_block_shredding" => sysmon(&[28]),
                "file_executable_detected" => sysmon(&[29]),
                "sysmon_error" => sysmon(&[255]),
                "ps_module" => Route::Events(vec![(PS_OPERATIONAL, Some(4103))]),
                "ps_script" => Route::Events(vec![(PS_OPERATIONAL, Some(4104))]),
                "ps_classic_start" => Route::Events(vec![(PS_CLASSIC, Some(400))]),
                "ps_classic_provider_start" => Route::Events(vec![(PS_CLASSIC, Some(600))]),
                "ps_classic_script" => Route::Events(vec![(PS_CLASSIC, Some(800))]),
                _ => Route::Any,
            };
        }
        match service {
            Some("security") => Route::Events(vec![(SECURITY, None)]),
            Some("system") => Route::Events(vec![("system", None)]),
            Some("application") => Route::Events(vec![("application", None)]),
            Some("sysmon") => Route::Events(vec![(SYSMON, None)]),
            Some("powershell") => Route::Events(vec![(PS_OPERATIONAL, None)]),
            Some("powershell-classic") => Route::Events(vec![(PS_CLASSIC, None)]),
            Some("windefend") => Route::ChannelContains("windows defender".to_owned()),
            Some(other) => Route::ChannelContains(other.replace('-', "")),
            None => Route::Any,
        }
    }

    fn admits(&self, channel: &str, channel_squashed: &str, event_id: Option<u32>) -> bool {
        match self {
            Route::Any => true,
            Route::Never => false,
            Route::ChannelContains(part) => channel_squashed.contains(part.as_str()),
            Route::Events(pairs) => pairs
                .iter()
                .any(|(c, id)| *c == channel && id.is_none_or(|id| Some(id) == event_id)),
        }
    }
}

/// One compiled rule and what a finding needs from it.
pub struct CompiledRule {
    /// The rule.
    pub rule: Rule,
    /// Rule id (or the path when it has none).
    pub id: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// ATT&CK technique ids from the tags (`attack.t1059.001` → `T1059.001`).
    pub techniques: Vec<String>,
    /// ATT&CK tactics from the tags (`attack.stealth` → `stealth`): they
    /// name the tactic even when a technique id is newer than a reader's
    /// ATT&CK table.
    pub tactics: Vec<String>,
    /// Author (the DRL asks to keep it in every finding).
    pub author: String,
    /// Path in the SigmaHQ repository (empty for a tenant's own rule).
    pub path: String,
    /// Where it applies.
    pub route: Route,
    /// Strings one of which must occur for the rule to match (`None`: no
    /// such set; always evaluated). See [`crate::prefilter`].
    pub anchors: Option<std::collections::BTreeSet<String>>,
}

impl CompiledRule {
    /// The rule's own `references`: web links only (a reference is shown
    /// to analysts as a link, so anything else is left out).
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.rule
            .references
            .iter()
            .flatten()
            .map(|r| r.trim())
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"))
    }

    /// The licence a finding states: the DRL for a SigmaHQ rule, a
    /// tenant's rule's own `license` when it gives one, else none.
    pub fn license(&self) -> Option<String> {
        if self.path.is_empty() {
            self.rule.license.clone()
        } else {
            Some("DRL 1.1 (https://github.com/SigmaHQ/Detection-Rule-License)".to_owned())
        }
    }

    /// The rule's link at the pinned commit, if it is a SigmaHQ rule.
    pub fn link(&self) -> Option<String> {
        (!self.path.is_empty()).then(|| {
            format!(
                "https://github.com/SigmaHQ/sigma/blob/{SIGMA_COMMIT}/{}",
                self.path
            )
        })
    }
}

/// Rules that did not compile, with why.
pub type Skipped = Vec<(String, String)>;

/// Splits a bundle (`#@rule <path>` + YAML, repeated) into (path, yaml).
pub fn bundle_rules(bundle: &str) -> Vec<(String, String)> {
    let mut rules = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in bundle.split_inclusive('\n') {
        if let Some(path) = line.strip_prefix("#@rule ") {
            if let Some(done) = current.take() {
                rules.push(done);
            }
            current = Some((path.trim().to_owned(), String::new()));
        } else if let Some((_, yaml)) = current.as_mut() {
            yaml.push_str(line);
        }
    }
    rules.extend(current);
    rules
}

/// Rewrites the regex flag modifiers sigma-rust lacks (`|re|i`, `|re|m`,
/// `|re|s`) into inline flags on the pattern: `Field|re|i: 'x'` becomes
/// `Field|re: '(?i)x'`, for a scalar on the same line or a list below it.
fn inline_regex_flags(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut pending: Option<(String, usize)> = None;
    for line in yaml.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        if let Some((flags, key_indent)) = &pending {
            let item = line.trim_start();
            if indent > *key_indent && item.starts_with("- ") {
                let value = item[2..].trim_end();
                let prefix = &line[..indent];
                out.push_str(&format!("{prefix}- {}\n", with_flags(value, flags)));
                continue;
            }
            pending = None;
        }
        let trimmed = line.trim_end();
        let rewritten = ["i", "m", "s"]
            .iter()
            .fold(None::<(String, String)>, |found, flag| {
                let (text, mut flags) = found.unwrap_or((trimmed.to_owned(), String::new()));
                let needle = format!("|re|{flag}");
                if text.contains(&needle) {
                    flags.push_str(flag);
                    Some((text.replace(&needle, "|re"), flags))
                } else if flags.is_empty() {
                    None
                } else {
                    Some((text, flags))
                }
            });
        match rewritten {
            Some((text, flags)) => match text.split_once(": ") {
                Some((key, value)) if !value.trim().is_empty() => {
                    out.push_str(&format!("{key}: {}\n", with_flags(value.trim(), &flags)));
                }
                _ => {
                    out.push_str(&text);
                    out.push('\n');
                    pending = Some((flags, indent));
                }
            },
            None => out.push_str(line),
        }
    }
    out
}

/// `'x'` → `'(?flags)x'` (single- or double-quoted, or plain).
fn with_flags(value: &str, flags: &str) -> String {
    for quote in ['\'', '"'] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return format!("{quote}(?{flags}){inner}{quote}");
        }
    }
    format!("'(?{flags}){}'", value.replace('\'', "''"))
}

/// The ATT&CK tactics among a rule's tags (`attack.stealth` → `stealth`):
/// every `attack.<name>` tag that is not a technique (`attack.t1003`),
/// group (`attack.g0007`) or software (`attack.s0002`).
fn tactic_tags<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    tags.into_iter()
        .filter_map(|tag| tag.trim().strip_prefix("attack."))
        .filter(|name| {
            let mut chars = name.chars();
            let coded = matches!(chars.next(), Some('t' | 'g' | 's' | 'T' | 'G' | 'S'))
                && chars.next().is_some_and(|c| c.is_ascii_digit());
            !coded && !name.is_empty()
        })
        .map(|name| name.to_ascii_lowercase().replace('_', "-"))
        .collect()
}

/// Compiles one rule (`path` empty for a tenant's own).
pub fn compile(path: &str, yaml: &str) -> Result<CompiledRule, String> {
    let yaml = &inline_regex_flags(yaml);
    let rule = sigma_rust::rule_from_yaml(yaml).map_err(|err| {
        let text = err.to_string();
        text.lines().next().unwrap_or("invalid rule").to_owned()
    })?;
    // sigma-rust does not export its level type; its Debug name is the
    // variant's.
    let level = rule
        .level
        .as_ref()
        .and_then(|level| Level::parse(&format!("{level:?}").to_ascii_lowercase()))
        .unwrap_or(Level::Informational);
    let techniques = rule
        .tags
        .iter()
        .flatten()
        .filter_map(|tag| tag.strip_prefix("attack.t"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .map(|rest| format!("T{}", rest.to_ascii_uppercase()))
        .collect();
    let tactics = tactic_tags(rule.tags.iter().flatten().map(String::as_str));
    let route = Route::of(
        rule.logsource.product.as_deref(),
        rule.logsource.category.as_deref(),
        rule.logsource.service.as_deref(),
    );
    Ok(CompiledRule {
        anchors: crate::prefilter::rule_anchors(yaml),
        id: rule.id.clone().unwrap_or_else(|| path.to_owned()),
        title: rule.title.clone(),
        level,
        techniques,
        tactics,
        author: rule.author.clone().unwrap_or_default(),
        path: path.to_owned(),
        route,
        rule,
    })
}

/// The rule set of a session: rules grouped by route so each event is
/// matched only against the rules written for it.
pub struct Engine {
    rules: Vec<CompiledRule>,
    /// Every rule's anchors in one automaton; `anchor_rules[i]` are the
    /// rules anchor `i` belongs to.
    anchors: Option<aho_corasick::AhoCorasick>,
    anchor_rules: Vec<Vec<usize>>,
    /// Rules by (channel, event id) for exact routes.
    by_event: BTreeMap<(String, Option<u32>), Vec<usize>>,
    other: Vec<usize>,
    /// Rules that did not compile.
    pub skipped: Skipped,
    /// Rules left out by the session's filters (level, ids).
    pub filtered: usize,
}

/// What to load.
#[derive(Debug, Default, Clone)]
pub struct Selection {
    /// Lowest level kept.
    pub min_level: Option<Level>,
    /// Only these rule ids, if set.
    pub ids: Option<Vec<String>>,
}

impl Engine {
    /// Compiles `rules` (path, yaml) under `selection`.
    pub fn build(rules: Vec<(String, String)>, selection: &Selection) -> Engine {
        let mut engine = Engine {
            rules: Vec::new(),
            anchors: None,
            anchor_rules: Vec::new(),
            by_event: BTreeMap::new(),
            other: Vec::new(),
            skipped: Vec::new(),
            filtered: 0,
        };
        for (path, yaml) in rules {
            let compiled = match compile(&path, &yaml) {
                Ok(compiled) => compiled,
                Err(reason) => {
                    engine.skipped.push((path, reason));
                    continue;
                }
            };
            let wanted = selection.min_level.is_none_or(|min| compiled.level >= min)
                && selection
                    .ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&compiled.id));
            if !wanted {
                engine.filtered += 1;
                continue;
            }
            let index = engine.rules.len();
            match &compiled.route {
                Route::Never => {
                    engine.filtered += 1;
                    continue;
                }
                Route::Events(pairs) => {
                    for (channel, id) in pairs {
                        engine
                            .by_event
                            .entry(((*channel).to_owned(), *id))
                            .or_default()
                            .push(index);
                    }
                }
                Route::ChannelContains(_) | Route::Any => engine.other.push(index),
            }
            engine.rules.push(compiled);
        }
        let mut needles: std::collections::BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, rule) in engine.rules.iter().enumerate() {
            for anchor in rule.anchors.iter().flatten() {
                needles.entry(anchor.clone()).or_default().push(index);
            }
        }
        engine.anchors = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::Standard)
            .build(needles.keys())
            .ok();
        engine.anchor_rules = needles.into_values().collect();
        engine
    }

    /// [`Engine::matches`] without the prefilter (for checking it).
    pub fn matches_without_prefilter(&self, event: &Value) -> Vec<usize> {
        let flat = flatten(event);
        let squashed = flat.channel.replace('-', "");
        let Ok(sigma_event) = SigmaEvent::try_from(Value::Object(flat.fields)) else {
            return Vec::new();
        };
        (0..self.rules.len())
            .filter(|i| {
                let route = &self.rules[*i].route;
                route.admits(&flat.channel, &squashed, flat.event_id)
                    && self.rules[*i].rule.is_match(&sigma_event)
            })
            .collect()
    }

    /// Rules without anchors (always evaluated when routed).
    pub fn unanchored(&self) -> usize {
        self.rules.iter().filter(|r| r.anchors.is_none()).count()
    }

    /// Compiled rules.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// Indices of the rules that match `event`.
    pub fn matches(&self, event: &Value) -> Vec<usize> {
        let flat = flatten(event);
        let candidates = self.candidates(&flat);
        if candidates.is_empty() {
            return candidates;
        }
        let Ok(sigma_event) = SigmaEvent::try_from(Value::Object(flat.fields)) else {
            return Vec::new();
        };
        candidates
            .into_iter()
            .filter(|i| self.rules[*i].rule.is_match(&sigma_event))
            .collect()
    }

    /// The rules routed to `flat` that pass the prefilter.
    pub fn candidates(&self, flat: &Flat) -> Vec<usize> {
        let squashed = flat.channel.replace('-', "");
        let mut candidates: Vec<usize> = Vec::new();
        for key in [
            (flat.channel.clone(), flat.event_id),
            (flat.channel.clone(), None),
        ] {
            if let Some(found) = self.by_event.get(&key) {
                candidates.extend(found);
            }
        }
        candidates.extend(self.other.iter().copied().filter(|i| {
            self.rules[*i]
                .route
                .admits(&flat.channel, &squashed, flat.event_id)
        }));
        if candidates.is_empty() {
            return candidates;
        }
        candidates.sort_unstable();
        candidates.dedup();
        // The prefilter: which anchors occur anywhere in the event's values.
        if let Some(automaton) = &self.anchors {
            let mut haystack = String::new();
            for value in flat.fields.values() {
                match value {
                    Value::String(text) => haystack.push_str(text),
                    Value::Number(n) => haystack.push_str(&n.to_string()),
                    _ => continue,
                }
                haystack.push('\n');
            }
            let haystack = haystack.to_lowercase();
            let mut present = vec![false; self.rules.len()];
            for found in automaton.find_overlapping_iter(&haystack) {
                for rule in &self.anchor_rules[found.pattern().as_usize()] {
                    present[*rule] = true;
                }
            }
            candidates.retain(|i| present[*i] || self.rules[*i].anchors.is_none());
        }
        candidates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULE: &str = r"title: Test encoded PowerShell
id: 00000000-0000-0000-0000-000000000001
author: Test Author
level: high
tags: [attack.execution, attack.t1059.001]
logsource: { product: windows, category: process_creation }
detection:
  selection:
    Image|endswith: '\powershell.exe'
    CommandLine|contains|windash: ' -enc '
  condition: selection
";

    #[test]
    fn routes_and_both_shapes() {
        let engine = Engine::build(
            vec![("rules/x.yml".into(), RULE.into())],
            &Selection::default(),
        );
        assert_eq!(engine.rules().len(), 1);
        assert_eq!(engine.rules()[0].techniques, ["T1059.001"]);
        assert_eq!(engine.rules()[0].tactics, ["execution"]);
        let flat = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "CommandLine": "powershell.exe /enc SQBFAFgA"});
        assert_eq!(engine.matches(&flat), [0], "windash turns /enc into -enc");
        let nested = json!({"Event": {"System": {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"},
            "EventData": {"Image": "C:\\x\\powershell.exe", "CommandLine": "powershell -enc AAAA"}}});
        assert_eq!(engine.matches(&nested), [0]);
        let security = json!({"Channel": "Security", "EventID": 4688,
            "NewProcessName": "C:\\x\\powershell.exe", "CommandLine": "powershell -enc AAAA"});
        assert_eq!(engine.matches(&security), [0], "4688 field names");
        // The same fields in an image-load event: not a process creation.
        let image_load = json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 7,
            "Image": "C:\\x\\powershell.exe", "CommandLine": "powershell -enc AAAA"});
        assert!(engine.matches(&image_load).is_empty());
    }

    #[test]
    fn tactic_tags_leave_out_techniques_groups_and_software() {
        let tags = [
            "attack.stealth",
            "attack.t1685.001",
            "attack.defense-impairment",
            "attack.g0007",
            "attack.s0002",
            "cve.2021-44228",
            "attack.command_and_control",
        ];
        assert_eq!(
            tactic_tags(tags),
            ["stealth", "defense-impairment", "command-and-control"]
        );
    }

    #[test]
    fn regex_flags_become_inline() {
        let yaml = "a:\n  F|re|i: '^C:\\\\x$'\n  G|re|i:\n    - 'one'\n    - \"two\"\n  H: z\n";
        let fixed = inline_regex_flags(yaml);
        assert_eq!(
            fixed,
            "a:\n  F|re: '(?i)^C:\\\\x$'\n  G|re:\n    - '(?i)one'\n    - \"(?i)two\"\n  H: z\n"
        );
    }

    #[test]
    fn bundle_splits_and_bad_rules_are_reported() {
        let bundle = format!("#@rule a.yml\n{RULE}#@rule b.yml\ntitle: broken\ndetection: {{}}\n");
        let rules = bundle_rules(&bundle);
        assert_eq!(rules.len(), 2);
        let engine = Engine::build(rules, &Selection::default());
        assert_eq!(engine.rules().len(), 1);
        assert_eq!(engine.skipped.len(), 1);
        assert_eq!(engine.skipped[0].0, "b.yml");
    }
}

/// The regression pairs of the data set, run natively: figures for the
/// compile report and recall (the sandboxed run is in `tests/all/hunts.rs`).
#[cfg(test)]
mod regression {
    use super::*;
    use std::path::{Path, PathBuf};

    fn pairs() -> Vec<(String, Vec<Value>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/sigma/regression_data");
        let mut infos = Vec::new();
        let mut stack: Vec<PathBuf> = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|n| n == "info.yml") {
                    infos.push(path);
                }
            }
        }
        infos.sort();
        infos
            .into_iter()
            .map(|info| {
                let text = std::fs::read_to_string(&info).unwrap_or_default();
                let id = text
                    .split("rule_metadata:")
                    .nth(1)
                    .and_then(|rest| rest.split("id:").nth(1))
                    .and_then(|rest| rest.lines().next())
                    .map(|id| id.trim().to_owned())
                    .unwrap_or_default();
                let mut events = Vec::new();
                for entry in std::fs::read_dir(info.parent().unwrap_or(Path::new(".")))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if entry.path().extension().is_some_and(|e| e == "json") {
                        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                        events.extend(
                            serde_json::Deserializer::from_str(&text)
                                .into_iter::<Value>()
                                .filter_map(Result::ok),
                        );
                    }
                }
                (id, events)
            })
            .collect()
    }

    #[test]
    fn bundled_rules_compile_and_regression_pairs_fire() {
        let rules = crate::bundled_rules().unwrap_or_default();
        let total = rules.len();
        let engine = Engine::build(rules, &Selection::default());
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for (_, reason) in &engine.skipped {
            *reasons
                .entry(reason.chars().take(60).collect())
                .or_default() += 1;
        }
        eprintln!(
            "rules: {total}, compiled {}, left out (not Windows) {}, skipped {}: {reasons:#?}; {} without prefilter anchors",
            engine.rules().len(),
            engine.filtered,
            engine.skipped.len(),
            engine.unanchored()
        );
        let pairs = pairs();
        let mut missed = Vec::new();
        let mut cross = 0usize;
        let mut events = 0usize;
        for (id, list) in &pairs {
            let mut fired = false;
            for event in list {
                events += 1;
                for index in engine.matches(event) {
                    if engine.rules()[index].id == *id {
                        fired = true;
                    } else {
                        cross += 1;
                    }
                }
            }
            if !fired {
                missed.push(id.clone());
            }
            for event in list {
                let with = engine.matches(event);
                let without = engine.matches_without_prefilter(event);
                assert_eq!(
                    with,
                    without,
                    "the prefilter dropped a match ({id}): {:?}",
                    without
                        .iter()
                        .filter(|i| !with.contains(i))
                        .map(|i| (&engine.rules()[*i].id, &engine.rules()[*i].anchors))
                        .collect::<Vec<_>>()
                );
            }
        }
        eprintln!(
            "regression: {} pairs ({events} events), {} fire on their own event, {cross} other-rule hits on these events; missed: {missed:?}",
            pairs.len(),
            pairs.len() - missed.len()
        );
        assert_eq!(pairs.len(), 142);
        assert_eq!(engine.rules().len(), total, "every bundled rule compiles");
        assert!(
            missed.is_empty(),
            "rules that missed their own event: {missed:?}"
        );
    }
}
