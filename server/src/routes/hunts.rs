//! Scheduled hunts: put, list, run now (the control plane's `Hunts` does
//! the work; the scheduler's tick is in `serve`).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Body, Params};
use crate::extract::{Tenant, need};

pub(crate) async fn put_hunt(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
    Body(body): Body<rampart::control::NewHunt>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .control
        .hunts()
        .put(&tenant, &name, body, &principal.token.principal)?;
    Ok(Json(json!(record)))
}

pub(crate) async fn list_hunts(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"hunts": state.control.hunts().list(&tenant)?})))
}

pub(crate) async fn run_hunt_now(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (record, alerts) = state.control.hunts().fire(&tenant, &name).await?;
    Ok(Json(json!({"hunt": record, "alerts": alerts})))
}
