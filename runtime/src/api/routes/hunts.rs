//! Scheduled hunts: put, list, run now (the control plane's `Hunts` does
//! the work; the scheduler's tick is in `serve`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::extract::{Tenant, need};
use crate::api::{AppState, Body, Params};

pub(in crate::api) async fn put_hunt(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
    Body(body): Body<crate::control::NewHunt>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .control
        .hunts()
        .put(&tenant, &name, body, &principal.token.principal)?;
    Ok(Json(json!(record)))
}

pub(in crate::api) async fn list_hunts(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"hunts": state.control.hunts().list(&tenant)?})))
}

pub(in crate::api) async fn run_hunt_now(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (record, alerts) = state.control.hunts().fire(&tenant, &name).await?;
    Ok(Json(json!({"hunt": record, "alerts": alerts})))
}
