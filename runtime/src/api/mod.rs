//! The HTTP control API (`rampart serve`): JSON under `/v1`, bearer tokens,
//! one tenant's objects invisible to another's tokens.
//!
//! Everything the API changes is persisted in the data directory (tenants,
//! grants, inventories, plugin packages, playbooks, tokens) and restored at
//! start; compiled plugins come back from the artifact cache.

pub mod auth;
mod edl;
pub mod error;
mod gate;
pub mod guard;
pub mod hunts;
mod intel;
mod listen;
pub mod openapi;
pub mod tls;
pub mod webhooks;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::seal::SealedTree;
use crate::context::{AssetInventory, IdentityDirectory};
use crate::executor::Executor;
use crate::model::Alert;
use crate::tenant::{Grants, TenantId, TenantQuota};
use auth::{Need, Principal, Role, Tokens};
use error::ApiError;
use gate::Caller;

/// Largest request body (a plugin upload is the largest thing sent).
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// One lock per hunt (tenant\0name): a hunt runs once at a time.
type HuntLocks = BTreeMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>;

/// Shared server state.
#[derive(Clone)]
pub struct AppState {
    executor: Executor,
    tokens: Tokens,
    // Sealed against offline edits (`audit::seal`): grants, packages and
    // playbooks are what decides what code runs with which rights.
    tenants: SealedTree,
    packages: SealedTree,
    playbooks: SealedTree,
    secrets: sled::Tree,
    secret_box: Arc<crate::secrets::SecretBox>,
    events: hunts::Events,
    hunts: sled::Tree,
    disabled_playbooks: sled::Tree,
    /// Who put each playbook (principal id): the requester of its actions.
    playbook_owners: SealedTree,
    webhook_secrets: sled::Tree,
    /// One hunt run at a time: a scheduled run and a manual one must not
    /// read the same watermark and scan the same events twice.
    hunt_lock: Arc<std::sync::Mutex<HuntLocks>>,
    /// Tenants whose scheduled hunts are running now: each tenant's hunts
    /// run one after another on a task of its own, so one tenant's many
    /// hunts never hold up another tenant's.
    hunting: Arc<std::sync::Mutex<std::collections::HashSet<TenantId>>>,
    webhook_deliveries: Arc<std::sync::Mutex<BTreeMap<(TenantId, &'static str), u64>>>,
    ingest_buckets:
        Arc<std::sync::Mutex<std::collections::HashMap<TenantId, (f64, std::time::Instant)>>>,
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

/// A tenant as stored.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantRecord {
    id: TenantId,
    #[serde(default)]
    grants: Grants,
    #[serde(default)]
    inventory: AssetInventory,
    /// People (the `context` capability reports them).
    #[serde(default)]
    identities: IdentityDirectory,
    /// Alerts per second this tenant may send (burst: twice that).
    #[serde(default = "default_ingest_rate")]
    ingest_per_second: u32,
    /// Concurrent runs, fuel per minute, memory per call.
    #[serde(default)]
    quotas: TenantQuota,
    /// Where approval requests are announced (its secret is sealed apart).
    #[serde(default)]
    approval_webhook: Option<webhooks::WebhookConfig>,
}

fn default_ingest_rate() -> u32 {
    500
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{0}").into_bytes()
}

fn sled_err(err: impl std::fmt::Display) -> ApiError {
    ApiError::internal(err)
}

impl AppState {
    /// State over an executor; restores tenants, plugins and playbooks.
    /// Secrets are sealed with `secret_box` (the master key).
    pub async fn open(
        executor: Executor,
        secret_box: crate::secrets::SecretBox,
    ) -> Result<Self, ApiError> {
        Self::open_with(executor, secret_box, None).await
    }

    /// [`AppState::open`], first applying a validated config file: it is
    /// authoritative for the tenants it names.
    pub async fn open_with(
        executor: Executor,
        secret_box: crate::secrets::SecretBox,
        config: Option<&crate::config::ServerConfig>,
    ) -> Result<Self, ApiError> {
        let db = executor.store().db().clone();
        let seal = executor.seal_key().clone();
        let sealed = |name: &str| SealedTree::open(&db, name, &seal).map_err(sled_err);
        let state = AppState {
            tokens: Tokens::open(&db, &seal).map_err(sled_err)?,
            tenants: sealed("api-tenants")?,
            packages: sealed("api-plugin-packages")?,
            playbooks: sealed("api-playbooks")?,
            secrets: db.open_tree("api-secrets").map_err(sled_err)?,
            events: hunts::Events::open(&db).map_err(sled_err)?,
            hunts: db.open_tree("api-hunts").map_err(sled_err)?,
            disabled_playbooks: db.open_tree("api-playbooks-disabled").map_err(sled_err)?,
            playbook_owners: sealed("api-playbook-owners")?,
            webhook_secrets: db.open_tree("api-webhook-secrets").map_err(sled_err)?,
            webhook_deliveries: Arc::default(),
            hunt_lock: Arc::default(),
            hunting: Arc::default(),
            ingest_buckets: Arc::default(),
            secret_box: Arc::new(secret_box),
            executor,
            ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            public_metrics: false,
            connection_limits: guard::ConnectionLimits::default(),
        };
        if let Some(config) = config {
            state.apply_config(config)?;
        }
        state.refuse_tampered_state()?;
        state.restore().await?;
        // Build the intel index now, not on the first alert.
        let _ = state.executor.store().feeds().index();
        state.ready.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(state)
    }

    /// The tokens store (for bootstrapping the first admin token).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Serves `/metrics` without a token (totals only). By default it needs
    /// a token of role `metrics` or `admin`.
    #[must_use]
    pub fn with_public_metrics(mut self, public: bool) -> Self {
        self.public_metrics = public;
        self
    }

