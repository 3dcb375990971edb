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

/// One approver's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who.
    pub principal: String,
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub time: i64,
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
}

/// Why an approval operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval (for this tenant).
    #[error("no approval {0}")]
    NotFound(String),
    /// Already decided.
    #[error("approval {id} is already {status:?}")]
    Decided {
        /// Id.
        id: String,
        /// Its status.
        status: ApprovalStatus,
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
    tree: sled::Tree,
}

fn store_err(err: impl std::fmt::Display) -> ApprovalError {
    ApprovalError::Store(err.to_string())
}

impl Approvals {
    /// Approvals in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ApprovalError> {
        Ok(Approvals {
            tree: db.open_tree("approvals").map_err(store_err)?,
        })
    }

    /// Stores `approval`.
    pub fn put(&self, approval: &Approval) -> Result<(), ApprovalError> {
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

    /// Records an approval vote; returns the approval (approved once quorum is met).
    pub fn approve(
        &self,
        tenant: &TenantId,
        id: &str,
        principal: &str,
        reason: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        let mut approval = self.get(tenant, id)?;
        if approval.status != ApprovalStatus::Pending {
            return Err(ApprovalError::Decided {
                id: id.to_owned(),
                status: approval.status,
            });
        }
        if now >= approval.expires {
            approval.status = ApprovalStatus::Expired;
            self.put(&approval)?;
            return Err(ApprovalError::Expired(id.to_owned()));
        }
        if approval
            .approvals
            .iter()
            .any(|vote| vote.principal == principal)
        {
            return Err(ApprovalError::DuplicateApprover {
                id: id.to_owned(),
                principal: principal.to_owned(),
            });
        }
        approval.approvals.push(Vote {
            principal: principal.to_owned(),
            reason: reason.to_owned(),
            time: now,
        });
        if approval.approvals.len() as u32 >= approval.required {
            approval.status = ApprovalStatus::Approved;
        }
        self.put(&approval)?;
        Ok(approval)
    }

    /// Denies; one denial is enough.
    pub fn deny(
        &self,
        tenant: &TenantId,
        id: &str,
        principal: &str,
        reason: &str,
        now: i64,
    ) -> Result<Approval, ApprovalError> {
        if reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        let mut approval = self.get(tenant, id)?;
        if approval.status != ApprovalStatus::Pending {
            return Err(ApprovalError::Decided {
                id: id.to_owned(),
                status: approval.status,
            });
        }
        approval.denial = Some(Vote {
            principal: principal.to_owned(),
            reason: reason.to_owned(),
            time: now,
        });
        approval.status = ApprovalStatus::Denied;
        self.put(&approval)?;
        Ok(approval)
    }

    /// Marks every pending approval whose time is up as expired; returns them.
    pub fn expire_due(&self, now: i64) -> Result<Vec<Approval>, ApprovalError> {
        let mut expired = Vec::new();
        for mut approval in self.list(None, true)? {
            if now >= approval.expires {
                approval.status = ApprovalStatus::Expired;
                self.put(&approval)?;
                expired.push(approval);
            }
        }
        Ok(expired)
    }
}
