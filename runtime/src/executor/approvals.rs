//! Approvals: a human's go-ahead for one action, bound to exactly that
//! action.
//!
//! An approval names the run, the step, the target, a hash of the params and
//! the plugin digest; executing anything else needs a new approval. Quorum
//! counts distinct principals. Approve and deny carry a reason. It fails
//! closed: after its timeout it is denied (also when the timeout passed while
//! the process was down — [`Approvals::expire_due`] runs at start), and an
//! approve after expiry is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Entity;
use crate::tenant::TenantId;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for approvers.
    Pending,
    /// Quorum reached.
    Approved,
    /// Someone denied it.
    Denied,
    /// The timeout passed: denied.
    Expired,
}

/// Who casts a vote: a principal with a stable id (two tokens of one
/// principal are one voter), its display name, and when it was created
/// (a principal created after an approval was requested cannot count
/// toward that approval's quorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// Stable principal id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When the principal was created, Unix ms.
    pub created: i64,
}

impl From<&str> for Approver {
    /// An embedder's approver known by name only: the name is its id and it
    /// has always existed.
    fn from(name: &str) -> Self {
        Approver {
            id: name.to_owned(),
            name: name.to_owned(),
            created: i64::MIN,
        }
    }
}

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who (display name).
    pub principal: String,
    /// The principal's stable id (the name, for records written before ids).
    #[serde(default)]
    pub principal_id: String,
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub time: i64,
}

impl Vote {
    fn voter_id(&self) -> &str {
        if self.principal_id.is_empty() {
            &self.principal
        } else {
            &self.principal_id
        }
    }
}

/// A pending or decided approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant: TenantId,
    /// Run.
    pub run_id: String,
    /// Step.
    pub step_id: String,
    /// The action kind.
    pub action: String,
    /// The target.
    pub target: Entity,
    /// sha256 of the canonical params JSON.
    pub params_hash: String,
    /// The plugin digest that will run.
    pub plugin_digest: String,
    /// Why it needs a human (the guardrail reasons).
    pub reasons: Vec<String>,
    /// Distinct approvers needed.
    pub required: u32,
    /// Approvals so far.
    pub approvals: Vec<Vote>,
    /// The denial, if any.
    pub denial: Option<Vote>,
    /// Status.
    pub status: ApprovalStatus,
    /// Created, Unix ms.
    pub created: i64,
    /// Expires (denied) at, Unix ms.
    pub expires: i64,
    /// The principal id on whose behalf the action was requested (a
    /// supervised playbook's owner): it may not approve its own request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Why an approval operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval (for this tenant).
    #[error("no approval {0}")]
    NotFound(String),
    /// Already decided (by a concurrent or earlier decision).
    #[error("approval {id} is already {}{}", status_name(*status), decided_by(by))]
    Decided {
        /// Id.
        id: String,
        /// Its status.
        status: ApprovalStatus,
        /// Who decided it (the approvers, or the denier; none on expiry).
        by: Vec<String>,
    },
    /// The requester of the action may not approve it.
    #[error("{principal} requested this action and may not approve it")]
    Requester {
        /// Who.
        principal: String,
    },
    /// The principal was created after the approval was requested.
    #[error(
        "{principal} was created after approval {id} was requested and cannot count toward its quorum"
    )]
    TooNew {
        /// Id.
        id: String,
        /// Who.
        principal: String,
    },
    /// The timeout passed; it is denied.
    #[error("approval {0} expired and is denied; the action needs a new approval")]
    Expired(String),
    /// The same principal approved already.
    #[error("{principal} already approved {id}; quorum needs distinct approvers")]
    DuplicateApprover {
        /// Id.
        id: String,
        /// Who.
        principal: String,
    },
    /// A reason is required.
    #[error("a reason is required")]
    NoReason,
    /// The store failed.
    #[error("approval store: {0}")]
    Store(String),
}

fn status_name(status: ApprovalStatus) -> &'static str {
    match status {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
        ApprovalStatus::Expired => "expired",
    }
}