    /// Caps connections per client address and closes idle ones.
    #[must_use]
    pub fn with_connection_limits(mut self, limits: guard::ConnectionLimits) -> Self {
        self.connection_limits = limits;
        self
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Records a configuration change by `actor` in the tenant's audit chain.
    fn audit_change(&self, tenant: &TenantId, actor: &str, detail: Value) -> Result<(), ApiError> {
        self.executor
            .audit()
            .append(
                tenant,
                crate::audit::AuditKind::ConfigChanged,
                None,
                None,
                Some(actor),
                detail,
            )
            .map(|_| ())
            .map_err(ApiError::internal)
    }

    /// Writes the config file's tenants (before restore loads anything, so
    /// plugins load under the file's grants).
    fn apply_config(&self, config: &crate::config::ServerConfig) -> Result<(), ApiError> {
        for declared in &config.tenants {
            let existing = self.tenant(&declared.id).ok();
            let mut record = existing.clone().unwrap_or(TenantRecord {
                id: declared.id.clone(),
                grants: Grants::default(),
                inventory: AssetInventory::default(),
                identities: IdentityDirectory::default(),
                ingest_per_second: default_ingest_rate(),
                quotas: TenantQuota::default(),
                approval_webhook: None,
            });
            record.grants = declared.grants.clone();
            record.quotas = declared.quotas;
            record.ingest_per_second = declared
                .ingest_per_second
                .unwrap_or_else(default_ingest_rate);
            if let Some(inventory) = &declared.inventory {
                record.inventory = inventory.clone();
            }
            if let Some(identities) = &declared.identities {
                record.identities = identities.clone();
            }
            let before = existing.as_ref().map(serde_json::to_value).transpose();
            let after = serde_json::to_value(&record).map_err(ApiError::internal)?;
            if before.map_err(ApiError::internal)?.as_ref() == Some(&after) {
                continue;
            }
            self.tenants
                .insert(
                    record.id.as_str(),
                    serde_json::to_vec(&record).map_err(ApiError::internal)?,
                )
                .map_err(sled_err)?;
            self.audit_change(
                &record.id,
                "config-file",
                json!({"tenant": if existing.is_some() { "updated" } else { "created" }, "quotas": record.quotas, "ingest_per_second": record.ingest_per_second, "assets": record.inventory.assets.len()}),
            )?;
        }
        self.tenants.flush().map_err(sled_err)?;
        Ok(())
    }

    /// Refuses to start when any sealed entry was changed outside rampart,
    /// naming every one.
    fn refuse_tampered_state(&self) -> Result<(), ApiError> {
        let mut changed = Vec::new();
        let named = |tree: &str, keys: Vec<String>| {
            keys.into_iter()
                .map(|key| format!("{tree} entry {key}"))
                .collect::<Vec<_>>()
        };
        changed.extend(named("tokens", self.tokens.tampered().map_err(sled_err)?));
        for tree in [
            &self.tenants,
            &self.packages,
            &self.playbooks,
            &self.playbook_owners,
        ] {
            changed.extend(named(tree.name(), tree.tampered().map_err(sled_err)?));
        }
        changed.extend(named("runs", self.executor.tampered_runs()?));
        if changed.is_empty() {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "tampered",
            format!(
                "state was changed outside rampart (its seal does not match): {}; restore these from a backup or remove them",
                changed.join(", ")
            ),
        ))
    }

    async fn restore(&self) -> Result<(), ApiError> {
        for entry in self.tenants.iter() {
            let (_, bytes) = entry.map_err(sled_err)?;
            let record: TenantRecord =
                serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
            self.executor
                .set_grants(&record.id, self.effective_grants(&record)?);
            self.executor
                .set_inventory(&record.id, record.inventory.clone());
            self.executor
                .set_identities(&record.id, record.identities.clone());
            self.executor.set_quota(&record.id, record.quotas);
        }
        for entry in self.disabled_playbooks.iter() {
            let (k, _) = entry.map_err(sled_err)?;
            let text = String::from_utf8_lossy(&k).into_owned();
            if let Some((tenant, name)) = text.split_once('\u{0}')
                && let Ok(tenant) = TenantId::new(tenant)
            {
                self.executor.set_playbook_enabled(&tenant, name, false);
            }
        }
        for entry in self.playbook_owners.iter() {
            let (k, owner) = entry.map_err(sled_err)?;
            let text = String::from_utf8_lossy(&k).into_owned();
            if let Some((tenant, name)) = text.split_once('\u{0}')
                && let Ok(tenant) = TenantId::new(tenant)
            {
                self.executor.set_playbook_owner(
                    &tenant,
                    name,
                    Some(String::from_utf8_lossy(&owner).into_owned()),
                );
            }
        }
        for entry in self.packages.iter() {
            let (_, bytes) = entry.map_err(sled_err)?;
            let package: Value = serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
            let tenant = TenantId::new(package["tenant"].as_str().unwrap_or_default())
                .map_err(ApiError::internal)?;
            let manifest = package["manifest"].as_str().unwrap_or_default();
            let wasm = base64::engine::general_purpose::STANDARD
                .decode(package["wasm"].as_str().unwrap_or_default())
                .map_err(ApiError::internal)?;
            self.load_plugin(&tenant, manifest, &wasm, false).await?;
        }
        let mut stored: Vec<(TenantId, String)> = Vec::new();
        for entry in self.playbooks.iter() {
            let (k, yaml) = entry.map_err(sled_err)?;
            let tenant = String::from_utf8_lossy(&k)
                .split('\u{0}')
                .next()
                .unwrap_or_default()
                .to_owned();
            stored.push((
                TenantId::new(tenant).map_err(ApiError::internal)?,
                String::from_utf8_lossy(&yaml).into_owned(),
            ));
        }
        for (tenant, yaml) in stored {
            self.executor.restore_playbook(&tenant, "stored", &yaml)?;
        }
        self.executor.resume().await?;
        Ok(())
    }

