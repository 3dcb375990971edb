//! Telemetry events and scheduled hunts, as a service of the control plane
//! (the API's routes and the server's scheduler tick call it; so can an
//! embedder).
//!
//! Events (`POST /v1/tenants/{t}/events`, JSON lines or an array) are kept
//! per tenant in arrival order for `EVENT_RETENTION`. A hunt registers a
//! hunt plugin with a schedule — the usual 5-field crontab line, or cron's
//! 6/7-field form with seconds — and parameters. Each run scans only the
//! events that arrived since the last run (a watermark persisted with the
//! hunt), so every event is scanned once; runs missed while the server was
//! down catch up once. Findings become alerts (source `hunt:<name>`) that
//! trigger playbooks like any other alert.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ControlError, audit_change, key};
use crate::executor::Executor;
use crate::model::{Alert, Event};
use crate::store::{Keyspace, Tree};
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
    /// Of those, findings of muted rules (dropped, not alerts).
    #[serde(default)]
    pub last_muted: u64,
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
    tree: Tree,
    db: Keyspace,
}

fn event_key(tenant: &TenantId, seq: u64) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Events {
    /// Events in `db`.
    pub fn open(db: &Keyspace) -> Result<Self, crate::store::SpaceError> {
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
    ) -> Result<usize, ControlError> {
        let count = events.len();
        for event in events {
            // Sequence numbers start at 1: a watermark of 0 means "nothing scanned".
            let seq = self.db.generate_id()? + 1;
            let stored = json!({"received": now, "event": event});
            self.tree
                .insert(event_key(tenant, seq), encode("event", &stored)?)?;
        }
        let horizon = now - i64::try_from(EVENT_RETENTION.as_millis()).unwrap_or(i64::MAX);
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, bytes) = entry?;
            let received = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["received"].as_i64())
                .unwrap_or(now);
            if received >= horizon {
                break; // arrival order: the rest are newer
            }
            self.tree.remove(key)?;
        }
        self.tree.flush()?;
        Ok(count)
    }

    /// Up to `limit` events after `watermark`, with their sequence numbers.
    pub fn after(
        &self,
        tenant: &TenantId,
        watermark: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, ControlError> {
        let start = event_key(tenant, watermark.saturating_add(1));
        let end = event_key(tenant, u64::MAX);
        let mut out = Vec::new();
        for entry in self.tree.range(start..=end).take(limit) {
            let (key, bytes) = entry?;
            let seq = key
                .get(key.len() - 8..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            let stored: Value = decode("event", &bytes)?;
            if let Ok(event) = serde_json::from_value::<Event>(stored["event"].clone()) {
                out.push((seq, event));
            }
        }
        Ok(out)
    }
}

/// Runs one hunt over the events after its watermark; findings become alerts.
async fn run_hunt(
    executor: &Executor,
    events: &Events,
    mutes: &Tree,
    sinks: &super::sinks::FindingSinks,
    record: &mut HuntRecord,
    now: i64,
) -> Result<Vec<String>, ControlError> {
    let plugin = executor
        .plugin(&record.tenant, &record.plugin)
        .ok_or_else(|| ControlError::NoPlugin(record.plugin.clone()))?;
    let hunt = record.name.clone();
    let failed = |source| ControlError::HuntFailed {
        hunt: hunt.clone(),
        source,
    };
    let mut session = plugin.open_hunt(&record.params).await.map_err(failed)?;
    let mut findings = Vec::new();
    let mut watermark = record.watermark;
    let mut scanned = 0u64;
    loop {
        let batch = events.after(&record.tenant, watermark, BATCH)?;
        let Some((last, _)) = batch.last() else { break };
        watermark = *last;
        scanned += batch.len() as u64;
        let batch: Vec<Event> = batch.into_iter().map(|(_, e)| e).collect();
        let pushed = session.push(&batch).await.map_err(failed)?;
        findings.extend(pushed.value);
    }
    let closed = session.close().await.map_err(failed)?;
    findings.extend(closed.value);
    let mut alert_ids = Vec::new();
    let mut runs = Vec::new();
    let mut muted = 0u64;
    let mut exported = Vec::new();
    let exporting = sinks.has(&record.tenant);
    for finding in &findings {
        // Summary findings (no events) describe the run, not an incident.
        let Some(first) = finding.event_ids.first() else {
            continue;
        };
        if super::detections::is_muted(mutes, &record.tenant, &finding.rule_id)? {
            muted += 1;
            continue;
        }
        let alert = Alert {
            id: format!("{}{}:{first}", alert_prefix(&record.name), finding.rule_id),
            source: format!("hunt:{}", record.name),
            title: finding.title.clone(),
            severity: finding.severity,
            time: finding.time,
            entities: finding.entities.clone(),
            techniques: finding.techniques.clone(),
            tags: hunt_alert_tags(finding),
            raw: serde_json::to_value(finding).unwrap_or(Value::Null),
        };
        runs.extend(executor.accept(&record.tenant, &alert).await?.runs);
        alert_ids.push(alert.id);
        if exporting {
            exported.push(finding.clone());
        }
    }
    // Pushed to the tenant's SIEM, if it has a sink, without holding up
    // the hunt (a delivery retries for seconds).
    if !exported.is_empty() {
        let (sinks, tenant, hunt) = (sinks.clone(), record.tenant.clone(), record.name.clone());
        tokio::spawn(async move { sinks.export_findings(&tenant, &hunt, &exported).await });
    }
    // Every finding is accepted before any of their runs is waited for.
    executor.settle(&record.tenant, &runs, None).await?;
    record.watermark = watermark;
    record.last_run = Some(now);
    record.last_scanned = scanned;
    record.last_findings = findings.len() as u64;
    record.last_muted = muted;
    record.last_error = None;
    Ok(alert_ids)
}

fn encode(what: &str, value: &Value) -> Result<Vec<u8>, ControlError> {
    serde_json::to_vec(value).map_err(|source| ControlError::Decode {
        what: what.to_owned(),
        source,
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|source| ControlError::Decode {
        what: what.to_owned(),
        source,
    })
}

/// A hunt to register: which plugin, when, with what parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHunt {
    /// The hunt plugin (loaded for the tenant).
    pub plugin: String,
    /// A crontab line (see [`parse_schedule`]).
    pub schedule: String,
    /// Parameters for each session (`{}` when absent).
    #[serde(default)]
    pub params: Value,
}

/// One lock per hunt (`tenant\0name`).
type HuntLocks = HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>;

/// Registered hunts, their watermarks and the events they scan.
#[derive(Clone)]
pub struct Hunts {
    executor: Executor,
    events: Events,
    /// `tenant\0name` → `{record, registered}`.
    tree: Tree,
    /// Muted rules (`detections`): their findings are dropped.
    mutes: Tree,
    /// Where accepted findings are pushed.
    sinks: super::sinks::FindingSinks,
    /// A hunt runs once at a time: a scheduled run and a manual one must
    /// not read the same watermark.
    locks: Arc<Mutex<HuntLocks>>,
    /// Tenants whose scheduled hunts are running: each tenant's hunts run
    /// one after another, so a slow tenant never holds up another's.
    hunting: Arc<Mutex<HashSet<TenantId>>>,
}

impl std::fmt::Debug for Hunts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hunts").finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hunts {
    /// Hunts and events in `space`.
    pub fn open(
        space: &Keyspace,
        executor: Executor,
        sinks: super::sinks::FindingSinks,
    ) -> Result<Self, ControlError> {
        Ok(Hunts {
            sinks,
            events: Events::open(space)?,
            tree: space.open_tree(TREE)?,
            mutes: space.open_tree(super::detections::MUTES)?,
            executor,
            locks: Arc::default(),
            hunting: Arc::default(),
        })
    }

    /// The events hunts scan.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Registers (or changes) hunt `name` of `tenant`; re-registering keeps
    /// the watermark, so events are still scanned once. Refused: a name not
    /// of `[a-z0-9-]{1,64}`, a schedule that does not parse, a plugin that
    /// is not a loaded hunt.
    pub fn put(
        &self,
        tenant: &TenantId,
        name: &str,
        hunt: NewHunt,
        actor: &str,
    ) -> Result<HuntRecord, ControlError> {
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ControlError::HuntName);
        }
        parse_schedule(&hunt.schedule).map_err(ControlError::Schedule)?;
        match self.executor.plugin(tenant, &hunt.plugin) {
            Some(plugin) if plugin.manifest().kind == crate::manifest::PluginKind::Hunt => {}
            Some(_) => return Err(ControlError::NotAHunt(hunt.plugin)),
            None => return Err(ControlError::NoHuntPlugin(hunt.plugin)),
        }
        let hunt_key = key(&[tenant.as_str(), name]);
        let previous: Option<Value> = match self.tree.get(&hunt_key)? {
            Some(bytes) => Some(decode("hunt", &bytes)?),
            None => None,
        };
        let mut record = previous
            .as_ref()
            .and_then(|p| serde_json::from_value::<HuntRecord>(p["record"].clone()).ok())
            .unwrap_or(HuntRecord {
                tenant: tenant.clone(),
                name: name.to_owned(),
                plugin: hunt.plugin.clone(),
                schedule: hunt.schedule.clone(),
                params: Value::Null,
                watermark: 0,
                last_run: None,
                last_scanned: 0,
                last_findings: 0,
                last_muted: 0,
                last_error: None,
            });
        record.plugin = hunt.plugin;
        record.schedule = hunt.schedule;
        record.params = if hunt.params.is_null() {
            json!({})
        } else {
            hunt.params
        };
        let registered = previous
            .as_ref()
            .and_then(|p| p["registered"].as_i64())
            .unwrap_or_else(crate::model::now_ms);
        self.tree.insert(
            hunt_key,
            encode("hunt", &json!({"record": record, "registered": registered}))?,
        )?;
        self.tree.flush()?;
        audit_change(
            &self.executor,
            tenant,
            actor,
            json!({"hunt": name, "schedule": record.schedule, "plugin": record.plugin}),
        )?;
        Ok(record)
    }

    /// The hunts of `tenant`, with their watermarks and last runs.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<HuntRecord>, ControlError> {
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(key(&[tenant.as_str(), ""])) {
            let (_, bytes) = entry?;
            let stored: Value = decode("hunt", &bytes)?;
            if let Ok(record) = serde_json::from_value::<HuntRecord>(stored["record"].clone()) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Runs hunt `name` of `tenant` now over the events after its
    /// watermark, and stores the new watermark. A failing run keeps the
    /// watermark (the events are scanned again next time) and records why.
    pub async fn fire(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(HuntRecord, Vec<String>), ControlError> {
        let hunt_key = key(&[tenant.as_str(), name]);
        let one = lock(&self.locks)
            .entry(hunt_key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = one.lock().await;
        let stored: Value = match self.tree.get(&hunt_key)? {
            Some(bytes) => decode("hunt", &bytes)?,
            None => return Err(ControlError::NoHunt(name.to_owned())),
        };
        let mut record: HuntRecord =
            serde_json::from_value(stored["record"].clone()).map_err(|source| {
                ControlError::Decode {
                    what: format!("hunt {name}"),
                    source,
                }
            })?;
        let now = crate::model::now_ms();
        let alerts = match run_hunt(
            &self.executor,
            &self.events,
            &self.mutes,
            &self.sinks,
            &mut record,
            now,
        )
        .await
        {
            Ok(alerts) => alerts,
            Err(err) => {
                record.last_run = Some(now);
                record.last_error = Some(err.to_string());
                Vec::new()
            }
        };
        self.tree.insert(
            hunt_key,
            encode(
                "hunt",
                &json!({"record": record, "registered": stored["registered"]}),
            )?,
        )?;
        self.tree.flush()?;
        Ok((record, alerts))
    }

    /// Starts every hunt whose schedule point has passed, each tenant's in
    /// a task of its own (one after another within a tenant); a tenant still
    /// busy with earlier hunts catches up at a later call. How many started.
    pub fn run_due(&self) -> Result<usize, ControlError> {
        let now = crate::model::now_ms();
        let mut by_tenant: BTreeMap<TenantId, Vec<String>> = BTreeMap::new();
        for entry in self.tree.iter() {
            let (_, bytes) = entry?;
            let Ok(stored) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let Ok(record) = serde_json::from_value::<HuntRecord>(stored["record"].clone()) else {
                continue;
            };
            if due(&record, stored["registered"].as_i64().unwrap_or(now), now) {
                by_tenant
                    .entry(record.tenant)
                    .or_default()
                    .push(record.name);
            }
        }
        let mut started = 0;
        for (tenant, names) in by_tenant {
            if !lock(&self.hunting).insert(tenant.clone()) {
                continue;
            }
            started += names.len();
            let hunts = self.clone();
            tokio::spawn(async move {
                for name in names {
                    if let Err(err) = hunts.fire(&tenant, &name).await {
                        tracing::warn!(%tenant, hunt = %name, "scheduled hunt failed: {err}");
                    }
                }
                lock(&hunts.hunting).remove(&tenant);
            });
        }
        Ok(started)
    }
}

/// The tree hunt definitions are kept in (the packages service reads it
/// too: a plugin a hunt uses is not deleted).
pub(super) const TREE: &str = "api-hunts";

/// A hunt alert's tags: `hunt`, the rule id, and `attack.<tactic>` for each
/// tactic the finding's rule names (`detail.tactics`), which the scorer reads
/// when a technique id is newer than its ATT&CK table.
fn hunt_alert_tags(finding: &crate::model::Finding) -> Vec<String> {
    let mut tags = vec!["hunt".to_owned(), finding.rule_id.clone()];
    let tactics = finding.detail["tactics"].as_array().into_iter().flatten();
    tags.extend(
        tactics
            .filter_map(Value::as_str)
            .take(16)
            .map(|tactic| format!("attack.{}", tactic.chars().take(64).collect::<String>())),
    );
    tags
}

/// The id prefix of every alert hunt `hunt` makes: its alerts are
/// `hunt:<hunt>:<rule>:<event>`. `""` gives the prefix of every hunt's.
pub fn alert_prefix(hunt: &str) -> String {
    if hunt.is_empty() {
        "hunt:".to_owned()
    } else {
        format!("hunt:{hunt}:")
    }
}

/// The hunt and the finding an accepted hunt alert was made from (the
/// finding is the alert's `raw`); `None` for any other alert.
pub fn hunt_finding(
    record: &crate::executor::AlertRecord,
) -> Option<(String, crate::model::Finding)> {
    let alert = record.alert.as_ref()?;
    let hunt = alert
        .id
        .strip_prefix("hunt:")?
        .split(':')
        .next()?
        .to_owned();
    let finding = serde_json::from_value(alert.raw.clone()).ok()?;
    Some((hunt, finding))
}
