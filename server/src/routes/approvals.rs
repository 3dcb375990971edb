//! Approvals: the inbox, approve, deny.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Body, Params};
use crate::extract::{Tenant, Wait, need};
use rampart::tenant::TenantId;

pub(crate) async fn list_approvals(
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
pub(crate) struct Decision {
    reason: String,
}

pub(crate) async fn approve(
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
        rampart::executor::Decision::Approve,
        wait,
    )
    .await
}

pub(crate) async fn deny(
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
        rampart::executor::Decision::Deny,
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
    approver: rampart::executor::approvals::Approver,
    reason: &str,
    decision: rampart::executor::Decision,
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
