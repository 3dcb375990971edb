//! Reading back what came in and what was found: one alert, a hunt's
//! findings (paged), a run or a finding as OCSF 1.8 Detection Findings, an
//! NDJSON export of both for a SIEM, and per-rule precision from analyst
//! feedback with muting (`control::detections`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Body, Params, QueryParams};
use crate::extract::{Tenant, need};
use rampart::executor::{AlertRecord, MAX_ALERT_PAGE, RunQuery};
use rampart::model::Finding;
use rampart::tenant::TenantId;

/// `format=` of the routes that can answer in OCSF.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// Rampart's own JSON.
    #[default]
    Json,
    /// OCSF 1.8 Detection Finding (class 2004).
    Ocsf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormatQuery {
    #[serde(default)]
    format: Format,
}

/// `GET …/alerts/{id}`: the alert as received, its runs and where it was
/// folded.
pub(crate) async fn get_alert(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    Params((_, id)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .executor
        .alert(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))?;
    Ok(Json(json!(record)))
}

/// `GET …/runs/{id}?format=ocsf`.
pub(crate) async fn get_run(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    Params((_, id)): Params<(String, String)>,
    QueryParams(query): QueryParams<FormatQuery>,
) -> Result<Json<Value>, ApiError> {
    let run = state.executor.get_run(&tenant, &id)?;
    Ok(Json(match query.format {
        Format::Json => json!(run),
        Format::Ocsf => rampart::ocsf::run_to_ocsf(&run),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FindingsQuery {
    limit: Option<usize>,
    after: Option<String>,
    #[serde(default)]
    format: Format,
}

/// The finding a hunt's alert was made from.
fn finding_of(record: &AlertRecord) -> Option<Finding> {
    rampart::control::hunt_finding(record).map(|(_, finding)| finding)
}

/// `GET …/hunts/{name}/findings?limit=&after=&format=`: the findings the
/// hunt turned into alerts, in alert-id order; `next` is the `after` of
/// the next page.
pub(crate) async fn hunt_findings(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    Params((_, name)): Params<(String, String)>,
    QueryParams(query): QueryParams<FindingsQuery>,
) -> Result<Json<Value>, ApiError> {
    if !state
        .control
        .hunts()
        .list(&tenant)?
        .iter()
        .any(|h| h.name == name)
    {
        return Err(ApiError::not_found(format!("no hunt {name}")));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_ALERT_PAGE);
    let page = state.executor.alerts_page(
        &tenant,
        &rampart::control::alert_prefix(&name),
        query.after.as_deref(),
        limit,
    )?;
    let findings: Vec<Value> = page
        .alerts
        .iter()
        .filter_map(|record| {
            let finding = finding_of(record)?;
            let alert = record.alert.as_ref()?;
            Some(match query.format {
                Format::Json => json!({"alert_id": alert.id, "received": record.received, "runs": record.runs, "folded_into": record.folded_into, "finding": finding}),
                Format::Ocsf => rampart::ocsf::finding_to_ocsf(&tenant, &name, &finding),
            })
        })
        .collect();
    Ok(Json(json!({"findings": findings, "next": page.next})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportQuery {
    /// Runs created and findings received at or after (Unix ms).
    since: Option<i64>,
    /// At most this many runs and this many findings (default 1,000).
    limit: Option<usize>,
}

/// The most documents of each kind one export holds.
const MAX_EXPORT: usize = 10_000;

/// `GET …/ocsf/export?since=&limit=`: NDJSON, one OCSF Detection Finding
/// per line — the tenant's runs (newest first) and its hunts' findings —
/// for a SIEM to pull. Bounded by `limit` per kind; the `x-rampart-truncated`
/// header says whether there was more.
pub(crate) async fn export_ocsf(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    QueryParams(query): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let limit = query.limit.unwrap_or(1_000).clamp(1, MAX_EXPORT);
    let since = query.since.unwrap_or(0);
    let mut out = String::new();
    let mut truncated = false;
    let mut runs = 0usize;
    let mut before = None;
    while runs < limit {
        let page = state.executor.runs_page(
            &tenant,
            &RunQuery {
                since: Some(since),
                before: before.take(),
                limit: (limit - runs).min(1_000),
                ..RunQuery::default()
            },
        )?;
        for run in &page.runs {
            line(&mut out, &rampart::ocsf::run_to_ocsf(run));
            runs += 1;
        }
        match page.next {
            Some(next) if runs < limit => before = Some(next),
            Some(_) => {
                truncated = true;
                break;
            }
            None => break,
        }
    }
    let findings = hunt_findings_since(&state, &tenant, since, limit, &mut out)?;
    truncated |= findings;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::HeaderName::from_static("x-rampart-truncated"),
                if truncated { "true" } else { "false" },
            ),
        ],
        out,
    )
        .into_response())
}

fn line(out: &mut String, doc: &Value) {
    out.push_str(&doc.to_string());
    out.push('\n');
}

/// Appends the findings of every hunt received at or after `since`, at most
/// `limit`; whether some were left out.
fn hunt_findings_since(
    state: &AppState,
    tenant: &TenantId,
    since: i64,
    limit: usize,
    out: &mut String,
) -> Result<bool, ApiError> {
    let mut written = 0usize;
    for hunt in state.control.hunts().list(tenant)? {
        let mut after: Option<String> = None;
        loop {
            let page = state.executor.alerts_page(
                tenant,
                &rampart::control::alert_prefix(&hunt.name),
                after.as_deref(),
                MAX_ALERT_PAGE,
            )?;
            for record in page.alerts.iter().filter(|r| r.received >= since) {
                if written == limit {
                    return Ok(true);
                }
                if let Some(finding) = finding_of(record) {
                    line(
                        out,
                        &rampart::ocsf::finding_to_ocsf(tenant, &hunt.name, &finding),
                    );
                    written += 1;
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DetectionsQuery {
    hunt: Option<String>,
}

/// `GET …/detections?hunt=`: per rule and hunt, findings, labels,
/// precision, the values false positives share and a filter to review.
pub(crate) async fn detections(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    QueryParams(query): QueryParams<DetectionsQuery>,
) -> Result<Json<Value>, ApiError> {
    let (rules, truncated) = state
        .control
        .detections()
        .report(&tenant, query.hunt.as_deref())?;
    Ok(Json(json!({"detections": rules, "truncated": truncated})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MuteBody {
    reason: String,
}

/// `PUT …/detections/{rule}/mute {"reason": …}`: the rule's findings are
/// dropped by this tenant's hunts until it is unmuted (audited).
pub(crate) async fn mute(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, rule)): Params<(String, String)>,
    Body(body): Body<MuteBody>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.reason.trim();
    if reason.is_empty() || reason.len() > 1_024 {
        return Err(ApiError::bad_request(
            "reason: say why the rule is muted (1 to 1024 bytes)",
        ));
    }
    let mute =
        state
            .control
            .detections()
            .mute(&tenant, &rule, reason, &principal.token.principal)?;
    Ok(Json(json!({"rule_id": rule, "muted": mute})))
}

/// `DELETE …/detections/{rule}/mute`.
pub(crate) async fn unmute(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, rule)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let was = state
        .control
        .detections()
        .unmute(&tenant, &rule, &principal.token.principal)?;
    if !was {
        return Err(ApiError::not_found(format!("rule {rule} is not muted")));
    }
    Ok(Json(json!({"rule_id": rule, "muted": null})))
}