    async fn load_plugin(
        &self,
        tenant: &TenantId,
        manifest: &str,
        wasm: &[u8],
        audited: bool,
    ) -> Result<Value, ApiError> {
        let locked = crate::manifest::parse("manifest", manifest).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_manifest",
                err.to_string(),
            )
        })?;
        let grants = self.effective_grants(&self.tenant(tenant)?)?;
        let plugin = self
            .executor
            .runtime()
            .load(tenant, &grants, locked, wasm)
            .await
            .map_err(|err| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "plugin_refused",
                    err.to_string(),
                )
            })?;
        if audited {
            self.executor.register(tenant, plugin.clone())?;
        } else {
            self.executor.restore_plugin(tenant, plugin.clone())?;
        }
        Ok(
            json!({"name": plugin.manifest().name, "version": plugin.manifest().version, "kind": plugin.manifest().kind, "sha256": plugin.manifest().sha256, "capabilities": plugin.manifest().capabilities, "artifact": plugin.artifact_source()}),
        )
    }

    fn tenant(&self, tenant: &TenantId) -> Result<TenantRecord, ApiError> {
        let bytes = self
            .tenants
            .get(tenant.as_str())
            .map_err(sled_err)?
            .ok_or_else(|| ApiError::not_found(format!("no tenant {tenant}")))?;
        serde_json::from_slice(&bytes).map_err(ApiError::internal)
    }

    /// The tenant's grants with its secrets decrypted into the grant of
    /// the plugin each belongs to (in memory only).
    fn effective_grants(&self, record: &TenantRecord) -> Result<Grants, ApiError> {
        let mut grants = record.grants.clone();
        let mut prefix = record.id.as_str().as_bytes().to_vec();
        prefix.push(0);
        for entry in self.secrets.scan_prefix(&prefix) {
            let (k, sealed) = entry.map_err(sled_err)?;
            let text = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let Some((plugin, name)) = text.split_once('\u{0}') else {
                continue;
            };
            let secret = self
                .secret_box
                .unseal(&record.id, plugin, name, &sealed)
                .map_err(ApiError::internal)?;
            let default = grants.default.clone();
            grants
                .plugins
                .entry(plugin.to_owned())
                .or_insert(default)
                .secrets
                .insert(name.to_owned(), secret);
        }
        Ok(grants)
    }

    /// The tenant's uploaded plugins that are loaded, by name.
    fn uploaded_plugins(&self, tenant: &TenantId) -> Vec<(String, crate::Plugin)> {
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        self.packages
            .scan_prefix(&prefix)
            .filter_map(Result::ok)
            .map(|(key, _)| key)
            .filter_map(|key| {
                let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let plugin = self.executor.plugin(tenant, &name)?;
                Some((name, plugin))
            })
            .collect()
    }

    fn put_tenant(&self, record: &TenantRecord) -> Result<(), ApiError> {
        let mut stored = record.clone();
        stored.grants.default.secrets.clear();
        stored
            .grants
            .plugins
            .values_mut()
            .for_each(|g| g.secrets.clear());
        let record = &stored;
        self.tenants
            .insert(
                record.id.as_str(),
                serde_json::to_vec(record).map_err(ApiError::internal)?,
            )
            .map_err(sled_err)?;
        self.tenants.flush().map_err(sled_err)?;
        self.executor
            .set_grants(&record.id, self.effective_grants(record)?);
        self.executor
            .set_inventory(&record.id, record.inventory.clone());
        self.executor
            .set_identities(&record.id, record.identities.clone());
        self.executor.set_quota(&record.id, record.quotas);
        Ok(())
    }

    fn principal(&self, caller: &Caller) -> Result<Principal, ApiError> {
        caller.principal()
    }

    /// A batch larger than the tenant's burst (twice its rate) can never
    /// pass: 413 naming the largest it may send, not a 429 forever.
    fn check_batch_size(&self, tenant: &TenantId, count: usize) -> Result<(), ApiError> {
        let rate = u64::from(self.tenant(tenant)?.ingest_per_second.max(1));
        let burst = rate * 2;
        if count as u64 > burst {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!(
                    "tenant {tenant} may send at most {burst} alerts in one request ({rate} alerts/s, bursts of twice that); this request has {count}"
                ),
            ));
        }
        Ok(())
    }

    /// Returns `count` tokens taken for a request that was then refused.
    fn give_back_ingest_tokens(&self, tenant: &TenantId, count: usize) {
        let Ok(record) = self.tenant(tenant) else {
            return;
        };
        let burst = f64::from(record.ingest_per_second.max(1)) * 2.0;
        let mut buckets = self
            .ingest_buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((tokens, _)) = buckets.get_mut(tenant) {
            *tokens = (*tokens + count as f64).min(burst);
        }
    }

    /// A token bucket per tenant: `ingest_per_second`, bursts of twice that.
    fn take_ingest_tokens(&self, tenant: &TenantId, count: usize) -> Result<(), ApiError> {
        let rate = f64::from(self.tenant(tenant)?.ingest_per_second.max(1));
        let mut buckets = self
            .ingest_buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        let (tokens, last) = buckets.entry(tenant.clone()).or_insert((rate * 2.0, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate * 2.0);
        *last = now;
        if *tokens < count as f64 {
            let wait = ((count as f64 - *tokens) / rate).ceil().max(1.0);
            return Err(ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                error: "rate_limited".to_owned(),
                detail: format!(
                    "tenant {tenant} may send {rate} alerts/s; retry in about {wait} s"
                ),
                location: None,
                retry_after: Some(wait as u64),
            });
        }
        *tokens -= count as f64;
        Ok(())
    }

    /// Authenticates and authorises a tenant-scoped request.
    fn allow(
        &self,
        caller: &Caller,
        tenant: &str,
        need: Need,
    ) -> Result<(Principal, TenantId), ApiError> {
        let principal = caller.principal()?;
        let tenant = TenantId::new(tenant)
            .map_err(|_| ApiError::not_found(format!("no tenant {tenant}")))?;
        principal.check(Some(&tenant), need)?;
        self.tenant(&tenant)?;
        Ok((principal, tenant))
    }
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
        .route("/v1/tenants/{tenant}/runs/{id}", get(get_run))
        .route("/v1/tenants/{tenant}/runs/{id}/feedback", post(feedback))
        .route("/v1/tenants/{tenant}/approvals", get(list_approvals))
        .route("/v1/tenants/{tenant}/approvals/{id}/approve", post(approve))
        .route("/v1/tenants/{tenant}/approvals/{id}/deny", post(deny))
        .route(
            "/v1/tenants/{tenant}/webhooks/approvals",
            put(put_webhook).get(get_webhook).delete(delete_webhook),
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
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: no extractor of any route runs before the token is checked.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::authenticate,
        ))
        .with_state(state)
}

