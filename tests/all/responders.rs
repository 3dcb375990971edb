//! `edr-contain` against a local server shaped like CrowdStrike Falcon's
//! API, which checks method, path, headers and body the way the vendor
//! documents them: OAuth2 client credentials, device lookup by hostname,
//! `devices-actions/v2?action_name=contain|lift_containment`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rampart::model::{ActionOutcome, ActionRequest, Entity, EntityKind};
use rampart::sandbox::{CallContext, PluginError};
use rampart::tenant::Secret;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use rampart_e2e::{grants_with, load, runtime, tenant};

#[derive(Default)]
struct Falcon {
    /// `ok`, `rate` (429 with Retry-After) or `fail` (503).
    mode: String,
    contained: bool,
    /// (method, path, idempotency key) of every request.
    seen: Vec<(String, String, Option<String>)>,
}

pub(crate) async fn read_request(
    socket: &mut tokio::net::TcpStream,
) -> Option<(String, String, BTreeMap<String, String>, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = socket.read(&mut buf).await.ok()?;
        if read == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..read]);
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.lines();
        let mut first = lines.next()?.split_whitespace();
        let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if bytes.len() >= end + 4 + length {
            return Some((
                method,
                path,
                headers,
                bytes[end + 4..end + 4 + length].to_vec(),
            ));
        }
    }
}

