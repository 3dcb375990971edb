//! Approvals: the inbox, approve, deny.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::{Tenant, Wait, need};
use crate::api::{AppState, Body, Params};
use crate::tenant::TenantId;

pub(in crate::api) async fn list_approvals(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let pending = state
        .executor
        .approvals()
        .pending(Some(&tenant))
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"approvals": pending})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct Decision {
    reason: String,
}

pub(in crate::api) async fn approve(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Decide>,
    wait: Wait,
    Params((_, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Response, ApiError> {
    decide(
        &state,
        &tenant,
        &id,
        principal.approver(),
        &decision.reason,
        crate::executor::Decision::Approve,
        wait,
    )
    .await
}

pub(in crate::api) async fn deny(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Decide>,
    wait: Wait,
    Params((_, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Response, ApiError> {
    decide(
        &state,
        &tenant,
        &id,
        principal.approver(),
        &decision.reason,
        crate::executor::Decision::Deny,
        wait,
    )
    .await
}

/// Casts the vote (durable before this answers) and waits for its run's
/// work as the client prefers; the approval comes back with `settled`.
async fn decide(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
    approver: crate::executor::approvals::Approver,
    reason: &str,
    decision: crate::executor::Decision,
    wait: Wait,
) -> Result<Response, ApiError> {
    let approval = state
        .executor
        .vote(tenant, id, approver, reason, decision)
        .await;
    let settled = state
        .executor
        .settle_decision(tenant, id, Some(wait.wait))
        .await?;
    Ok(wait.answer(settled, json!(approval?)))
}
