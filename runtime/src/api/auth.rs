//! Bearer tokens: a principal, an optional tenant, a role, an expiry, and a
//! revocation flag. Only the sha256 of a token is stored; the token itself is
//! shown once, when it is created.
//!
//! Roles: `admin` (every tenant), `tenant-admin` (its tenant: plugins,
//! playbooks, tokens, audit export), `analyst` (approve, deny, read),
//! `ingest` (alerts), `viewer` (read). A token of tenant A asking for tenant
//! B's objects gets 404, never 403, so ids do not leak.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::tenant::TenantId;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, every tenant.
    Admin,
    /// Everything in its tenant.
    TenantAdmin,
    /// Approve, deny, read.
    Analyst,
    /// Send alerts.
    Ingest,
    /// Read.
    Viewer,
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read the tenant's objects.
    Read,
    /// Send alerts.
    Ingest,
    /// Approve or deny.
    Decide,
    /// Change configuration.
    Configure,
    /// Manage tenants (admin only).
    Admin,
}

impl Role {
    fn allows(self, need: Need) -> bool {
        match self {
            Role::Admin => true,
            Role::TenantAdmin => need != Need::Admin,
            Role::Analyst => matches!(need, Need::Read | Need::Decide),
            Role::Ingest => need == Need::Ingest,
            Role::Viewer => need == Need::Read,
        }
    }
}

/// A stored token (hash only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (for revocation and audit).
    pub id: String,
    /// Who.
    pub principal: String,
    /// Its tenant (`None` for admin).
    pub tenant: Option<TenantId>,
    /// Its role.
    pub role: Role,
    /// Expiry, Unix ms (`None` = never).
    pub expires: Option<i64>,
    /// Revoked.
    pub revoked: bool,
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token record.
    pub token: TokenRecord,
}

impl Principal {
    /// Checks access to `tenant` for `need`: 404 for another tenant's
    /// objects, 403 for a role that may not.
    pub fn check(&self, tenant: Option<&TenantId>, need: Need) -> Result<(), ApiError> {
        if let (Some(own), Some(asked)) = (&self.token.tenant, tenant)
            && own != asked
        {
            return Err(ApiError::not_found(format!("no tenant {asked}")));
        }
        if self.token.role != Role::Admin && tenant.is_none() {
            return Err(ApiError::forbidden("admin only"));
        }
        if !self.token.role.allows(need) {
            return Err(ApiError::forbidden(format!(
                "role {:?} may not do this",
                self.token.role
            )));
        }
        Ok(())
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Tokens in a sled tree, keyed by hash.
#[derive(Clone, Debug)]
pub struct Tokens {
    tree: sled::Tree,
}

impl Tokens {
    /// Tokens in `db`.
    pub fn open(db: &sled::Db) -> sled::Result<Self> {
        Ok(Tokens {
            tree: db.open_tree("tokens")?,
        })
    }

    /// Creates a token; returns the secret (shown once) and its record.
    pub fn create(
        &self,
        principal: &str,
        tenant: Option<TenantId>,
        role: Role,
        ttl_ms: Option<i64>,
    ) -> Result<(String, TokenRecord), ApiError> {
        if role != Role::Admin && tenant.is_none() {
            return Err(ApiError::bad_request(
                "only admin tokens may have no tenant",
            ));
        }
        if principal.trim().is_empty() || principal.len() > 128 {
            return Err(ApiError::bad_request("principal must be 1-128 characters"));
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(ApiError::internal)?;
        let token = format!("rmp_{}", hex::encode(secret));
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(ApiError::internal)?;
        let record = TokenRecord {
            id: format!("tok-{}", hex::encode(id)),
            principal: principal.to_owned(),
            tenant,
            role,
            expires: ttl_ms.map(|ttl| crate::executor::now_ms() + ttl),
            revoked: false,
        };
        let bytes = serde_json::to_vec(&record).map_err(ApiError::internal)?;
        self.tree
            .insert(hash(&token), bytes)
            .map_err(ApiError::internal)?;
        self.tree.flush().map_err(ApiError::internal)?;
        Ok((token, record))
    }

    /// Resolves an `Authorization: Bearer` value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let Some(token) = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(ApiError::unauthorized("missing bearer token"));
        };
        let record = self
            .tree
            .get(hash(token))
            .map_err(ApiError::internal)?
            .and_then(|bytes| serde_json::from_slice::<TokenRecord>(&bytes).ok())
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        if record.revoked {
            return Err(ApiError::unauthorized("token revoked"));
        }
        if record
            .expires
            .is_some_and(|at| at <= crate::executor::now_ms())
        {
            return Err(ApiError::unauthorized("token expired"));
        }
        Ok(Principal { token: record })
    }

    /// Revokes the token with public id `id` (of `tenant`, if given).
    pub fn revoke(&self, id: &str, tenant: Option<&TenantId>) -> Result<(), ApiError> {
        for entry in self.tree.iter() {
            let (key, bytes) = entry.map_err(ApiError::internal)?;
            let Ok(mut record) = serde_json::from_slice::<TokenRecord>(&bytes) else {
                continue;
            };
            if record.id == id && (tenant.is_none() || record.tenant.as_ref() == tenant) {
                record.revoked = true;
                self.tree
                    .insert(
                        key,
                        serde_json::to_vec(&record).map_err(ApiError::internal)?,
                    )
                    .map_err(ApiError::internal)?;
                self.tree.flush().map_err(ApiError::internal)?;
                return Ok(());
            }
        }
        Err(ApiError::not_found(format!("no token {id}")))
    }
}
