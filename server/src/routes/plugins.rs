//! Plugin packages: upload, list, inspect, delete.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Body, Params};
use crate::extract::{Tenant, need};
use base64::Engine as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Upload {
    manifest: String,
    wasm_base64: String,
}

pub(crate) async fn upload_plugin(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
    Body(upload): Body<Upload>,
) -> Result<Response, ApiError> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(upload.wasm_base64.trim())
        .map_err(|err| ApiError::bad_request(format!("wasm_base64: {err}")))?;
    let plugin = state
        .control
        .packages()
        .upload(&tenant, &upload.manifest, &wasm)
        .await?;
    let manifest = plugin.manifest();
    let loaded = json!({"name": manifest.name, "version": manifest.version, "kind": manifest.kind, "sha256": manifest.sha256, "capabilities": manifest.capabilities, "artifact": plugin.artifact_source()});
    Ok((StatusCode::CREATED, Json(loaded)).into_response())
}

pub(crate) async fn list_plugins(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let mut list = Vec::new();
    for (_, plugin) in state.uploaded_plugins(&tenant)? {
        let manifest = plugin.manifest();
        list.push(json!({"name": manifest.name, "version": manifest.version, "kind": manifest.kind, "sha256": manifest.sha256, "capabilities": manifest.capabilities, "limits": plugin.limits(), "artifact": plugin.artifact_source()}));
    }
    Ok(Json(json!({"plugins": list})))
}

pub(crate) async fn inspect_plugin(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let plugin = state
        .executor
        .plugin(&tenant, &name)
        .ok_or_else(|| ApiError::not_found(format!("no plugin {name}")))?;
    let manifest = plugin.manifest();
    // From the component as loaded: inspecting must not recompile.
    let inspection = json!(plugin.inspection());
    let used_by: Vec<String> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .filter(|p| p.steps.iter().any(|s| s.plugin == name))
        .map(|p| p.name.clone())
        .collect();
    Ok(Json(json!({
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "sha256": manifest.sha256,
        "capabilities": manifest.capabilities,
        "limits": plugin.limits(),
        "artifact": plugin.artifact_source(),
        "component": inspection,
        "used_by": used_by,
    })))
}

pub(crate) async fn delete_plugin(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .control
        .packages()
        .delete(&tenant, &name, &principal.token.principal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
