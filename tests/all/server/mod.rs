//! The HTTP API, served for real on a loopback port over a temp data dir:
//! the whole flow, the authorisation matrix, bad input, and a restart.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Server, upload, upload_fixture};

const PLAYBOOK: &str = r#"name: block
trigger: { alert: 'true' }
mode: supervised
steps:
  - id: risk
    score: risk-scorer
  - id: act
    respond: edl-blocklist
    needs: [risk]
    target: 'alert.entities.ip[0]'
    guard: { external_target: true }
"#;

fn alert(id: &str) -> Value {
    json!({"id": id, "source": "edr", "title": "beacon", "severity": "high", "entities": [{"kind": "ip", "value": "203.0.113.9"}]})
}

/// Sets up tenant `name` with plugins and the playbook; returns its tokens by role.
async fn tenant(server: &Server, name: &str) -> std::collections::BTreeMap<&'static str, String> {
    let grants = json!({"default": {"capabilities": ["log", "kv", "memory", "config"], "kv_quota_bytes": 1048576}});
    tenant_granted(server, name, grants).await
}

/// [`tenant`] with these `grants`.
async fn tenant_granted(
    server: &Server,
    name: &str,
    grants: Value,
) -> std::collections::BTreeMap<&'static str, String> {
    let admin = server.admin.clone();
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants",
                &admin,
                &json!({"id": name, "grants": grants})
            )
            .await
            .0,
        201
    );
    for plugin in ["risk-scorer", "edl-blocklist"] {
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/{name}/plugins"),
                &admin,
                &upload(plugin),
            )
            .await;
        assert_eq!(status, 201, "{plugin}: {body}");
    }
    let (status, body) = server
        .call(
            "PUT",
            &format!("/v1/tenants/{name}/playbooks/block"),
            Some(&admin),
            Some(PLAYBOOK.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/{name}/tokens"),
                &admin,
                &json!({"principal": format!("{role}@{name}"), "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        tokens.insert(role, body["token"].as_str().expect("token").to_owned());
    }
    tokens
}

/// The analyst approves acme's first pending approval ("confirmed C2");
/// the approve call's body.
async fn approve_first_pending(
    server: &Server,
    tokens: &std::collections::BTreeMap<&'static str, String>,
) -> Value {
    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    let approval = pending["approvals"][0]["id"]
        .as_str()
        .expect("approval")
        .to_owned();
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{approval}/approve"),
            &tokens["analyst"],
            &json!({"reason": "confirmed C2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if std::fs::read(&path).is_ok_and(|bytes| contains(&bytes, needle)) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

mod authorisation;
mod detections;
mod hostile_input;
mod hunts;
mod ingest;
mod lifecycle;
mod secrets;
mod tls;
mod webhooks;
