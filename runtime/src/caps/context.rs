//! `rampart:plugin/context`: the tenant's assets and people, read-only.

use super::{CallView, Caps};
use crate::bindings::context::{Asset, Criticality, Host, Identity};
use crate::bindings::types::Entity;
use crate::context::Criticality as HostCriticality;

impl From<HostCriticality> for Criticality {
    fn from(level: HostCriticality) -> Self {
        match level {
            HostCriticality::Low => Criticality::Low,
            HostCriticality::Medium => Criticality::Medium,
            HostCriticality::High => Criticality::High,
            HostCriticality::Critical => Criticality::Critical,
        }
    }
}

impl<T: CallView> Host for Caps<'_, T> {
    fn lookup_asset(&mut self, entity: Entity) -> Option<Asset> {
        let entity: crate::model::Entity = entity.into();
        if let Some(problem) = entity.problem() {
            self.0
                .host_warn(&format!("context lookup refused: {problem}"));
            return None;
        }
        self.0.charge_bytes(entity.value.len());
        let context = self.0.directory().get(self.0.tenant());
        context.assets.find(&entity).map(|asset| Asset {
            name: asset.name.clone(),
            ips: asset.ips.iter().map(ToString::to_string).collect(),
            owner: asset.owner.clone(),
            criticality: asset.criticality.map(Into::into),
            tags: asset.tags.clone(),
            protected: asset.protected,
        })
    }

    fn lookup_identity(&mut self, entity: Entity) -> Option<Identity> {
        let entity: crate::model::Entity = entity.into();
        if let Some(problem) = entity.problem() {
            self.0
                .host_warn(&format!("context lookup refused: {problem}"));
            return None;
        }
        self.0.charge_bytes(entity.value.len());
        let context = self.0.directory().get(self.0.tenant());
        context.identities.find(&entity).map(|id| Identity {
            user: id.user.clone(),
            email: id.email.clone(),
            display_name: id.display_name.clone(),
            department: id.department.clone(),
            title: id.title.clone(),
            privileged: id.privileged,
            mfa: id.mfa,
            groups: id.groups.clone(),
        })
    }
}
