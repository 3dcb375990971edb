//! Bearer tokens: a principal, an optional tenant, a role, an expiry, and a
//! revocation flag. Only the sha256 of a token is stored; the token itself is
//! shown once, when it is created.
//!
//! Roles: `admin` (every tenant), `tenant-admin` (its tenant: plugins,
//! playbooks, tokens, audit export), `analyst` (approve, deny, read),
//! `ingest` (alerts), `viewer` (read). A token of tenant A asking for tenant
//! B's objects gets 404, never 403, so ids do not leak.
//!
//! Part of the control plane: the API authenticates with [`Tokens`] and
//! maps [`AuthError`] to its statuses; an embedder that brings its own
//! identities uses [`crate::executor::approvals::Approver`] directly.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tenant::TenantId;

/// Why a caller, a principal or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials, or credentials that are not valid (unknown, revoked
    /// and expired tokens get one answer).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Another tenant's objects: "not found", so ids do not leak.
    #[error("no tenant {0}")]
    OtherTenant(TenantId),
    /// Only the server admin may do this.
    #[error("admin only")]
    AdminOnly,
    /// The caller's role may not do this.
    #[error("role {0:?} may not do this")]
    RoleMayNot(Role),
    /// A principal name that is not acceptable.
    #[error("{0}")]
    InvalidPrincipal(String),
    /// A token of a role above the caller's own.
    #[error("a {caller:?} may not create a token of the higher role {role:?}")]
    HigherRole {
        /// The caller's role.
        caller: Role,
        /// The role asked for.
        role: Role,
    },
    /// The principal name belongs to someone else, or has another role.
    #[error("{0}")]
    PrincipalTaken(String),
    /// A token's tenant does not fit its role.
    #[error("{0}")]
    TokenScope(&'static str),
    /// No such token (of this tenant).
    #[error("no token {0}")]
    NoToken(String),
    /// The system's random source failed (`getrandom`'s error has no
    /// `std::error::Error` without its `std` feature: kept, not a source).
    #[error("random source: {0}")]
    Random(getrandom::Error),
    /// A token record was changed offline.
    #[error(transparent)]
    Sealed(#[from] crate::audit::seal::SealError),
    /// The keyspace failed.
    #[error(transparent)]
    Storage(#[from] crate::store::SpaceError),
    /// A stored record does not decode.
    #[error("stored record: {0}")]
    Record(#[from] serde_json::Error),
}

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
    /// Scrape `/metrics` (totals, no tenant names); nothing else. Has no
    /// tenant.
    Metrics,
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
    /// How much a role may do, for "no one mints a token above their own
    /// role": admin > tenant-admin > analyst > ingest, viewer.
    fn rank(self) -> u8 {
        match self {
            Role::Admin => 4,
            Role::TenantAdmin => 3,
            Role::Analyst => 2,
            Role::Ingest | Role::Viewer | Role::Metrics => 1,
        }
    }

    fn allows(self, need: Need) -> bool {
        match self {
            Role::Admin => true,
            Role::TenantAdmin => need != Need::Admin,
            Role::Analyst => matches!(need, Need::Read | Need::Decide),
            Role::Ingest => need == Need::Ingest,
            Role::Viewer => need == Need::Read,
            Role::Metrics => false,
        }
    }
}

/// A principal: one identity with a stable id, a name unique across its
/// tenant and the server's admins, and one role. Tokens are credentials of
/// a principal; a quorum counts principals, not tokens or names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// Stable id (`prn-…`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its tenant (`None` for admins).
    pub tenant: Option<TenantId>,
    /// Its role.
    pub role: Role,
    /// Created, Unix ms.
    pub created: i64,
    /// The principal id that created it (`None`: the operator, offline).
    pub created_by: Option<String>,
}

/// The longest principal name.
pub const MAX_PRINCIPAL_NAME: usize = 128;

/// Why `name` is not a valid principal name, if it is not.
pub fn principal_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_PRINCIPAL_NAME {
        return Some(format!(
            "principal must be 1-{MAX_PRINCIPAL_NAME} characters"
        ));
    }
    if name.trim() != name {
        return Some("principal must not start or end with whitespace".to_owned());
    }
    if let Some(bad) = name.chars().find(|c| c.is_control()) {
        return Some(format!(
            "principal must be printable; it contains {:?}",
            bad
        ));
    }
    None
}

/// A stored token (hash only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (for revocation and audit).
    pub id: String,
    /// Who (the principal's name).
    pub principal: String,
    /// The principal's stable id (its name, for tokens minted before ids).
    #[serde(default)]
    pub principal_id: String,
    /// When the principal was created, Unix ms (`i64::MIN` when unknown).
    #[serde(default = "unknown_created")]
    pub principal_created: i64,
    /// Its tenant (`None` for admin).
    pub tenant: Option<TenantId>,
    /// Its role.
    pub role: Role,
    /// Expiry, Unix ms (`None` = never).
    pub expires: Option<i64>,
    /// Revoked.
    pub revoked: bool,
}

