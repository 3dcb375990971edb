//! The approval webhook: set, get, delete (the control plane's `Webhooks`
//! does the work and the announcing).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::auth::Role;
use crate::api::error::ApiError;
use crate::api::extract::{Tenant, need};
use crate::api::{AppState, Body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct NewWebhook {
    url: String,
    /// Signing secret (write-only): at least 16 bytes.
    secret: String,
}

pub(in crate::api) async fn put_webhook(
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

pub(in crate::api) async fn get_webhook(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Configure>,
) -> Result<Json<Value>, ApiError> {
    let (config, deliveries) = state.control.webhooks().get(&tenant)?;
    Ok(Json(json!({"url": config.url, "deliveries": deliveries})))
}

pub(in crate::api) async fn delete_webhook(
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
pub(in crate::api) struct NewSink {
    url: String,
    format: crate::control::SinkFormat,
    /// HEC or bearer token (write-only).
    token: Option<String>,
}

/// `PUT …/sinks/findings`: push run verdicts and hunt findings as OCSF to
/// this receiver (`control::sinks`).
pub(in crate::api) async fn put_sink(
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

pub(in crate::api) async fn get_sink(
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

pub(in crate::api) async fn delete_sink(
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
