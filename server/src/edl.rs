//! External Dynamic Lists for firewalls: `GET /edl/{tenant}/{list}` serves
//! what the `edl-blocklist` responder keeps in its kv namespace, one entry
//! per line as Palo Alto, Fortinet and Check Point poll it, expired entries
//! left out. Firewalls speak HTTP basic auth, so the password is one of the
//! tenant's API tokens of a role that may read (`viewer` is the right one;
//! `analyst`, `tenant-admin` and `admin` also may, `ingest` may not: it only
//! writes), and the user name is ignored.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::AppState;
use super::error::ApiError;
use crate::extract::Params;
use rampart::store::KvNamespace;
use rampart::tenant::TenantId;

/// The plugin whose kv holds the lists.
const EDL_PLUGIN: &str = "edl-blocklist";
/// Largest list served (firewalls cap EDLs at tens of thousands).
const MAX_ENTRIES: usize = 150_000;

pub(super) async fn serve_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Params((tenant, list)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let challenge = || {
        let mut response =
            ApiError::unauthorized("basic auth with an API token as password").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"rampart-edl\""),
        );
        response
    };
    let Some(password) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_owned()))
    else {
        return Ok(challenge());
    };
    let Ok(principal) = state
        .tokens
        .authenticate(Some(&format!("Bearer {password}")))
    else {
        return Ok(challenge());
    };
    let tenant = TenantId::new(tenant.as_str())
        .map_err(|_| ApiError::not_found(format!("no tenant {tenant}")))?;
    principal.check(Some(&tenant), super::auth::Need::Read)?;
    state.tenant(&tenant)?;
    if list.is_empty() || !list.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ApiError::not_found(format!("no list {list}")));
    }
    let namespace = KvNamespace {
        tenant: tenant.clone(),
        plugin: EDL_PLUGIN.to_owned(),
    };
    let store = state.executor.store();
    let prefix = format!("edl/{list}/");
    let now = rampart::executor::now_ms() / 1000;
    let mut lines = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let keys = store
            .kv_list(&namespace, &prefix, after.as_deref(), 1_000)
            .map_err(ApiError::internal)?;
        let Some(last) = keys.last().cloned() else {
            break;
        };
        for key in keys {
            let expires = store
                .kv_get(&namespace, &key)
                .map_err(ApiError::internal)?
                .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
                .and_then(|v| v["expires"].as_i64());
            // Entries written before TTLs existed do not expire.
            if expires.is_none_or(|at| at > now)
                && let Some(entry) = key.strip_prefix(&prefix)
            {
                lines.push(entry.to_owned());
            }
        }
        if lines.len() >= MAX_ENTRIES {
            lines.truncate(MAX_ENTRIES);
            break;
        }
        after = Some(last);
    }
    let mut body = lines.join("\n");
    body.push('\n');
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response())
}