fn unknown_created() -> i64 {
    i64::MIN
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The token record.
    pub token: TokenRecord,
}

impl Principal {
    /// The caller's stable principal id.
    pub fn id(&self) -> &str {
        if self.token.principal_id.is_empty() {
            &self.token.principal
        } else {
            &self.token.principal_id
        }
    }

    /// The caller as an approver.
    pub fn approver(&self) -> crate::executor::approvals::Approver {
        crate::executor::approvals::Approver {
            id: self.id().to_owned(),
            name: self.token.principal.clone(),
            created: self.token.principal_created,
        }
    }

    /// Checks access to `tenant` for `need`: 404 for another tenant's
    /// objects, 403 for a role that may not.
    pub fn check(&self, tenant: Option<&TenantId>, need: Need) -> Result<(), AuthError> {
        if let (Some(own), Some(asked)) = (&self.token.tenant, tenant)
            && own != asked
        {
            return Err(AuthError::OtherTenant(asked.clone()));
        }
        if self.token.role != Role::Admin && tenant.is_none() {
            return Err(AuthError::AdminOnly);
        }
        if !self.token.role.allows(need) {
            return Err(AuthError::RoleMayNot(self.token.role));
        }
        Ok(())
    }
}

impl From<getrandom::Error> for AuthError {
    fn from(err: getrandom::Error) -> Self {
        AuthError::Random(err)
    }
}