/// Path parameters, with our error shape when they do not decode (bad
/// percent-encoding, invalid UTF-8): such a path names nothing, so 404.
struct Params<T>(T);

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
struct QueryParams<T>(T);

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
struct Body<T>(T);

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
async fn body_bytes<S: Send + Sync>(
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
fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
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
struct Table {
    bytes: axum::body::Bytes,
    csv: bool,
}

impl Table {
    fn parse<T: serde::de::DeserializeOwned>(
        self,
        from_csv: fn(&str) -> Result<T, crate::context::ContextError>,
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

async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    use std::fmt::Write as _;
    // A `metrics` token (or public metrics) sees totals only, no tenant
    // names; an admin token sees them by tenant.
    let principal = state.principal(&caller);
    if !state.public_metrics {
        match &principal {
            Ok(p) if matches!(p.token.role, Role::Admin | Role::Metrics) => {}
            Ok(_) => {
                return Err(ApiError::forbidden(
                    "metrics need a token of role metrics or admin",
                ));
            }
            Err(err) => return Err(err.clone()),
        }
    }
    let named = principal.is_ok_and(|p| p.token.role == Role::Admin);
    let label = |tenant: &TenantId| {
        if named {
            tenant.to_string()
        } else {
            "all".to_owned()
        }
    };
    // From counters kept as runs change (`executor/tally.rs`): a scrape
    // costs the tenants and statuses, not the runs.
    use crate::executor::tally::{BUCKETS_SECS, Histogram};
    let mut runs_by_status: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut folded: BTreeMap<String, u64> = BTreeMap::new();
    let mut mttd: BTreeMap<String, Histogram> = BTreeMap::new();
    let mut mttc: BTreeMap<String, Histogram> = BTreeMap::new();
    let merge = |into: &mut Histogram, from: &Histogram| {
        for (a, b) in into.buckets.iter_mut().zip(from.buckets) {
            *a += b;
        }
        into.over += from.over;
        into.sum += from.sum;
        into.count += from.count;
    };
    for (tenant, tally) in state.executor.tally() {
        for (status, count) in &tally.runs {
            *runs_by_status
                .entry((label(&tenant), (*status).to_owned()))
                .or_default() += count;
        }
        *folded.entry(label(&tenant)).or_default() += tally.folded;
        if tally.mttd.count > 0 {
            merge(mttd.entry(label(&tenant)).or_default(), &tally.mttd);
        }
        if tally.mttc.count > 0 {
            merge(mttc.entry(label(&tenant)).or_default(), &tally.mttc);
        }
    }
    let pending = state
        .executor
        .approvals()
        .pending(None)
        .map_err(ApiError::internal)?
        .len() as u64;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP rampart_runs Runs by tenant and status.\n# TYPE rampart_runs gauge"
    );
    for ((tenant, status), count) in &runs_by_status {
        let _ = writeln!(
            text,
            "rampart_runs{{tenant=\"{tenant}\",status=\"{status}\"}} {count}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_approvals_pending Approvals waiting.\n# TYPE rampart_approvals_pending gauge\nrampart_approvals_pending {pending}"
    );
    let _ = writeln!(
        text,
        "# HELP rampart_dedup_folded_total Alerts folded into open runs.\n# TYPE rampart_dedup_folded_total counter"
    );
    for (tenant, count) in &folded {
        let _ = writeln!(
            text,
            "rampart_dedup_folded_total{{tenant=\"{tenant}\"}} {count}"
        );
    }
    for (name, help, histograms) in [
        (
            "rampart_mttd_seconds",
            "Alert time to first verdict.",
            &mttd,
        ),
        (
            "rampart_mttc_seconds",
            "Alert time to first containment.",
            &mttc,
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (tenant, histogram) in histograms {
            for (i, bound) in BUCKETS_SECS.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "{name}_bucket{{tenant=\"{tenant}\",le=\"{bound}\"}} {}",
                    histogram.cumulative(i)
                );
            }
            let _ = writeln!(
                text,
                "{name}_bucket{{tenant=\"{tenant}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(text, "{name}_sum{{tenant=\"{tenant}\"}} {}", histogram.sum);
            let _ = writeln!(
                text,
                "{name}_count{{tenant=\"{tenant}\"}} {}",
                histogram.count
            );
        }
    }
    let mut calls: BTreeMap<(String, String, &str), crate::sandbox::CallCounter> = BTreeMap::new();
    let mut latency: BTreeMap<(String, String), crate::sandbox::CallCounter> = BTreeMap::new();
    for (tenant, plugin, outcome, counter) in state.executor.runtime().call_counters() {
        latency
            .entry((label(&tenant), plugin.clone()))
            .or_default()
            .merge(&counter);
        calls
            .entry((label(&tenant), plugin, outcome))
            .or_default()
            .merge(&counter);
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_call_duration_seconds Plugin call latency, every outcome.\n# TYPE rampart_plugin_call_duration_seconds histogram"
    );
    for ((tenant, plugin), counter) in &latency {
        for (count, bound) in counter
            .buckets
            .iter()
            .zip(crate::sandbox::CallCounter::BUCKETS_US)
        {
            let _ = writeln!(
                text,
                "rampart_plugin_call_duration_seconds_bucket{{tenant=\"{tenant}\",plugin=\"{plugin}\",le=\"{}\"}} {count}",
                bound as f64 / 1e6
            );
        }
        let _ = writeln!(
            text,
            "rampart_plugin_call_duration_seconds_bucket{{tenant=\"{tenant}\",plugin=\"{plugin}\",le=\"+Inf\"}} {}\nrampart_plugin_call_duration_seconds_sum{{tenant=\"{tenant}\",plugin=\"{plugin}\"}} {}\nrampart_plugin_call_duration_seconds_count{{tenant=\"{tenant}\",plugin=\"{plugin}\"}} {}",
            counter.calls,
            counter.duration_us as f64 / 1e6,
            counter.calls
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_calls_total Plugin calls by outcome (traps, fuel, deadlines, ... by kind).\n# TYPE rampart_plugin_calls_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_calls_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.calls
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_call_seconds_total Summed plugin call time.\n# TYPE rampart_plugin_call_seconds_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_call_seconds_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.duration_us as f64 / 1e6
        );
    }
    let _ = writeln!(
        text,
        "# HELP rampart_plugin_fuel_total Summed fuel burned.\n# TYPE rampart_plugin_fuel_total counter"
    );
    for ((tenant, plugin, outcome), counter) in &calls {
        let _ = writeln!(
            text,
            "rampart_plugin_fuel_total{{tenant=\"{tenant}\",plugin=\"{plugin}\",outcome=\"{outcome}\"}} {}",
            counter.fuel
        );
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Grants are stored in clear, so they may not carry secrets.
fn reject_secrets(grants: &Grants) -> Result<(), ApiError> {
    if !grants.default.secrets.is_empty() || grants.plugins.values().any(|g| !g.secrets.is_empty())
    {
        return Err(ApiError::bad_request(
            "grants may not carry secrets; use PUT /v1/tenants/{tenant}/plugins/{plugin}/secrets/{name}",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    #[serde(default)]
    grants: Option<Grants>,
    #[serde(default)]
    ingest_per_second: Option<u32>,
    #[serde(default)]
    quotas: Option<TenantQuota>,
}

async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewTenant>,
) -> Result<Response, ApiError> {
    let principal = state.principal(&caller)?;
    principal.check(None, Need::Admin)?;
    if let Some(grants) = &body.grants {
        reject_secrets(grants)?;
    }
    let id = TenantId::new(body.id).map_err(|err| ApiError::bad_request(err.to_string()))?;
    if state.tenants.contains_key(id.as_str()).map_err(sled_err)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("tenant {id} exists"),
        ));
    }
    let record = TenantRecord {
        id: id.clone(),
        grants: body.grants.unwrap_or_default(),
        inventory: AssetInventory::default(),
        identities: IdentityDirectory::default(),
        quotas: body.quotas.unwrap_or_default(),
        approval_webhook: None,
        ingest_per_second: body
            .ingest_per_second
            .unwrap_or_else(default_ingest_rate)
            .max(1),
    };
    state.put_tenant(&record)?;
    state.audit_change(
        &id,
        &principal.token.principal,
        json!({"tenant": "created"}),
    )?;
    Ok((StatusCode::CREATED, Json(json!({"id": id})).into_response()).into_response())
}

async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    state.principal(&caller)?.check(None, Need::Admin)?;
    let ids: Vec<String> = state
        .tenants
        .iter()
        .filter_map(Result::ok)
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();
    Ok(Json(json!({"tenants": ids})))
}

async fn put_grants(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    Body(grants): Body<Grants>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    reject_secrets(&grants)?;
    // Only an admin may open internal address ranges to plugins.
    let private = grants.default.allow_private.len()
        + grants
            .plugins
            .values()
            .map(|g| g.allow_private.len())
            .sum::<usize>();
    if private > 0 && principal.token.role != Role::Admin {
        return Err(ApiError::forbidden(
            "only an admin may grant private address ranges",
        ));
    }
    // Narrowing grants under a loaded plugin would leave a plugin that can
    // no longer load at the next start: refuse, naming what it needs.
    let mut stranded = Vec::new();
    for (name, plugin) in state.uploaded_plugins(&tenant) {
        let granted = &grants.for_plugin(&name).capabilities;
        let missing: Vec<&str> = plugin
            .manifest()
            .capabilities
            .iter()
            .filter(|cap| !granted.contains(cap))
            .map(|cap| cap.name())
            .collect();
        if !missing.is_empty() {
            stranded.push(format!("`{name}` needs {}", missing.join(", ")));
        }
    }
    if !stranded.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "grants_in_use",
            format!(
                "these grants would take capabilities from loaded plugins ({}); grant them or delete the plugins first",
                stranded.join("; ")
            ),
        ));
    }
    let mut record = state.tenant(&tenant)?;
    record.grants = grants;
    state.put_tenant(&record)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"grants": "replaced"}),
    )?;
    Ok(Json(json!({"ok": true})))
}

