//! The gate every request passes before its handler: authentication first.
//!
//! A layer on the whole router, so it runs before any extractor — no body is
//! read, no query or path parameter is parsed, for a caller without a valid
//! token. A token of one tenant asking for another tenant's path gets 404
//! here too, before its body is read. Handlers still authorise by need
//! (role), from the [`Principal`] this gate puts in the request's
//! extensions.
//!
//! Public without a token: `/healthz`, `/readyz`, `/v1/openapi.json`,
//! `/edl/…` (firewalls authenticate with basic auth, checked by that
//! handler, which reads no body) and `/metrics` when the server was started
//! with public metrics.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;

/// The caller this gate authenticated, for handlers (none on a public
/// path): the token is checked once per request, here.
#[derive(Debug, Clone)]
pub(super) struct Caller(Option<Principal>);

impl Caller {
    /// The authenticated principal (401 on a public path without one).
    pub(super) fn principal(&self) -> Result<Principal, ApiError> {
        self.0
            .clone()
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }
}

impl Caller {
    /// The caller the gate put on this request.
    pub(super) fn of(parts: &axum::http::request::Parts) -> Self {
        Caller(parts.extensions.get::<Principal>().cloned())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Principal>().cloned()))
    }
}

/// Paths served without a bearer token.
fn public(state: &AppState, path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/v1/openapi.json")
        || path.starts_with("/edl/")
        || (path == "/metrics" && state.public_metrics)
}

/// The tenant a `/v1/tenants/{tenant}/…` path names, still percent-encoded.
fn path_tenant(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/tenants/")?.split('/').next()
}

/// Authenticates before anything else of the request is looked at.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if public(&state, path) {
        // A public path may still carry a token (an admin scraping metrics
        // by tenant): honoured if valid, ignored if not.
        if let Ok(principal) = state.tokens.authenticate(
            request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ) {
            request.extensions_mut().insert::<Principal>(principal);
        }
        return next.run(request).await;
    }
    let principal = match state.tokens.authenticate(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(principal) => principal,
        Err(err) => return ApiError::from(err).into_response(),
    };
    if let (Some(own), Some(asked)) = (&principal.token.tenant, path_tenant(path))
        && own.as_str() != asked
    {
        return ApiError::not_found(format!("no tenant {asked}")).into_response();
    }
    request.extensions_mut().insert::<Principal>(principal);
    next.run(request).await
}
