//! The tenant's own assets and people (capability `context`): what the
//! tenant imported from its CMDB and identity provider. Read-only host data,
//! so an enricher can report it and a scorer can trust it.

use crate::Entity;
pub use crate::bindings::rampart::plugin::context::{Asset, Criticality, Identity};

/// The tenant's asset an `ip`, `hostname` or `domain` entity names, if any.
pub fn asset(entity: &Entity) -> Option<Asset> {
    crate::bindings::rampart::plugin::context::lookup_asset(entity)
}

/// The tenant's person a `user` or `email` entity names, if any.
pub fn identity(entity: &Entity) -> Option<Identity> {
    crate::bindings::rampart::plugin::context::lookup_identity(entity)
}

impl Criticality {
    /// The lower-case name used in CSV, JSON and playbooks.
    pub fn name(self) -> &'static str {
        match self {
            Criticality::Low => "low",
            Criticality::Medium => "medium",
            Criticality::High => "high",
            Criticality::Critical => "critical",
        }
    }
}
