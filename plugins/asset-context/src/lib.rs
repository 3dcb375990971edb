//! Asset-context enricher.
//!
//! For every IP, host name and domain of an alert, reports what the tenant's
//! own asset inventory (`context`, host data imported from the CMDB) says:
//! owner, criticality, tags, whether it is protected. The verdict stays
//! `unknown` — context is not evidence of badness — but the tags carry what
//! a scorer or a playbook condition needs: `asset`, `criticality:<level>`,
//! `protected`, and each inventory tag as `asset-tag:<tag>`.
//!
//! An internal address (RFC 1918, ULA, CGNAT) that the inventory does not
//! know is reported as `unmanaged`: an unknown machine inside the network is
//! itself worth a look.

use std::collections::BTreeSet;

use rampart_sdk::context::{self, Asset};
use rampart_sdk::{Alert, Enricher, Enrichment, Entity, EntityKind, PluginError, Verdict, net};
use serde_json::json;

struct AssetContext;

impl Enricher for AssetContext {
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for entity in &alert.entities {
            let about_a_host = matches!(
                entity.kind,
                EntityKind::Ip | EntityKind::Hostname | EntityKind::Domain
            );
            if !about_a_host || !seen.insert((entity.kind, entity.value.clone())) {
                continue;
            }
            if let Some(enrichment) = describe(entity, context::asset(entity)) {
                found.push(enrichment);
            }
        }
        Ok(found)
    }
}

rampart_sdk::export_enricher!(AssetContext);

/// The enrichment for one entity given what the inventory holds for it.
fn describe(entity: &Entity, asset: Option<Asset>) -> Option<Enrichment> {
    let Some(asset) = asset else {
        return internal_address(&entity.value).then(|| {
            Enrichment::new(entity.clone(), Verdict::Unknown, 100)
                .tag("unmanaged")
                .data(&json!({
                    "asset": null,
                    "note": "internal address not in the asset inventory",
                }))
        });
    };
    let criticality = asset.criticality.map_or("unrated", |level| level.name());
    let mut enrichment = Enrichment::new(entity.clone(), Verdict::Unknown, 100)
        .tag("asset")
        .tag(format!("criticality:{criticality}"));
    if asset.protected {
        enrichment = enrichment.tag("protected");
    }
    for tag in &asset.tags {
        enrichment = enrichment.tag(format!("asset-tag:{tag}"));
    }
    Some(enrichment.data(&json!({
        "asset": asset.name,
        "ips": asset.ips,
        "owner": asset.owner,
        "criticality": asset.criticality.map(|level| level.name()),
        "tags": asset.tags,
        "protected": asset.protected,
    })))
}

/// Whether `value` is an address inside an organisation's own networks.
fn internal_address(value: &str) -> bool {
    net::address(value).is_some_and(net::is_private)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rampart_sdk::context::Criticality;

    fn dc() -> Asset {
        Asset {
            name: "dc01.corp.example".into(),
            ips: vec!["10.0.0.10".into()],
            owner: Some("IT Ops".into()),
            criticality: Some(Criticality::Critical),
            tags: vec!["domain-controller".into()],
            protected: true,
        }
    }

    #[test]
    fn known_asset_is_reported_with_its_context() {
        let entity = Entity::new(EntityKind::Ip, "10.0.0.10");
        let found = describe(&entity, Some(dc())).expect("reported");
        assert_eq!(found.verdict, Verdict::Unknown, "context is not a verdict");
        assert_eq!(
            found.tags,
            [
                "asset",
                "criticality:critical",
                "protected",
                "asset-tag:domain-controller"
            ]
        );
        let data: serde_json::Value = serde_json::from_str(&found.data).expect("json");
        assert_eq!(data["owner"], "IT Ops");
        assert_eq!(data["criticality"], "critical");
    }

    #[test]
    fn unknown_internal_address_is_unmanaged_and_external_is_silent() {
        for internal in ["10.9.9.9", "192.168.1.20:445", "100.64.3.2", "[fd12::1]:22"] {
            let found = describe(&Entity::new(EntityKind::Ip, internal), None).expect(internal);
            assert_eq!(found.tags, ["unmanaged"], "{internal}");
        }
        for external in ["203.0.113.9", "8.8.8.8:53", "unknown-host"] {
            assert!(
                describe(&Entity::new(EntityKind::Ip, external), None).is_none(),
                "{external}"
            );
        }
    }

    #[test]
    fn unrated_asset_says_so() {
        let asset = Asset {
            criticality: None,
            protected: false,
            tags: vec![],
            ..dc()
        };
        let found =
            describe(&Entity::new(EntityKind::Hostname, "dc01"), Some(asset)).expect("reported");
        assert_eq!(found.tags, ["asset", "criticality:unrated"]);
    }
}
