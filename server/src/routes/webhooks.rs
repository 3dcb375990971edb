//! The approval webhook: set, get, delete (the control plane's `Webhooks`
//! does the work and the announcing).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Role;
use crate::error::ApiError;
use crate::extract::Body;
use crate::extract::{Tenant, need};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewWebhook {
    url: String,
    /// Signing secret (write-only): at least 16 bytes.
    secret: String,
}

pub(crate) async fn put_webhook(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(body): Body<NewWebhook>,
) -> Result<Json<Value>, ApiError> {
    // Like private ranges in grants: only an admin may point the server at
    // an internal address (the webhook is a request the server makes).
    let config = state
        .control
        .webhooks()
        .set(
            &tenant,
            &body.url,
            body.secret,
            principal.token.role == Role::Admin,
            &principal.token.principal,
        )
        .await?;
    Ok(Json(json!({"url": config.url})))
}

pub(crate) async fn get_webhook(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Json<Value>, ApiError> {
    let (config, deliveries) = state.control.webhooks().get(&tenant)?;
    Ok(Json(json!({"url": config.url, "deliveries": deliveries})))
}

pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
) -> Result<Response, ApiError> {
    state
        .control
        .webhooks()
        .delete(&tenant, &principal.token.principal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSink {
    url: String,
    format: rampart::control::SinkFormat,
    /// HEC or bearer token (write-only).
    token: Option<String>,
}

/// `PUT …/sinks/findings`: push run verdicts and hunt findings as OCSF to
/// this receiver (`control::sinks`).
pub(crate) async fn put_sink(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(body): Body<NewSink>,
) -> Result<Json<Value>, ApiError> {
    let config = state
        .control
        .sinks()
        .set(
            &tenant,
            &body.url,
            body.format,
            body.token,
            principal.token.role == Role::Admin,
            &principal.token.principal,
        )
        .await?;
    Ok(Json(json!(config)))
}

pub(crate) async fn get_sink(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Json<Value>, ApiError> {
    let config = state
        .control
        .sinks()
        .get(&tenant)?
        .ok_or_else(|| ApiError::not_found("no findings sink"))?;
    Ok(Json(json!(config)))
}

pub(crate) async fn delete_sink(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
) -> Result<Response, ApiError> {
    if !state
        .control
        .sinks()
        .delete(&tenant, &principal.token.principal)?
    {
        return Err(ApiError::not_found("no findings sink"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