fn decided_by(by: &[String]) -> String {
    if by.is_empty() {
        String::new()
    } else {
        format!(" (by {})", by.join(", "))
    }
}

/// Hash of params as bound into an approval.
pub fn params_hash(params: &serde_json::Value) -> String {
    // serde_json's map is ordered (BTreeMap) unless preserve_order is on,
    // so to_string is canonical here.
    hex::encode(Sha256::digest(params.to_string().as_bytes()))
}

impl Approval {
    /// Whether this approval covers exactly this action.
    pub fn covers(
        &self,
        run_id: &str,
        step_id: &str,
        target: &Entity,
        params_hash: &str,
        plugin_digest: &str,
    ) -> Result<(), String> {
        let mut differences = Vec::new();
        if self.run_id != run_id || self.step_id != step_id {
            differences.push(format!("it is for {}/{}", self.run_id, self.step_id));
        }
        if &self.target != target {
            differences.push(format!(
                "it approves target {:?} {}, not {:?} {}",
                self.target.kind, self.target.value, target.kind, target.value
            ));
        }
        if self.params_hash != params_hash {
            differences.push("the parameters changed".to_owned());
        }
        if self.plugin_digest != plugin_digest {
            differences.push("the plugin changed".to_owned());
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences.join("; "))
        }
    }
}

/// Approvals on a sled tree.
#[derive(Clone, Debug)]
pub struct Approvals {
    tree: crate::store::Tree,
    /// `tenant\0id` of every pending approval: the inbox and the pending
    /// gauge read this, not the whole history. Written before the approval
    /// and cleared after its decision, so a crash leaves at most a stale
    /// entry, which readers skip.
    pending: crate::store::Tree,
}

fn pending_key(tenant: &TenantId, id: &str) -> Vec<u8> {
    let mut key = tenant.as_str().as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(id.as_bytes());
    key
}

fn store_err(err: impl std::fmt::Display) -> ApprovalError {
    ApprovalError::Store(err.to_string())
}

impl Approvals {
    /// Approvals in `db`.
    pub fn open(db: &crate::store::Keyspace) -> Result<Self, ApprovalError> {
        let approvals = Approvals {
            tree: db.open_tree("approvals").map_err(store_err)?,
            pending: db.open_tree("approvals-pending").map_err(store_err)?,
        };
        // A data directory from before the index: index it once.
        const INDEXED: &[u8] = b"\x00indexed";
        if approvals.pending.get(INDEXED).map_err(store_err)?.is_none() {
            for approval in approvals.list(None, true)? {
                approvals
                    .pending
                    .insert(pending_key(&approval.tenant, &approval.id), [])
                    .map_err(store_err)?;
            }
            approvals.pending.insert(INDEXED, []).map_err(store_err)?;
        }
        Ok(approvals)
    }

    /// The pending approvals of `tenant` (all tenants: `None`), oldest first,
    /// read from the pending index.
    pub fn pending(&self, tenant: Option<&TenantId>) -> Result<Vec<Approval>, ApprovalError> {
        let prefix = tenant.map(|t| pending_key(t, "")).unwrap_or_default();
        let mut out = Vec::new();
        for entry in self.pending.scan_prefix(prefix) {
            let (key, _) = entry.map_err(store_err)?;
            let Some(split) = key.iter().position(|b| *b == 0).filter(|at| *at > 0) else {
                continue;
            };
            let Some(bytes) = self.tree.get(&key[split + 1..]).map_err(store_err)? else {
                continue;
            };
            let Ok(approval) = serde_json::from_slice::<Approval>(&bytes) else {
                continue;
            };
            if approval.status == ApprovalStatus::Pending {
                out.push(approval);
            }
        }
        out.sort_by_key(|a| a.created);
        Ok(out)
    }

