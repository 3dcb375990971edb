//! `rampart:plugin/intel`: lookups in the tenant's threat-intel index.

use crate::bindings::intel::{Host, IndicatorMatch};
use crate::bindings::types::Entity;
use crate::sandbox::state::HostState;

/// Most matches one lookup returns.
pub const MAX_MATCHES: usize = 100;

impl Host for HostState {
    fn lookup(&mut self, entity: Entity) -> Vec<IndicatorMatch> {
        let entity: crate::model::Entity = entity.into();
        let found = match self.plugin.store.intel_lookup(&self.plugin.tenant, &entity) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(tenant = %self.plugin.tenant, plugin = %self.plugin.name, "intel lookup failed: {err}");
                Vec::new()
            }
        };
        found
            .into_iter()
            .take(MAX_MATCHES)
            .map(|hit| IndicatorMatch {
                indicator: hit.indicator,
                feed: hit.feed,
                family: hit.family,
                campaign: hit.campaign,
                confidence: hit.confidence.min(100),
                references: hit.references,
                techniques: hit.techniques,
                first_seen: hit.first_seen,
                last_seen: hit.last_seen,
            })
            .collect()
    }
}