/// Replaces the asset inventory: JSON `{"assets": [...]}`, or a CSV table
/// with `Content-Type: text/csv`. Every problem is reported; nothing is
/// replaced unless the whole file is good.
async fn put_inventory(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    table: Table,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let inventory = table.parse(AssetInventory::from_csv)?;
    crate::context::check_assets(&inventory).map_err(invalid_table)?;
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

async fn get_inventory(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<AssetInventory>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    Ok(Json(state.tenant(&tenant)?.inventory))
}

/// Replaces the identity directory (JSON `{"identities": [...]}` or CSV).
async fn put_identities(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    table: Table,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
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

async fn get_identities(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<IdentityDirectory>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    Ok(Json(state.tenant(&tenant)?.identities))
}

fn invalid_table(err: crate::context::ContextError) -> ApiError {
    let crate::context::ContextError::Invalid(problems) = &err;
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
struct NewToken {
    principal: String,
    role: Role,
    #[serde(default)]
    ttl_secs: Option<u64>,
}

/// The longest token lifetime: ten years.
pub const MAX_TOKEN_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A token lifetime in ms, refused when 0 or beyond ten years.
fn token_ttl_ms(secs: u64) -> Result<i64, ApiError> {
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

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    Body(body): Body<NewToken>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
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

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, id)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
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
struct SecretValue {
    value: String,
}

async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, plugin, name)): Params<(String, String, String)>,
    Body(body): Body<SecretValue>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
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
    let secret = crate::tenant::Secret::new(body.value);
    let sealed = state
        .secret_box
        .seal(&tenant, &plugin, &name, &secret)
        .map_err(ApiError::internal)?;
    state
        .secrets
        .insert(key(&[tenant.as_str(), &plugin, &name]), sealed)
        .map_err(sled_err)?;
    state.secrets.flush().map_err(sled_err)?;
    let record = state.tenant(&tenant)?;
    state.put_tenant(&record)?;
    // Loaded plugins keep the grant they were loaded with: reload this one.
    if let Some(package) = state
        .packages
        .get(key(&[tenant.as_str(), &plugin]))
        .map_err(sled_err)?
    {
        let package: Value = serde_json::from_slice(&package).map_err(ApiError::internal)?;
        let wasm = base64::engine::general_purpose::STANDARD
            .decode(package["wasm"].as_str().unwrap_or_default())
            .map_err(ApiError::internal)?;
        state
            .load_plugin(
                &tenant,
                package["manifest"].as_str().unwrap_or_default(),
                &wasm,
                true,
            )
            .await?;
    }
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"secret_set": name, "plugin": plugin}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_secrets(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    let names: Vec<Value> = state
        .secrets
        .scan_prefix(&prefix)
        .keys()
        .filter_map(Result::ok)
        .filter_map(|k| {
            let text = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            text.split_once('\u{0}')
                .map(|(plugin, name)| json!({"plugin": plugin, "name": name}))
        })
        .collect();
    Ok(Json(json!({"secrets": names})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Upload {
    manifest: String,
    wasm_base64: String,
}

async fn upload_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    Body(upload): Body<Upload>,
) -> Result<Response, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let wasm = base64::engine::general_purpose::STANDARD
        .decode(upload.wasm_base64.trim())
        .map_err(|err| ApiError::bad_request(format!("wasm_base64: {err}")))?;
    let loaded = state
        .load_plugin(&tenant, &upload.manifest, &wasm, true)
        .await?;
    let name = loaded["name"].as_str().unwrap_or_default().to_owned();
    let package =
        json!({"tenant": tenant, "manifest": upload.manifest, "wasm": upload.wasm_base64.trim()});
    state
        .packages
        .insert(
            key(&[tenant.as_str(), &name]),
            serde_json::to_vec(&package).map_err(ApiError::internal)?,
        )
        .map_err(sled_err)?;
    state.packages.flush().map_err(sled_err)?;
    Ok((StatusCode::CREATED, Json(loaded)).into_response())
}

async fn put_playbook(
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
        .map_err(sled_err)?;
    state
        .playbook_owners
        .insert(key(&[tenant.as_str(), &name]), principal.id().as_bytes())
        .map_err(sled_err)?;
    state
        .executor
        .set_playbook_owner(&tenant, &name, Some(principal.id().to_owned()));
    state.playbooks.flush().map_err(sled_err)?;
    Ok(Json(
        json!({"name": parsed.name, "version": parsed.version, "sha256": parsed.sha256, "steps": parsed.steps.iter().map(|s| &s.id).collect::<Vec<_>>()}),
    ))
}

async fn list_plugins(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let mut list = Vec::new();
    for (_, plugin) in state.uploaded_plugins(&tenant) {
        let manifest = plugin.manifest();
        list.push(json!({"name": manifest.name, "version": manifest.version, "kind": manifest.kind, "sha256": manifest.sha256, "capabilities": manifest.capabilities, "limits": plugin.limits(), "artifact": plugin.artifact_source()}));
    }
    Ok(Json(json!({"plugins": list})))
}

async fn get_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let yaml = state
        .playbooks
        .get(key(&[tenant.as_str(), &name]))
        .map_err(sled_err)?
        .ok_or_else(|| ApiError::not_found(format!("no playbook {name}")))?;
    Ok(([(header::CONTENT_TYPE, "application/yaml")], yaml.to_vec()).into_response())
}

async fn list_playbooks(
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

/// How long a request refused for its tenant's rate is held before the
/// 429 is sent.
pub const REFUSAL_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// The most alerts one request may carry.
pub const MAX_ALERTS_PER_REQUEST: usize = 1_000;

/// A JSON array of raw items, refused past [`MAX_ALERTS_PER_REQUEST`]
/// items while it is scanned (a 16 MiB array of tiny items never becomes
/// millions of entries).
struct RawBatch<'a>(Vec<&'a serde_json::value::RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawBatch<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Items<'a> {
            type Value = RawBatch<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(
                    f,
                    "an alert or an array of at most {MAX_ALERTS_PER_REQUEST} alerts"
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<&'de serde_json::value::RawValue>()? {
                    if items.len() == MAX_ALERTS_PER_REQUEST {
                        return Err(serde::de::Error::custom(format!(
                            "at most {MAX_ALERTS_PER_REQUEST} alerts per request"
                        )));
                    }
                    items.push(item);
                }
                Ok(RawBatch(items))
            }
        }
        deserializer.deserialize_seq(Items(std::marker::PhantomData))
    }
}

/// Whether a raw item is OCSF, read without building it as a tree.
#[derive(Deserialize)]
struct OcsfProbe {
    #[serde(default)]
    class_uid: Option<serde::de::IgnoredAny>,
}

/// One alert (ours or OCSF Detection Finding JSON) or an array of them,
/// parsed straight into typed alerts: the body is never held as a JSON tree
/// (an OCSF item is, one item at a time), so peak memory stays a small
/// multiple of the body.
fn alerts_from(bytes: &[u8]) -> Result<Vec<Alert>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not UTF-8: {err}")))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty; send an alert or an array of alerts",
        ));
    }
    let items: Vec<&serde_json::value::RawValue> = if text.trim_start().starts_with('[') {
        parse_json::<RawBatch<'_>>(bytes)?.0
    } else {
        vec![parse_json::<&serde_json::value::RawValue>(bytes)?]
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let located = |detail: String| ApiError {
                status: StatusCode::BAD_REQUEST,
                error: "invalid_alert".to_owned(),
                detail,
                location: Some(json!({"index": index})),
                retry_after: None,
            };
            let probe: OcsfProbe =
                serde_json::from_str(item.get()).map_err(|err| located(err.to_string()))?;
            let alert = if probe.class_uid.is_some() {
                let doc: Value =
                    serde_json::from_str(item.get()).map_err(|err| located(err.to_string()))?;
                crate::ocsf::alert_from_ocsf(&doc).map_err(|err| located(err.to_string()))?
            } else {
                serde_json::from_str::<Alert>(item.get()).map_err(|err| located(err.to_string()))?
            };
            if alert.id.is_empty() || alert.id.len() > 256 {
                return Err(located("alert id must be 1-256 characters".to_owned()));
            }
            let problems = alert.problems();
            if !problems.is_empty() {
                return Err(located(problems.join("; ")));
            }
            Ok(alert)
        })
        .collect()
}

