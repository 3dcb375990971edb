//! Extractors that answer bad input with the API's own JSON errors: path and query parameters, JSON bodies, CSV/JSON tables.

use axum::Json;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Need, Principal};
use crate::error::ApiError;
use crate::gate::Caller;
use crate::routes::tenants::invalid_table;
use rampart::tenant::TenantId;
use std::time::Duration;

/// Path parameters, with our error shape when they do not decode (bad
/// percent-encoding, invalid UTF-8): such a path names nothing, so 404.
pub(crate) struct Params<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Params(value)),
            Err(rejection) => Err(ApiError::not_found(format!(
                "no such object: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// Query parameters, with our error shape when they do not decode.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|err| ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_query".to_owned(),
                detail: err.inner().to_string(),
                location: Some(json!({"query": err.path().to_string()})),
                retry_after: None,
            })
    }
}

/// A JSON body, with our error shape for malformed input.
pub(crate) struct Body<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(Body)
    }
}

/// The whole request body, within the server's size limit.
pub(crate) async fn body_bytes<S: Send + Sync>(
    request: axum::extract::Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(request, state)
        .await
        .map_err(|err| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_rejected",
                err.body_text(),
            )
        })
}

/// Deserialises JSON, naming the path, line and column of the first error.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_json".to_owned(),
            detail: inner.to_string(),
            location: Some(json!({"path": path, "line": inner.line(), "column": inner.column()})),
            retry_after: None,
        }
    })
}

/// A body that is JSON, or a CSV table when sent as `text/csv` (inventory
/// and identity exports come from spreadsheets and CMDBs as CSV).
pub(crate) struct Table {
    bytes: axum::body::Bytes,
    csv: bool,
}

impl Table {
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        self,
        from_csv: fn(&str) -> Result<T, rampart::context::ContextError>,
    ) -> Result<T, ApiError> {
        if !self.csv {
            return parse_json(&self.bytes);
        }
        let text = std::str::from_utf8(&self.bytes)
            .map_err(|err| ApiError::bad_request(format!("the CSV is not UTF-8: {err}")))?;
        from_csv(text).map_err(invalid_table)
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Table {
    type Rejection = ApiError;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let csv = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
        let bytes = body_bytes(request, state).await?;
        Ok(Table { bytes, csv })
    }
}

/// What a tenant-scoped handler needs of its caller, as a type for
/// [`Tenant`].
pub(crate) mod need {
    /// A [`super::Need`] as a type.
    pub(crate) trait Needs {
        /// The need.
        const NEED: super::Need;
    }

    macro_rules! needs {
        ($($name:ident),*) => {$(
            #[doc = concat!("`Need::", stringify!($name), "`.")]
            pub(crate) struct $name;
            impl Needs for $name {
                const NEED: super::Need = super::Need::$name;
            }
        )*};
    }

    needs!(Read, Ingest, Decide, Configure);
}

/// The tenant a `/v1/tenants/{tenant}/…` path names, once its caller (whom
/// the gate authenticated) is known to be allowed `N` on it and the tenant
/// exists. Authorisation runs here, before any body is read.
pub(crate) struct Tenant<N> {
    /// Who asks.
    pub(crate) principal: Principal,
    /// The tenant.
    pub(crate) id: TenantId,
    need: std::marker::PhantomData<N>,
}

impl<N: need::Needs> axum::extract::FromRequestParts<AppState> for Tenant<N> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::of(parts);
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| {
                ApiError::not_found(format!("no such object: {}", rejection.body_text()))
            })?;
        let named = params
            .iter()
            .find(|(name, _)| *name == "tenant")
            .map(|(_, value)| value.to_owned())
            .ok_or_else(|| ApiError::not_found("no tenant in the path"))?;
        let (principal, id) = state.allow(&caller, &named, N::NEED)?;
        Ok(Tenant {
            principal,
            id,
            need: std::marker::PhantomData,
        })
    }
}

/// How long a request that caused work (an alert, a decision) waits for
/// it, from RFC 7240's `Prefer` header: `respond-async` answers as soon as
/// the work is durable and queued (202), `wait=N` waits up to N seconds
/// (at most [`MAX_WAIT`]); without one the request waits up to
/// [`DEFAULT_WAIT`]. Work goes on after the answer either way: it runs on
/// the executor's workers, not in the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    pub(crate) wait: Duration,
    /// Whether the client asked (so `Preference-Applied` is sent).
    pub(crate) asked: bool,
}

/// The wait of a request without a `Prefer` header.
pub(crate) const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest wait a client may ask for.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(120);

impl Wait {
    fn from_headers(headers: &axum::http::HeaderMap) -> Wait {
        let mut wait = Wait {
            wait: DEFAULT_WAIT,
            asked: false,
        };
        for value in headers.get_all("prefer") {
            let Ok(text) = value.to_str() else { continue };
            for preference in text.split(',').map(str::trim) {
                let (name, value) = preference
                    .split_once('=')
                    .map_or((preference, None), |(n, v)| (n.trim(), Some(v.trim())));
                if name.eq_ignore_ascii_case("respond-async") {
                    wait = Wait {
                        wait: Duration::ZERO,
                        asked: true,
                    };
                } else if name.eq_ignore_ascii_case("wait")
                    && let Some(seconds) = value.and_then(|v| v.parse::<u64>().ok())
                {
                    wait = Wait {
                        wait: Duration::from_secs(seconds).min(MAX_WAIT),
                        asked: true,
                    };
                }
            }
        }
        wait
    }

    /// The answer: 200 when the work settled in time, else 202 (the body
    /// says `"settled": false`; poll the runs).
    pub(crate) fn answer(self, settled: bool, mut body: Value) -> axum::response::Response {
        use axum::response::IntoResponse;
        body["settled"] = json!(settled);
        let status = if settled {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        let mut response = (status, Json(body)).into_response();
        if self.asked {
            let applied = if self.wait.is_zero() {
                "respond-async".to_owned()
            } else {
                format!("wait={}", self.wait.as_secs())
            };
            if let Ok(value) = axum::http::HeaderValue::from_str(&applied) {
                response.headers_mut().insert("preference-applied", value);
            }
        }
        response
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Wait {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Wait::from_headers(&parts.headers))
    }
}
