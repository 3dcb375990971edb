//! MISP event JSON: `{"Event": …}`, `{"response": [{"Event": …}, …]}` or a
//! list of either, as MISP exports and ESET's malware-ioc publishes them.
//!
//! Attributes are read from the event and from its objects. Types read:
//! `ip-src`, `ip-dst`, `ip-src|port`, `ip-dst|port`, `domain`, `hostname`,
//! `domain|ip` (both halves), `url`, `md5`, `sha1`, `sha256` and
//! `filename|md5|sha1|sha256` (the hash). Every other type is counted as
//! skipped. Labels: the event's `info` is the campaign; the family comes
//! from a `misp-galaxy:threat-actor` or `misp-galaxy:malpedia` tag (else a
//! plain tag such as `Sednit`); `misp-galaxy:mitre-attack-pattern` tags
//! give ATT&CK ids; `link` attributes are references; confidence follows
//! the event's `threat_level_id` (1 high → 90, 2 → 75, 3 → 50, 4
//! undefined → 60). An attribute with `to_ids: false` is context, not an
//! indicator (TeleBots' event lists `api.telegram.org` so), and is skipped
//! — unless no attribute of the event sets `to_ids`, when the publisher did
//! not use the flag (ESET's SSHDoor events) and every attribute is taken.

use serde_json::Value;

use super::IndicatorMeta;
use super::formats::{Parsed, classify, file_hash};
use crate::intel::Indicator;

/// One MISP JSON document.
pub fn read(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let document: Value = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(_) => {
            parsed.skip("not valid JSON");
            return parsed;
        }
    };
    let mut events = Vec::new();
    collect_events(&document, &mut events);
    if events.is_empty() {
        parsed.skip("no MISP Event in the document");
    }
    for event in events {
        read_event(event, &mut parsed);
    }
    parsed
}

fn collect_events<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_events(item, out)),
        Value::Object(object) => {
            if let Some(event) = object.get("Event") {
                out.push(event);
            } else if let Some(response) = object.get("response") {
                collect_events(response, out);
            }
        }
        _ => {}
    }
}

fn tags(event: &Value) -> Vec<&str> {
    event["Tag"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| tag["name"].as_str())
        .collect()
}

/// The quoted value of a galaxy tag `misp-galaxy:<kind>="<value>"`.
fn galaxy<'a>(tag: &'a str, kind: &str) -> Option<&'a str> {
    tag.strip_prefix("misp-galaxy:")?
        .strip_prefix(kind)?
        .strip_prefix("=\"")?
        .strip_suffix('"')
}

fn attributes(event: &Value) -> Vec<&Value> {
    let own = event["Attribute"].as_array().into_iter().flatten();
    let in_objects = event["Object"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|object| object["Attribute"].as_array().into_iter().flatten());
    own.chain(in_objects).collect()
}

