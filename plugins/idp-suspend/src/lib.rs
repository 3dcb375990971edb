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
                format!(
                    "{base}/api/v1/users/{}/lifecycle/{action}",
                    http::encode(&user)
                ),
                Vec::new(),
            )
            .header("authorization", format!("SSWS {token}"))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("idempotency-key", request.idempotency_key.as_str()),
        )?;
        interpret(&response, &user, action, undo)
    }
}

rampart_sdk::export_responder!(IdpSuspend);

/// What the identity provider's answer to `action` on `user` means.
fn interpret(
    response: &http::Response,
    user: &str,
    action: &str,
    undo: bool,
) -> Result<ActionResult, PluginError> {
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

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rampart_sdk::{ActionOutcome, Entity, ErrorKind};

    fn request(kind: EntityKind, user: &str, params: &str) -> ActionRequest {
        ActionRequest {
            run_id: "run-1".into(),
            step_id: "suspend".into(),
            idempotency_key: "key-1".into(),
            target: Entity::new(kind, user),
            params: params.into(),
        }
    }

    fn answer(status: u16, body: &str) -> http::Response {
        http::Response {
            status,
            headers: vec![("Retry-After".into(), "4".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn dry_run_plans_and_bad_requests_are_refused() {
        let plan = IdpSuspend::respond(request(EntityKind::User, "bob@acme.example", "{}"), true)
            .expect("plan");
        assert_eq!(
            (plan.outcome, plan.summary.as_str()),
            (ActionOutcome::Planned, "would suspend bob@acme.example")
        );
        for (kind, user, params, says) in [
            (EntityKind::Hostname, "wks-7", "{}", "acts on users"),
            (EntityKind::User, "  ", "{}", "empty user"),
            (
                EntityKind::User,
                "bob",
                r#"{"op": "delete"}"#,
                "not suspend or unsuspend",
            ),
        ] {
            let err = IdpSuspend::respond(request(kind, user, params), true).expect_err(says);
            assert!(err.message.contains(says), "{}", err.message);
        }
    }

    #[test]
    fn okta_answers_map_to_outcomes_and_errors() {
        let done = interpret(&answer(200, ""), "bob", "suspend", false).expect("done");
        assert_eq!(done.outcome, ActionOutcome::Executed);
        let data: serde_json::Value = serde_json::from_str(&done.data).expect("json");
        assert_eq!(data["undo"]["op"], "unsuspend");
        let already = interpret(
            &answer(
                400,
                r#"{"errorCode":"E0000001","errorSummary":"Api validation failed"}"#,
            ),
            "bob",
            "suspend",
            false,
        )
        .expect("already");
        assert_eq!(already.outcome, ActionOutcome::AlreadyInState);
        let cases = [
            (401, ErrorKind::Misconfigured, None),
            (404, ErrorKind::InvalidInput, None),
            (429, ErrorKind::Unavailable, Some(4_000)),
            (503, ErrorKind::Unavailable, Some(2_000)),
            (400, ErrorKind::InvalidInput, None),
        ];
        for (status, kind, retry) in cases {
            let err = interpret(&answer(status, "{}"), "bob", "suspend", false).expect_err("fails");
            assert_eq!((err.kind, err.retry_after_ms), (kind, retry), "{status}");
        }
    }
}
