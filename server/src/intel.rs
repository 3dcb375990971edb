//! Threat-intel feeds over the API: an admin imports shared feeds (once,
//! for every tenant), a tenant admin chooses which its plugins see, anyone
//! with read access looks entities up.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Need;
use super::error::ApiError;
use super::extract::{Tenant, need};
use super::gate::Caller;
use crate::extract::{Body, Params, QueryParams};
use rampart::intel::ReferencePage;
use rampart::intel::formats::{self, Format};
use rampart::model::{Entity, EntityKind};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ImportQuery {
    format: Format,
    /// Add to the stored feed instead of replacing it (feeds in parts).
    #[serde(default)]
    append: bool,
}

fn intel_error(err: rampart::store::feeds::IntelError) -> ApiError {
    match err {
        rampart::store::feeds::IntelError::Store(detail) => ApiError::internal(detail),
        rampart::store::feeds::IntelError::UnknownFeed(feed) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_feed",
            format!("no feed `{feed}`"),
        ),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// `POST /v1/intel/feeds/{name}?format=F[&append=true]`, body: the file.
pub(super) async fn import_feed(
    State(state): State<AppState>,
    caller: Caller,
    Params(name): Params<String>,
    QueryParams(query): QueryParams<ImportQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    state.principal(&caller)?.check(None, Need::Admin)?;
    let store = state.executor.store().clone();
    // Parsing and indexing a large feed is CPU work: off the async workers.
    let summary = tokio::task::spawn_blocking(move || {
        let parsed = formats::read_bytes(query.format, &name, &body)
            .map_err(|err| ApiError::bad_request(err.to_string()))?;
        store
            .feeds()
            .import(&name, query.format, parsed, query.append)
            .map_err(intel_error)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok((StatusCode::CREATED, Json(json!(summary))).into_response())
}

/// `GET /v1/intel/feeds`.
pub(super) async fn list_feeds(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    state.principal(&caller)?.check(None, Need::Admin)?;
    let feeds: Vec<Value> = state
        .executor
        .store()
        .feeds()
        .index()
        .feeds()
        .into_iter()
        .map(|(feed, indicators)| json!({"feed": feed, "indicators": indicators}))
        .collect();
    Ok(Json(json!({"feeds": feeds})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Subscriptions {
    feeds: BTreeSet<String>,
}

/// `PUT /v1/tenants/{tenant}/intel/subscriptions`.
pub(super) async fn put_subscriptions(
    State(state): State<AppState>,
    Tenant {
        principal,
        id: tenant,
        ..
    }: Tenant<need::Configure>,
    Body(body): Body<Subscriptions>,
) -> Result<Json<Value>, ApiError> {
    state
        .executor
        .store()
        .feeds()
        .subscribe(&tenant, body.feeds.clone())
        .map_err(intel_error)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"intel_feeds": body.feeds}),
    )?;
    Ok(Json(json!({"feeds": body.feeds})))
}

/// `GET /v1/tenants/{tenant}/intel/subscriptions`.
pub(super) async fn get_subscriptions(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
) -> Result<Json<Value>, ApiError> {
    let feeds = state
        .executor
        .store()
        .feeds()
        .index()
        .subscriptions(&tenant);
    Ok(Json(json!({"feeds": feeds})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LookupQuery {
    kind: EntityKind,
    value: String,
    /// References per match (default 5, at most 1,000).
    references: Option<usize>,
    /// References of each match to skip.
    references_from: Option<usize>,
}

/// `GET /v1/tenants/{tenant}/intel/lookup?kind=ip&value=…`. Each match
/// carries a page of its references and `references_total`; when there
/// are more, `more_references` is the link to the next page.
pub(super) async fn lookup(
    State(state): State<AppState>,
    Tenant { id: tenant, .. }: Tenant<need::Read>,
    QueryParams(query): QueryParams<LookupQuery>,
) -> Result<Json<Value>, ApiError> {
    if query.value.len() > 4_096 {
        return Err(ApiError::bad_request("value longer than 4096 bytes"));
    }
    let page = ReferencePage {
        from: query.references_from.unwrap_or(0),
        max: query.references.unwrap_or(ReferencePage::DEFAULT_MAX),
    };
    if page.max > ReferencePage::LIMIT {
        return Err(ApiError::bad_request(format!(
            "references: at most {} per match",
            ReferencePage::LIMIT
        )));
    }
    let entity = Entity {
        kind: query.kind,
        value: query.value,
    };
    let matches = state
        .executor
        .store()
        .intel_lookup_paged(&tenant, &entity, page)
        .map_err(ApiError::internal)?;
    let next = page.from.saturating_add(page.max);
    let more = matches.iter().any(|m| m.references_total > next).then(|| {
        let kind = serde_json::to_value(entity.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("kind", &kind)
            .append_pair("value", &entity.value)
            .append_pair("references", &page.max.max(1).to_string())
            .append_pair("references_from", &next.to_string())
            .finish();
        format!("/v1/tenants/{tenant}/intel/lookup?{query}")
    });
    Ok(Json(
        json!({"entity": entity, "matches": matches, "more_references": more}),
    ))
}
