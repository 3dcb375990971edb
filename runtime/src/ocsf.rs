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

// ---- Rampart → OCSF Detection Finding 1.8 (no profiles) ----

/// OCSF severity id of a severity.
fn severity_id(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

/// OCSF observable `(type_id, type)` of an entity kind.
fn observable_type(kind: EntityKind) -> (u8, &'static str) {
    match kind {
        EntityKind::Hostname | EntityKind::Domain => (1, "Hostname"),
        EntityKind::Ip => (2, "IP Address"),
        EntityKind::User => (4, "User Name"),
        EntityKind::Email => (5, "Email Address"),
        EntityKind::Url => (6, "URL String"),
        EntityKind::FileHash => (8, "Hash"),
        EntityKind::Process => (9, "Process Name"),
    }
}

fn observables(entities: &[Entity]) -> Vec<Value> {
    entities
        .iter()
        .map(|entity| {
            let (type_id, name) = observable_type(entity.kind);
            serde_json::json!({"type_id": type_id, "type": name, "name": format!("{:?}", entity.kind).to_ascii_lowercase(), "value": entity.value})
        })
        .collect()
}

fn attacks(techniques: &[String]) -> Vec<Value> {
    techniques
        .iter()
        .map(|id| {
            let mut attack = match id.split_once('.') {
                Some((parent, _)) => {
                    serde_json::json!({"technique": {"uid": parent}, "sub_technique": {"uid": id}})
                }
                None => serde_json::json!({"technique": {"uid": id}}),
            };
            // Only a release that holds the id is stamped on it.
            if let Some(release) = crate::attack::release_of(id) {
                attack["version"] = Value::from(release);
            }
            attack
        })
        .collect()
}

fn metadata(tenant: &str, event_code: &str) -> Value {
    serde_json::json!({
        "version": "1.8.0",
        "profiles": [],
        "tenant_uid": tenant,
        "event_code": event_code,
        "product": {"name": "Rampart", "vendor_name": "Rampart", "version": env!("CARGO_PKG_VERSION")},
    })
}

/// A hunt finding as an OCSF 1.8 Detection Finding (class 2004, no
/// profiles). Sigma attribution (author, rule link, licence) is kept in
/// `finding_info.analytic` and `unmapped`.
pub fn finding_to_ocsf(
    tenant: &crate::tenant::TenantId,
    hunt: &str,
    finding: &crate::model::Finding,
) -> Value {
    let link = finding.references.first().cloned();
    let mut info = serde_json::json!({
        "uid": format!("{hunt}:{}:{}", finding.rule_id, finding.event_ids.first().map_or("", String::as_str)),
        "title": finding.title,
        "types": ["hunt", hunt],
        "analytic": {"type_id": 1, "type": "Rule", "uid": finding.rule_id, "name": finding.title},
        "attacks": attacks(&finding.techniques),
        "related_events_count": finding.event_ids.len(),
    });
    if let Some(link) = &link {
        info["src_url"] = Value::String(link.clone());
    }
    serde_json::json!({
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id(finding.severity),
        "time": finding.time,
        "status_id": 1,
        "is_alert": true,
        "message": finding.title,
        "metadata": metadata(tenant.as_str(), &format!("hunt:{hunt}")),
        "finding_info": info,
        "observables": observables(&finding.entities),
        "unmapped": {"detail": finding.detail, "event_ids": finding.event_ids},
    })
}

/// A run's final verdict as an OCSF 1.8 Detection Finding: the alert's
/// entities, the playbook as the analytic, the highest risk any scorer gave,
/// and what was done.
pub fn run_to_ocsf(run: &crate::executor::run::Run) -> Value {
    let risk = run
        .steps
        .values()
        .filter_map(|s| s.output.as_ref()?.get("risk")?.as_u64())
        .max();
    let verdict = match (run.status, run.acted.is_empty(), risk) {
        (crate::executor::run::RunStatus::WaitingApproval, _, _) => "awaiting approval",
        (_, false, _) => "contained",
        (_, true, Some(r)) if r >= 70 => "malicious, not contained",
        (_, true, Some(r)) if r >= 40 => "suspicious",
        (_, true, Some(_)) => "benign",
        _ => "undetermined",
    };
    let mut doc = serde_json::json!({
        "activity_id": if run.finished.is_some() { 2 } else { 1 },
        "category_uid": 2,
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": if run.finished.is_some() { 200402 } else { 200401 },
        "severity_id": severity_id(run.alert.severity),
        "time": run.finished.unwrap_or(run.created),
        "status_id": if run.finished.is_some() { 3 } else { 1 },
        "is_alert": true,
        "message": format!("{}: {verdict}", run.alert.title),
        "metadata": metadata(run.tenant.as_str(), &format!("playbook:{}", run.playbook)),
        "finding_info": {
            "uid": run.id,
            "title": run.alert.title,
            "types": ["playbook run", verdict],
            "analytic": {"type_id": 1, "type": "Rule", "uid": run.playbook_sha256, "name": run.playbook, "version": run.playbook_version.to_string()},
            "attacks": attacks(&run.alert.techniques),
            "created_time": run.created,
            "first_seen_time": run.alert.time,
        },
        "observables": observables(&run.alert.entities),
        "unmapped": {"alert_id": run.alert.id, "verdict": verdict, "acted": run.acted, "run_status": run.status},
    });
    if let Some(risk) = risk {
        doc["risk_score"] = Value::from(risk);
    }
    doc
}