fn read_event(event: &Value, parsed: &mut Parsed) {
    let tags = tags(event);
    let family = tags
        .iter()
        .find_map(|t| galaxy(t, "threat-actor").or_else(|| galaxy(t, "malpedia")))
        .or_else(|| {
            tags.iter()
                .copied()
                .find(|t| !t.contains(':') && !t.eq_ignore_ascii_case("ESET"))
        })
        .map(str::to_owned);
    let techniques: Vec<String> = tags
        .iter()
        .filter_map(|t| galaxy(t, "mitre-attack-pattern"))
        .filter_map(|name| name.rsplit(" - ").next())
        .filter(|id| id.starts_with('T') && id[1..].starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    let attributes = attributes(event);
    let references: Vec<String> = attributes
        .iter()
        .filter(|a| a["type"] == "link")
        .filter_map(|a| a["value"].as_str())
        .map(str::to_owned)
        .collect();
    let threat_level = event["threat_level_id"]
        .as_str()
        .and_then(|t| t.parse::<u8>().ok())
        .or_else(|| {
            event["threat_level_id"]
                .as_u64()
                .and_then(|t| u8::try_from(t).ok())
        });
    let confidence = match threat_level {
        Some(1) => 90,
        Some(2) => 75,
        Some(3) => 50,
        _ => 60,
    };
    let meta = parsed.meta(IndicatorMeta {
        family,
        campaign: event["info"].as_str().map(str::to_owned),
        confidence,
        references,
        techniques,
    });
    let flagged = attributes.iter().any(|a| a["to_ids"] == Value::Bool(true));
    for attribute in attributes {
        let kind = attribute["type"].as_str().unwrap_or_default();
        let value = attribute["value"].as_str().unwrap_or_default();
        if kind == "link" {
            continue;
        }
        if flagged && attribute["to_ids"] == Value::Bool(false) {
            parsed.skip("to_ids false (context, not an indicator)");
            continue;
        }
        for indicator in indicators(kind, value) {
            match indicator {
                Ok(indicator) => parsed.indicators.push((indicator, meta)),
                Err(reason) => parsed.skip(reason),
            }
        }
    }
}

/// The indicators of one attribute.
fn indicators(kind: &str, value: &str) -> Vec<Result<Indicator, &'static str>> {
    let hash =
        |h: &str| file_hash(h).ok_or("MISP hash attribute that is not an MD5, SHA-1 or SHA-256");
    match kind {
        "ip-src" | "ip-dst" | "domain" | "hostname" | "url" => vec![classify(value)],
        "ip-src|port" | "ip-dst|port" => match value.rsplit_once('|') {
            Some((ip, port)) => vec![
                classify(&format!("{ip}:{port}")).or_else(|_| classify(&format!("[{ip}]:{port}"))),
            ],
            None => vec![classify(value)],
        },
        "domain|ip" => value.split('|').map(classify).collect(),
        "md5" | "sha1" | "sha256" => vec![hash(value)],
        "filename|md5" | "filename|sha1" | "filename|sha256" => {
            vec![
                value
                    .rsplit_once('|')
                    .map_or_else(|| hash(value), |(_, h)| hash(h)),
            ]
        }
        _ => vec![Err("MISP attribute of a type not read")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_with_objects_galaxies_and_links() {
        let event = r#"{"response": [{"Event": {"info": "Zebrocy blogpost", "threat_level_id": "1",
            "Tag": [{"name": "misp-galaxy:threat-actor=\"Sofacy\""}, {"name": "misp-galaxy:mitre-attack-pattern=\"Spearphishing Attachment - T1193\""}],
            "Attribute": [
                {"type": "ip-dst", "value": "185.1.2.3", "to_ids": true},
                {"type": "ip-dst|port", "value": "185.1.2.4|8080", "to_ids": true},
                {"type": "domain|ip", "value": "evil.example|185.1.2.5", "to_ids": true},
                {"type": "filename|sha256", "value": "a.exe|EE04B324F7E25B59D3412232A79D1878632D6817C3BB49500B214BF19AFA4E2C", "to_ids": true},
                {"type": "link", "value": "https://r.example/zebrocy"},
                {"type": "email-src", "value": "a@b.example", "to_ids": true},
                {"type": "domain", "value": "context.example", "to_ids": false}
            ],
            "Object": [{"Attribute": [{"type": "url", "value": "http://evil.example/gate.php", "to_ids": true}]}]}}]}"#;
        let parsed = read(event);
        let texts: Vec<String> = parsed.indicators.iter().map(|(i, _)| i.text()).collect();
        assert_eq!(
            texts,
            [
                "185.1.2.3",
                "185.1.2.4:8080",
                "evil.example",
                "185.1.2.5",
                "ee04b324f7e25b59d3412232a79d1878632d6817c3bb49500b214bf19afa4e2c",
                "evil.example/gate.php"
            ]
        );
        let meta = &parsed.metas[0];
        assert_eq!(meta.campaign.as_deref(), Some("Zebrocy blogpost"));
        assert_eq!(meta.family.as_deref(), Some("Sofacy"));
        assert_eq!(meta.techniques, ["T1193"]);
        assert_eq!(meta.references, ["https://r.example/zebrocy"]);
        assert_eq!(meta.confidence, 90);
        assert_eq!(
            parsed.skipped.values().sum::<usize>(),
            2,
            "{:?}",
            parsed.skipped
        );
        assert!(read("{not json").skipped.contains_key("not valid JSON"));
        // No attribute uses the flag: all of them are indicators.
        let unflagged = read(
            r#"{"Event": {"info": "x", "Attribute": [{"type": "domain", "value": "a.example", "to_ids": false}]}}"#,
        );
        assert_eq!(unflagged.indicators.len(), 1);
    }
}
