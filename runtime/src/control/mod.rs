//! The control plane as a library: tenants (grants, inventory, identities,
//! quotas, sealed plugin secrets), plugin packages (uploaded, verified,
//! loaded under the tenant's grants) and playbooks (stored, owned, enabled),
//! persisted in the backend's keyspace, sealed against offline edits and
//! restored into the executor at open. Transport-free: the HTTP API
//! (feature `server`) authenticates a caller and calls these;
//! an embedder calls them directly (`examples/embed`).
//!
//! The integrity rules live here, so every caller gets them: grants never
//! carry secrets, never take a capability from a plugin that is loaded, and
//! open internal address ranges only when the caller says it may.

pub mod detections;
pub mod hunts;
mod intake;
mod packages;
mod playbooks;
pub mod principals;
pub mod sinks;
mod tenants;
pub mod webhooks;

pub use detections::{Detections, Mute, RulePerformance};
pub use hunts::{Events, HuntRecord, Hunts, NewHunt, alert_prefix, hunt_finding};
pub use intake::IngestLimits;
pub use packages::Packages;
pub use playbooks::{Playbooks, StoredPlaybook};
pub use sinks::{FindingSinks, SinkConfig, SinkFormat};
pub use tenants::{NewTenant, TenantRecord, Tenants, WebhookConfig, default_ingest_rate};
pub use webhooks::Webhooks;

use crate::audit::seal::SealError;
use crate::executor::{Executor, ExecutorError};
use crate::secrets::SecretBox;
use crate::store::{Keyspace, SpaceError};
use crate::tenant::TenantId;
use std::sync::Arc;