async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    request: axum::extract::Request,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Ingest)?;
    // The rate is charged before the body is read or parsed: a tenant past
    // its rate costs no parsing. The rest of a batch is charged once its
    // size is known.
    if let Err(refused) = state.take_ingest_tokens(&tenant, 1) {
        // Held for a moment before it is answered (a tarpit): a client that
        // retries at once retries at most about once a second per
        // connection, and connections per address are capped, so a flood
        // past the rate costs the server little CPU and other tenants less.
        tokio::time::sleep(REFUSAL_DELAY).await;
        return Err(refused);
    }
    let bytes = body_bytes(request, &state).await?;
    // Every alert is checked before any is accepted: nothing half-taken.
    // A refused body gives its charge back.
    let alerts = match alerts_from(&bytes).and_then(|alerts| {
        state
            .check_batch_size(&tenant, alerts.len())
            .map(|()| alerts)
    }) {
        Ok(alerts) => alerts,
        Err(err) => {
            state.give_back_ingest_tokens(&tenant, 1);
            return Err(err);
        }
    };
    drop(bytes);
    if alerts.len() > 1 {
        state.take_ingest_tokens(&tenant, alerts.len() - 1)?;
    }
    let mut results = Vec::new();
    for alert in &alerts {
        results.push(json!(state.executor.ingest(&tenant, alert).await?));
    }
    Ok(Json(json!({"results": results})))
}

async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    QueryParams(filter): QueryParams<RunFilter>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let unfiltered = filter.status.is_none()
        && filter.playbook.is_none()
        && filter.alert.is_none()
        && filter.since.is_none()
        && filter.until.is_none();
    // A page costs its size: walked newest first from the cursor by the
    // creation-time index (`executor/listing.rs`), never every run.
    let query = crate::executor::RunQuery {
        status: filter.status,
        playbook: filter.playbook,
        alert: filter.alert,
        since: filter.since,
        until: filter.until,
        before: filter.before,
        limit,
    };
    let page = state
        .executor
        .runs_page(&tenant, &query)
        .map_err(|err| match err {
            crate::executor::ExecutorError::Store(detail) if detail.contains("cursor") => {
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    error: "invalid_query".to_owned(),
                    detail,
                    location: Some(json!({"query": "before"})),
                    retry_after: None,
                }
            }
            other => ApiError::from(other),
        })?;
    let runs: Vec<Value> = page
        .runs
        .iter()
        .map(|r| json!({"id": r.id, "playbook": r.playbook, "status": r.status, "alert": r.alert.id, "created": r.created, "finished": r.finished, "verdict_at": r.verdict_at, "contained_at": r.contained_at}))
        .collect();
    let mut body = json!({"runs": runs, "next": page.next});
    if unfiltered {
        body["total"] = json!(state.executor.run_count(&tenant)?);
    }
    Ok(Json(body))
}

async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, id)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    Ok(Json(json!(state.executor.get_run(&tenant, &id)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackBody {
    label: crate::model::FeedbackLabel,
    #[serde(default)]
    comment: String,
}

async fn feedback(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, id)): Params<(String, String)>,
    Body(body): Body<FeedbackBody>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Decide)?;
    if body.comment.len() > 4_096 {
        return Err(ApiError::bad_request("comment longer than 4096 bytes"));
    }
    let run = state.executor.feedback(
        &tenant,
        &id,
        body.label,
        &principal.token.principal,
        &body.comment,
    )?;
    Ok(Json(json!({"run": run.id, "feedback": run.feedback})))
}

async fn list_approvals(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let pending = state
        .executor
        .approvals()
        .pending(Some(&tenant))
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"approvals": pending})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    reason: String,
}

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Decide)?;
    let approval = state
        .executor
        .approve(&tenant, &id, principal.approver(), &decision.reason)
        .await?;
    Ok(Json(json!(approval)))
}

async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, id)): Params<(String, String)>,
    Body(decision): Body<Decision>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Decide)?;
    let approval = state
        .executor
        .deny(&tenant, &id, principal.approver(), &decision.reason)
        .await?;
    Ok(Json(json!(approval)))
}

async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    // Verifying never writes: a viewer's check must not sign (and so bless)
    // the current head.
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let report = state
        .executor
        .audit()
        .verify(&tenant)
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"ok": report.ok(), "report": report, "checkpoint": state.executor.audit().latest_checkpoint(&tenant).map_err(ApiError::internal)?}),
    ))
}

async fn export_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Response, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let mut out = Vec::new();
    state
        .executor
        .audit()
        .export(&tenant, &mut out)
        .map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

async fn measurements(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let baseline = match query.get("baseline_until") {
        Some(text) => Some(
            text.parse::<i64>()
                .map_err(|_| ApiError::bad_request("baseline_until must be Unix milliseconds"))?,
        ),
        None => None,
    };
    Ok(Json(
        json!({"playbooks": state.executor.measure(&tenant, baseline)?}),
    ))
}

async fn ingest_events(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Ingest)?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("events must be UTF-8 JSON"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the body is empty; send events as a JSON array, an object or JSON lines",
        ));
    }
    let items: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(items)) => items,
        Ok(single @ Value::Object(_)) => vec![single],
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| {
                serde_json::from_str(line).map_err(|err| ApiError {
                    status: StatusCode::BAD_REQUEST,
                    error: "invalid_event".to_owned(),
                    detail: err.to_string(),
                    location: Some(json!({"line": index + 1, "column": err.column()})),
                    retry_after: None,
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if items.len() > 100_000 {
        return Err(ApiError::bad_request("at most 100000 events per request"));
    }
    let now = crate::executor::now_ms();
    let events: Vec<crate::model::Event> = items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            // Our {id, time, data} shape, or a raw telemetry document.
            match serde_json::from_value::<crate::model::Event>(item.clone()) {
                Ok(event) => event,
                Err(_) => crate::model::Event {
                    id: item
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("ev-{now}-{index}"), str::to_owned),
                    time: item.get("time").and_then(Value::as_i64).unwrap_or(now),
                    data: item,
                },
            }
        })
        .collect();
    let stored = state.events.append(&tenant, events, now)?;
    Ok(Json(json!({"stored": stored})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHunt {
    plugin: String,
    schedule: String,
    #[serde(default)]
    params: Value,
}

async fn put_hunt(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
    Body(body): Body<NewHunt>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ApiError::bad_request(
            "hunt names are 1-64 characters of [a-z0-9-]",
        ));
    }
    hunts::parse_schedule(&body.schedule).map_err(|detail| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_schedule".to_owned(),
        detail,
        location: Some(json!({"field": "schedule"})),
        retry_after: None,
    })?;
    match state.executor.plugin(&tenant, &body.plugin) {
        Some(plugin) if plugin.manifest().kind == crate::manifest::PluginKind::Hunt => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "plugin {} is not a hunt",
                body.plugin
            )));
        }
        None => return Err(ApiError::bad_request(format!("no plugin {}", body.plugin))),
    }
    let hunt_key = key(&[tenant.as_str(), &name]);
    // Re-registering keeps the watermark: events are still scanned once.
    let previous: Option<Value> = state
        .hunts
        .get(&hunt_key)
        .map_err(sled_err)?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut record = previous
        .as_ref()
        .and_then(|p| serde_json::from_value::<hunts::HuntRecord>(p["record"].clone()).ok())
        .unwrap_or(hunts::HuntRecord {
            tenant: tenant.clone(),
            name: name.clone(),
            plugin: body.plugin.clone(),
            schedule: body.schedule.clone(),
            params: Value::Null,
            watermark: 0,
            last_run: None,
            last_scanned: 0,
            last_findings: 0,
            last_error: None,
        });
    record.plugin = body.plugin;
    record.schedule = body.schedule;
    record.params = if body.params.is_null() {
        json!({})
    } else {
        body.params
    };
    let registered = previous
        .as_ref()
        .and_then(|p| p["registered"].as_i64())
        .unwrap_or_else(crate::executor::now_ms);
    state
        .hunts
        .insert(
            hunt_key,
            serde_json::to_vec(&json!({"record": record, "registered": registered}))
                .map_err(ApiError::internal)?,
        )
        .map_err(sled_err)?;
    state.hunts.flush().map_err(sled_err)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"hunt": name, "schedule": record.schedule, "plugin": record.plugin}),
    )?;
    Ok(Json(json!(record)))
}

