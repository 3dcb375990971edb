//! OCSF Detection Finding (class 2004) → Rampart alert.
//!
//! Mapping: `finding_info.uid` → id (required), `finding_info.title` (or
//! `message`) → title, `metadata.product.name` → source, `severity_id`
//! (1 informational … 5 critical, 6 fatal) → severity, `time` → time,
//! ATT&CK technique and sub-technique uids from `attacks` and
//! `finding_info.attacks` → techniques, `finding_info.types` → tags,
//! observables (hostname, IP, user name, e-mail, URL, hash, process name)
//! and `device.hostname`/`device.ip` → entities; the document itself → raw.

use serde_json::Value;

use crate::model::{Alert, Entity, EntityKind, Severity};

/// Why a document is not a usable Detection Finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcsfError {
    /// Another OCSF class.
    #[error("OCSF class_uid {0} is not a Detection Finding (2004)")]
    WrongClass(i64),
    /// A required field is missing.
    #[error("OCSF Detection Finding without {0}")]
    Missing(&'static str),
}

/// Whether `doc` looks like OCSF (has `class_uid`).
pub fn is_ocsf(doc: &Value) -> bool {
    doc.get("class_uid").is_some()
}

fn techniques(attacks: Option<&Value>, out: &mut Vec<String>) {
    for attack in attacks.and_then(Value::as_array).into_iter().flatten() {
        for key in ["technique", "sub_technique"] {
            if let Some(uid) = attack
                .get(key)
                .and_then(|t| t.get("uid"))
                .and_then(Value::as_str)
                && !out.iter().any(|known| known == uid)
            {
                out.push(uid.to_owned());
            }
        }
    }
}

/// Converts a Detection Finding.
pub fn alert_from_ocsf(doc: &Value) -> Result<Alert, OcsfError> {
    let class = doc.get("class_uid").and_then(Value::as_i64).unwrap_or(0);
    if class != 2004 {
        return Err(OcsfError::WrongClass(class));
    }
    let info = doc
        .get("finding_info")
        .ok_or(OcsfError::Missing("finding_info"))?;
    let id = info
        .get("uid")
        .and_then(Value::as_str)
        .ok_or(OcsfError::Missing("finding_info.uid"))?;
    let title = info
        .get("title")
        .or_else(|| doc.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("OCSF detection finding");
    let product = doc.get("metadata").and_then(|m| m.get("product"));
    let source = product
        .and_then(|p| p.get("name").or_else(|| p.get("vendor_name")))
        .and_then(Value::as_str)
        .unwrap_or("ocsf");
    let severity = match doc.get("severity_id").and_then(Value::as_i64) {
        Some(1) => Severity::Info,
        Some(2) => Severity::Low,
        Some(4) => Severity::High,
        Some(5 | 6) => Severity::Critical,
        _ => Severity::Medium,
    };
    let mut found_techniques = Vec::new();
    techniques(doc.get("attacks"), &mut found_techniques);
    techniques(info.get("attacks"), &mut found_techniques);
    let mut entities = Vec::new();
    let mut push = |kind: EntityKind, value: &str| {
        let entity = Entity {
            kind,
            value: value.to_owned(),
        };
        if !value.is_empty() && !entities.contains(&entity) {
            entities.push(entity);
        }
    };
    for observable in doc
        .get("observables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(value) = observable.get("value").and_then(Value::as_str) else {
            continue;
        };
        let kind = match observable.get("type_id").and_then(Value::as_i64) {
            Some(1) => EntityKind::Hostname,
            Some(2) => EntityKind::Ip,
            Some(4) => EntityKind::User,
            Some(5) => EntityKind::Email,
            Some(6) => EntityKind::Url,
            Some(8) => EntityKind::FileHash,
            Some(9) => EntityKind::Process,
            _ => continue,
        };
        push(kind, value);
    }
    if let Some(device) = doc.get("device") {
        if let Some(host) = device.get("hostname").and_then(Value::as_str) {
            push(EntityKind::Hostname, host);
        }
        if let Some(ip) = device.get("ip").and_then(Value::as_str) {
            push(EntityKind::Ip, ip);
        }
    }
    let tags = info
        .get("types")
        .and_then(Value::as_array)
        .map(|types| {
            types
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Alert {
        id: id.to_owned(),
        source: source.to_owned(),
        title: title.to_owned(),
        severity,
        time: doc.get("time").and_then(Value::as_i64).unwrap_or(0),
        entities,
        techniques: found_techniques,
        tags,
        raw: doc.clone(),
    })
}
