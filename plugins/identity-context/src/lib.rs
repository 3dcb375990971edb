//! Identity-context enricher.
//!
//! For every user and e-mail entity of an alert, reports what the tenant's
//! identity directory (`context`, host data imported from the IdP) says:
//! department, title, privilege, MFA enrolment and groups. The verdict stays
//! `unknown`; the tags carry what a scorer or playbook needs: `identity`,
//! `privileged`, `no-mfa`, `department:<name>`. An account the directory
//! does not know is reported as `unknown-identity` (a user entity only:
//! outside e-mail senders are not expected to be in the directory).

use std::collections::BTreeSet;

use rampart_sdk::context::{self, Identity};
use rampart_sdk::{Alert, Enricher, Enrichment, Entity, EntityKind, PluginError, Verdict};
use serde_json::json;

struct IdentityContext;

impl Enricher for IdentityContext {
    fn enrich(alert: Alert) -> Result<Vec<Enrichment>, PluginError> {
        let mut seen = BTreeSet::new();
        let mut found = Vec::new();
        for entity in &alert.entities {
            let about_a_person = matches!(entity.kind, EntityKind::User | EntityKind::Email);
            if !about_a_person || !seen.insert((entity.kind, entity.value.clone())) {
                continue;
            }
            if let Some(enrichment) = describe(entity, context::identity(entity)) {
                found.push(enrichment);
            }
        }
        Ok(found)
    }
}

rampart_sdk::export_enricher!(IdentityContext);

/// The enrichment for one entity given what the directory holds for it.
fn describe(entity: &Entity, identity: Option<Identity>) -> Option<Enrichment> {
    let Some(identity) = identity else {
        return (entity.kind == EntityKind::User).then(|| {
            Enrichment::new(entity.clone(), Verdict::Unknown, 100)
                .tag("unknown-identity")
                .data(&json!({"identity": null, "note": "account not in the identity directory"}))
        });
    };
    let mut enrichment = Enrichment::new(entity.clone(), Verdict::Unknown, 100).tag("identity");
    if identity.privileged {
        enrichment = enrichment.tag("privileged");
    }
    if !identity.mfa {
        enrichment = enrichment.tag("no-mfa");
    }
    if let Some(department) = &identity.department {
        enrichment = enrichment.tag(format!("department:{department}"));
    }
    Some(enrichment.data(&json!({
        "user": identity.user,
        "email": identity.email,
        "display_name": identity.display_name,
        "department": identity.department,
        "title": identity.title,
        "privileged": identity.privileged,
        "mfa": identity.mfa,
        "groups": identity.groups,
    })))
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn admin() -> Identity {
        Identity {
            user: "adm-kim".into(),
            email: Some("kim.admin@corp.example".into()),
            display_name: Some("Kim (admin)".into()),
            department: Some("IT".into()),
            title: None,
            privileged: true,
            mfa: false,
            groups: vec!["Domain Admins".into()],
        }
    }

    #[test]
    fn privileged_account_without_mfa_is_tagged() {
        let found = describe(
            &Entity::new(EntityKind::User, "CORP\\adm-kim"),
            Some(admin()),
        )
        .expect("reported");
        assert_eq!(
            found.tags,
            ["identity", "privileged", "no-mfa", "department:IT"]
        );
        let data: serde_json::Value = serde_json::from_str(&found.data).expect("json");
        assert_eq!(data["groups"][0], "Domain Admins");
    }

    #[test]
    fn ordinary_user_with_mfa_has_no_risk_tags() {
        let user = Identity {
            privileged: false,
            mfa: true,
            department: None,
            ..admin()
        };
        let found = describe(&Entity::new(EntityKind::User, "kim"), Some(user)).expect("reported");
        assert_eq!(found.tags, ["identity"]);
    }

    #[test]
    fn unknown_account_is_flagged_but_unknown_sender_is_not() {
        let found = describe(&Entity::new(EntityKind::User, "svc-ghost"), None).expect("flagged");
        assert_eq!(found.tags, ["unknown-identity"]);
        assert!(
            describe(
                &Entity::new(EntityKind::Email, "someone@else.example"),
                None
            )
            .is_none()
        );
    }
}