/// Why a control-plane operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A rule id that cannot be muted (empty, over 256 bytes, or with NUL).
    #[error("`{0}` is not a rule id")]
    InvalidRuleId(String),
    /// No such tenant.
    #[error("no tenant {0}")]
    NoTenant(TenantId),
    /// The tenant exists already.
    #[error("tenant {0} exists")]
    TenantExists(TenantId),
    /// The tenant id is not acceptable.
    #[error(transparent)]
    InvalidTenantId(#[from] crate::tenant::TenantError),
    /// Grants may not carry secrets (they are set one by one and sealed).
    #[error(
        "grants may not carry secrets; use PUT /v1/tenants/{{tenant}}/plugins/{{plugin}}/secrets/{{name}}"
    )]
    SecretsInGrants,
    /// Only an admin may open internal address ranges to plugins.
    #[error("only an admin may grant private address ranges")]
    PrivateRanges,
    /// The grants would take capabilities from loaded plugins.
    #[error(
        "these grants would take capabilities from loaded plugins ({}); grant them or delete the plugins first",
        .0.join("; ")
    )]
    GrantsInUse(Vec<String>),
    /// The playbook's own name differs from the name it is stored under.
    #[error("the playbook is named `{found}`, not `{expected}`")]
    PlaybookName {
        /// The name asked for.
        expected: String,
        /// The name in the YAML.
        found: String,
    },
    /// The plugin manifest is not acceptable.
    #[error(transparent)]
    InvalidManifest(#[from] crate::manifest::ManifestError),
    /// The component was refused at load (digest, imports, WIT version, ...).
    #[error(transparent)]
    PluginRefused(#[from] crate::sandbox::LoadError),
    /// No such uploaded plugin.
    #[error("no plugin {0}")]
    NoPlugin(String),
    /// A playbook or hunt uses the plugin.
    #[error("plugin {plugin} is used by {}; change those first", .users.join(", "))]
    PluginInUse {
        /// The plugin.
        plugin: String,
        /// `playbook <name>` or `hunt <name>`, each.
        users: Vec<String>,
    },
    /// A stored record is unreadable.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    /// No such playbook.
    #[error("no playbook {0}")]
    NoPlaybook(String),
    /// A stored entry was changed outside rampart.
    #[error(transparent)]
    Sealed(#[from] SealError),
    /// The executor refused (an invalid playbook, an unknown plugin, ...).
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A stored secret does not unseal.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// The storage backend failed.
    #[error(transparent)]
    Storage(#[from] SpaceError),
    /// A hunt name is not acceptable.
    #[error("hunt names are 1-64 characters of [a-z0-9-]")]
    HuntName,
    /// A hunt schedule does not parse.
    #[error("{0}")]
    Schedule(String),
    /// The plugin named for a hunt is not a hunt.
    #[error("plugin {0} is not a hunt")]
    NotAHunt(String),
    /// The plugin named for a hunt is not loaded for the tenant.
    #[error("no plugin {0}")]
    NoHuntPlugin(String),
    /// No such hunt.
    #[error("no hunt {0}")]
    NoHunt(String),
    /// A hunt's session failed.
    #[error("hunt {hunt}: {source}")]
    HuntFailed {
        /// The hunt.
        hunt: String,
        /// What the plugin call said.
        #[source]
        source: crate::sandbox::PluginError,
    },
    /// The tenant is past its ingest rate.
    #[error("tenant {tenant} may send {rate} alerts/s; retry in about {retry_after_s} s")]
    RateLimited {
        /// The tenant.
        tenant: TenantId,
        /// Its rate, alerts a second.
        rate: u32,
        /// When a retry may pass, seconds.
        retry_after_s: u64,
    },
    /// A batch larger than the tenant's burst: it could never pass.
    #[error(
        "tenant {tenant} may send at most {burst} alerts in one request ({rate} alerts/s, bursts of twice that); this request has {count}"
    )]
    BatchTooLarge {
        /// The tenant.
        tenant: TenantId,
        /// Its rate, alerts a second.
        rate: u64,
        /// The most one request may carry.
        burst: u64,
        /// What this one carried.
        count: usize,
    },
    /// A webhook setting is not acceptable.
    #[error("{source}")]
    Webhook {
        /// Which field (`url`, `secret`).
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: webhooks::WebhookError,
    },
    /// The webhook host is internal and the caller may not point the
    /// server there.
    #[error("{0} is an internal address; only an admin may set such a webhook")]
    WebhookInternal(String),
    /// The tenant has no approval webhook.
    #[error("no approval webhook")]
    NoWebhook,
    /// A stored record does not decode.
    #[error("stored {what} does not decode: {source}")]
    Decode {
        /// Which record.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Tenants, packages, playbooks and hunts over one executor.
#[derive(Clone, Debug)]
pub struct Control {
    executor: Executor,
    tenants: Tenants,
    packages: Packages,
    playbooks: Playbooks,
    hunts: Hunts,
    detections: Detections,
    sinks: FindingSinks,
    webhooks: Webhooks,
    ingest: IngestLimits,
    tokens: principals::Tokens,
    /// The control epoch this node's copy was restored at.
    seen: Arc<std::sync::atomic::AtomicU64>,
    /// One refresh at a time.
    syncing: Arc<tokio::sync::Mutex<()>>,
}

/// Where the control epoch is kept: a counter every change of control
/// state moves, so that nodes sharing the store see that their copy
/// (tenants, grants, plugins, playbooks, sinks) is stale.
const EPOCH_TREE: &str = "control-epoch";
const EPOCH_KEY: &[u8] = b"epoch";

fn decode_epoch(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Moves the control epoch (before the change's flush, so both are durable
/// together).
pub(crate) fn bump_epoch(space: &Keyspace) -> Result<(), ControlError> {
    space
        .open_tree(EPOCH_TREE)?
        .update_and_fetch(EPOCH_KEY, |current| {
            Some((decode_epoch(current) + 1).to_be_bytes().to_vec())
        })?;
    Ok(())
}

fn read_epoch(space: &Keyspace) -> Result<u64, ControlError> {
    Ok(decode_epoch(
        space.open_tree(EPOCH_TREE)?.get(EPOCH_KEY)?.as_deref(),
    ))
}

impl Control {
    /// Opens the control state in the executor's keyspace. Nothing is
    /// restored yet: [`Control::restore`] does it all; an embedder that adds
    /// its own plugins calls [`Control::restore_tenants`] before them (they
    /// load under the tenant's grants) and [`Control::restore_playbooks`]
    /// after.
    pub fn open(executor: Executor, secret_box: SecretBox) -> Result<Self, ControlError> {
        let space = executor.store().space().clone();
        let seal = executor.seal_key().clone();
        let tenants = Tenants::open(&space, &seal, secret_box, executor.clone())?;
        let sinks = FindingSinks::open(&space, executor.clone(), tenants.clone())?;
        Ok(Control {
            packages: Packages::open(&space, &seal, executor.clone(), tenants.clone())?,
            playbooks: Playbooks::open(&space, &seal, executor.clone())?,
            hunts: Hunts::open(&space, executor.clone(), sinks.clone())?,
            sinks,
            detections: Detections::open(&space, executor.clone())?,
            webhooks: Webhooks::open(&space, executor.clone(), tenants.clone())?,
            ingest: IngestLimits::new(tenants.clone()),
            tokens: principals::Tokens::open(&space, &seal)?,
            tenants,
            executor,
            seen: Arc::default(),
            syncing: Arc::default(),
        })
    }

    /// Restores tenants, then their uploaded plugins, then playbooks.
    pub async fn restore(&self) -> Result<(), ControlError> {
        let space = self.executor.store().space().clone();
        // Read first: a change made while restoring moves it again.
        let epoch = read_epoch(&space)?;
        self.tenants.restore()?;
        self.packages.restore().await?;
        self.playbooks.restore()?;
        self.sinks.restore()?;
        self.seen.store(epoch, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Brings this node's copy of the control state up to date when another
    /// node sharing the store changed it (the control epoch moved): restores
    /// it all again. One store read when nothing changed. Whether it
    /// restored.
    ///
    /// What a restore does not undo: a plugin deleted or a playbook removed
    /// through another node stays loaded here until this node restarts (a
    /// playbook disabled there is disabled here).
    pub async fn sync(&self) -> Result<bool, ControlError> {
        use std::sync::atomic::Ordering;
        let space = self.executor.store().space().clone();
        if read_epoch(&space)? == self.seen.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let _one = self.syncing.lock().await;
        if read_epoch(&space)? == self.seen.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.restore().await?;
        Ok(true)
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// Tenants.
    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// Uploaded plugin packages.
    pub fn packages(&self) -> &Packages {
        &self.packages
    }

    /// Playbooks.
    pub fn playbooks(&self) -> &Playbooks {
        &self.playbooks
    }

    /// Scheduled hunts and the events they scan.
    pub fn hunts(&self) -> &Hunts {
        &self.hunts
    }

    /// Per-rule detection performance and mutes.
    pub fn detections(&self) -> &Detections {
        &self.detections
    }

    /// The tenants' findings sinks (OCSF pushed to a SIEM).
    pub fn sinks(&self) -> &FindingSinks {
        &self.sinks
    }

    /// Approval webhooks.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    /// Each tenant's ingest rate.
    pub fn ingest(&self) -> &IngestLimits {
        &self.ingest
    }

    /// Principals and their tokens.
    pub fn tokens(&self) -> &principals::Tokens {
        &self.tokens
    }

    /// Hands every stored tenant's grants, inventory, identities and quotas
    /// to the executor.
    pub fn restore_tenants(&self) -> Result<(), ControlError> {
        self.tenants.restore()
    }

    /// Installs every stored playbook with its owner and enabled state.
    pub fn restore_playbooks(&self) -> Result<(), ControlError> {
        self.playbooks.restore()
    }

    /// Records a configuration change by `actor` in the tenant's chain.
    pub fn audit_change(
        &self,
        tenant: &TenantId,
        actor: &str,
        detail: serde_json::Value,
    ) -> Result<(), ControlError> {
        audit_change(&self.executor, tenant, actor, detail)
    }
}

fn audit_change(
    executor: &Executor,
    tenant: &TenantId,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), ControlError> {
    bump_epoch(executor.store().space())?;
    executor
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
        .map_err(ControlError::Audit)
}

fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\u{0}").into_bytes()
}
