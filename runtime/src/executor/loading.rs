//! What a tenant has loaded: grants, quotas, inventories, plugins (install, restore, unregister) and playbooks (validate, install, the version a run is pinned to).

use super::approvals::Approval;
use super::run::Run;
use super::{
    DEFAULT_RUN_SHARE, Executor, ExecutorError, Loaded, key, plugin_key, read_lock, write_lock,
};
use crate::audit::AuditKind;
use crate::context::{AssetInventory, IdentityDirectory};
use crate::manifest::PluginKind;
use crate::playbook;
use crate::playbook::Playbook;
use crate::sandbox::Plugin;
use crate::tenant::{Grants, TenantId};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Executor {
    /// Sets a tenant's grants (used by later plugin loads).
    pub fn set_grants(&self, tenant: &TenantId, grants: Grants) {
        write_lock(&self.inner.grants).insert(tenant.clone(), grants);
    }

    /// Sets a tenant's quota: concurrent runs here, fuel per minute and
    /// memory per call in the runtime. Runs already holding a slot keep it.
    pub fn set_quota(&self, tenant: &TenantId, quota: crate::tenant::TenantQuota) {
        let mut slots = write_lock(&self.inner.run_slots);
        let share = quota.max_concurrent_runs.map_or(DEFAULT_RUN_SHARE, |max| {
            usize::try_from(max.max(1)).unwrap_or(usize::MAX)
        });
        self.inner.queue.set_share(tenant, share);
        match quota.max_concurrent_runs {
            Some(max) => {
                let permits = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
                slots.insert(
                    tenant.clone(),
                    Arc::new(tokio::sync::Semaphore::new(permits)),
                );
            }
            None => {
                slots.remove(tenant);
            }
        }
        self.inner.runtime.set_quota(tenant, quota);
    }

    /// Sends every new approval request (after it is committed) to `sink`,
    /// e.g. for webhooks. Replaces an earlier sink.
    pub fn notify_approvals(&self, sink: tokio::sync::mpsc::UnboundedSender<Approval>) {
        *write_lock(&self.inner.approval_sink) = Some(sink);
    }

    /// Sends (tenant, run id) of every run that finishes (not dry runs) to
    /// `sink`, after the finished run is saved.
    pub fn notify_finished(&self, sink: tokio::sync::mpsc::UnboundedSender<(TenantId, String)>) {
        *write_lock(&self.inner.finished_sink) = Some(sink);
    }

    /// Enables or disables a playbook: a disabled one starts no runs (runs
    /// already started go on).
    pub fn set_playbook_enabled(&self, tenant: &TenantId, name: &str, enabled: bool) {
        let mut disabled = write_lock(&self.inner.disabled);
        if enabled {
            disabled.remove(&(tenant.clone(), name.to_owned()));
        } else {
            disabled.insert((tenant.clone(), name.to_owned()));
        }
    }

    /// Records who owns a playbook (the principal id that put it): that
    /// principal requests its actions and may not approve them.
    pub fn set_playbook_owner(&self, tenant: &TenantId, name: &str, owner: Option<String>) {
        let mut owners = write_lock(&self.inner.owners);
        match owner {
            Some(owner) => owners.insert((tenant.clone(), name.to_owned()), owner),
            None => owners.remove(&(tenant.clone(), name.to_owned())),
        };
    }

    pub(super) fn playbook_owner(&self, tenant: &TenantId, name: &str) -> Option<String> {
        read_lock(&self.inner.owners)
            .get(&(tenant.clone(), name.to_owned()))
            .cloned()
    }

    /// Whether a playbook may start runs.
    pub fn playbook_enabled(&self, tenant: &TenantId, name: &str) -> bool {
        !read_lock(&self.inner.disabled).contains(&(tenant.clone(), name.to_owned()))
    }

    /// Sets a tenant's asset inventory (guardrails and the `context`
    /// capability see it from the next decision or call on).
    pub fn set_inventory(&self, tenant: &TenantId, inventory: AssetInventory) {
        self.inner.runtime.context().set_assets(tenant, inventory);
    }

    /// Sets a tenant's identity directory (the `context` capability).
    pub fn set_identities(&self, tenant: &TenantId, identities: IdentityDirectory) {
        self.inner
            .runtime
            .context()
            .set_identities(tenant, identities);
    }

    /// Loads a plugin for `tenant` from its manifest; it becomes the
    /// tenant's current version of that name (runs in flight keep theirs).
    pub async fn add_plugin(
        &self,
        tenant: &TenantId,
        manifest: &std::path::Path,
    ) -> Result<Plugin, ExecutorError> {
        let grants = read_lock(&self.inner.grants)
            .get(tenant)
            .cloned()
            .unwrap_or_default();
        let plugin = self
            .inner
            .runtime
            .load_file(tenant, &grants, manifest)
            .await?;
        self.register(tenant, plugin.clone())?;
        Ok(plugin)
    }

    /// Registers an already loaded plugin (a change: audited).
    pub fn register(&self, tenant: &TenantId, plugin: Plugin) -> Result<(), ExecutorError> {
        self.install_plugin(tenant, plugin, true)
    }

    /// Registers a plugin restored at start-up: not a change, so no audit
    /// record (its upload was recorded when it happened).
    pub fn restore_plugin(&self, tenant: &TenantId, plugin: Plugin) -> Result<(), ExecutorError> {
        self.install_plugin(tenant, plugin, false)
    }

    pub(super) fn install_plugin(
        &self,
        tenant: &TenantId,
        plugin: Plugin,
        audited: bool,
    ) -> Result<(), ExecutorError> {
        let digest = plugin.manifest().sha256.clone();
        let name = plugin.manifest().name.clone();
        write_lock(&self.inner.plugins).insert(
            plugin_key(tenant, &name, &digest),
            Loaded {
                plugin,
                digest: digest.clone(),
            },
        );
        write_lock(&self.inner.current).insert((tenant.clone(), name.clone()), digest.clone());
        if audited {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"plugin": name, "sha256": digest}),
            )?;
        }
        Ok(())
    }

    /// Removes the tenant's current plugin called `name`; runs pinned to
    /// its digest keep their copy while the process lives. Returns whether
    /// there was one.
    pub fn unregister(&self, tenant: &TenantId, name: &str) -> Result<bool, ExecutorError> {
        let removed = write_lock(&self.inner.current).remove(&(tenant.clone(), name.to_owned()));
        if let Some(digest) = &removed {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"plugin_removed": name, "sha256": digest}),
            )?;
        }
        Ok(removed.is_some())
    }

    pub(super) fn catalog(&self, tenant: &TenantId) -> BTreeMap<String, PluginKind> {
        let current = read_lock(&self.inner.current);
        let plugins = read_lock(&self.inner.plugins);
        current
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .filter_map(|((_, name), digest)| {
                plugins
                    .get(&plugin_key(tenant, name, digest))
                    .map(|loaded| (name.clone(), loaded.plugin.manifest().kind))
            })
            .collect()
    }

    /// The tenant's current plugins, by name.
    pub fn current_plugins(&self, tenant: &TenantId) -> Vec<(String, Plugin)> {
        let names: Vec<String> = read_lock(&self.inner.current)
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, name)| name.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.plugin(tenant, &name)?)))
            .collect()
    }

    /// The tenant's current plugin called `name`.
    pub fn plugin(&self, tenant: &TenantId, name: &str) -> Option<Plugin> {
        let digest = read_lock(&self.inner.current)
            .get(&(tenant.clone(), name.to_owned()))
            .cloned()?;
        read_lock(&self.inner.plugins)
            .get(&plugin_key(tenant, name, &digest))
            .map(|loaded| loaded.plugin.clone())
    }

    /// Validates a playbook against the tenant's plugins without installing it.
    pub fn validate_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Playbook, ExecutorError> {
        Ok(playbook::parse(source_name, yaml, &self.catalog(tenant))?)
    }

    /// Validates and installs a playbook for `tenant` (replacing one of the
    /// same name; runs in flight keep the version they started with).
    pub fn add_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        self.install_playbook(tenant, source_name, yaml, true)
    }

    /// Installs a playbook restored at start-up: not a change, so no audit
    /// record.
    pub fn restore_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        self.install_playbook(tenant, source_name, yaml, false)
    }

    pub(super) fn install_playbook(
        &self,
        tenant: &TenantId,
        source_name: &str,
        yaml: &str,
        audited: bool,
    ) -> Result<Arc<Playbook>, ExecutorError> {
        let parsed = Arc::new(playbook::parse(source_name, yaml, &self.catalog(tenant))?);
        self.inner
            .sources
            .insert(key(&[tenant.as_str(), &parsed.sha256]), yaml.as_bytes())?;
        write_lock(&self.inner.playbooks)
            .insert((tenant.clone(), parsed.name.clone()), parsed.clone());
        if audited {
            self.inner.audit.append(
                tenant,
                AuditKind::ConfigChanged,
                None,
                None,
                None,
                json!({"playbook": parsed.name, "version": parsed.version, "sha256": parsed.sha256}),
            )?;
        }
        Ok(parsed)
    }

    /// The tenant's current playbooks.
    pub fn playbooks(&self, tenant: &TenantId) -> Vec<Arc<Playbook>> {
        read_lock(&self.inner.playbooks)
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|(_, p)| p.clone())
            .collect()
    }

    pub(super) fn playbook_of(&self, run: &Run) -> Result<Arc<Playbook>, ExecutorError> {
        if let Some(current) =
            read_lock(&self.inner.playbooks).get(&(run.tenant.clone(), run.playbook.clone()))
            && current.sha256 == run.playbook_sha256
        {
            return Ok(current.clone());
        }
        // The playbook changed since the run started: use the run's version.
        let source = self
            .inner
            .sources
            .get(key(&[run.tenant.as_str(), &run.playbook_sha256]))?
            .ok_or_else(|| {
                ExecutorError::PlaybookNotFound(format!(
                    "{} ({})",
                    run.playbook, run.playbook_sha256
                ))
            })?;
        let text = String::from_utf8_lossy(&source).into_owned();
        // Validate against the run's pinned plugins, not today's.
        let plugins = read_lock(&self.inner.plugins);
        let catalog: BTreeMap<String, PluginKind> = run
            .plugins
            .iter()
            .filter_map(|(name, digest)| {
                plugins
                    .get(&plugin_key(&run.tenant, name, digest))
                    .map(|l| (name.clone(), l.plugin.manifest().kind))
            })
            .collect();
        Ok(Arc::new(playbook::parse(&run.playbook, &text, &catalog)?))
    }

    pub(super) fn plugin_for(&self, run: &Run, name: &str) -> Option<Loaded> {
        let digest = run.plugins.get(name)?;
        read_lock(&self.inner.plugins)
            .get(&plugin_key(&run.tenant, name, digest))
            .cloned()
    }
}
