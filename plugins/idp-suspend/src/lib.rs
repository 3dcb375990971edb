//! Identity-provider suspension, shaped like Okta's user lifecycle API.
//!
//! `POST {base}/api/v1/users/{login}/lifecycle/suspend` (undo:
//! `…/lifecycle/unsuspend`, params `{"op": "unsuspend"}`) with
//! `Authorization: SSWS <api_token>` (secret `api_token`; setting
//! `base_url`). Okta answers 200 with an empty body; a user who is already
//! suspended (or already active, for the undo) gets 400 `E0000001`, which
//! is success here: already in state. Missing secret / 401 / 403 →
//! misconfigured; 404 → no such user; 429 → unavailable with the reset
//! time (`X-Rate-Limit-Reset`) or Retry-After; 5xx → unavailable.

use rampart_sdk::{ActionRequest, ActionResult, EntityKind, PluginError, Responder, config, http};
use serde_json::{Value, json};

struct IdpSuspend;

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Responder for IdpSuspend {
    fn respond(request: ActionRequest, dry_run: bool) -> Result<ActionResult, PluginError> {
        let params: Value = serde_json::from_str(&request.params).unwrap_or(Value::Null);
        let undo = match params
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("suspend")
        {
            "suspend" => false,
            "unsuspend" => true,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "op `{other}` is not suspend or unsuspend"
                )));
            }
        };
        if !matches!(request.target.kind, EntityKind::User | EntityKind::Email) {
            return Err(PluginError::invalid_input(format!(
                "idp-suspend acts on users, not a {:?}",
                request.target.kind
            )));
        }
        let user = request.target.value.trim().to_owned();
        if user.is_empty() {
            return Err(PluginError::invalid_input("empty user"));
        }
        let action = if undo { "unsuspend" } else { "suspend" };
        if dry_run {
            return Ok(ActionResult::planned(format!("would {action} {user}"))
                .data(&json!({"user": user, "action": action})));
        }
        let token = config::secret("api_token").ok_or_else(|| {
            PluginError::misconfigured("secret `api_token` is not set for idp-suspend")
        })?;
        let base = config::require("base_url")?;
        let base = base.trim_end_matches('/');
        let response = http::send(
            &http::Request::post(
                format!("{base}/api/v1/users/{}/lifecycle/{action}", encode(&user)),
                Vec::new(),
            )
            .header("authorization", format!("SSWS {token}"))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("idempotency-key", request.idempotency_key.as_str()),
        )?;
        let next = json!({"op": if undo { "suspend" } else { "unsuspend" }});
        let error_code = response
            .json()
            .ok()
            .and_then(|v| v["errorCode"].as_str().map(str::to_owned));
        match response.status {
            200..=299 => Ok(ActionResult::executed(format!("{action} {user}"))
                .data(&json!({"user": user, "action": action, "undo": next}))),
            400 if error_code.as_deref() == Some("E0000001") => Ok(ActionResult::already_in_state(
                format!("{user} already in that state"),
            )
            .data(&json!({"user": user, "action": action, "undo": next}))),
            401 | 403 => Err(PluginError::misconfigured(format!(
                "the identity provider refused the API token ({})",
                response.status
            ))),
            404 => Err(PluginError::invalid_input(format!(
                "the identity provider knows no user `{user}`"
            ))),
            429 => {
                let wait_ms = response.retry_after_ms().unwrap_or(1_000);
                Err(PluginError::unavailable(
                    "rate limited by the identity provider (429)",
                    Some(wait_ms),
                ))
            }
            status @ 500..=599 => Err(PluginError::unavailable(
                format!("the identity provider failed ({status})"),
                Some(2_000),
            )),
            status => Err(PluginError::invalid_input(format!(
                "the identity provider answered {status} ({})",
                error_code.unwrap_or_default()
            ))),
        }
    }
}

rampart_sdk::export_responder!(IdpSuspend);
