//! Playbooks: stored sealed per tenant and name, with the principal that
//! put each (the requester of the actions it asks approval for) and whether
//! it is enabled; installed into the executor on put and at restore.

use std::sync::Arc;

use super::{ControlError, key};
use crate::audit::seal::{SealKey, SealedTree};
use crate::executor::Executor;
use crate::playbook::Playbook;
use crate::store::{Keyspace, Tree};
use crate::tenant::TenantId;

/// A stored playbook's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlaybook {
    /// The YAML as it was put.
    pub yaml: String,
    /// Who put it (principal id), if recorded.
    pub owner: Option<String>,
    /// Whether alerts trigger it.
    pub enabled: bool,
}

/// The playbooks of every tenant.
#[derive(Clone)]
pub struct Playbooks {
    sources: SealedTree,
    owners: SealedTree,
    disabled: Tree,
    executor: Executor,
}

impl std::fmt::Debug for Playbooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playbooks").finish_non_exhaustive()
    }
}

fn split(k: &[u8]) -> Option<(TenantId, String)> {
    let text = String::from_utf8_lossy(k);
    let (tenant, name) = text.split_once('\u{0}')?;
    Some((TenantId::new(tenant).ok()?, name.to_owned()))
}

impl Playbooks {
    pub(super) fn open(
        space: &Keyspace,
        seal: &SealKey,
        executor: Executor,
    ) -> Result<Self, ControlError> {
        Ok(Playbooks {
            sources: SealedTree::open(space, "api-playbooks", seal)?,
            owners: SealedTree::open(space, "api-playbook-owners", seal)?,
            disabled: space.open_tree("api-playbooks-disabled")?,
            executor,
        })
    }

    /// The sealed trees (for start-up tamper checks).
    pub fn sealed(&self) -> [&SealedTree; 2] {
        [&self.sources, &self.owners]
    }

    /// Validates `yaml` against the tenant's plugins, installs it under
    /// `name` (which must be the playbook's own name) and stores it with
    /// `owner`, the principal id that approvals of its actions may not come
    /// from. Nothing is stored when it does not validate.
    pub fn put(
        &self,
        tenant: &TenantId,
        name: &str,
        yaml: &str,
        owner: &str,
    ) -> Result<Arc<Playbook>, ControlError> {
        let source = format!("playbooks/{name}");
        let checked = self.executor.validate_playbook(tenant, &source, yaml)?;
        if checked.name != name {
            return Err(ControlError::PlaybookName {
                expected: name.to_owned(),
                found: checked.name.clone(),
            });
        }
        let parsed = self.executor.add_playbook(tenant, &source, yaml)?;
        let k = key(&[tenant.as_str(), name]);
        self.sources.insert(&k, yaml.as_bytes())?;
        self.owners.insert(&k, owner.as_bytes())?;
        self.executor
            .set_playbook_owner(tenant, name, Some(owner.to_owned()));
        super::bump_epoch(self.executor.store().space())?;
        self.sources.flush()?;
        Ok(parsed)
    }

    /// The stored playbook `name` of `tenant`.
    pub fn get(&self, tenant: &TenantId, name: &str) -> Result<StoredPlaybook, ControlError> {
        let k = key(&[tenant.as_str(), name]);
        let yaml = self
            .sources
            .get(&k)?
            .ok_or_else(|| ControlError::NoPlaybook(name.to_owned()))?;
        Ok(StoredPlaybook {
            yaml: String::from_utf8_lossy(&yaml).into_owned(),
            owner: self
                .owners
                .get(&k)?
                .map(|o| String::from_utf8_lossy(&o).into_owned()),
            enabled: !self.disabled.contains_key(&k)?,
        })
    }

    /// Enables or disables a stored playbook; `actor` is recorded.
    pub fn set_enabled(
        &self,
        tenant: &TenantId,
        name: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<(), ControlError> {
        let k = key(&[tenant.as_str(), name]);
        if !self.sources.contains_key(&k)? {
            return Err(ControlError::NoPlaybook(name.to_owned()));
        }
        if enabled {
            self.disabled.remove(&k)?;
        } else {
            self.disabled.insert(&k, [])?;
        }
        self.disabled.flush()?;
        self.executor.set_playbook_enabled(tenant, name, enabled);
        super::audit_change(
            &self.executor,
            tenant,
            actor,
            serde_json::json!({"playbook": name, "enabled": enabled}),
        )
    }

    pub(super) fn restore(&self) -> Result<(), ControlError> {
        let mut disabled = std::collections::HashSet::new();
        for entry in self.disabled.iter() {
            let (k, _) = entry?;
            if let Some(named) = split(&k) {
                disabled.insert(named);
            }
        }
        for entry in self.owners.iter() {
            let (k, owner) = entry?;
            if let Some((tenant, name)) = split(&k) {
                self.executor.set_playbook_owner(
                    &tenant,
                    &name,
                    Some(String::from_utf8_lossy(&owner).into_owned()),
                );
            }
        }
        for entry in self.sources.iter() {
            let (k, yaml) = entry?;
            let Some((tenant, name)) = split(&k) else {
                continue;
            };
            self.executor
                .restore_playbook(&tenant, "stored", &String::from_utf8_lossy(&yaml))?;
            // Set both ways: a restore that refreshes a node's copy also
            // carries an enable made through another node.
            let enabled = !disabled.contains(&(tenant.clone(), name.clone()));
            self.executor.set_playbook_enabled(&tenant, &name, enabled);
        }
        Ok(())
    }
}
