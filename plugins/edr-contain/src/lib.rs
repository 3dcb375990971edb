//! EDR containment, shaped like CrowdStrike Falcon's API.
//!
//! 1. `POST {base}/oauth2/token` with the client credentials (secrets
//!    `client_id`, `client_secret`; setting `base_url`) → a bearer token,
//!    kept only for this call (never written anywhere).
//! 2. `GET {base}/devices/queries/devices/v1?filter=hostname:'<host>'` → the
//!    device id (the target is a hostname, or a device id with `aid:`).
//! 3. `POST {base}/devices/entities/devices-actions/v2?action_name=contain`
//!    with `{"ids": [id]}` (`lift_containment` with `{"op": "lift"}`, the
//!    undo). The run's idempotency key goes in `Idempotency-Key`.
//!
//! Errors say what to fix: a missing secret or setting is `misconfigured`;
//! 401/403 is `misconfigured` (credentials refused); 429 is `unavailable`
//! with the server's Retry-After (the executor retries per the step's
//! policy); 5xx is `unavailable`; an unknown host is `invalid input`. A host
//! already contained (or already released) is success: already in state.

use rampart_sdk::{ActionRequest, ActionResult, EntityKind, PluginError, Responder, config, http};
use serde_json::{Value, json};

struct EdrContain;

/// Maps an unsuccessful answer to a clear error.
fn failure(step: &str, response: &http::Response) -> PluginError {
    let status = response.status;
    match status {
        401 | 403 => PluginError::misconfigured(format!(
            "{step}: the EDR refused the credentials ({status}); check client_id/client_secret and the API scopes"
        )),
        429 => {
            let wait_ms = response.retry_after_ms().unwrap_or(1_000);
            PluginError::unavailable(
                format!("{step}: rate limited by the EDR (429)"),
                Some(wait_ms),
            )
        }
        500..=599 => {
            PluginError::unavailable(format!("{step}: the EDR failed ({status})"), Some(2_000))
        }
        _ => PluginError::invalid_input(format!(
            "{step}: the EDR answered {status}: {}",
            String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect::<String>()
        )),
    }
}

fn token(base: &str) -> Result<String, PluginError> {
    let id = config::secret("client_id").ok_or_else(|| {
        PluginError::misconfigured("secret `client_id` is not set for edr-contain")
    })?;
    let secret = config::secret("client_secret").ok_or_else(|| {
        PluginError::misconfigured("secret `client_secret` is not set for edr-contain")
    })?;
    let form = format!(
        "client_id={}&client_secret={}",
        http::encode(&id),
        http::encode(&secret)
    );
    let response = http::send(
        &http::Request::post(format!("{base}/oauth2/token"), form.into_bytes())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json"),
    )?;
    if !(200..300).contains(&response.status) {
        return Err(failure("token", &response));
    }
    response.json()?["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PluginError::unavailable("token: no access_token in the answer", None))
}

impl Responder for EdrContain {
    fn respond(request: ActionRequest, dry_run: bool) -> Result<ActionResult, PluginError> {
        let params: Value = serde_json::from_str(&request.params).unwrap_or(Value::Null);
        let lift = match params
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("contain")
        {
            "contain" => false,
            "lift" => true,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "op `{other}` is not contain or lift"
                )));
            }
        };
        if !matches!(request.target.kind, EntityKind::Hostname) {
            return Err(PluginError::invalid_input(format!(
                "edr-contain acts on hosts, not a {:?}",
                request.target.kind
            )));
        }
        let host = request.target.value.trim().to_owned();
        if host.is_empty() || host.contains(['\'', '"', '\\']) {
            return Err(PluginError::invalid_input(format!(
                "`{host}` is not a host name"
            )));
        }
        let action = if lift { "lift_containment" } else { "contain" };
        if dry_run {
            return Ok(ActionResult::planned(format!("would {action} {host}"))
                .data(&json!({"host": host, "action": action})));
        }
        let base = config::require("base_url")?;
        let base = base.trim_end_matches('/');
        let bearer = format!("Bearer {}", token(base)?);
        let device = match host.strip_prefix("aid:") {
            Some(id) => id.to_owned(),
            None => {
                let found = http::send(
                    &http::Request::get(format!(
                        "{base}/devices/queries/devices/v1?filter=hostname:'{}'",
                        http::encode(&host)
                    ))
                    .header("authorization", bearer.as_str())
                    .header("accept", "application/json"),
                )?;
                if found.status != 200 {
                    return Err(failure("device lookup", &found));
                }
                found.json()?["resources"][0]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        PluginError::invalid_input(format!("the EDR knows no host `{host}`"))
                    })?
            }
        };
        let body = json!({"ids": [device]}).to_string();
        let acted = http::send(
            &http::Request::post(
                format!("{base}/devices/entities/devices-actions/v2?action_name={action}"),
                body.into_bytes(),
            )
            .header("authorization", bearer.as_str())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("idempotency-key", request.idempotency_key.as_str()),
        )?;
        let undo = json!({"op": if lift { "contain" } else { "lift" }});
        let errors = acted
            .json()
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .unwrap_or_default();
        let already = errors.iter().any(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.to_ascii_lowercase().contains("already"))
        });
        match acted.status {
            200..=299 if errors.is_empty() => Ok(ActionResult::executed(format!(
                "{action} {host} (device {device})"
            ))
            .data(&json!({"device": device, "action": action, "undo": undo}))),
            _ if already || acted.status == 409 => Ok(ActionResult::already_in_state(format!(
                "{host} already in that state"
            ))
            .data(&json!({"device": device, "action": action, "undo": undo}))),
            _ => Err(failure(action, &acted)),
        }
    }
}

