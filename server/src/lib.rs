//! # rampart-server
//!
//! The HTTP control API (`rampart serve`): JSON under `/v1`, bearer tokens,
//! one tenant's objects invisible to another's tokens. A layer over the
//! engine library (`rampart`, package `rampart-runtime`), which knows
//! nothing of HTTP; the `rampart` binary (`src/main.rs`, `src/cli/`) lives
//! here too.
//!
//! Everything the API changes is persisted in the data directory (tenants,
//! grants, inventories, plugin packages, playbooks, tokens) and restored at
//! start; compiled plugins come back from the artifact cache.
#![deny(missing_docs)]

/// Principals, tokens and roles (the control plane's
/// [`rampart::control::principals`], at the path the API had them).
pub mod auth {
    pub use rampart::control::principals::*;
}
mod edl;
pub mod error;
mod extract;
mod gate;
pub mod guard;
mod intel;
mod listen;
pub mod openapi;
mod routes;
mod state;
pub mod tls;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use auth::Tokens;
use error::ApiError;
use rampart::executor::Executor;
use routes::alerts::{ingest, ingest_events};
use routes::approvals::{approve, deny, list_approvals};
use routes::audit::{audit_head, export_audit, query_audit, verify_audit};
use routes::hunts::{list_hunts, put_hunt, run_hunt_now};
use routes::metrics::metrics;
use routes::playbooks::{
    disable_playbook, enable_playbook, get_playbook, list_playbooks, put_playbook,
};
use routes::plugins::{delete_plugin, inspect_plugin, list_plugins, upload_plugin};
use routes::runs::{feedback, list_runs, measurements};
use routes::tenants::{
    create_tenant, create_token, get_identities, get_inventory, get_quotas, list_secrets,
    list_tenants, put_grants, put_identities, put_inventory, put_quotas, put_secret, revoke_token,
};
use routes::webhooks::{delete_sink, delete_webhook, get_sink, get_webhook, put_sink, put_webhook};

/// Largest request body (a plugin upload is the largest thing sent).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    executor: Executor,
    tokens: Tokens,
    /// Tenants, plugin packages and playbooks (the transport-free control
    /// plane).
    control: rampart::control::Control,
    ready: Arc<std::sync::atomic::AtomicBool>,
    /// `/metrics` without a token (totals only, no tenant names).
    public_metrics: bool,
    /// Connections per client address and idle deadline.
    connection_limits: guard::ConnectionLimits,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

fn storage_err(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(err)
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/edl/{tenant}/{list}", get(edl::serve_list))
        .route("/v1/intel/feeds", get(intel::list_feeds))
        .route("/v1/intel/feeds/{name}", post(intel::import_feed))
        .route(
            "/v1/tenants/{tenant}/intel/subscriptions",
            put(intel::put_subscriptions).get(intel::get_subscriptions),
        )
        .route("/v1/tenants/{tenant}/intel/lookup", get(intel::lookup))
        .route("/v1/tenants/{tenant}/grants", put(put_grants))
        .route(
            "/v1/tenants/{tenant}/quotas",
            put(put_quotas).get(get_quotas),
        )
        .route(
            "/v1/tenants/{tenant}/inventory",
            put(put_inventory).get(get_inventory),
        )
        .route(
            "/v1/tenants/{tenant}/identities",
            put(put_identities).get(get_identities),
        )
        .route("/v1/tenants/{tenant}/tokens", post(create_token))
        .route(
            "/v1/tenants/{tenant}/tokens/{id}/revoke",
            post(revoke_token),
        )
        .route(
            "/v1/tenants/{tenant}/plugins",
            post(upload_plugin).get(list_plugins),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}",
            put(put_secret),
        )
        .route(
            "/v1/tenants/{tenant}/plugins/{plugin}",
            get(inspect_plugin).delete(delete_plugin),
        )
        .route("/v1/tenants/{tenant}/secrets", get(list_secrets))
        .route(
            "/v1/tenants/{tenant}/playbooks/{name}",
            put(put_playbook).get(get_playbook),
        )
        .route("/v1/tenants/{tenant}/playbooks", get(list_playbooks))
        .route(
            "/v1/tenants/{tenant}/playbooks/{name}/enable",
            post(enable_playbook),
        )
        .route(
            "/v1/tenants/{tenant}/playbooks/{name}/disable",
            post(disable_playbook),
        )
        .route("/v1/tenants/{tenant}/alerts", post(ingest))
        .route("/v1/tenants/{tenant}/runs", get(list_runs))
        .route(
            "/v1/tenants/{tenant}/runs/{id}",
            get(routes::findings::get_run),
        )
        .route(
            "/v1/tenants/{tenant}/alerts/{id}",
            get(routes::findings::get_alert),
        )
        .route(
            "/v1/tenants/{tenant}/ocsf/export",
            get(routes::findings::export_ocsf),
        )
        .route("/v1/tenants/{tenant}/runs/{id}/feedback", post(feedback))
        .route("/v1/tenants/{tenant}/approvals", get(list_approvals))
        .route("/v1/tenants/{tenant}/approvals/{id}/approve", post(approve))
        .route("/v1/tenants/{tenant}/approvals/{id}/deny", post(deny))
        .route(
            "/v1/tenants/{tenant}/webhooks/approvals",
            put(put_webhook).get(get_webhook).delete(delete_webhook),
        )
        .route(
            "/v1/tenants/{tenant}/sinks/findings",
            put(put_sink).get(get_sink).delete(delete_sink),
        )
        .route("/v1/tenants/{tenant}/audit", get(query_audit))
        .route("/v1/tenants/{tenant}/audit/head", get(audit_head))
        .route("/v1/tenants/{tenant}/audit/verify", get(verify_audit))
        .route("/v1/tenants/{tenant}/audit/export", get(export_audit))
        .route("/v1/tenants/{tenant}/measurements", get(measurements))
        .route("/v1/tenants/{tenant}/events", post(ingest_events))
        .route("/v1/tenants/{tenant}/hunts", get(list_hunts))
        .route("/v1/tenants/{tenant}/hunts/{name}", put(put_hunt))
        .route("/v1/tenants/{tenant}/hunts/{name}/run", post(run_hunt_now))
        .route(
            "/v1/tenants/{tenant}/hunts/{name}/findings",
            get(routes::findings::hunt_findings),
        )
        .route(
            "/v1/tenants/{tenant}/detections",
            get(routes::findings::detections),
        )
        .route(
            "/v1/tenants/{tenant}/detections/{rule}/mute",
            put(routes::findings::mute).delete(routes::findings::unmute),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: no extractor of any route runs before the token is checked.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::authenticate,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(std::sync::atomic::Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting"})),
        )
            .into_response()
    }
}

