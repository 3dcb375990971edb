//! EDL block-list responder.
//!
//! Keeps external dynamic lists (the kind Palo Alto, Fortinet and Check
//! Point firewalls poll) in kv: one key per entry, `edl/<list>/<value>`,
//! whose value records the run and when the entry expires. The server
//! serves each list as plain text at `GET /edl/{tenant}/{list}` (HTTP basic
//! auth; expired entries left out). Params:
//! `{"list": "block", "op": "add"|"remove", "ttl_secs": 86400}` (TTL at most
//! 90 days). Refused whatever the playbook says: ranges wider than /24
//! (IPv4) or /48 (IPv6), and private, loopback, link-local, shared or
//! multicast addresses (blocking those cuts off your own network); the
//! tenant's own assets are refused by the host's guardrails
//! (`external_target`).
//! Idempotent twice over: the idempotency key's result is remembered, and the
//! entry's presence is checked with compare-and-swap.

use std::net::IpAddr;

use rampart_sdk::{
    ActionOutcome, ActionRequest, ActionResult, EntityKind, PluginError, Responder, kv, net,
};
use serde_json::{Value, json};

struct EdlBlocklist;

impl Responder for EdlBlocklist {
    fn respond(request: ActionRequest, dry_run: bool) -> Result<ActionResult, PluginError> {
        let params: Value = serde_json::from_str(&request.params)
            .map_err(|err| PluginError::invalid_input(format!("params: {err}")))?;
        let list = params
            .get("list")
            .and_then(Value::as_str)
            .unwrap_or("block");
        if list.is_empty() || !list.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(PluginError::invalid_input(format!(
                "list name `{list}` is not [A-Za-z0-9-]+"
            )));
        }
        let remove = match params.get("op").and_then(Value::as_str).unwrap_or("add") {
            "add" => false,
            "remove" => true,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "op `{other}` is not add or remove"
                )));
            }
        };
        let value = normalise(request.target.kind, &request.target.value)?;
        let ttl_secs = match params.get("ttl_secs") {
            None => DEFAULT_TTL_SECS,
            Some(ttl) => ttl
                .as_u64()
                .filter(|t| (60..=MAX_TTL_SECS).contains(t))
                .ok_or_else(|| {
                    PluginError::invalid_input(format!(
                        "ttl_secs must be 60 to {MAX_TTL_SECS} seconds"
                    ))
                })?,
        };
        let key = format!("edl/{list}/{value}");
        let verb = if remove { "remove" } else { "add" };
        if dry_run {
            return Ok(
                ActionResult::planned(format!("would {verb} {value} on list {list}"))
                    .data(&json!({"list": list, "entry": value, "op": verb})),
            );
        }

        let seen_key = format!("idem/{}", request.idempotency_key);
        if let Some(previous) = kv::get(&seen_key)? {
            let summary = String::from_utf8_lossy(&previous).into_owned();
            return Ok(ActionResult::already_in_state(summary));
        }
        let changed = if remove {
            kv::delete(&key)?
        } else {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let entry = json!({"run": request.run_id, "added": now, "expires": now + ttl_secs});
            kv::compare_and_swap(&key, None, Some(entry.to_string().as_bytes()))?
        };
        let (outcome, summary) = match (changed, remove) {
            (true, false) => (
                ActionOutcome::Executed,
                format!("added {value} to list {list}"),
            ),
            (true, true) => (
                ActionOutcome::Executed,
                format!("removed {value} from list {list}"),
            ),
            (false, false) => (
                ActionOutcome::AlreadyInState,
                format!("{value} already on list {list}"),
            ),
            (false, true) => (
                ActionOutcome::AlreadyInState,
                format!("{value} not on list {list}"),
            ),
        };
        kv::set(&seen_key, summary.as_bytes())?;
        let undo = if remove { "add" } else { "remove" };
        let mut result = match outcome {
            ActionOutcome::Executed => ActionResult::executed(summary),
            _ => ActionResult::already_in_state(summary),
        };
        result =
            result.data(&json!({"list": list, "entry": value, "undo": {"op": undo, "list": list}}));
        Ok(result)
    }
}

rampart_sdk::export_responder!(EdlBlocklist);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_internal_addresses_are_refused() {
        assert_eq!(
            address_entry("203.0.113.9").ok().as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            address_entry("198.51.100.0/24").ok().as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(
            address_entry("2001:db8:1::/48").ok().as_deref(),
            Some("2001:db8:1::/48")
        );
        for refused in [
            "198.51.0.0/16",
            "2001:db8::/32",
            "10.1.2.3",
            "192.168.0.0/24",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "fd00::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "1.2.3.4/33",
        ] {
            assert!(address_entry(refused).is_err(), "{refused}");
        }
    }
}

const DEFAULT_TTL_SECS: u64 = 86_400;
const MAX_TTL_SECS: u64 = 90 * 86_400;

/// An address or a range (`a.b.c.0/24`), checked.
fn address_entry(value: &str) -> Result<String, PluginError> {
    let (address, prefix) = match value.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (value, None),
    };
    let ip: IpAddr = address.parse().map_err(|_| {
        PluginError::invalid_input(format!("`{value}` is not an IP address or range"))
    })?;
    // Blocking a private or reserved address cuts off your own network.
    if net::is_reserved(ip) {
        return Err(PluginError::invalid_input(format!(
            "`{value}` is a private or reserved address; blocking it would cut off your own network"
        )));
    }
    let Some(prefix) = prefix else {
        return Ok(ip.to_string());
    };
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| PluginError::invalid_input(format!("`{value}`: bad prefix length")))?;
    let (narrowest, widest) = if ip.is_ipv4() { (32, 24) } else { (128, 48) };
    if prefix > narrowest {
        return Err(PluginError::invalid_input(format!(
            "`{value}`: bad prefix length"
        )));
    }
    if prefix < widest {
        return Err(PluginError::invalid_input(format!(
            "`{value}` is wider than /{widest}; block narrower ranges"
        )));
    }
    Ok(format!("{ip}/{prefix}"))
}

/// Canonical list entry for a target, or an error saying why it cannot be listed.
fn normalise(kind: EntityKind, value: &str) -> Result<String, PluginError> {
    let value = value.trim();
    match kind {
        EntityKind::Ip => address_entry(value),
        EntityKind::Domain => {
            let domain = value.trim_end_matches('.').to_ascii_lowercase();
            let valid = !domain.is_empty()
                && domain.len() <= 253
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if valid {
                Ok(domain)
            } else {
                Err(PluginError::invalid_input(format!(
                    "`{value}` is not a domain name"
                )))
            }
        }
        EntityKind::Url if value.starts_with("http://") || value.starts_with("https://") => {
            Ok(value.to_owned())
        }
        other => Err(PluginError::invalid_input(format!(
            "cannot block a {other:?} (`{value}`)"
        ))),
    }
}