rampart_sdk::export_responder!(EdrContain);

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use rampart_sdk::{ActionOutcome, Entity, ErrorKind};

    fn request(kind: EntityKind, host: &str, params: &str) -> ActionRequest {
        ActionRequest {
            run_id: "run-1".into(),
            step_id: "contain".into(),
            idempotency_key: "key-1".into(),
            target: Entity::new(kind, host),
            params: params.into(),
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)]) -> http::Response {
        http::Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: br#"{"errors":[{"code":400,"message":"bad"}]}"#.to_vec(),
        }
    }

    #[test]
    fn dry_run_plans_contain_and_lift_without_touching_the_edr() {
        let plan =
            EdrContain::respond(request(EntityKind::Hostname, "wks-7", "{}"), true).expect("plan");
        assert_eq!(plan.outcome, ActionOutcome::Planned);
        assert_eq!(plan.summary, "would contain wks-7");
        let lift = EdrContain::respond(
            request(EntityKind::Hostname, "wks-7", r#"{"op": "lift"}"#),
            true,
        )
        .expect("plan");
        assert_eq!(lift.summary, "would lift_containment wks-7");
    }

    #[test]
    fn bad_requests_are_refused_before_any_call() {
        for (kind, host, params, says) in [
            (EntityKind::Ip, "10.0.0.1", "{}", "acts on hosts"),
            (EntityKind::Hostname, "wks'7", "{}", "not a host name"),
            (EntityKind::Hostname, "", "{}", "not a host name"),
            (
                EntityKind::Hostname,
                "wks-7",
                r#"{"op": "wipe"}"#,
                "not contain or lift",
            ),
        ] {
            let err = EdrContain::respond(request(kind, host, params), false).expect_err(says);
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert!(err.message.contains(says), "{}", err.message);
        }
    }

    #[test]
    fn each_failure_status_has_its_own_error() {
        let denied = failure("contain", &answer(401, &[]));
        assert_eq!(denied.kind, ErrorKind::Misconfigured);
        let limited = failure("contain", &answer(429, &[("Retry-After", "7")]));
        assert_eq!(
            (limited.kind, limited.retry_after_ms),
            (ErrorKind::Unavailable, Some(7_000))
        );
        let down = failure("contain", &answer(502, &[]));
        assert_eq!(
            (down.kind, down.retry_after_ms),
            (ErrorKind::Unavailable, Some(2_000))
        );
        let other = failure("contain", &answer(400, &[]));
        assert_eq!(other.kind, ErrorKind::InvalidInput);
        assert!(
            other.message.contains("\"message\":\"bad\""),
            "{}",
            other.message
        );
    }
}