    /// Approvals decided (approved, denied, expired) whose decision has not
    /// been applied to their run yet: work left over from a crash.
    pub fn unapplied(&self) -> Result<Vec<Approval>, ApprovalError> {
        let mut out = Vec::new();
        for entry in self.pending.iter() {
            let (key, _) = entry.map_err(store_err)?;
            let Some(split) = key.iter().position(|b| *b == 0).filter(|at| *at > 0) else {
                continue;
            };
            let Some(bytes) = self.tree.get(&key[split + 1..]).map_err(store_err)? else {
                continue;
            };
            if let Ok(approval) = serde_json::from_slice::<Approval>(&bytes)
                && approval.status != ApprovalStatus::Pending
            {
                out.push(approval);
            }
        }
        out.sort_by_key(|a| a.created);
        Ok(out)
    }

    /// `approval`'s decision is applied to its run: it leaves the index.
    pub fn applied(&self, approval: &Approval) -> Result<(), ApprovalError> {
        if approval.status != ApprovalStatus::Pending {
            self.pending
                .remove(pending_key(&approval.tenant, &approval.id))
                .map_err(store_err)?;
        }
        Ok(())
    }

    /// Stores `approval`.
    pub fn put(&self, approval: &Approval) -> Result<(), ApprovalError> {
        if approval.status == ApprovalStatus::Pending {
            self.pending
                .insert(pending_key(&approval.tenant, &approval.id), [])
                .map_err(store_err)?;
        }
        let bytes = serde_json::to_vec(approval).map_err(store_err)?;
        self.tree
            .insert(approval.id.as_bytes(), bytes)
            .map_err(store_err)?;
        Ok(())
    }

    /// The approval `id` of `tenant` (another tenant's is "not found").
    pub fn get(&self, tenant: &TenantId, id: &str) -> Result<Approval, ApprovalError> {
        let bytes = self
            .tree
            .get(id.as_bytes())
            .map_err(store_err)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
        let approval: Approval = serde_json::from_slice(&bytes).map_err(store_err)?;
        if &approval.tenant != tenant {
            return Err(ApprovalError::NotFound(id.to_owned()));
        }
        Ok(approval)
    }

    /// Every approval, optionally only pending ones of one tenant.
    pub fn list(
        &self,
        tenant: Option<&TenantId>,
        pending_only: bool,
    ) -> Result<Vec<Approval>, ApprovalError> {
        let mut out = Vec::new();
        for entry in self.tree.iter() {
            let (_, bytes) = entry.map_err(store_err)?;
            let Ok(approval) = serde_json::from_slice::<Approval>(&bytes) else {
                continue;
            };
            if tenant.is_some_and(|t| &approval.tenant != t)
                || (pending_only && approval.status != ApprovalStatus::Pending)
            {
                continue;
            }
            out.push(approval);
        }
        out.sort_by_key(|a| a.created);
        Ok(out)
    }

