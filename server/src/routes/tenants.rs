//! Tenants, grants, inventories and identities, tokens, secrets and quotas.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::MAX_TOKEN_TTL_SECS;
use crate::auth::{Need, Role};
use crate::error::ApiError;
use crate::extract::Table;
use crate::extract::{Body, Params};
use crate::extract::{Tenant, need};
use crate::gate::Caller;
use rampart::context::{AssetInventory, IdentityDirectory};
use rampart::tenant::{Grants, TenantId, TenantQuota};

/// Grants are stored in clear, so they may not carry secrets.
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<rampart::control::NewTenant>,
) -> Result<Response, ApiError> {
    let principal = state.principal(&caller)?;
    principal.check(None, Need::Admin)?;
    let record = state
        .control
        .tenants()
        .create(body, &principal.token.principal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": record.id})).into_response(),
    )
        .into_response())
}

pub(crate) async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    state.principal(&caller)?.check(None, Need::Admin)?;
    Ok(Json(json!({"tenants": state.control.tenants().list()?})))
}

pub(crate) async fn put_grants(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(grants): Body<Grants>,
) -> Result<Json<Value>, ApiError> {
    state.control.tenants().set_grants(
        &tenant,
        grants,
        principal.token.role == Role::Admin,
        &principal.token.principal,
    )?;
    Ok(Json(json!({"ok": true})))
}

/// Replaces the asset inventory: JSON `{"assets": [...]}`, or a CSV table
/// with `Content-Type: text/csv`. Every problem is reported; nothing is
/// replaced unless the whole file is good.
pub(crate) async fn put_inventory(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    table: Table,
) -> Result<Json<Value>, ApiError> {
    let inventory = table.parse(AssetInventory::from_csv)?;
    rampart::context::check_assets(&inventory).map_err(invalid_table)?;
    let mut record = state.tenant(&tenant)?;
    record.inventory = inventory;
    state.put_tenant(&record)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"inventory": record.inventory.assets.len()}),
    )?;
    Ok(Json(json!({"assets": record.inventory.assets.len()})))
}

pub(crate) async fn get_inventory(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<AssetInventory>, ApiError> {
    Ok(Json(state.tenant(&tenant)?.inventory))
}

/// Replaces the identity directory (JSON `{"identities": [...]}` or CSV).
pub(crate) async fn put_identities(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    table: Table,
) -> Result<Json<Value>, ApiError> {
    let identities = table.parse(IdentityDirectory::from_csv)?;
    let mut record = state.tenant(&tenant)?;
    record.identities = identities;
    state.put_tenant(&record)?;
    let count = record.identities.identities.len();
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"identities": count}),
    )?;
    Ok(Json(json!({"identities": count})))
}

pub(crate) async fn get_identities(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<IdentityDirectory>, ApiError> {
    Ok(Json(state.tenant(&tenant)?.identities))
}

pub(crate) fn invalid_table(err: rampart::context::ContextError) -> ApiError {
    let rampart::context::ContextError::Invalid(problems) = &err;
    ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_table".to_owned(),
        detail: err.to_string(),
        location: Some(json!({"problems": problems})),
        retry_after: None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    principal: String,
    role: Role,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// A token lifetime in ms, refused when 0 or beyond ten years.
pub(crate) fn token_ttl_ms(secs: u64) -> Result<i64, ApiError> {
    if secs == 0 || secs > MAX_TOKEN_TTL_SECS {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_ttl".to_owned(),
            detail: format!(
                "ttl_secs must be between 1 and {MAX_TOKEN_TTL_SECS} (ten years); got {secs}"
            ),
            location: Some(json!({"path": "ttl_secs"})),
            retry_after: None,
        });
    }
    // Bounded above, so the product fits.
    Ok(i64::try_from(secs * 1000).unwrap_or(i64::MAX))
}

pub(crate) async fn create_token(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(body): Body<NewToken>,
) -> Result<Response, ApiError> {
    if body.role == Role::Admin {
        return Err(ApiError::forbidden(
            "admin tokens are created with `rampart token create`",
        ));
    }
    let ttl = body.ttl_secs.map(token_ttl_ms).transpose()?;
    let (token, record) = state.tokens.mint(
        &principal,
        &body.principal,
        Some(tenant.clone()),
        body.role,
        ttl,
    )?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"token_created": record.id, "for": record.principal, "role": record.role}),
    )?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "id": record.id, "expires": record.expires})),
    )
        .into_response())
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, id)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    state.tokens.revoke(&id, Some(&tenant))?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"token_revoked": id}),
    )?;
    Ok(Json(json!({"revoked": id})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecretValue {
    value: String,
}

pub(crate) async fn put_secret(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Params((_, plugin, name)): Params<(String, String, String)>,
    Body(body): Body<SecretValue>,
) -> Result<Response, ApiError> {
    let valid = |text: &str| {
        !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !valid(&plugin) || !valid(&name) {
        return Err(ApiError::bad_request(
            "plugin and secret names are 1-64 characters of [A-Za-z0-9_-]",
        ));
    }
    if body.value.is_empty() || body.value.len() > 16 << 10 {
        return Err(ApiError::bad_request("a secret is 1 byte to 16 KiB"));
    }
    let secret = rampart::tenant::Secret::new(body.value);
    state
        .control
        .tenants()
        .put_secret(&tenant, &plugin, &name, &secret)?;
    // Loaded plugins keep the grant they were loaded with: reload this one.
    state.control.packages().reload(&tenant, &plugin).await?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"secret_set": name, "plugin": plugin}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn list_secrets(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Json<Value>, ApiError> {
    let names: Vec<Value> = state
        .control
        .tenants()
        .secret_names(&tenant)?
        .into_iter()
        .map(|(plugin, name)| json!({"plugin": plugin, "name": name}))
        .collect();
    Ok(Json(json!({"secrets": names})))
}

pub(crate) async fn get_quotas(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let record = state.tenant(&tenant)?;
    Ok(Json(
        json!({"quotas": record.quotas, "ingest_per_second": record.ingest_per_second}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaUpdate {
    #[serde(flatten)]
    quotas: TenantQuota,
    #[serde(default)]
    ingest_per_second: Option<u32>,
}

/// Quotas are the operator's: a tenant may not raise its own.
pub(crate) async fn put_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    Body(update): Body<QuotaUpdate>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&caller)?;
    let tenant_id = TenantId::new(tenant.as_str())
        .map_err(|_| ApiError::not_found(format!("no tenant {tenant}")))?;
    principal.check(Some(&tenant_id), Need::Admin)?;
    let quotas = update.quotas;
    let mut too_small = quotas.too_small();
    if update.ingest_per_second == Some(0) {
        too_small.push("ingest_per_second");
    }
    if let Some(field) = too_small.first() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_quota".to_owned(),
            detail: format!(
                "{field} is too small (runs and fuel at least 1, memory at least 64 KiB); omit a quota for no limit"
            ),
            location: Some(json!({"field": field})),
            retry_after: None,
        });
    }
    let mut record = state.tenant(&tenant_id)?;
    record.quotas = quotas;
    if let Some(rate) = update.ingest_per_second {
        record.ingest_per_second = rate;
    }
    state.put_tenant(&record)?;
    state.audit_change(
        &tenant_id,
        &principal.token.principal,
        json!({"quotas": record.quotas, "ingest_per_second": record.ingest_per_second}),
    )?;
    Ok(Json(
        json!({"quotas": record.quotas, "ingest_per_second": record.ingest_per_second}),
    ))
}
