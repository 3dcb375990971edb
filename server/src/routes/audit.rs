//! The audit log: verify, export, query by cursor, the head.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AuditFilter;
use crate::error::ApiError;
use crate::extract::QueryParams;
use crate::extract::{Tenant, need};
use crate::{AppState, DEFAULT_PAGE, MAX_PAGE};

pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    // Verifying never writes: a viewer's check must not sign (and so bless)
    // the current head.
    let report = state
        .executor
        .audit()
        .verify(&tenant)
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"ok": report.ok(), "report": report, "checkpoint": state.executor.audit().latest_checkpoint(&tenant).map_err(ApiError::internal)?}),
    ))
}

pub(crate) async fn export_audit(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    state
        .executor
        .audit()
        .export(&tenant, &mut out)
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

pub(crate) async fn query_audit(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    QueryParams(filter): QueryParams<AuditFilter>,
) -> Result<Json<Value>, ApiError> {
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut records = Vec::new();
    let mut more = false;
    // From the cursor on: a page costs its size (plus the records its
    // filters skip).
    state
        .executor
        .audit()
        .read_after(&tenant, filter.after_seq.unwrap_or(0), |record, hash| {
            let wanted = filter.kind.is_none_or(|k| k == record.kind)
                && filter
                    .run
                    .as_deref()
                    .is_none_or(|r| record.run_id.as_deref() == Some(r))
                && filter.since.is_none_or(|t| record.time >= t)
                && filter.until.is_none_or(|t| record.time < t)
                && filter.after_seq.is_none_or(|s| record.seq > s);
            if wanted {
                if records.len() == limit {
                    more = true;
                    return false;
                }
                let mut value = json!(record);
                value["hash"] = json!(hash);
                records.push(value);
            }
            true
        })
        .map_err(ApiError::internal)?;
    // `after_seq` of the last record fetches the next page.
    let next = more
        .then(|| records.last().and_then(|r| r["seq"].as_u64()))
        .flatten();
    Ok(Json(json!({"records": records, "next_after_seq": next})))
}

pub(crate) async fn audit_head(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    // Sign the head as it is now, so the answer covers every record.
    let checkpoint = state
        .executor
        .audit()
        .checkpoint(&tenant)
        .map_err(ApiError::internal)?;
    let checkpoint = match checkpoint {
        Some(checkpoint) => Some(checkpoint),
        None => state
            .executor
            .audit()
            .latest_checkpoint(&tenant)
            .map_err(ApiError::internal)?,
    };
    Ok(Json(json!({"head": checkpoint})))
}
