//! A literal prefilter: most Sigma rules cannot match unless one of a few
//! strings occurs in the event (`Image|endswith: '\mimikatz.exe'`). For each
//! rule we extract such a set of "anchors" from its detection; per event,
//! one Aho-Corasick pass over the lower-cased field values finds which
//! anchors occur, and only the rules with a present anchor (or none we
//! could extract) are evaluated in full. The prefilter may let through
//! rules that then do not match; it never drops one that would.
//!
//! Anchors come from a selection's string values under modifiers that keep
//! the value's text (plain, `contains`, `startswith`, `endswith`, `all`,
//! `cased`): the longest literal run between wildcards. Values transformed
//! before matching (`base64`, `base64offset`, `utf16*`, `wide`, `windash`),
//! regexes, CIDRs, numbers, `exists` and field references give none. A
//! selection (fields ANDed) is anchored by its best field (every value with
//! a literal of at least 3 characters); a list of maps (ORed) only if each
//! map is. The condition decides: an `and` chain needs one anchored positive
//! selection; anything with `or`/`1 of`/parentheses needs every positively
//! named selection anchored (their union); otherwise the rule is evaluated
//! for every routed event.

use std::collections::BTreeSet;

use serde_json::Value;

/// Shortest anchor, in bytes (a 4-byte emoji is as rare as a word).
const MIN_ANCHOR: usize = 3;

/// The longest literal run of a Sigma string, lower-cased. Runs end at the
/// unescaped wildcards `*` and `?`; Sigma's escapes are read as the matcher
/// reads them (`\*` and `\?` are literal, `\\` is one backslash, any other
/// backslash is itself), so `\powershell.exe` anchors on the whole
/// `\powershell.exe`, backslash included.
fn literal(value: &str, windash: bool) -> Option<String> {
    let mut runs: Vec<String> = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let literal_char = match c {
            '\\' => match chars.peek() {
                Some(&escaped @ ('*' | '?' | '\\')) => {
                    chars.next();
                    escaped
                }
                _ => '\\',
            },
            '*' | '?' => {
                runs.push(String::new());
                continue;
            }
            // `windash` swaps a leading `-` for `/` and the Unicode dashes:
            // the runs between dashes are kept as written.
            '-' | '/' | '\u{2013}' | '\u{2014}' | '\u{2015}' if windash => {
                runs.push(String::new());
                continue;
            }
            other => other,
        };
        if let Some(run) = runs.last_mut() {
            run.push(literal_char);
        }
    }
    runs.into_iter()
        .max_by_key(String::len)
        .filter(|run| run.len() >= MIN_ANCHOR)
        .map(|run| run.to_lowercase())
}

/// Anchors of one field (`name|mods: values`), if every value has one.
fn field_anchors(key: &str, values: &Value) -> Option<Vec<String>> {
    let modifiers: Vec<&str> = key.split('|').skip(1).collect();
    let transforming = [
        "base64",
        "base64offset",
        "utf16",
        "utf16le",
        "utf16be",
        "wide",
        "re",
        "cidr",
        "exists",
        "fieldref",
        "gt",
        "gte",
        "lt",
        "lte",
        "expand",
    ];
    let windash = modifiers.contains(&"windash");
    if modifiers.iter().any(|m| transforming.contains(m)) {
        return None;
    }
    let list: Vec<&Value> = match values {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    if list.is_empty() {
        return None;
    }
    list.into_iter()
        .map(|value| value.as_str().and_then(|v| literal(v, windash)))
        .collect()
}

/// Words found in most Windows events: weak anchors that filter little.
const COMMON: &[&str] = &[
    "microsoft",
    "windows",
    "system32",
    "syswow64",
    "program files",
    "programdata",
    "appdata",
    "users",
    "temp",
    "public",
    "local",
    "roaming",
    ".exe",
    ".dll",
    "cmd.exe",
    "powershell",
    "c:",
    "software",
];

/// How well a field's anchors filter (lower is better).
fn weakness(anchors: &[String]) -> (usize, usize, usize) {
    let weak = anchors
        .iter()
        .filter(|a| {
            COMMON
                .iter()
                .any(|c| c.contains(a.as_str()) || a.as_str() == *c)
        })
        .count();
    (
        weak,
        anchors.len(),
        usize::MAX - anchors.iter().map(String::len).min().unwrap_or(0),
    )
}

/// Anchors of a map of fields (ANDed): the best field's.
fn map_anchors(map: &serde_json::Map<String, Value>) -> Option<Vec<String>> {
    map.iter()
        .filter_map(|(key, values)| field_anchors(key, values))
        // Fewer, longer anchors filter best.
        // Rare, few and long anchors filter best.
        .min_by_key(|anchors| weakness(anchors))
}

/// Anchors of one named selection.
fn selection_anchors(selection: &Value) -> Option<Vec<String>> {
    match selection {
        Value::Object(map) => map_anchors(map),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|k| k.as_str().and_then(|v| literal(v, false)))
            .collect(),
        Value::Array(items) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(item.as_object().and_then(map_anchors)?);
            }
            Some(all)
        }
        _ => None,
    }
}

