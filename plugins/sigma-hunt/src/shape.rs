//! Windows event shapes, flattened to the field names Sigma rules use.
//!
//! Read: flat NXLog (`Channel`, `EventID`, `Hostname` and the event data
//! at the top; what most OTRF Security-Datasets captures hold), nested EVTX
//! JSON (`{"Event": {"System": …, "EventData": …}}`, as `evtx_dump`, python-evtx
//! and Sigma's regression events write it), winlogbeat 6.x (`log_name`,
//! `event_id`, `event_data`, `computer_name` at the top) and winlogbeat
//! 7.x/8.x (`winlog.channel`, `winlog.event_id`, `winlog.event_data`).
//!
//! Unnamed event data — the Application log (MSSQL, MsiInstaller, ESENT),
//! Windows PowerShell 400/600/800 — is one `Data` field holding every
//! unnamed value joined by a newline, which is what Sigma's Windows mapping
//! (and pySigma, Chainsaw, Hayabusa) give rules on `Data`. EVTX JSON writes
//! such data as `"Data": {"#text": [ … ]}`, a plain list or one string;
//! winlogbeat as `param1`, `param2`, …; each of these becomes that one field.

use serde_json::{Map, Value};

/// An event flattened for matching, with what routing needs.
pub struct Flat {
    /// Field → value, as Sigma rules name fields.
    pub fields: Map<String, Value>,
    /// Lower-cased channel.
    pub channel: String,
    /// Event id.
    pub event_id: Option<u32>,
}

/// A number from a JSON number, a numeric string or `{"#text": …}`.
pub fn number(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => o.get("#text").and_then(number),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        Value::Object(o) => o.get("#text").and_then(text),
        _ => None,
    }
}

/// Every field of an EVTX `EventData` object into `fields`; its `Data`
/// member is unnamed data (joined into `Data`) or named entries
/// (`{"#attributes": {"Name": …}, "#text": …}` / `{"@Name": …}`).
fn event_data(data: &Map<String, Value>, fields: &mut Map<String, Value>) {
    let mut unnamed: Vec<String> = Vec::new();
    for (key, value) in data {
        if key == "Data" {
            data_values(value, fields, &mut unnamed);
        } else if key != "#attributes" {
            fields.insert(key.clone(), scalar(value));
        }
    }
    if !unnamed.is_empty() {
        fields.insert("Data".into(), Value::String(unnamed.join("\n")));
    }
}

/// `{"#text": v}` (an element without attributes) is its text; anything
/// else stays as it is.
fn scalar(value: &Value) -> Value {
    match value {
        Value::Object(o) if o.len() == 1 && o.contains_key("#text") => o["#text"].clone(),
        _ => value.clone(),
    }
}

fn data_values(value: &Value, fields: &mut Map<String, Value>, unnamed: &mut Vec<String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                data_values(item, fields, unnamed);
            }
        }
        Value::Object(o) => {
            let name = o
                .get("#attributes")
                .and_then(|a| a.get("Name"))
                .or_else(|| o.get("@Name"))
                .or_else(|| o.get("Name"))
                .and_then(Value::as_str);
            match (name, o.get("#text")) {
                (Some(name), value) => {
                    let value = value.map_or(Value::String(String::new()), Value::clone);
                    fields.insert(name.to_owned(), value);
                }
                (None, Some(inner)) => data_values(inner, fields, unnamed),
                (None, None) => {}
            }
        }
        Value::Null => {}
        other => unnamed.extend(text(other)),
    }
}

/// winlogbeat's `event_data`: named fields as they are; unnamed data,
/// which winlogbeat calls `param1`, `param2`, …, also joined in order into
/// `Data` (unless the event names a `Data` of its own).
fn beat_event_data(data: &Map<String, Value>, fields: &mut Map<String, Value>) {
    fields.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
    if data.contains_key("Data") {
        return;
    }
    let mut params: Vec<(u32, String)> = data
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("param")?.parse().ok()?, text(v)?)))
        .collect();
    if !params.is_empty() {
        params.sort_by_key(|(n, _)| *n);
        let joined: Vec<String> = params.into_iter().map(|(_, v)| v).collect();
        fields.insert("Data".into(), Value::String(joined.join("\n")));
    }
}