/// The longest token lifetime: ten years.
pub const MAX_TOKEN_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// How long a request refused for its tenant's rate is held before the
/// 429 is sent.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The lease of the hunt scheduler on a cluster.
const HUNT_LEASE: &str = "timer\0hunts";

/// The most alerts one request may carry.
pub const MAX_ALERTS_PER_REQUEST: usize = 1_000;

/// Serves `router` on `listener` until `shutdown` resolves; then signs every
/// tenant's audit head.
pub async fn serve<L>(
    state: AppState,
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    let executor = state.executor.clone();
    let limits = state.connection_limits;
    // Approval webhooks: each request is delivered on its own task so a
    // slow receiver delays nobody.
    let notifier = {
        let (sink, mut requests) = tokio::sync::mpsc::unbounded_channel();
        executor.notify_approvals(sink);
        let state = state.clone();
        tokio::spawn(async move {
            while let Some(approval) = requests.recv().await {
                let state = state.clone();
                tokio::spawn(async move { state.control.webhooks().announce(approval).await });
            }
        })
    };
    // The findings sink: each finished run's verdict pushed on its own
    // task (a tenant without a sink costs one lookup).
    let exporter = {
        let (sink, mut finished) = tokio::sync::mpsc::unbounded_channel();
        executor.notify_finished(sink);
        let state = state.clone();
        tokio::spawn(async move {
            while let Some((tenant, run)) = finished.recv().await {
                if !state.control.sinks().has(&tenant) {
                    continue;
                }
                let state = state.clone();
                tokio::spawn(async move { state.control.sinks().export_run(&tenant, &run).await });
            }
        })
    };
    // The hunt scheduler: checks every second which hunts are due — on a
    // cluster only on the node that holds its lease, so a hunt runs once
    // per tick whichever nodes are up.
    let scheduler = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(leases) = state.executor.leases() {
                    match leases.take(HUNT_LEASE, rampart::cluster::TIMER_LEASE) {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(err) => {
                            tracing::warn!("hunt scheduler lease: {err}");
                            continue;
                        }
                    }
                }
                if let Err(err) = state.control.hunts().run_due() {
                    tracing::warn!("hunt scheduler: {err}");
                }
            }
        })
    };
    // On a cluster: workers bring the control state up to date before an
    // item another node may have queued, and a watcher does it every second
    // for the API (hunts, plugins, grants changed through another node).
    let watcher = state.executor.leases().is_some().then(|| {
        let control = state.control.clone();
        state.executor.set_refresh(std::sync::Arc::new(move || {
            let control = control.clone();
            Box::pin(async move {
                if let Err(err) = control.sync().await {
                    tracing::warn!("refreshing the control state: {err}");
                }
            })
        }));
        let control = state.control.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(err) = control.sync().await {
                    tracing::warn!("refreshing the control state: {err}");
                }
            }
        })
    });
    let app = router(state);
    listen::serve_connections(
        guard::Guarded::new(listener, limits),
        app,
        limits.header,
        shutdown,
    )
    .await;
    scheduler.abort();
    notifier.abort();
    exporter.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
        let _ = watcher.await;
    }
    // Wait until the tasks are gone: they hold the store, whose directory
    // lock must be free when this returns (a restart reopens it).
    let _ = scheduler.await;
    let _ = notifier.await;
    let _ = exporter.await;
    if let Err(err) = executor.audit().checkpoint_all() {
        tracing::error!("signing audit heads at shutdown: {err}");
    }
    let _ = executor.audit().flush();
    Ok(())
}

/// Filters of `GET /runs`; times are Unix milliseconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunFilter {
    status: Option<rampart::executor::run::RunStatus>,
    playbook: Option<String>,
    alert: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
}

/// Filters of `GET /audit`; times are Unix milliseconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditFilter {
    kind: Option<rampart::audit::AuditKind>,
    run: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after_seq: Option<u64>,
    limit: Option<usize>,
}

const DEFAULT_PAGE: usize = 100;

const MAX_PAGE: usize = 1_000;
