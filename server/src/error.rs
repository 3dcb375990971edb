//! The one JSON error shape of the API: `{error, detail, location?}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: status plus a body that says what is wrong and where.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Short machine-readable kind (`not_found`, `invalid_playbook`, ...).
    pub error: String,
    /// What is wrong, for a human.
    pub detail: String,
    /// Where (field, line:column), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<serde_json::Value>,
    /// Seconds after which a refused request may be retried (sent as
    /// `Retry-After`; every 429 carries it).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no location.
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.to_owned(),
            detail: detail.into(),
            location: None,
            retry_after: None,
        }
    }

    /// 404: also used for other tenants' objects, so ids do not leak.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 500 without internals.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
        let mut response = (self.status, Json(self)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        response
    }
}

impl From<rampart::control::principals::AuthError> for ApiError {
    fn from(err: rampart::control::principals::AuthError) -> Self {
        use rampart::control::principals::AuthError as E;
        match err {
            E::Unauthenticated(_) => Self::unauthorized(err.to_string()),
            E::OtherTenant(_) | E::NoToken(_) => Self::not_found(err.to_string()),
            E::AdminOnly | E::RoleMayNot(_) | E::HigherRole { .. } => {
                Self::forbidden(err.to_string())
            }
            E::InvalidPrincipal(_) | E::TokenScope(_) => Self::bad_request(err.to_string()),
            E::PrincipalTaken(_) => {
                Self::new(StatusCode::CONFLICT, "principal_taken", err.to_string())
            }
            E::Random(_) | E::Sealed(_) | E::Storage(_) | E::Record(_) => Self::internal(err),
        }
    }
}

impl From<rampart::control::ControlError> for ApiError {
    fn from(err: rampart::control::ControlError) -> Self {
        use rampart::control::ControlError as E;
        match err {
            E::NoTenant(_) | E::NoPlaybook(_) | E::NoPlugin(_) => Self::not_found(err.to_string()),
            E::InvalidManifest(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_manifest",
                err.to_string(),
            ),
            E::PluginRefused(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_refused",
                err.to_string(),
            ),
            E::PluginInUse { .. } => Self::new(StatusCode::CONFLICT, "in_use", err.to_string()),
            E::TenantExists(_) => Self::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            E::GrantsInUse(_) => Self::new(StatusCode::CONFLICT, "grants_in_use", err.to_string()),
            E::InvalidTenantId(_) | E::SecretsInGrants | E::PlaybookName { .. } => {
                Self::bad_request(err.to_string())
            }
            E::PrivateRanges => Self::forbidden(err.to_string()),
            E::NoHunt(_) => Self::not_found(err.to_string()),
            E::HuntName
            | E::NotAHunt(_)
            | E::NoHuntPlugin(_)
            | E::HuntFailed { .. }
            | E::InvalidRuleId(_) => Self::bad_request(err.to_string()),
            E::Schedule(detail) => ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_schedule".to_owned(),
                detail,
                location: Some(serde_json::json!({"field": "schedule"})),
                retry_after: None,
            },
            E::Webhook { field, .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_webhook".to_owned(),
                detail: err.to_string(),
                location: Some(serde_json::json!({"field": field})),
                retry_after: None,
            },
            E::WebhookInternal(_) => Self::forbidden(err.to_string()),
            E::NoWebhook => Self::not_found(err.to_string()),
            E::RateLimited { retry_after_s, .. } => ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                error: "rate_limited".to_owned(),
                detail: err.to_string(),
                location: None,
                retry_after: Some(retry_after_s),
            },
            E::BatchTooLarge { .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                err.to_string(),
            ),
            E::Executor(inner) => inner.into(),
            E::Sealed(_)
            | E::Audit(_)
            | E::Secret(_)
            | E::Storage(_)
            | E::Decode { .. }
            | E::Corrupt(_) => Self::internal(err),
        }
    }
}

impl From<rampart::executor::ExecutorError> for ApiError {
    fn from(err: rampart::executor::ExecutorError) -> Self {
        use rampart::executor::ExecutorError as E;
        match err {
            E::AlertConflict { .. } => Self::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            E::InvalidAlert { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_alert", err.to_string())
            }
            E::RunNotFound(_) | E::PlaybookNotFound(_) => Self::not_found(err.to_string()),
            E::Approval(rampart::executor::approvals::ApprovalError::NotFound(_)) => {
                Self::not_found(err.to_string())
            }
            E::Approval(
                rampart::executor::approvals::ApprovalError::Requester { .. }
                | rampart::executor::approvals::ApprovalError::TooNew { .. },
            ) => Self::new(
                StatusCode::FORBIDDEN,
                "approver_ineligible",
                err.to_string(),
            ),
            E::Approval(rampart::executor::approvals::ApprovalError::Decided { .. }) => {
                Self::new(StatusCode::CONFLICT, "approval_decided", err.to_string())
            }
            E::Approval(_) => Self::new(StatusCode::CONFLICT, "approval_refused", err.to_string()),
            E::Sealed(rampart::audit::seal::SealError::Tampered { .. }) => {
                tracing::error!("{err}");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "tampered",
                    err.to_string(),
                )
            }
            E::Playbook(playbook) => {
                let issues: Vec<&rampart::diagnostics::Issue> = playbook.issues();
                let location = serde_json::to_value(&issues).ok();
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    error: "invalid_playbook".to_owned(),
                    detail: playbook.to_string(),
                    location,
                    retry_after: None,
                }
            }
            E::Load(load) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plugin_refused",
                load.to_string(),
            ),
            other => Self::internal(other),
        }
    }
}
