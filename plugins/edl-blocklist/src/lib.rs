//! EDL block-list responder.
//!
//! Keeps external dynamic lists (the kind firewalls poll) in kv: one key per
//! entry, `edl/<list>/<value>`. Params: `{"list": "block", "op": "add"|"remove"}`.
//! Idempotent twice over: the idempotency key's result is remembered, and the
//! entry's presence is checked with compare-and-swap.

use std::net::IpAddr;

use rampart_sdk::{
    ActionOutcome, ActionRequest, ActionResult, EntityKind, PluginError, Responder, kv,
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
            kv::compare_and_swap(&key, None, Some(request.run_id.as_bytes()))?
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

/// Canonical list entry for a target, or an error saying why it cannot be listed.
fn normalise(kind: EntityKind, value: &str) -> Result<String, PluginError> {
    let value = value.trim();
    match kind {
        EntityKind::Ip => value
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| PluginError::invalid_input(format!("`{value}` is not an IP address"))),
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
