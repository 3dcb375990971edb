//! Runs: pages, one run, analyst feedback, measurements.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::RunFilter;
use crate::error::ApiError;
use crate::extract::{Body, Params, QueryParams};
use crate::extract::{Tenant, need};
use crate::{AppState, DEFAULT_PAGE, MAX_PAGE};

pub(crate) async fn list_runs(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    QueryParams(filter): QueryParams<RunFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let unfiltered = filter.status.is_none()
        && filter.playbook.is_none()
        && filter.alert.is_none()
        && filter.since.is_none()
        && filter.until.is_none();
    // A page costs its size: walked newest first from the cursor by the
    // creation-time index (`executor/listing.rs`), never every run.
    let query = rampart::executor::RunQuery {
        status: filter.status,
        playbook: filter.playbook,
        alert: filter.alert,
        since: filter.since,
        until: filter.until,
        before: filter.before,
        limit,
    };
    let page = state
        .executor
        .runs_page(&tenant, &query)
        .map_err(|err| match err {
            err @ rampart::executor::ExecutorError::InvalidCursor(_) => ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_query".to_owned(),
                detail: err.to_string(),
                location: Some(json!({"query": "before"})),
                retry_after: None,
            },
            other => ApiError::from(other),
        })?;
    let runs: Vec<Value> = page
        .runs
        .iter()
        .map(|r| json!({"id": r.id, "playbook": r.playbook, "status": r.status, "alert": r.alert.id, "created": r.created, "finished": r.finished, "verdict_at": r.verdict_at, "contained_at": r.contained_at}))
        .collect();
    let mut body = json!({"runs": runs, "next": page.next});
    if unfiltered {
        body["total"] = json!(state.executor.run_count(&tenant)?);
    }
    Ok(Json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedbackBody {
    label: rampart::model::FeedbackLabel,
    #[serde(default)]
    comment: String,
}

pub(crate) async fn feedback(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Decide>,
    Params((_, id)): Params<(String, String)>,
    Body(body): Body<FeedbackBody>,
) -> Result<Json<Value>, ApiError> {
    if body.comment.len() > 4_096 {
        return Err(ApiError::bad_request("comment longer than 4096 bytes"));
    }
    let run = state.executor.feedback(
        &tenant,
        &id,
        body.label,
        &principal.token.principal,
        &body.comment,
    )?;
    Ok(Json(json!({"run": run.id, "feedback": run.feedback})))
}

pub(crate) async fn measurements(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let baseline = match query.get("baseline_until") {
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| ApiError::bad_request("baseline_until must be Unix milliseconds"))?,
        ),
        None => None,
    };
    Ok(Json(
        json!({"playbooks": state.executor.measure(&tenant, baseline)?}),
    ))
}
