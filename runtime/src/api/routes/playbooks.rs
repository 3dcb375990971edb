//! Playbooks: put, get, list, enable, disable.

#[allow(unused_imports)]
use crate::api::*;

pub(in crate::api) async fn put_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let yaml = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("a playbook must be UTF-8 YAML"))?;
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let checked = state
        .executor
        .validate_playbook(&tenant, &format!("playbooks/{name}"), &yaml)?;
    if checked.name != name {
        return Err(ApiError::bad_request(format!(
            "the playbook is named `{}`, not `{name}`",
            checked.name
        )));
    }
    let parsed = state
        .executor
        .add_playbook(&tenant, &format!("playbooks/{name}"), &yaml)?;
    state
        .playbooks
        .insert(key(&[tenant.as_str(), &name]), yaml.as_bytes())
        .map_err(storage_err)?;
    state
        .playbook_owners
        .insert(key(&[tenant.as_str(), &name]), principal.id().as_bytes())
        .map_err(storage_err)?;
    state
        .executor
        .set_playbook_owner(&tenant, &name, Some(principal.id().to_owned()));
    state.playbooks.flush().map_err(storage_err)?;
    Ok(Json(
        json!({"name": parsed.name, "version": parsed.version, "sha256": parsed.sha256, "steps": parsed.steps.iter().map(|s| &s.id).collect::<Vec<_>>()}),
    ))
}

pub(in crate::api) async fn get_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let yaml = state
        .playbooks
        .get(key(&[tenant.as_str(), &name]))
        .map_err(storage_err)?
        .ok_or_else(|| ApiError::not_found(format!("no playbook {name}")))?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml.to_vec()).into_response())
}

pub(in crate::api) async fn list_playbooks(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let list: Vec<Value> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .map(|p| json!({"name": p.name, "version": p.version, "mode": p.mode, "sha256": p.sha256, "enabled": state.executor.playbook_enabled(&tenant, &p.name)}))
        .collect();
    Ok(Json(json!({"playbooks": list})))
}

pub(in crate::api) async fn set_playbook_enabled(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    name: &str,
    enabled: bool,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(caller, tenant, Need::Configure)?;
    let playbook_key = key(&[tenant.as_str(), name]);
    if !state
        .playbooks
        .contains_key(&playbook_key)
        .map_err(storage_err)?
    {
        return Err(ApiError::not_found(format!("no playbook {name}")));
    }
    if enabled {
        state
            .disabled_playbooks
            .remove(&playbook_key)
            .map_err(storage_err)?;
    } else {
        state
            .disabled_playbooks
            .insert(&playbook_key, [])
            .map_err(storage_err)?;
    }
    state.disabled_playbooks.flush().map_err(storage_err)?;
    state.executor.set_playbook_enabled(&tenant, name, enabled);
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"playbook": name, "enabled": enabled}),
    )?;
    Ok(Json(json!({"name": name, "enabled": enabled})))
}

pub(in crate::api) async fn enable_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, &caller, &tenant, &name, true).await
}

pub(in crate::api) async fn disable_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, &caller, &tenant, &name, false).await
}