async fn list_hunts(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    let list: Vec<Value> = state
        .hunts
        .scan_prefix(&prefix)
        .values()
        .filter_map(Result::ok)
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| v["record"].clone())
        .collect();
    Ok(Json(json!({"hunts": list})))
}

impl AppState {
    /// Runs hunt `name` of `tenant` now and stores its new watermark.
    async fn fire_hunt(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<(hunts::HuntRecord, Vec<String>), ApiError> {
        let hunt_key = key(&[tenant.as_str(), name]);
        // One run of a hunt at a time (a scheduled and a manual one must not
        // read the same watermark); other hunts go on.
        let lock = self
            .hunt_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(hunt_key.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let stored: Value = self
            .hunts
            .get(&hunt_key)
            .map_err(sled_err)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ApiError::not_found(format!("no hunt {name}")))?;
        let mut record: hunts::HuntRecord =
            serde_json::from_value(stored["record"].clone()).map_err(ApiError::internal)?;
        let now = crate::executor::now_ms();
        let outcome = hunts::run_hunt(&self.executor, &self.events, &mut record, now).await;
        let alerts = match outcome {
            Ok(alerts) => alerts,
            Err(err) => {
                // A failing hunt keeps its watermark (the events are rescanned
                // next time) but records why; it is retried at the next point.
                record.last_run = Some(now);
                record.last_error = Some(err.detail.clone());
                Vec::new()
            }
        };
        self.hunts
            .insert(
                hunt_key,
                serde_json::to_vec(&json!({"record": record, "registered": stored["registered"]}))
                    .map_err(ApiError::internal)?,
            )
            .map_err(sled_err)?;
        self.hunts.flush().map_err(sled_err)?;
        Ok((record, alerts))
    }

    /// Fires every hunt whose schedule point has passed.
    pub async fn run_due_hunts(&self) -> Result<usize, ApiError> {
        let now = crate::executor::now_ms();
        let mut due = Vec::new();
        for entry in self.hunts.iter() {
            let (_, bytes) = entry.map_err(sled_err)?;
            let Ok(stored) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let Ok(record) = serde_json::from_value::<hunts::HuntRecord>(stored["record"].clone())
            else {
                continue;
            };
            if hunts::due(&record, stored["registered"].as_i64().unwrap_or(now), now) {
                due.push((record.tenant, record.name));
            }
        }
        let mut by_tenant: BTreeMap<TenantId, Vec<String>> = BTreeMap::new();
        for (tenant, name) in due {
            by_tenant.entry(tenant).or_default().push(name);
        }
        let mut started = 0;
        for (tenant, names) in by_tenant {
            // A tenant still busy with earlier hunts catches up at a later tick.
            if !self
                .hunting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(tenant.clone())
            {
                continue;
            }
            started += names.len();
            let state = self.clone();
            tokio::spawn(async move {
                for name in names {
                    if let Err(err) = state.fire_hunt(&tenant, &name).await {
                        tracing::warn!(%tenant, hunt = %name, "scheduled hunt failed: {}", err.detail);
                    }
                }
                state
                    .hunting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&tenant);
            });
        }
        Ok(started)
    }
}

async fn run_hunt_now(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let (record, alerts) = state.fire_hunt(&tenant, &name).await?;
    Ok(Json(json!({"hunt": record, "alerts": alerts})))
}

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
                tokio::spawn(async move { state.announce(approval).await });
            }
        })
    };
    // The hunt scheduler: checks every second which hunts are due.
    let scheduler = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(err) = state.run_due_hunts().await {
                    tracing::warn!("hunt scheduler: {}", err.detail);
                }
            }
        })
    };
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
    // Wait until the tasks are gone: they hold the store, whose directory
    // lock must be free when this returns (a restart reopens it).
    let _ = scheduler.await;
    let _ = notifier.await;
    if let Err(err) = executor.audit().checkpoint_all() {
        tracing::error!("signing audit heads at shutdown: {err}");
    }
    let _ = executor.audit().flush();
    Ok(())
}

async fn get_quotas(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let record = state.tenant(&tenant)?;
    Ok(Json(
        json!({"quotas": record.quotas, "ingest_per_second": record.ingest_per_second}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaUpdate {
    #[serde(flatten)]
    quotas: TenantQuota,
    #[serde(default)]
    ingest_per_second: Option<u32>,
}

/// Quotas are the operator's: a tenant may not raise its own.
async fn put_quotas(
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

async fn inspect_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let plugin = state
        .executor
        .plugin(&tenant, &name)
        .ok_or_else(|| ApiError::not_found(format!("no plugin {name}")))?;
    let manifest = plugin.manifest();
    // From the component as loaded: inspecting must not recompile.
    let inspection = json!(plugin.inspection());
    let used_by: Vec<String> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .filter(|p| p.steps.iter().any(|s| s.plugin == name))
        .map(|p| p.name.clone())
        .collect();
    Ok(Json(json!({
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.kind,
        "sha256": manifest.sha256,
        "capabilities": manifest.capabilities,
        "limits": plugin.limits(),
        "artifact": plugin.artifact_source(),
        "component": inspection,
        "used_by": used_by,
    })))
}

async fn delete_plugin(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let plugin_key = key(&[tenant.as_str(), &name]);
    if !state.packages.contains_key(&plugin_key).map_err(sled_err)? {
        return Err(ApiError::not_found(format!("no plugin {name}")));
    }
    // A playbook or hunt that names it would fail at its next run: refuse.
    let mut used_by: Vec<String> = state
        .executor
        .playbooks(&tenant)
        .iter()
        .filter(|p| p.steps.iter().any(|s| s.plugin == name))
        .map(|p| format!("playbook {}", p.name))
        .collect();
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    for hunt in state.hunts.scan_prefix(&prefix).values() {
        let hunt: Value = serde_json::from_slice(&hunt.map_err(sled_err)?).unwrap_or(Value::Null);
        if hunt["record"]["plugin"] == json!(name) {
            used_by.push(format!(
                "hunt {}",
                hunt["record"]["name"].as_str().unwrap_or_default()
            ));
        }
    }
    if !used_by.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_use",
            format!(
                "plugin {name} is used by {}; change those first",
                used_by.join(", ")
            ),
        ));
    }
    state.packages.remove(&plugin_key).map_err(sled_err)?;
    state.packages.flush().map_err(sled_err)?;
    state.executor.unregister(&tenant, &name)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"plugin_deleted": name}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_playbook_enabled(
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
        .map_err(sled_err)?
    {
        return Err(ApiError::not_found(format!("no playbook {name}")));
    }
    if enabled {
        state
            .disabled_playbooks
            .remove(&playbook_key)
            .map_err(sled_err)?;
    } else {
        state
            .disabled_playbooks
            .insert(&playbook_key, &[])
            .map_err(sled_err)?;
    }
    state.disabled_playbooks.flush().map_err(sled_err)?;
    state.executor.set_playbook_enabled(&tenant, name, enabled);
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"playbook": name, "enabled": enabled}),
    )?;
    Ok(Json(json!({"name": name, "enabled": enabled})))
}