    /// Applies `change` to the approval `id` of `tenant` as one
    /// compare-and-swap: concurrent callers each see the state the previous
    /// winner left, so exactly one of them moves it out of `Pending`. The
    /// change returns the new approval, or an error with nothing written.
    fn transition(
        &self,
        tenant: &TenantId,
        id: &str,
        change: impl Fn(Approval) -> Result<Approval, ApprovalError>,
    ) -> Result<Approval, ApprovalError> {
        loop {
            let old = self
                .tree
                .get(id.as_bytes())
                .map_err(store_err)?
                .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))?;
            let approval: Approval = serde_json::from_slice(&old).map_err(store_err)?;
            if &approval.tenant != tenant {
                return Err(ApprovalError::NotFound(id.to_owned()));
            }
            let next = change(approval)?;
            let bytes = serde_json::to_vec(&next).map_err(store_err)?;
            match self
                .tree
                .compare_and_swap(id.as_bytes(), Some(old), Some(bytes))
                .map_err(store_err)?
            {
                // A decided approval stays in the pending index until its
                // decision is applied to its run ([`Approvals::applied`]):
                // after a crash the index says which decisions still have
                // to be carried out.
                Ok(()) => return Ok(next),
                // Someone else changed it between our read and our swap:
                // decide again on what they left.
                Err(_) => continue,
            }
        }
    }

    /// Records an approval vote; returns the approval (approved once quorum
    /// is met). Only the vote that meets the quorum sees `Approved` come
    /// back from `Pending`; any later vote gets [`ApprovalError::Decided`].
    pub fn approve(
        &self,
        tenant: &TenantId,
        id: &str,
        approver: &Approver,
        reason: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        let result = self.transition(tenant, id, |mut approval| {
            pending(&approval)?;
            if now >= approval.expires {
                approval.status = ApprovalStatus::Expired;
                return Ok(approval);
            }
            if approval.requested_by.as_deref() == Some(approver.id.as_str()) {
                return Err(ApprovalError::Requester {
                    principal: approver.name.clone(),
                });
            }
            if approver.created > approval.created {
                return Err(ApprovalError::TooNew {
                    id: id.to_owned(),
                    principal: approver.name.clone(),
                });
            }
            if approval
                .approvals
                .iter()
                .any(|vote| vote.voter_id() == approver.id)
            {
                return Err(ApprovalError::DuplicateApprover {
                    id: id.to_owned(),
                    principal: approver.name.clone(),
                });
            }
            approval.approvals.push(Vote {
                principal: approver.name.clone(),
                principal_id: approver.id.clone(),
                reason: reason.to_owned(),
                time: now,
            });
            if approval.approvals.len() as u32 >= approval.required {
                approval.status = ApprovalStatus::Approved;
            }
            Ok(approval)
        })?;
        if result.status == ApprovalStatus::Expired {
            return Err(ApprovalError::Expired(id.to_owned()));
        }
        Ok(result)
    }

    /// Denies; one denial is enough. Exactly one of concurrent decisions wins.
    pub fn deny(
        &self,
        tenant: &TenantId,
        id: &str,
        approver: &Approver,
        reason: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        let result = self.transition(tenant, id, |mut approval| {
            pending(&approval)?;
            if now >= approval.expires {
                approval.status = ApprovalStatus::Expired;
                return Ok(approval);
            }
            approval.denial = Some(Vote {
                principal: approver.name.clone(),
                principal_id: approver.id.clone(),
                reason: reason.to_owned(),
                time: now,
            });
            approval.status = ApprovalStatus::Denied;
            Ok(approval)
        })?;
        if result.status == ApprovalStatus::Expired {
            return Err(ApprovalError::Expired(id.to_owned()));
        }
        Ok(result)
    }

    /// Marks every pending approval whose time is up as expired; returns the
    /// ones this call expired (not those a concurrent decision took first).
    pub fn expire_due(&self, now: i64) -> Result<Vec<Approval>, ApprovalError> {
        let mut expired = Vec::new();
        for approval in self.pending(None)? {
            if now < approval.expires {
                continue;
            }
            let result = self.transition(&approval.tenant, &approval.id, |mut approval| {
                pending(&approval)?;
                approval.status = ApprovalStatus::Expired;
                Ok(approval)
            });
            match result {
                Ok(approval) => expired.push(approval),
                Err(ApprovalError::Decided { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(expired)
    }
}

/// `Ok` while `approval` is pending, else who decided it.
fn pending(approval: &Approval) -> Result<(), ApprovalError> {
    if approval.status == ApprovalStatus::Pending {
        return Ok(());
    }
    let by = match approval.status {
        ApprovalStatus::Approved => approval
            .approvals
            .iter()
            .map(|vote| vote.principal.clone())
            .collect(),
        ApprovalStatus::Denied => approval
            .denial
            .iter()
            .map(|vote| vote.principal.clone())
            .collect(),
        ApprovalStatus::Pending | ApprovalStatus::Expired => Vec::new(),
    };
    Err(ApprovalError::Decided {
        id: approval.id.clone(),
        status: approval.status,
        by,
    })
}
