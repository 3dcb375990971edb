//! AppState: opening and restoring state, authorisation, tenants, plugins and playbooks as the handlers use them.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::auth::{Need, Principal, Tokens};
use crate::error::ApiError;
use crate::gate::Caller;
use crate::{AppState, guard, storage_err};
use rampart::control::{TenantRecord, default_ingest_rate};
use rampart::executor::Executor;
use rampart::tenant::TenantId;

impl AppState {
    /// State over an executor; restores tenants, plugins and playbooks.
    /// Secrets are sealed with `secret_box` (the master key).
    pub async fn open(
        executor: Executor,
        secret_box: rampart::secrets::SecretBox,
    ) -> Result<Self, ApiError> {
        Self::open_with(executor, secret_box, None).await
    }

    /// [`AppState::open`], first applying a validated config file: it is
    /// authoritative for the tenants it names.
    pub async fn open_with(
        executor: Executor,
        secret_box: rampart::secrets::SecretBox,
        config: Option<&rampart::config::ServerConfig>,
    ) -> Result<Self, ApiError> {
        let control = rampart::control::Control::open(executor.clone(), secret_box)?;
        let state = AppState {
            tokens: control.tokens().clone(),
            control,
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
    pub(crate) fn audit_change(
        &self,
        tenant: &TenantId,
        actor: &str,
        detail: Value,
    ) -> Result<(), ApiError> {
        Ok(self.control.audit_change(tenant, actor, detail)?)
    }

    /// The control plane (tenants, playbooks).
    pub fn control(&self) -> &rampart::control::Control {
        &self.control
    }

    /// Writes the config file's tenants (before restore loads anything, so
    /// plugins load under the file's grants).
    pub(crate) fn apply_config(
        &self,
        config: &rampart::config::ServerConfig,
    ) -> Result<(), ApiError> {
        for declared in &config.tenants {
            let existing = self.tenant(&declared.id).ok();
            let mut record = existing
                .clone()
                .unwrap_or_else(|| TenantRecord::new(declared.id.clone()));
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
            self.control.tenants().put(&record)?;
            self.audit_change(
                &record.id,
                "config-file",
                json!({"tenant": if existing.is_some() { "updated" } else { "created" }, "quotas": record.quotas, "ingest_per_second": record.ingest_per_second, "assets": record.inventory.assets.len()}),
            )?;
        }
        Ok(())
    }

    /// Refuses to start when any sealed entry was changed outside rampart,
    /// naming every one.
    pub(crate) fn refuse_tampered_state(&self) -> Result<(), ApiError> {
        let mut changed = Vec::new();
        let named = |tree: &str, keys: Vec<String>| {
            keys.into_iter()
                .map(|key| format!("{tree} entry {key}"))
                .collect::<Vec<_>>()
        };
        changed.extend(named(
            "tokens",
            self.tokens.tampered().map_err(storage_err)?,
        ));
        let [playbooks, owners] = self.control.playbooks().sealed();
        for tree in [
            self.control.tenants().sealed(),
            self.control.packages().sealed(),
            playbooks,
            owners,
        ] {
            changed.extend(named(tree.name(), tree.tampered().map_err(storage_err)?));
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

    /// On a node of a cluster: this node's copy of the control state
    /// (playbooks, plugins, grants) brought up to date with changes made
    /// through other nodes, before an alert is matched against it. One
    /// store read when nothing changed; nothing on a server of its own.
    pub(crate) async fn up_to_date(&self) -> Result<(), ApiError> {
        if self.executor.leases().is_some() {
            self.control.sync().await?;
        }
        Ok(())
    }

    pub(crate) async fn restore(&self) -> Result<(), ApiError> {
        self.control.restore().await?;
        self.executor.resume().await?;
        Ok(())
    }

    pub(crate) fn tenant(&self, tenant: &TenantId) -> Result<TenantRecord, ApiError> {
        Ok(self.control.tenants().get(tenant)?)
    }

    /// The tenant's uploaded plugins that are loaded, by name.
    pub(crate) fn uploaded_plugins(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(String, rampart::Plugin)>, ApiError> {
        Ok(self.control.packages().list(tenant)?)
    }

    pub(crate) fn put_tenant(&self, record: &TenantRecord) -> Result<(), ApiError> {
        Ok(self.control.tenants().put(record)?)
    }

    pub(crate) fn principal(&self, caller: &Caller) -> Result<Principal, ApiError> {
        caller.principal()
    }

    /// Authenticates and authorises a tenant-scoped request.
    pub(crate) fn allow(
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