async fn enable_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, &caller, &tenant, &name, true).await
}

async fn disable_playbook(
    State(state): State<AppState>,
    caller: Caller,
    Params((tenant, name)): Params<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    set_playbook_enabled(&state, &caller, &tenant, &name, false).await
}

/// Filters of `GET /runs`; times are Unix milliseconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFilter {
    status: Option<crate::executor::run::RunStatus>,
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
struct AuditFilter {
    kind: Option<crate::audit::AuditKind>,
    run: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after_seq: Option<u64>,
    limit: Option<usize>,
}

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

async fn query_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    QueryParams(filter): QueryParams<AuditFilter>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let mut records = Vec::new();
    let mut more = false;
    // From the cursor on: a page costs its size (plus the records its
    // filters skip).
    state
        .executor
        .audit()
        .read_after(&tenant, filter.after_seq.unwrap_or(0), |record, hash| {
            let wanted = filter.kind.is_none_or(|k| k == record.kind)
                && filter
                    .run
                    .as_deref()
                    .is_none_or(|r| record.run_id.as_deref() == Some(r))
                && filter.since.is_none_or(|t| record.time >= t)
                && filter.until.is_none_or(|t| record.time < t)
                && filter.after_seq.is_none_or(|s| record.seq > s);
            if wanted {
                if records.len() == limit {
                    more = true;
                    return false;
                }
                let mut value = json!(record);
                value["hash"] = json!(hash);
                records.push(value);
            }
            true
        })
        .map_err(ApiError::internal)?;
    // `after_seq` of the last record fetches the next page.
    let next = more
        .then(|| records.last().and_then(|r| r["seq"].as_u64()))
        .flatten();
    Ok(Json(json!({"records": records, "next_after_seq": next})))
}

async fn audit_head(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Read)?;
    // Sign the head as it is now, so the answer covers every record.
    let checkpoint = state
        .executor
        .audit()
        .checkpoint(&tenant)
        .map_err(ApiError::internal)?;
    let checkpoint = match checkpoint {
        Some(checkpoint) => Some(checkpoint),
        None => state
            .executor
            .audit()
            .latest_checkpoint(&tenant)
            .map_err(ApiError::internal)?,
    };
    Ok(Json(json!({"head": checkpoint})))
}

const WEBHOOK_SECRET_NAME: &str = "approval-webhook";

impl AppState {
    /// Delivers one approval request to its tenant's webhook, if any.
    async fn announce(&self, approval: crate::executor::approvals::Approval) {
        let tenant = approval.tenant.clone();
        let Ok(record) = self.tenant(&tenant) else {
            return;
        };
        let Some(config) = record.approval_webhook else {
            return;
        };
        let secret = match self.webhook_secrets.get(tenant.as_str()) {
            Ok(Some(sealed)) => {
                match self
                    .secret_box
                    .unseal(&tenant, "_webhook", WEBHOOK_SECRET_NAME, &sealed)
                {
                    Ok(secret) => secret,
                    Err(err) => {
                        tracing::error!(%tenant, "approval webhook secret: {err}");
                        return;
                    }
                }
            }
            _ => return,
        };
        let outcome = match webhooks::deliver(&config, secret.expose().as_bytes(), &approval).await
        {
            Ok(status) if status < 300 => "delivered",
            Ok(status) => {
                tracing::warn!(%tenant, approval = %approval.id, status, "approval webhook refused the delivery");
                "refused"
            }
            Err(err) => {
                tracing::warn!(%tenant, approval = %approval.id, "approval webhook: {err}");
                "failed"
            }
        };
        *self
            .webhook_deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((tenant, outcome))
            .or_default() += 1;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    /// Signing secret (write-only): at least 16 bytes.
    secret: String,
}

async fn put_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
    Body(body): Body<NewWebhook>,
) -> Result<Json<Value>, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let located = |field: &str, detail: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_webhook".to_owned(),
        detail,
        location: Some(json!({"field": field})),
        retry_after: None,
    };
    let (_, host, port, _) =
        webhooks::parse_url(&body.url).map_err(|err| located("url", err.to_string()))?;
    if body.secret.len() < 16 || body.secret.len() > 1_024 {
        return Err(located(
            "secret",
            "the signing secret is 16 to 1024 bytes".to_owned(),
        ));
    }
    // Like private ranges in grants: only an admin may point the server at
    // an internal address (the webhook is a request the server makes).
    // Resolved the way delivery resolves it; a name that does not resolve
    // is refused (delivery could not reach it, and it might later resolve
    // anywhere).
    let addresses = webhooks::resolve(&host, port)
        .await
        .map_err(|err| located("url", err.to_string()))?;
    let internal = addresses.iter().any(|ip| crate::net::is_internal(*ip));
    let is_admin = principal.token.role == Role::Admin;
    if internal && !is_admin {
        return Err(ApiError::forbidden(format!(
            "{host} is an internal address; only an admin may set such a webhook"
        )));
    }
    let sealed = state
        .secret_box
        .seal(
            &tenant,
            "_webhook",
            WEBHOOK_SECRET_NAME,
            &crate::tenant::Secret::new(body.secret),
        )
        .map_err(ApiError::internal)?;
    state
        .webhook_secrets
        .insert(tenant.as_str(), sealed)
        .map_err(sled_err)?;
    state.webhook_secrets.flush().map_err(sled_err)?;
    let mut record = state.tenant(&tenant)?;
    record.approval_webhook = Some(webhooks::WebhookConfig {
        url: body.url.clone(),
        allow_private: internal && is_admin,
    });
    state.put_tenant(&record)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"approval_webhook": body.url}),
    )?;
    Ok(Json(json!({"url": body.url})))
}

async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let record = state.tenant(&tenant)?;
    let deliveries: BTreeMap<&str, u64> = state
        .webhook_deliveries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|((t, _), _)| *t == tenant)
        .map(|((_, outcome), count)| (*outcome, *count))
        .collect();
    match record.approval_webhook {
        Some(config) => Ok(Json(json!({"url": config.url, "deliveries": deliveries}))),
        None => Err(ApiError::not_found("no approval webhook")),
    }
}

async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Params(tenant): Params<String>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = state.allow(&caller, &tenant, Need::Configure)?;
    let mut record = state.tenant(&tenant)?;
    if record.approval_webhook.take().is_none() {
        return Err(ApiError::not_found("no approval webhook"));
    }
    state.put_tenant(&record)?;
    state
        .webhook_secrets
        .remove(tenant.as_str())
        .map_err(sled_err)?;
    state.webhook_secrets.flush().map_err(sled_err)?;
    state.audit_change(
        &tenant,
        &principal.token.principal,
        json!({"approval_webhook": null}),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
