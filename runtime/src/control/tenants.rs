//! Tenants: one sealed record each (grants without secrets, inventory,
//! identities, quotas, ingest rate, approval webhook) and the tenant's
//! plugin secrets, sealed apart under the master key.

use serde::{Deserialize, Serialize};

use super::{ControlError, key};
use crate::audit::seal::{SealKey, SealedTree};
use crate::context::{AssetInventory, IdentityDirectory};
use crate::executor::Executor;
use crate::secrets::SecretBox;
use crate::store::{Keyspace, Tree};
use crate::tenant::{Grants, Secret, TenantId, TenantQuota};

/// Alerts per second a tenant may send unless told otherwise.
pub fn default_ingest_rate() -> u32 {
    500
}

/// Where a tenant's approval requests are announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL.
    pub url: String,
    /// May the URL resolve to an internal address (set only by an admin).
    #[serde(default)]
    pub allow_private: bool,
}

/// A tenant as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    /// The tenant.
    pub id: TenantId,
    /// What its plugins may do (secrets are kept apart, never here).
    #[serde(default)]
    pub grants: Grants,
    /// Its assets.
    #[serde(default)]
    pub inventory: AssetInventory,
    /// People (the `context` capability reports them).
    #[serde(default)]
    pub identities: IdentityDirectory,
    /// Alerts per second this tenant may send (burst: twice that).
    #[serde(default = "default_ingest_rate")]
    pub ingest_per_second: u32,
    /// Concurrent runs, fuel per minute, memory per call.
    #[serde(default)]
    pub quotas: TenantQuota,
    /// Where approval requests are announced (its secret is sealed apart).
    #[serde(default)]
    pub approval_webhook: Option<WebhookConfig>,
}

impl TenantRecord {
    /// A tenant with nothing granted and default limits.
    pub fn new(id: TenantId) -> Self {
        TenantRecord {
            id,
            grants: Grants::default(),
            inventory: AssetInventory::default(),
            identities: IdentityDirectory::default(),
            ingest_per_second: default_ingest_rate(),
            quotas: TenantQuota::default(),
            approval_webhook: None,
        }
    }
}

/// What creating a tenant takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// The id: 1-64 characters of `[a-z0-9_-]`.
    pub id: String,
    /// Grants (none if absent).
    #[serde(default)]
    pub grants: Option<Grants>,
    /// Quotas (defaults if absent).
    #[serde(default)]
    pub quotas: Option<TenantQuota>,
    /// Alerts per second (500 if absent).
    #[serde(default)]
    pub ingest_per_second: Option<u32>,
}

/// The tenants and their secrets.
#[derive(Clone)]
pub struct Tenants {
    records: SealedTree,
    secrets: Tree,
    secret_box: std::sync::Arc<SecretBox>,
    executor: Executor,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants").finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(bytes).map_err(|source| ControlError::Decode {
        what: what.to_owned(),
        source,
    })
}

/// Refuses grants that carry secrets (they are set one by one, sealed).
pub(super) fn reject_secrets(grants: &Grants) -> Result<(), ControlError> {
    if !grants.default.secrets.is_empty() || grants.plugins.values().any(|g| !g.secrets.is_empty())
    {
        return Err(ControlError::SecretsInGrants);
    }
    Ok(())
}

impl Tenants {
    pub(super) fn open(
        space: &Keyspace,
        seal: &SealKey,
        secret_box: SecretBox,
        executor: Executor,
    ) -> Result<Self, ControlError> {
        Ok(Tenants {
            records: SealedTree::open(space, "api-tenants", seal)?,
            secrets: space.open_tree("api-secrets")?,
            secret_box: std::sync::Arc::new(secret_box),
            executor,
        })
    }

    /// The master key's box that seals secrets (webhook secrets too).
    pub fn secret_box(&self) -> &SecretBox {
        &self.secret_box
    }

    /// The sealed records (for start-up tamper checks).
    pub fn sealed(&self) -> &SealedTree {
        &self.records
    }

    /// Whether `tenant` exists.
    pub fn exists(&self, tenant: &TenantId) -> Result<bool, ControlError> {
        Ok(self.records.contains_key(tenant.as_str())?)
    }

    /// The stored record of `tenant`.
    pub fn get(&self, tenant: &TenantId) -> Result<TenantRecord, ControlError> {
        let bytes = self
            .records
            .get(tenant.as_str())?
            .ok_or_else(|| ControlError::NoTenant(tenant.clone()))?;
        decode(&format!("tenant {tenant}"), &bytes)
    }

