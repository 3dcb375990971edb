//! Plugin packages: upload, list, inspect, delete.

#[allow(unused_imports)]
use crate::api::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct Upload {
    manifest: String,
    wasm_base64: String,
}

pub(in crate::api) async fn upload_plugin(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
    Body(upload): Body<Upload>,
) -> Result<Response, ApiError> {
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(upload.wasm_base64.trim())
        .map_err(|err| ApiError::bad_request(format!("wasm_base64: {err}")))?;
    let loaded = state
        .load_plugin(&tenant, &upload.manifest, &wasm, true)
        .await?;
    let name = loaded["name"].as_str().unwrap_or_default().to_owned();
    let package =
        json!({"tenant": tenant, "manifest": upload.manifest, "wasm": upload.wasm_base64.trim()});
    state
        .packages
        .insert(
            key(&[tenant.as_str(), &name]),
            serde_json::to_vec(&package).map_err(ApiError::internal)?,
        )
        .map_err(storage_err)?;
    state.packages.flush().map_err(storage_err)?;
    Ok((StatusCode::CREATED, Json(loaded)).into_response())
}

pub(in crate::api) async fn list_plugins(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let mut list = Vec::new();
    for (_, plugin) in state.uploaded_plugins(&tenant) {
        let manifest = plugin.manifest();
        list.push(json!({"name": manifest.name, "version": manifest.version, "kind": manifest.kind, "sha256": manifest.sha256, "capabilities": manifest.capabilities, "limits": plugin.limits(), "artifact": plugin.artifact_source()}));
    }
    Ok(Json(json!({"plugins": list})))
}

pub(in crate::api) async fn inspect_plugin(
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

pub(in crate::api) async fn delete_plugin(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let plugin_key = key(&[tenant.as_str(), &name]);
    if !state
        .packages
        .contains_key(&plugin_key)
        .map_err(storage_err)?
    {
        return Err(ApiError::not_found(format!("no plugin {name}")));
    }
    // A playbook or hunt that names it would fail at its next run: refuse.
    let mut used_by: Vec<String> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .filter(|p| p.steps.iter().any(|s| s.plugin == name))
        .map(|p| format!("playbook {}", p.name))
        .collect();
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    for hunt in state.hunts.scan_prefix(&prefix).values() {
        let hunt: Value =
            serde_json::from_slice(&hunt.map_err(storage_err)?).unwrap_or(Value::Null);
        if hunt["record"]["plugin"] == json!(name) {
            used_by.push(format!(
                "hunt {}",
                hunt["record"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if !used_by.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_use",
            format!(
                "plugin {name} is used by {}; change those first",
                used_by.join(", ")
            ),
        ));
    }
    state.packages.remove(&plugin_key).map_err(storage_err)?;
    state.packages.flush().map_err(storage_err)?;
    state.executor.unregister(&tenant, &name)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"plugin_deleted": name}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