/// The rule's anchors, or `None` when it must always be evaluated.
pub fn rule_anchors(yaml: &str) -> Option<BTreeSet<String>> {
    let rule: Value = serde_norway::from_str(yaml).ok()?;
    let detection = rule.get("detection")?.as_object()?;
    let condition = match detection.get("condition")? {
        Value::String(text) => text.clone(),
        _ => return None,
    };
    let names: Vec<&String> = detection.keys().filter(|k| *k != "condition").collect();
    // Selections named positively in the condition (patterns like `sel*`).
    let tokens: Vec<&str> = condition
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
        .collect();
    let mut positive: Vec<&String> = Vec::new();
    let mut negated = false;
    for token in &tokens {
        match *token {
            "not" => {
                negated = true;
                continue;
            }
            "and" | "or" | "of" | "1" | "all" | "them" | "any" => {
                if *token == "them" && !negated {
                    positive.extend(names.iter().copied());
                }
                continue;
            }
            pattern => {
                if !negated {
                    let prefix = pattern.strip_suffix('*');
                    positive.extend(names.iter().copied().filter(|name| match prefix {
                        Some(prefix) => name.starts_with(prefix),
                        None => name.as_str() == pattern,
                    }));
                }
            }
        }
        negated = false;
    }
    positive.sort();
    positive.dedup();
    if positive.is_empty() {
        return None;
    }
    let anchors_of = |name: &str| detection.get(name).and_then(selection_anchors);
    let matching = |pattern: &str| -> Vec<&String> {
        match (pattern, pattern.strip_suffix('*')) {
            ("them", _) => names.clone(),
            (_, Some(prefix)) => names
                .iter()
                .copied()
                .filter(|n| n.starts_with(prefix))
                .collect(),
            (name, None) => names
                .iter()
                .copied()
                .filter(|n| n.as_str() == name)
                .collect(),
        }
    };
    // An `and` chain without `or` or parentheses: every term must hold, so
    // the best anchored positive term suffices. A term is a selection,
    // `all of P` (the best of its selections) or `1 of P` (the union of its
    // selections, all anchored).
    if !condition.contains('(') && !tokens.contains(&"or") {
        let mut best: Option<Vec<String>> = None;
        let mut consider = |candidate: Option<Vec<String>>| {
            if let Some(candidate) = candidate
                && best
                    .as_ref()
                    .is_none_or(|b| weakness(&candidate) < weakness(b))
            {
                best = Some(candidate);
            }
        };
        let mut index = 0;
        while index < tokens.len() {
            let token = tokens[index];
            let negated = index > 0 && tokens[index - 1] == "not";
            match token {
                "and" | "not" => {}
                "1" | "any" | "all" if tokens.get(index + 1) == Some(&"of") => {
                    let pattern = tokens.get(index + 2).copied().unwrap_or_default();
                    if !negated {
                        let selected: Vec<Option<Vec<String>>> = matching(pattern)
                            .into_iter()
                            .map(|n| anchors_of(n))
                            .collect();
                        if token == "all" {
                            consider(selected.into_iter().flatten().min_by_key(|a| weakness(a)));
                        } else {
                            consider(
                                selected
                                    .into_iter()
                                    .collect::<Option<Vec<_>>>()
                                    .map(|all| all.concat()),
                            );
                        }
                    }
                    index += 2;
                }
                name => {
                    if !negated {
                        consider(anchors_of(name));
                    }
                }
            }
            index += 1;
        }
        return best.map(|a| a.into_iter().collect());
    }
    // With `or` or parentheses any positive selection may be the one: all
    // must be anchored, and any of their anchors may occur.
    let mut union = BTreeSet::new();
    for name in positive {
        union.extend(anchors_of(name)?);
    }
    Some(union)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_the_condition() {
        let and = "detection:\n  selection:\n    Image|endswith: '\\mimikatz.exe'\n    CommandLine|contains: 'x'\n  filter:\n    User: SYSTEM\n  condition: selection and not filter\n";
        assert_eq!(
            rule_anchors(and),
            Some(["\\mimikatz.exe".to_owned()].into())
        );
        let or = "detection:\n  a:\n    Image|endswith: '\\one.exe'\n  b:\n    CommandLine|contains: 'two two'\n  condition: a or b\n";
        assert_eq!(
            rule_anchors(or),
            Some(["\\one.exe".to_owned(), "two two".to_owned()].into())
        );
        let unanchorable = "detection:\n  a:\n    Image|endswith: '\\one.exe'\n  b:\n    CommandLine|base64offset|contains: 'IEX'\n  condition: 1 of them\n";
        assert_eq!(rule_anchors(unanchorable), None);
        let wildcard = "detection:\n  s:\n    CommandLine: '*\\evil*.dat'\n  condition: s\n";
        assert_eq!(rule_anchors(wildcard), Some(["\\evil".to_owned()].into()));
    }

    #[test]
    fn escapes_are_read_as_the_matcher_reads_them() {
        assert_eq!(literal("a\\*bcd*", false).as_deref(), Some("a*bcd"));
        assert_eq!(
            literal("\\\\server\\share", false).as_deref(),
            Some("\\server\\share")
        );
        assert_eq!(literal("x*y?z", false), None, "runs too short");
        assert_eq!(
            literal(" -encodedcommand ", true).as_deref(),
            Some("encodedcommand ")
        );
    }
}
