//! Playbooks: put, get, list, enable, disable.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Params;
use crate::extract::{Tenant, need};

pub(crate) async fn put_playbook(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let yaml = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("a playbook must be UTF-8 YAML"))?;
    let parsed = state
        .control
        .playbooks()
        .put(&tenant, &name, &yaml, principal.id())?;
    Ok(Json(
        json!({"name": parsed.name, "version": parsed.version, "sha256": parsed.sha256, "steps": parsed.steps.iter().map(|s| &s.id).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn get_playbook(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let yaml = state.control.playbooks().get(&tenant, &name)?.yaml;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response())
}

pub(crate) async fn list_playbooks(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let list: Vec<Value> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .map(|p| json!({"name": p.name, "version": p.version, "mode": p.mode, "sha256": p.sha256, "enabled": state.executor.playbook_enabled(&tenant, &p.name)}))
        .collect();
    Ok(Json(json!({"playbooks": list})))
}

fn set_playbook_enabled(
    state: &AppState,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    name: &str,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    state
        .control
        .playbooks()
        .set_enabled(&tenant, name, enabled, &principal.token.principal)?;
    Ok(Json(json!({"name": name, "enabled": enabled})))
}

pub(crate) async fn enable_playbook(
    State(state): State<AppState>,
    tenant: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, tenant, &name, true)
}

pub(crate) async fn disable_playbook(
    State(state): State<AppState>,
    tenant: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, tenant, &name, false)
}
