//! `rampart:plugin/intel`: lookups in the tenant's threat-intel index.

use super::{CallView, Caps};
use crate::bindings::intel::{Host, IndicatorMatch};
use crate::bindings::types::Entity;

/// Most matches one lookup returns.
pub const MAX_MATCHES: usize = 100;

impl<T: CallView> Host for Caps<'_, T> {
    fn lookup(&mut self, entity: Entity) -> Vec<IndicatorMatch> {
        let entity: crate::model::Entity = entity.into();
        if let Some(problem) = entity.problem() {
            self.0
                .host_warn(&format!("intel lookup refused: {problem}"));
            return Vec::new();
        }
        // A lookup hashes each suffix of the name: charge for that work.
        let labels = entity.value.bytes().filter(|b| *b == b'.').count() + 1;
        self.0
            .charge_bytes(entity.value.len().saturating_mul(labels));
        let found = match self.0.store().intel_lookup(self.0.tenant(), &entity) {
            Ok(found) => found,
            Err(err) => {
                self.0.host_warn(&format!("intel lookup failed: {err}"));
                Vec::new()
            }
        };
        self.0.charge_bytes(
            found
                .iter()
                .take(MAX_MATCHES)
                .map(|hit| {
                    hit.indicator.len() + hit.references.iter().map(String::len).sum::<usize>()
                })
                .sum(),
        );
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
