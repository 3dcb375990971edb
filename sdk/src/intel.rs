//! Threat-intelligence lookups (capability `intel`).

use crate::{Entity, IndicatorMatch};

/// Every indicator in the tenant's index that matches `entity`.
pub fn lookup(entity: &Entity) -> Vec<IndicatorMatch> {
    crate::bindings::rampart::plugin::intel::lookup(entity)
}
