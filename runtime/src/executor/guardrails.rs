//! Guardrails: whether a responder action may run without a human.
//!
//! An action executes automatically only when every rule holds:
//! 1. the target is not protected (exact name, CIDR, or `tag:` of an
//!    inventory asset, after normalising case, trailing dots, short name vs
//!    FQDN and IP forms, or an asset the inventory marks `protected`) — a
//!    protected target is **refused**, not queued;
//! 2. the playbook is autonomous (supervised: always ask);
//! 3. the deciding score's confidence is at or above the step's
//!    `min_confidence` (no score means confidence 0);
//! 4. the target is known to the tenant — host data, never a plugin's output:
//!    users and e-mail addresses in its identity directory, everything else
//!    in its asset inventory. For steps marked `external_target` (blocking an
//!    attacker's IP) the rule is reversed: the target must *not* be one of
//!    ours;
//! 5. the tenant's rate limit for the action kind has room (a sliding window
//!    persisted in the store; unconfigured actions get
//!    [`DEFAULT_RATE_LIMIT`]);
//! 6. the run's blast radius (distinct targets acted on) is within
//!    `max_targets_per_run` (default [`DEFAULT_MAX_TARGETS`]).
//!
//! Otherwise the action waits for approval. All failing rules are reported,
//! not just the first, and the decision goes to the audit log.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::context::{AssetIndex, TenantContext, parse_ip, same_host};
use crate::model::{Entity, EntityKind};
use crate::playbook::{Mode, Playbook, RateLimit, Step};

/// Rate limit for action kinds a playbook does not configure: conservative.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    count: 10,
    per: Duration::from_secs(3600),
};
/// Blast radius when a playbook does not set one.
pub const DEFAULT_MAX_TARGETS: u32 = 5;

/// What the guardrails decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Act now.
    Execute,
    /// Ask a human.
    NeedsApproval,
    /// Never act on this target automatically, approval or not.
    Refuse,
}

/// A decision with every reason behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The outcome.
    pub verdict: Verdict,
    /// Why (every rule that did not hold, or "all guardrails passed").
    pub reasons: Vec<String>,
    /// The confidence used.
    pub confidence: u8,
}

/// What the rules need to know about the moment of decision.
#[derive(Debug, Clone, Copy)]
pub struct Situation {
    /// The deciding confidence (`None` = no score).
    pub confidence: Option<u8>,
    /// Actions of this kind in the rate window so far.
    pub recent_actions: u32,
    /// Distinct targets this run already acted on (excluding this one).
    pub run_targets: u32,
    /// Whether this target was already acted on in this run.
    pub target_already_counted: bool,
}

/// Whether `target` is protected by `entries` (names, CIDRs, `tag:`).
pub fn protected_by(entries: &[String], target: &Entity, inventory: &AssetIndex) -> Option<String> {
    let asset = inventory.find(target);
    if let Some(asset) = asset.filter(|asset| asset.protected) {
        return Some(format!(
            "target is `{}`, marked protected in the asset inventory",
            asset.name
        ));
    }
    let ip = parse_ip(&target.value);
    for entry in entries {
        if let Some(tag) = entry.strip_prefix("tag:") {
            if asset.is_some_and(|asset| asset.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))) {
                return Some(format!("target is tagged `{tag}` in the asset inventory"));
            }
        } else if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            let ips: Vec<IpAddr> = ip
                .into_iter()
                .chain(asset.map(|a| a.ips.clone()).unwrap_or_default())
                .collect();
            if ips.iter().any(|ip| net.contains(ip)) {
                return Some(format!("target address is in protected range {entry}"));
            }
        } else if let Some(entry_ip) = parse_ip(entry) {
            let ips: Vec<IpAddr> = ip
                .into_iter()
                .chain(asset.map(|a| a.ips.clone()).unwrap_or_default())
                .collect();
            if ips.contains(&entry_ip) {
                return Some(format!("target is protected address {entry}"));
            }
        } else {
            let named = same_host(entry, &target.value)
                || asset.is_some_and(|asset| same_host(entry, &asset.name));
            if named {
                return Some(format!("target is protected asset `{entry}`"));
            }
        }
    }
    None
}