fn invalid_token() -> AuthError {
    AuthError::Unauthenticated("the token is not valid (unknown, revoked or expired)")
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Tokens in a sled tree, keyed by hash, and the principals they belong to.
#[derive(Clone, Debug)]
pub struct Tokens {
    /// Sealed: a token record edited offline (a viewer made admin) is
    /// refused at use.
    tree: crate::audit::seal::SealedTree,
    principals: crate::store::Tree,
}

/// The principals tree key: names are unique per tenant, and a tenant's
/// names never shadow an admin's (admins sit under the empty tenant).
fn principal_key(tenant: Option<&TenantId>, name: &str) -> Vec<u8> {
    let mut key = tenant.map(|t| t.as_str()).unwrap_or("").as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

impl Tokens {
    /// Tokens in `db`.
    pub fn open(
        db: &crate::store::Keyspace,
        seal: &crate::audit::seal::SealKey,
    ) -> Result<Self, crate::audit::seal::SealError> {
        Ok(Tokens {
            tree: crate::audit::seal::SealedTree::open(db, "tokens", seal)?,
            principals: db.open_tree("principals")?,
        })
    }

    /// Token records whose seal does not hold (checked at start-up).
    pub fn tampered(&self) -> Result<Vec<String>, crate::audit::seal::SealError> {
        self.tree.tampered()
    }

    fn find_principal(
        &self,
        tenant: Option<&TenantId>,
        name: &str,
    ) -> Result<Option<PrincipalRecord>, AuthError> {
        // An admin's name is taken in every tenant.
        for scope in [tenant, None] {
            if let Some(bytes) = self.principals.get(principal_key(scope, name))? {
                return Ok(Some(serde_json::from_slice(&bytes)?));
            }
            if tenant.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// The principal `name` of `tenant` (role `role`), created now by `by`
    /// when it does not exist. An existing principal gets a token only from
    /// itself (or the offline operator, `by` = `None`), and keeps its role.
    fn principal_for(
        &self,
        name: &str,
        tenant: Option<&TenantId>,
        role: Role,
        by: Option<&Principal>,
    ) -> Result<PrincipalRecord, AuthError> {
        if let Some(problem) = principal_name_problem(name) {
            return Err(AuthError::InvalidPrincipal(problem));
        }
        if let Some(caller) = by
            && role.rank() > caller.token.role.rank()
        {
            return Err(AuthError::HigherRole {
                caller: caller.token.role,
                role,
            });
        }
        loop {
            if let Some(existing) = self.find_principal(tenant, name)? {
                if existing.tenant.as_ref() != tenant {
                    return Err(AuthError::PrincipalTaken(format!(
                        "the name {name} belongs to a server admin"
                    )));
                }
                if let Some(caller) = by
                    && caller.id() != existing.id
                {
                    return Err(AuthError::PrincipalTaken(format!(
                        "principal {name} exists; only {name} may mint more of its tokens"
                    )));
                }
                if existing.role != role {
                    return Err(AuthError::PrincipalTaken(format!(
                        "principal {name} has role {:?}; its tokens cannot have role {role:?}",
                        existing.role
                    )));
                }
                return Ok(existing);
            }
            let mut id = [0u8; 8];
            getrandom::fill(&mut id)?;
            let record = PrincipalRecord {
                id: format!("prn-{}", hex::encode(id)),
                name: name.to_owned(),
                tenant: tenant.cloned(),
                role,
                created: crate::executor::now_ms(),
                created_by: by.map(|caller| caller.id().to_owned()),
            };
            let bytes = serde_json::to_vec(&record)?;
            // Insert-if-absent: of two concurrent creations of one name,
            // one creates it and the other sees it on the next turn.
            if self
                .principals
                .compare_and_swap(principal_key(tenant, name), None::<&[u8]>, Some(bytes))?
                .is_ok()
            {
                return Ok(record);
            }
        }
    }

    /// Creates a token for the operator (CLI, bootstrap): the principal is
    /// created when new; returns the secret (shown once) and its record.
    pub fn create(
        &self,
        principal: &str,
        tenant: Option<TenantId>,
        role: Role,
        ttl_ms: Option<i64>,
    ) -> Result<(String, TokenRecord), AuthError> {
        self.issue(principal, tenant, role, ttl_ms, None)
    }

    /// Creates a token on behalf of `caller`: only for a new principal (of a
    /// role no higher than the caller's) or for the caller itself.
    pub fn mint(
        &self,
        caller: &Principal,
        principal: &str,
        tenant: Option<TenantId>,
        role: Role,
        ttl_ms: Option<i64>,
    ) -> Result<(String, TokenRecord), AuthError> {
        self.issue(principal, tenant, role, ttl_ms, Some(caller))
    }

    fn issue(
        &self,
        principal: &str,
        tenant: Option<TenantId>,
        role: Role,
        ttl_ms: Option<i64>,
        by: Option<&Principal>,
    ) -> Result<(String, TokenRecord), AuthError> {
        let global = matches!(role, Role::Admin | Role::Metrics);
        if !global && tenant.is_none() {
            return Err(AuthError::TokenScope(
                "only admin and metrics tokens may have no tenant",
            ));
        }
        if global && tenant.is_some() {
            return Err(AuthError::TokenScope(
                "admin and metrics tokens have no tenant",
            ));
        }
        let owner = self.principal_for(principal, tenant.as_ref(), role, by)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)?;
        let token = format!("rmp_{}", hex::encode(secret));
        let mut id = [0u8; 6];
        getrandom::fill(&mut id)?;
        let record = TokenRecord {
            id: format!("tok-{}", hex::encode(id)),
            principal: principal.to_owned(),
            principal_id: owner.id,
            principal_created: owner.created,
            tenant,
            role,
            expires: ttl_ms.map(|ttl| crate::executor::now_ms() + ttl),
            revoked: false,
        };
        let bytes = serde_json::to_vec(&record)?;
        self.tree.insert(hash(&token), bytes)?;
        self.tree.flush()?;
        Ok((token, record))
    }

    /// Resolves an `Authorization: Bearer` value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let Some(token) = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(AuthError::Unauthenticated("missing bearer token"));
        };
        let stored = match self.tree.get(hash(token)) {
            Ok(stored) => stored,
            // Edited offline: never honoured, and said in the log.
            Err(err @ crate::audit::seal::SealError::Tampered { .. }) => {
                tracing::error!("refused a token: {err}");
                return Err(invalid_token());
            }
            Err(err) => return Err(err.into()),
        };
        let record = stored
            .and_then(|bytes| serde_json::from_slice::<TokenRecord>(&bytes).ok())
            .ok_or_else(invalid_token)?;
        // One answer for unknown, revoked and expired: a caller learns
        // nothing about a token it holds but may not use.
        if record.revoked
            || record
                .expires
                .is_some_and(|at| at <= crate::executor::now_ms())
        {
            return Err(invalid_token());
        }
        Ok(Principal { token: record })
    }

    /// Revokes the token with public id `id` (of `tenant`, if given).
    pub fn revoke(&self, id: &str, tenant: Option<&TenantId>) -> Result<(), AuthError> {
        for entry in self.tree.iter() {
            let (key, bytes) = entry?;
            let Ok(mut record) = serde_json::from_slice::<TokenRecord>(&bytes) else {
                continue;
            };
            if record.id == id && (tenant.is_none() || record.tenant.as_ref() == tenant) {
                record.revoked = true;
                self.tree.insert(key, serde_json::to_vec(&record)?)?;
                self.tree.flush()?;
                return Ok(());
            }
        }
        Err(AuthError::NoToken(id.to_owned()))
    }
}