async fn falcon() -> (u16, Arc<Mutex<Falcon>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = Arc::new(Mutex::new(Falcon {
        mode: "ok".into(),
        ..Falcon::default()
    }));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let state = shared.clone();
            tokio::spawn(async move {
                let Some((method, path, headers, body)) = read_request(&mut socket).await else {
                    return;
                };
                let (status, extra, reply) = {
                    let mut falcon = state
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    falcon.seen.push((
                        method.clone(),
                        path.clone(),
                        headers.get("idempotency-key").cloned(),
                    ));
                    let authorised =
                        headers.get("authorization").map(String::as_str) == Some("Bearer tok-1");
                    let body_text = String::from_utf8_lossy(&body).into_owned();
                    match (method.as_str(), path.split('?').next().unwrap_or_default()) {
                        ("POST", "/oauth2/token") => {
                            let form_ok = headers.get("content-type").map(String::as_str)
                                == Some("application/x-www-form-urlencoded");
                            if form_ok && body_text == "client_id=falcon-id&client_secret=s3cr%26t"
                            {
                                (
                                    201,
                                    "",
                                    json!({"access_token": "tok-1", "expires_in": 1799, "token_type": "bearer"}),
                                )
                            } else {
                                (
                                    401,
                                    "",
                                    json!({"errors": [{"code": 401, "message": "access denied, invalid bearer token"}]}),
                                )
                            }
                        }
                        _ if !authorised => (
                            401,
                            "",
                            json!({"errors": [{"code": 401, "message": "access denied"}]}),
                        ),
                        _ if falcon.mode == "rate" => (
                            429,
                            "retry-after: 2\r\n",
                            json!({"errors": [{"code": 429, "message": "API rate limit exceeded."}]}),
                        ),
                        _ if falcon.mode == "fail" => (
                            503,
                            "",
                            json!({"errors": [{"code": 503, "message": "unavailable"}]}),
                        ),
                        ("GET", "/devices/queries/devices/v1") => {
                            let known = path.ends_with("filter=hostname:'wks-7'");
                            (
                                200,
                                "",
                                json!({"resources": if known { json!(["aid-123"]) } else { json!([]) }, "errors": []}),
                            )
                        }
                        ("POST", "/devices/entities/devices-actions/v2") => {
                            let action = path
                                .split("action_name=")
                                .nth(1)
                                .unwrap_or_default()
                                .to_owned();
                            let ids: Value =
                                serde_json::from_str(&body_text).unwrap_or(Value::Null);
                            let json_ok = headers.get("content-type").map(String::as_str)
                                == Some("application/json");
                            if !json_ok || ids != json!({"ids": ["aid-123"]}) {
                                (
                                    400,
                                    "",
                                    json!({"errors": [{"code": 400, "message": format!("bad body {body_text}")}]}),
                                )
                            } else if (action == "contain") == falcon.contained {
                                let message = if action == "contain" {
                                    "Device is already contained"
                                } else {
                                    "Device is already not contained"
                                };
                                (
                                    200,
                                    "",
                                    json!({"resources": [], "errors": [{"code": 409, "message": message}]}),
                                )
                            } else {
                                falcon.contained = action == "contain";
                                (
                                    202,
                                    "",
                                    json!({"resources": [{"id": "aid-123", "path": ""}], "errors": []}),
                                )
                            }
                        }
                        _ => (
                            404,
                            "",
                            json!({"errors": [{"code": 404, "message": "no route"}]}),
                        ),
                    }
                };
                let text = reply.to_string();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, state)
}

fn request(key: &str, host: &str, params: Value) -> ActionRequest {
    ActionRequest {
        run_id: "run-1".into(),
        step_id: "contain".into(),
        idempotency_key: key.into(),
        target: Entity {
            kind: EntityKind::Hostname,
            value: host.into(),
        },
        params,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edr_contain_speaks_the_falcon_api_and_reports_each_failure_clearly() {
    let (port, state) = falcon().await;
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let grants = |secret: Option<&str>| {
        grants_with(None, |grant| {
            grant.http_hosts = vec![format!("127.0.0.1:{port}")];
            grant.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
            grant
                .settings
                .insert("base_url".into(), format!("http://127.0.0.1:{port}"));
            grant
                .secrets
                .insert("client_id".into(), Secret::new("falcon-id"));
            if let Some(secret) = secret {
                grant
                    .secrets
                    .insert("client_secret".into(), Secret::new(secret));
            }
        })
    };
    let plugin = load(&runtime, &acme, &grants(Some("s3cr&t")), "edr-contain").await;
    let context = CallContext::default();

    // Dry run: planned, and no request reaches the EDR.
    let planned = plugin
        .respond(&request("k0", "wks-7", json!({})), true, &context)
        .await
        .expect("plan");
    assert_eq!(planned.value.outcome, ActionOutcome::Planned);
    assert!(state.lock().expect("state").seen.is_empty());

    let done = plugin
        .respond(&request("k1", "wks-7", json!({})), false, &context)
        .await
        .expect("contain");
    assert_eq!(
        done.value.outcome,
        ActionOutcome::Executed,
        "{:?}",
        done.value
    );
    assert_eq!(done.value.data["undo"], json!({"op": "lift"}));
    {
        let falcon = state.lock().expect("state");
        assert!(falcon.contained);
        let paths: Vec<&str> = falcon.seen.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/oauth2/token",
                "/devices/queries/devices/v1?filter=hostname:'wks-7'",
                "/devices/entities/devices-actions/v2?action_name=contain"
            ]
        );
        assert_eq!(
            falcon.seen[2].2.as_deref(),
            Some("k1"),
            "idempotency key forwarded"
        );
    }
    // Again: already contained is success.
    let again = plugin
        .respond(&request("k2", "wks-7", json!({})), false, &context)
        .await
        .expect("again");
    assert_eq!(again.value.outcome, ActionOutcome::AlreadyInState);
    // The undo lifts containment.
    let lifted = plugin
        .respond(
            &request("k3", "wks-7", json!({"op": "lift"})),
            false,
            &context,
        )
        .await
        .expect("lift");
    assert_eq!(lifted.value.outcome, ActionOutcome::Executed);
    assert!(!state.lock().expect("state").contained);

    // Each failure with its own clear error.
    let message = |err: PluginError| err.to_string();
    let unknown = plugin
        .respond(&request("k4", "ghost-1", json!({})), false, &context)
        .await
        .expect_err("unknown host");
    assert!(message(unknown).contains("knows no host `ghost-1`"));
    state.lock().expect("state").mode = "rate".into();
    let limited = plugin
        .respond(&request("k5", "wks-7", json!({})), false, &context)
        .await
        .expect_err("429");
    let PluginError::Guest(guest) = &limited else {
        panic!("{limited:?}")
    };
    assert_eq!(
        guest.retry_after_ms,
        Some(2_000),
        "Retry-After honoured: {limited}"
    );
    state.lock().expect("state").mode = "fail".into();
    let failed = plugin
        .respond(&request("k6", "wks-7", json!({})), false, &context)
        .await
        .expect_err("503");
    assert!(message(failed).contains("the EDR failed (503)"));
    state.lock().expect("state").mode = "ok".into();
    let wrong = load(&runtime, &acme, &grants(Some("wrong")), "edr-contain").await;
    let refused = wrong
        .respond(&request("k7", "wks-7", json!({})), false, &context)
        .await
        .expect_err("401");
    let refused = message(refused);
    assert!(refused.contains("refused the credentials (401)"));
    assert!(
        !refused.contains("wrong"),
        "the secret never shows in an error"
    );
    let missing = load(&runtime, &acme, &grants(None), "edr-contain").await;
    let unset = missing
        .respond(&request("k8", "wks-7", json!({})), false, &context)
        .await
        .expect_err("no secret");
    assert!(message(unset).contains("secret `client_secret` is not set"));
}

/// `idp-suspend` against a local server shaped like Okta's user lifecycle
/// API (`POST /api/v1/users/{id}/lifecycle/suspend|unsuspend`, `SSWS` token,
/// `E0000001` when the user is already in that state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_suspend_speaks_the_okta_lifecycle_api() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let suspended = Arc::new(Mutex::new(false));
    let shared = suspended.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let suspended = shared.clone();
            tokio::spawn(async move {
                let Some((method, path, headers, _)) = read_request(&mut socket).await else {
                    return;
                };
                let (status, reply) = {
                    let mut state = suspended
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let authorised =
                        headers.get("authorization").map(String::as_str) == Some("SSWS okta-token");
                    match (method.as_str(), path.as_str()) {
                        _ if !authorised => (
                            401,
                            json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"}),
                        ),
                        ("POST", "/api/v1/users/bob%40acme.example/lifecycle/suspend")
                            if *state =>
                        {
                            (
                                400,
                                json!({"errorCode": "E0000001", "errorSummary": "Api validation failed: Cannot suspend a user that is not active"}),
                            )
                        }
                        ("POST", "/api/v1/users/bob%40acme.example/lifecycle/suspend") => {
                            *state = true;
                            (200, json!({}))
                        }
                        ("POST", "/api/v1/users/bob%40acme.example/lifecycle/unsuspend") => {
                            *state = false;
                            (200, json!({}))
                        }
                        _ => (
                            404,
                            json!({"errorCode": "E0000007", "errorSummary": "Not found"}),
                        ),
                    }
                };
                let text = reply.to_string();
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    let (runtime, _) = runtime();
    let acme = tenant("acme");
    let grants = |token: &str| {
        let token = token.to_owned();
        grants_with(None, move |grant| {
            grant.http_hosts = vec![format!("127.0.0.1:{port}")];
            grant.allow_private = vec!["127.0.0.0/8".parse().expect("cidr")];
            grant
                .settings
                .insert("base_url".into(), format!("http://127.0.0.1:{port}"));
            grant.secrets.insert("api_token".into(), Secret::new(token));
        })
    };
    let plugin = load(&runtime, &acme, &grants("okta-token"), "idp-suspend").await;
    let context = CallContext::default();
    let user = |key: &str, op: &str| ActionRequest {
        run_id: "run-1".into(),
        step_id: "suspend".into(),
        idempotency_key: key.into(),
        target: Entity {
            kind: EntityKind::User,
            value: "bob@acme.example".into(),
        },
        params: json!({"op": op}),
    };
    let done = plugin
        .respond(&user("k1", "suspend"), false, &context)
        .await
        .expect("suspend");
    assert_eq!(
        done.value.outcome,
        ActionOutcome::Executed,
        "{:?}",
        done.value
    );
    assert!(*suspended.lock().expect("state"));
    let again = plugin
        .respond(&user("k2", "suspend"), false, &context)
        .await
        .expect("again");
    assert_eq!(
        again.value.outcome,
        ActionOutcome::AlreadyInState,
        "E0000001 is success"
    );
    let undone = plugin
        .respond(&user("k3", "unsuspend"), false, &context)
        .await
        .expect("undo");
    assert_eq!(undone.value.outcome, ActionOutcome::Executed);
    assert!(!*suspended.lock().expect("state"));
    let wrong = load(&runtime, &acme, &grants("stale"), "idp-suspend").await;
    let refused = wrong
        .respond(&user("k4", "suspend"), false, &context)
        .await
        .expect_err("401");
    assert!(
        refused.to_string().contains("refused the API token (401)"),
        "{refused}"
    );
    assert!(!refused.to_string().contains("stale"));
}
