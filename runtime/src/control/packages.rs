//! Plugin packages a tenant uploaded: the manifest and the component,
//! sealed, loaded under the tenant's grants (secrets included) and loaded
//! again at restore. A package that a playbook or hunt uses is not deleted.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{ControlError, Tenants, key};
use crate::Plugin;
use crate::audit::seal::{SealKey, SealedTree};
use crate::executor::Executor;
use crate::store::{Keyspace, Tree};
use crate::tenant::TenantId;

/// A package as stored.
#[derive(Serialize, Deserialize)]
struct Package {
    tenant: TenantId,
    manifest: String,
    /// The component, base64.
    wasm: String,
}

/// The uploaded plugins of every tenant.
#[derive(Clone)]
pub struct Packages {
    packages: SealedTree,
    /// Hunt definitions (kept by the hunt scheduler): read here so that a
    /// plugin a hunt uses is not deleted.
    hunts: Tree,
    executor: Executor,
    tenants: Tenants,
}

impl std::fmt::Debug for Packages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packages").finish_non_exhaustive()
    }
}

impl Packages {
    pub(super) fn open(
        space: &Keyspace,
        seal: &SealKey,
        executor: Executor,
        tenants: Tenants,
    ) -> Result<Self, ControlError> {
        Ok(Packages {
            packages: SealedTree::open(space, "api-plugin-packages", seal)?,
            hunts: space.open_tree(super::hunts::TREE)?,
            executor,
            tenants,
        })
    }

    /// The sealed tree (for start-up tamper checks).
    pub fn sealed(&self) -> &SealedTree {
        &self.packages
    }

    /// Verifies `wasm` against `manifest`, loads it under the tenant's
    /// grants, makes it the tenant's current plugin of that name (audited)
    /// and stores the package. Nothing is stored when it does not load.
    pub async fn upload(
        &self,
        tenant: &TenantId,
        manifest: &str,
        wasm: &[u8],
    ) -> Result<Plugin, ControlError> {
        let plugin = self.load(tenant, manifest, wasm, true).await?;
        let package = Package {
            tenant: tenant.clone(),
            manifest: manifest.to_owned(),
            wasm: base64::engine::general_purpose::STANDARD.encode(wasm),
        };
        let bytes = serde_json::to_vec(&package).map_err(|source| ControlError::Decode {
            what: format!("package {}", plugin.manifest().name),
            source,
        })?;
        self.packages
            .insert(key(&[tenant.as_str(), &plugin.manifest().name]), bytes)?;
        super::bump_epoch(self.executor.store().space())?;
        self.packages.flush()?;
        Ok(plugin)
    }

    async fn load(
        &self,
        tenant: &TenantId,
        manifest: &str,
        wasm: &[u8],
        audited: bool,
    ) -> Result<Plugin, ControlError> {
        let locked = crate::manifest::parse("manifest", manifest)?;
        let grants = self.tenants.effective_grants(&self.tenants.get(tenant)?)?;
        let plugin = self
            .executor
            .runtime()
            .load(tenant, &grants, locked, wasm)
            .await?;
        if audited {
            self.executor.register(tenant, plugin.clone())?;
        } else {
            self.executor.restore_plugin(tenant, plugin.clone())?;
        }
        Ok(plugin)
    }

    fn stored(&self, k: &[u8]) -> Result<Option<Package>, ControlError> {
        let Some(bytes) = self.packages.get(k)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ControlError::Decode {
                what: format!("package {}", String::from_utf8_lossy(k)),
                source,
            })
    }

    fn wasm(package: &Package) -> Result<Vec<u8>, ControlError> {
        base64::engine::general_purpose::STANDARD
            .decode(&package.wasm)
            .map_err(|err| ControlError::Corrupt(format!("package of {}: {err}", package.tenant)))
    }

    /// Loads the tenant's package `name` again (audited), so it runs with
    /// the grants (and secrets) the tenant has now. `false` when the tenant
    /// has no such package.
    pub async fn reload(&self, tenant: &TenantId, name: &str) -> Result<bool, ControlError> {
        let Some(package) = self.stored(&key(&[tenant.as_str(), name]))? else {
            return Ok(false);
        };
        self.load(tenant, &package.manifest, &Self::wasm(&package)?, true)
            .await?;
        Ok(true)
    }

    /// The tenant's uploaded plugins that are loaded, by name.
    pub fn list(&self, tenant: &TenantId) -> Result<Vec<(String, Plugin)>, ControlError> {
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.packages.scan_prefix(&prefix) {
            let (k, _) = entry?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some(plugin) = self.executor.plugin(tenant, &name) {
                out.push((name, plugin));
            }
        }
        Ok(out)
    }

    /// The playbooks (`playbook <name>`) and hunts (`hunt <name>`) of the
    /// tenant that use plugin `name`.
    pub fn users(&self, tenant: &TenantId, name: &str) -> Result<Vec<String>, ControlError> {
        let mut users: Vec<String> = self
            .executor
            .playbooks(tenant)
            .iter()
            .filter(|p| p.steps.iter().any(|s| s.plugin == name))
            .map(|p| format!("playbook {}", p.name))
            .collect();
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        for hunt in self.hunts.scan_prefix(&prefix).values() {
            let hunt: serde_json::Value =
                serde_json::from_slice(&hunt?).unwrap_or(serde_json::Value::Null);
            if hunt["record"]["plugin"] == serde_json::json!(name) {
                users.push(format!(
                    "hunt {}",
                    hunt["record"]["name"].as_str().unwrap_or_default()
                ));
            }
        }
        Ok(users)
    }

    /// Deletes the tenant's package `name` and unloads it; refused while a
    /// playbook or hunt uses it (it would fail at its next run).
    pub fn delete(&self, tenant: &TenantId, name: &str, actor: &str) -> Result<(), ControlError> {
        let k = key(&[tenant.as_str(), name]);
        if !self.packages.contains_key(&k)? {
            return Err(ControlError::NoPlugin(name.to_owned()));
        }
        let users = self.users(tenant, name)?;
        if !users.is_empty() {
            return Err(ControlError::PluginInUse {
                plugin: name.to_owned(),
                users,
            });
        }
        self.packages.remove(&k)?;
        self.packages.flush()?;
        self.executor.unregister(tenant, name)?;
        super::audit_change(
            &self.executor,
            tenant,
            actor,
            serde_json::json!({"plugin_deleted": name}),
        )
    }

    /// Loads every stored package (not audited again).
    pub(super) async fn restore(&self) -> Result<(), ControlError> {
        let mut stored = Vec::new();
        for entry in self.packages.iter() {
            let (k, _) = entry?;
            if let Some(package) = self.stored(&k)? {
                stored.push(package);
            }
        }
        for package in stored {
            let wasm = Self::wasm(&package)?;
            self.load(&package.tenant, &package.manifest, &wasm, false)
                .await?;
        }
        Ok(())
    }
}