fn str_field(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Flattens an event of any supported shape.
pub fn flatten(event: &Value) -> Flat {
    let mut fields = Map::new();
    let mut channel = String::new();
    let mut event_id = None;
    let object = event.as_object();
    if let Some(nested) = event.get("Event").filter(|e| e.get("System").is_some()) {
        let system = &nested["System"];
        event_id = number(&system["EventID"]);
        channel = text(&system["Channel"]).unwrap_or_default();
        if let Some(provider) = system["Provider"]["#attributes"]["Name"].as_str() {
            fields.insert("Provider_Name".into(), Value::String(provider.to_owned()));
        }
        if let Some(computer) = text(&system["Computer"]) {
            fields.insert("Computer".into(), Value::String(computer));
        }
        match &nested["EventData"] {
            Value::Object(data) => event_data(data, &mut fields),
            Value::String(data) => {
                fields.insert("Data".into(), Value::String(data.clone()));
            }
            _ => {}
        }
        if let Some(data) = nested["UserData"].as_object() {
            for inner in data.values().filter_map(Value::as_object) {
                fields.extend(inner.iter().map(|(k, v)| (k.clone(), scalar(v))));
            }
        }
    } else if let Some(winlog) = event.get("winlog").and_then(Value::as_object) {
        event_id = winlog.get("event_id").and_then(number);
        channel = str_field(winlog, "channel");
        if let Some(data) = winlog.get("event_data").and_then(Value::as_object) {
            beat_event_data(data, &mut fields);
        }
        if let Some(computer) = winlog.get("computer_name") {
            fields.insert("Computer".into(), computer.clone());
        }
        if let Some(provider) = winlog.get("provider_name") {
            fields.insert("Provider_Name".into(), provider.clone());
        }
    } else if let Some(beat6) =
        object.filter(|o| o.contains_key("log_name") && o.contains_key("event_id"))
    {
        // winlogbeat 6.x: the winlog fields at the top.
        event_id = beat6.get("event_id").and_then(number);
        channel = str_field(beat6, "log_name");
        if let Some(data) = beat6.get("event_data").and_then(Value::as_object) {
            beat_event_data(data, &mut fields);
        }
        if let Some(data) = beat6.get("user_data").and_then(Value::as_object) {
            fields.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(computer) = beat6.get("computer_name") {
            fields.insert("Computer".into(), computer.clone());
        }
        if let Some(provider) = beat6.get("source_name") {
            fields.insert("Provider_Name".into(), provider.clone());
        }
    } else if let Some(object) = object {
        event_id = object.get("EventID").and_then(number);
        channel = str_field(object, "Channel");
        fields.extend(object.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(name) = object
            .get("SourceName")
            .or_else(|| object.get("ProviderName"))
        {
            fields
                .entry("Provider_Name")
                .or_insert_with(|| name.clone());
        }
        if let Some(host) = object.get("Hostname") {
            fields.entry("Computer").or_insert_with(|| host.clone());
        }
    }
    if let Some(id) = event_id {
        fields.insert("EventID".into(), Value::from(id));
    }
    // Defender and a few other providers name fields with spaces
    // ("Threat Name"); Sigma rules write them without.
    let spaced: Vec<(String, Value)> = fields
        .iter()
        .filter(|(k, _)| k.contains(' '))
        .map(|(k, v)| (k.replace(' ', ""), v.clone()))
        .collect();
    for (key, value) in spaced {
        fields.entry(key).or_insert(value);
    }
    // Security 4688 names the process fields differently.
    if event_id == Some(4688) {
        for (from, to) in [
            ("NewProcessName", "Image"),
            ("ParentProcessName", "ParentImage"),
        ] {
            if let Some(value) = fields.get(from).cloned() {
                fields.entry(to).or_insert(value);
            }
        }
    }
    Flat {
        fields,
        channel: channel.to_ascii_lowercase(),
        event_id,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unnamed_evtx_data_is_one_joined_field() {
        for data in [
            json!({"Data": {"#text": ["Available", "None", "\tHostVersion=5.1\n\tEngineVersion=2.0"]}}),
            json!({"Data": ["Available", "None", "\tHostVersion=5.1\n\tEngineVersion=2.0"]}),
        ] {
            let event = json!({"Event": {"System": {"EventID": 400, "Channel": "Windows PowerShell"}, "EventData": data}});
            let flat = flatten(&event);
            assert_eq!(
                flat.fields["Data"],
                "Available\nNone\n\tHostVersion=5.1\n\tEngineVersion=2.0"
            );
            assert_eq!(
                (flat.channel.as_str(), flat.event_id),
                ("windows powershell", Some(400))
            );
        }
        let one = json!({"Event": {"System": {"EventID": {"#text": 33205}, "Channel": "Application"},
            "EventData": {"Data": "statement:select 1", "Binary": "00"}}});
        let flat = flatten(&one);
        assert_eq!(flat.fields["Data"], "statement:select 1");
        assert_eq!(flat.fields["Binary"], "00");
        assert_eq!(flat.event_id, Some(33205));
    }

    #[test]
    fn named_evtx_data_entries_become_fields() {
        let event = json!({"Event": {"System": {"EventID": 4688, "Channel": "Security"},
        "EventData": {"Data": [
            {"#attributes": {"Name": "NewProcessName"}, "#text": "C:\\x\\cmd.exe"},
            {"@Name": "CommandLine", "#text": "cmd /c whoami"},
            "unnamed"
        ]}}});
        let flat = flatten(&event);
        assert_eq!(flat.fields["Image"], "C:\\x\\cmd.exe");
        assert_eq!(flat.fields["CommandLine"], "cmd /c whoami");
        assert_eq!(flat.fields["Data"], "unnamed");
    }

    #[test]
    fn winlogbeat_6_fields_sit_at_the_top() {
        let event = json!({"log_name": "Microsoft-Windows-Sysmon/Operational", "event_id": 13,
            "computer_name": "HR001.shire.com", "source_name": "Microsoft-Windows-Sysmon",
            "event_data": {"TargetObject": "HKLM\\x", "Details": "1"}});
        let flat = flatten(&event);
        assert_eq!(flat.channel, "microsoft-windows-sysmon/operational");
        assert_eq!(flat.event_id, Some(13));
        assert_eq!(flat.fields["TargetObject"], "HKLM\\x");
        assert_eq!(flat.fields["Computer"], "HR001.shire.com");
        assert_eq!(flat.fields["Provider_Name"], "Microsoft-Windows-Sysmon");
        assert_eq!(flat.fields["EventID"], 13);
    }

    #[test]
    fn winlogbeat_params_are_the_unnamed_data_in_order() {
        let params = json!({"param10": "j", "param2": "b", "param1": "a"});
        for event in [
            json!({"log_name": "Windows PowerShell", "event_id": 800, "event_data": params}),
            json!({"winlog": {"channel": "Windows PowerShell", "event_id": "800", "event_data": params}}),
        ] {
            let flat = flatten(&event);
            assert_eq!(flat.fields["Data"], "a\nb\nj");
            assert_eq!(flat.fields["param1"], "a");
            assert_eq!(flat.event_id, Some(800));
        }
    }
}
