//! Telemetry events and scheduled hunts.
//!
//! Events (`POST /v1/tenants/{t}/events`, JSON lines or an array) are kept
//! per tenant in arrival order for `EVENT_RETENTION`. A hunt registers a
//! hunt plugin with a schedule — the usual 5-field crontab line, or cron's
//! 6/7-field form with seconds — and parameters. Each run scans only the
//! events that arrived since the last run (a watermark persisted with the
//! hunt), so every event is scanned once; runs missed while the server was
//! down catch up once. Findings become alerts (source `hunt:<name>`) that
//! trigger playbooks like any other alert.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::executor::Executor;
use crate::model::{Alert, Event};
use crate::tenant::TenantId;

/// How long events are kept.
pub const EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Events pushed to a hunt per batch.
pub const BATCH: usize = 500;

/// A registered hunt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HuntRecord {
    /// Tenant.
    pub tenant: TenantId,
    /// Name.
    pub name: String,
    /// The hunt plugin.
    pub plugin: String,
    /// The schedule as written.
    pub schedule: String,
    /// Parameters for the session.
    #[serde(default)]
    pub params: Value,
    /// Last event sequence number scanned.
    #[serde(default)]
    pub watermark: u64,
    /// Last run, Unix ms (`None`: never).
    #[serde(default)]
    pub last_run: Option<i64>,
    /// Events scanned by the last run.
    #[serde(default)]
    pub last_scanned: u64,
    /// Findings of the last run.
    #[serde(default)]
    pub last_findings: u64,
    /// Error of the last run, if any.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Parses a crontab line: 5 fields (minute first) or cron's 6/7 (seconds first).
pub fn parse_schedule(text: &str) -> Result<cron::Schedule, String> {
    let fields = text.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {text}"),
        6 | 7 => text.to_owned(),
        n => {
            return Err(format!(
                "`{text}` has {n} fields; write a crontab line like `*/5 * * * *`"
            ));
        }
    };
    cron::Schedule::from_str(&full).map_err(|err| format!("`{text}` is not a schedule: {err}"))
}

/// Whether the hunt is due at `now` (Unix ms): the first schedule point
/// after its last run (or after registration) has passed.
pub fn due(record: &HuntRecord, registered: i64, now: i64) -> bool {
    let Ok(schedule) = parse_schedule(&record.schedule) else {
        return false;
    };
    let since = record.last_run.unwrap_or(registered);
    let Some(since) = chrono::DateTime::from_timestamp_millis(since) else {
        return false;
    };
    schedule
        .after(&since)
        .next()
        .is_some_and(|next| next.timestamp_millis() <= now)
}

/// The events store.
#[derive(Debug, Clone)]
pub struct Events {
    tree: crate::store::Tree,
    db: crate::store::Keyspace,
}

fn event_key(tenant: &TenantId, seq: u64) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Events {
    /// Events in `db`.
    pub fn open(db: &crate::store::Keyspace) -> Result<Self, crate::store::SpaceError> {
        Ok(Events {
            tree: db.open_tree("events")?,
            db: db.clone(),
        })
    }

    /// Stores events; returns how many. Drops events older than the retention.
    pub fn append(
        &self,
        tenant: &TenantId,
        events: Vec<Event>,
        now: i64,
    ) -> Result<usize, ApiError> {
        let count = events.len();
        for event in events {
            // Sequence numbers start at 1: a watermark of 0 means "nothing scanned".
            let seq = self.db.generate_id().map_err(ApiError::internal)? + 1;
            let stored = json!({"received": now, "event": event});
            self.tree
                .insert(
                    event_key(tenant, seq),
                    serde_json::to_vec(&stored).map_err(ApiError::internal)?,
                )
                .map_err(ApiError::internal)?;
        }
        let horizon = now - i64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(i64::MAX);
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, bytes) = entry.map_err(ApiError::internal)?;
            let received = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["received"].as_i64())
                .unwrap_or(now);
            if received >= horizon {
                break; // arrival order: the rest are newer
            }
            self.tree.remove(key).map_err(ApiError::internal)?;
        }
        self.tree.flush().map_err(ApiError::internal)?;
        Ok(count)
    }

    /// Up to `limit` events after `watermark`, with their sequence numbers.
    pub fn after(
        &self,
        tenant: &TenantId,
        watermark: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, ApiError> {
        let start = event_key(tenant, watermark.saturating_add(1));
        let end = event_key(tenant, u64::MAX);
        let mut out = Vec::new();
        for entry in self.tree.range(start..=end).take(limit) {
            let (key, bytes) = entry.map_err(ApiError::internal)?;
            let seq = key
                .get(key.len() - 8..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            let stored: Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
            if let Ok(event) = serde_json::from_value::<Event>(stored["event"].clone()) {
                out.push((seq, event));
            }
        }
        Ok(out)
    }
}

/// Runs one hunt over the events after its watermark; findings become alerts.
pub async fn run_hunt(
    executor: &Executor,
    events: &Events,
    record: &mut HuntRecord,
    now: i64,
) -> Result<Vec<String>, ApiError> {
    let plugin = executor
        .plugin(&record.tenant, &record.plugin)
        .ok_or_else(|| ApiError::not_found(format!("no plugin {}", record.plugin)))?;
    let mut session = plugin
        .open_hunt(&record.params)
        .await
        .map_err(|err| ApiError::bad_request(format!("hunt {}: {err}", record.name)))?;
    let mut findings = Vec::new();
    let mut watermark = record.watermark;
    let mut scanned = 0u64;
    loop {
        let batch = events.after(&record.tenant, watermark, BATCH)?;
        let Some((last, _)) = batch.last() else { break };
        watermark = *last;
        scanned += batch.len() as u64;
        let batch: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
        let pushed = session
            .push(&batch)
            .await
            .map_err(|err| ApiError::bad_request(format!("hunt {}: {err}", record.name)))?;
        findings.extend(pushed.value);
    }
    let closed = session
        .close()
        .await
        .map_err(|err| ApiError::bad_request(format!("hunt {}: {err}", record.name)))?;
    findings.extend(closed.value);
    let mut alert_ids = Vec::new();
    let mut runs = Vec::new();
    for finding in &findings {
        // Summary findings (no events) describe the run, not an incident.
        let Some(first) = finding.event_ids.first() else {
            continue;
        };
        let alert = Alert {
            id: format!("hunt:{}:{}:{first}", record.name, finding.rule_id),
            source: format!("hunt:{}", record.name),
            title: finding.title.clone(),
            severity: finding.severity,
            time: finding.time,
            entities: finding.entities.clone(),
            techniques: finding.techniques.clone(),
            tags: vec!["hunt".to_owned(), finding.rule_id.clone()],
            raw: serde_json::to_value(finding).unwrap_or(Value::Null),
        };
        runs.extend(executor.accept(&record.tenant, &alert).await?.runs);
        alert_ids.push(alert.id);
    }
    // Every finding is accepted before any of their runs is waited for.
    executor.settle(&record.tenant, &runs, None).await?;
    record.watermark = watermark;
    record.last_run = Some(now);
    record.last_scanned = scanned;
    record.last_findings = findings.len() as u64;
    record.last_error = None;
    Ok(alert_ids)
}