/// Decides one action.
pub fn decide(
    playbook: &Playbook,
    step: &Step,
    target: &Entity,
    context: &TenantContext,
    situation: Situation,
) -> Decision {
    let confidence = situation.confidence.unwrap_or(0);
    let inventory = &context.assets;
    if let Some(reason) = protected_by(&playbook.guardrails.protected_assets, target, inventory) {
        return Decision {
            verdict: Verdict::Refuse,
            reasons: vec![format!("protected: {reason}")],
            confidence,
        };
    }
    let mut reasons = Vec::new();
    match playbook.mode {
        Mode::Supervised => {
            reasons.push("supervised playbook: every action needs approval".to_owned())
        }
        Mode::Autonomous | Mode::DryRun => {}
    }
    if confidence < step.guard.min_confidence {
        reasons.push(match situation.confidence {
            Some(c) => format!(
                "confidence {c} is below the step's minimum {}",
                step.guard.min_confidence
            ),
            None => format!(
                "no score: confidence 0 is below the step's minimum {}",
                step.guard.min_confidence
            ),
        });
    }
    // People are known from the identity directory, machines and addresses
    // from the asset inventory.
    let (known, register) = match target.kind {
        EntityKind::User | EntityKind::Email => (
            context.identities.find(target).is_some(),
            "identity directory",
        ),
        _ => (inventory.find(target).is_some(), "asset inventory"),
    };
    if step.guard.external_target {
        if known {
            reasons.push(format!(
                "the target is in the tenant's {register}, but the step acts on external targets"
            ));
        }
    } else if !known {
        reasons.push(format!("the target is not in the tenant's {register}"));
    }
    reasons.extend(capacity_reasons(playbook, step, situation));
    if reasons.is_empty() {
        Decision {
            verdict: Verdict::Execute,
            reasons: vec!["all guardrails passed".to_owned()],
            confidence,
        }
    } else {
        Decision {
            verdict: Verdict::NeedsApproval,
            reasons,
            confidence,
        }
    }
}

/// The rules that still apply after a human approved: rate limit and blast
/// radius (plus protection, checked by the caller first). Shared by
/// [`decide`] and the execution-time re-check.
pub fn capacity_reasons(playbook: &Playbook, step: &Step, situation: Situation) -> Vec<String> {
    let mut reasons = Vec::new();
    let limit = playbook
        .guardrails
        .rate_limits
        .get(&step.action)
        .copied()
        .unwrap_or(DEFAULT_RATE_LIMIT);
    if situation.recent_actions >= limit.count {
        reasons.push(format!(
            "rate limit for `{}` reached: {} in the last {}",
            step.action,
            situation.recent_actions,
            humantime::format_duration(limit.per)
        ));
    }
    let max_targets = playbook
        .guardrails
        .max_targets_per_run
        .unwrap_or(DEFAULT_MAX_TARGETS);
    if !situation.target_already_counted && situation.run_targets >= max_targets {
        reasons.push(format!(
            "blast radius: the run already acted on {} target(s), the limit is {max_targets}",
            situation.run_targets
        ));
    }
    reasons
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::context::Asset;

    #[test]
    fn an_asset_marked_protected_is_protected_under_any_of_its_names() {
        let inventory = AssetIndex::new(crate::context::AssetInventory {
            assets: vec![Asset {
                name: "MORDORDC.theshire.local".into(),
                ips: vec!["172.18.38.5".parse().expect("ip")],
                protected: true,
                ..Asset::default()
            }],
        });
        for (kind, value) in [
            (EntityKind::Hostname, "mordordc"),
            (EntityKind::Ip, "172.18.38.5"),
            (EntityKind::Domain, "MORDORDC.theshire.local."),
        ] {
            let target = Entity {
                kind,
                value: value.into(),
            };
            let why = protected_by(&[], &target, &inventory).expect(value);
            assert!(why.contains("marked protected"), "{why}");
        }
        let other = Entity {
            kind: EntityKind::Ip,
            value: "172.18.38.6".into(),
        };
        assert_eq!(protected_by(&[], &other, &inventory), None);
    }
}
