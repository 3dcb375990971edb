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
    Params((_, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Json<Value>, ApiError> {
    let approval = state
        .executor
        .approve(&tenant, &id, principal.approver(), &decision.reason)
        .await?;
    Ok(Json(json!(approval)))
}

pub(in crate::api) async fn deny(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Decide>,
    Params((_, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Json<Value>, ApiError> {
    let approval = state
        .executor
        .deny(&tenant, &id, principal.approver(), &decision.reason)
        .await?;
    Ok(Json(json!(approval)))
}
