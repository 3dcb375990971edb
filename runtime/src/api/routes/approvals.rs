//! Approvals: the inbox, approve, deny.

#[allow(unused_imports)]
use crate::api::*;

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
    // A refused vote (decided by someone else, expired) also waits for the
    // work under way, so what the caller reads next is what was decided.
    let run = match &approval {
        Ok(approval) => Some(approval.run_id.clone()),
        Err(_) => state
            .executor
            .approvals()
            .get(tenant, id)
            .ok()
            .map(|found| found.run_id),
    };
    let settled = match run {
        Some(run) => {
            state
                .executor
                .settle(tenant, &[run], Some(wait.wait))
                .await?
        }
        None => true,
    };
    Ok(wait.answer(settled, json!(approval?)))
}