    /// Every tenant id, in order.
    pub fn list(&self) -> Result<Vec<String>, ControlError> {
        let mut ids = Vec::new();
        for entry in self.records.iter() {
            let (k, _) = entry?;
            ids.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(ids)
    }

    /// Creates a tenant; `actor` is recorded in its audit chain.
    pub fn create(&self, new: NewTenant, actor: &str) -> Result<TenantRecord, ControlError> {
        if let Some(grants) = &new.grants {
            reject_secrets(grants)?;
        }
        let id = TenantId::new(new.id)?;
        let mut record = TenantRecord::new(id.clone());
        record.grants = new.grants.unwrap_or_default();
        record.quotas = new.quotas.unwrap_or_default();
        record.ingest_per_second = new
            .ingest_per_second
            .unwrap_or_else(default_ingest_rate)
            .max(1);
        let bytes = serde_json::to_vec(&record).map_err(|source| ControlError::Decode {
            what: format!("tenant {id}"),
            source,
        })?;
        if !self.records.insert_if_absent(id.as_str(), &bytes)? {
            return Err(ControlError::TenantExists(id));
        }
        self.records.flush()?;
        self.apply(&record)?;
        super::audit_change(
            &self.executor,
            &id,
            actor,
            serde_json::json!({"tenant": "created"}),
        )?;
        Ok(record)
    }

    /// Replaces the tenant's grants. Refused when they carry secrets, when
    /// they open private ranges and `may_open_private` is false (only an
    /// admin may), or when they would take a capability from a loaded
    /// plugin (it could not load at the next start).
    pub fn set_grants(
        &self,
        tenant: &TenantId,
        grants: Grants,
        may_open_private: bool,
        actor: &str,
    ) -> Result<(), ControlError> {
        reject_secrets(&grants)?;
        let private = grants.default.allow_private.len()
            + grants
                .plugins
                .values()
                .map(|g| g.allow_private.len())
                .sum::<usize>();
        if private > 0 && !may_open_private {
            return Err(ControlError::PrivateRanges);
        }
        let mut stranded = Vec::new();
        for (name, plugin) in self.executor.current_plugins(tenant) {
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
            return Err(ControlError::GrantsInUse(stranded));
        }
        let mut record = self.get(tenant)?;
        record.grants = grants;
        self.put(&record)?;
        super::audit_change(
            &self.executor,
            tenant,
            actor,
            serde_json::json!({"grants": "replaced"}),
        )
    }

    /// Stores `record` (without secrets) durably and hands it to the
    /// executor.
    pub fn put(&self, record: &TenantRecord) -> Result<(), ControlError> {
        let mut stored = record.clone();
        stored.grants.default.secrets.clear();
        stored
            .grants
            .plugins
            .values_mut()
            .for_each(|g| g.secrets.clear());
        let bytes = serde_json::to_vec(&stored).map_err(|source| ControlError::Decode {
            what: format!("tenant {}", record.id),
            source,
        })?;
        self.records.insert(record.id.as_str(), &bytes)?;
        super::bump_epoch(self.executor.store().space())?;
        self.records.flush()?;
        self.apply(&stored)
    }

    /// Seals and stores a plugin secret, then hands the tenant's grants
    /// (with it) to the executor. A plugin already loaded keeps the grant
    /// it was loaded with until it is loaded again.
    pub fn put_secret(
        &self,
        tenant: &TenantId,
        plugin: &str,
        name: &str,
        secret: &Secret,
    ) -> Result<(), ControlError> {
        let record = self.get(tenant)?;
        let sealed = self.secret_box.seal(tenant, plugin, name, secret)?;
        self.secrets
            .insert(key(&[tenant.as_str(), plugin, name]), sealed)?;
        super::bump_epoch(self.executor.store().space())?;
        self.secrets.flush()?;
        self.apply(&record)
    }

    /// `(plugin, name)` of every secret the tenant has set.
    pub fn secret_names(&self, tenant: &TenantId) -> Result<Vec<(String, String)>, ControlError> {
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut names = Vec::new();
        for entry in self.secrets.scan_prefix(&prefix) {
            let (k, _) = entry?;
            let text = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some((plugin, name)) = text.split_once('\u{0}') {
                names.push((plugin.to_owned(), name.to_owned()));
            }
        }
        Ok(names)
    }

    /// The tenant's grants with its secrets unsealed into the grant of the
    /// plugin each belongs to (in memory only).
    pub fn effective_grants(&self, record: &TenantRecord) -> Result<Grants, ControlError> {
        let mut grants = record.grants.clone();
        let mut prefix = record.id.as_str().as_bytes().to_vec();
        prefix.push(0);
        for entry in self.secrets.scan_prefix(&prefix) {
            let (k, sealed) = entry?;
            let text = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let Some((plugin, name)) = text.split_once('\u{0}') else {
                continue;
            };
            let secret = self.secret_box.unseal(&record.id, plugin, name, &sealed)?;
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

    fn apply(&self, record: &TenantRecord) -> Result<(), ControlError> {
        self.executor
            .set_grants(&record.id, self.effective_grants(record)?);
        self.executor
            .set_inventory(&record.id, record.inventory.clone());
        self.executor
            .set_identities(&record.id, record.identities.clone());
        self.executor.set_quota(&record.id, record.quotas);
        Ok(())
    }

    pub(super) fn restore(&self) -> Result<(), ControlError> {
        for entry in self.records.iter() {
            let (k, bytes) = entry?;
            let record: TenantRecord =
                decode(&format!("tenant {}", String::from_utf8_lossy(&k)), &bytes)?;
            self.apply(&record)?;
        }
        Ok(())
    }
}
