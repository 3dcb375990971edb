//! Control-plane safety through the real server on loopback: approvals
//! decided once under real concurrency, quorums of people, nothing parsed
//! before the token, bounded expressions, and the probes' smaller findings.
//!
//! A test binary of its own, its tests one at a time (`serial`): one
//! measures this process's RSS, others latency, and both need a quiet
//! process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fairness;
#[path = "../all/harness.rs"]
mod harness;
mod principals;
mod probes;
mod queue;
mod races;
mod tampering;
mod unauthenticated;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{Server, upload};

/// One test at a time (a test that panics releases it).
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A supervised playbook `name` whose one action (the EDL blocklist on the
/// alert's IP) needs `approvers` distinct approvers.
pub fn supervised(name: &str, approvers: u32) -> String {
    format!(
        r#"name: {name}
trigger: {{ alert: 'true' }}
mode: supervised
steps:
  - id: act
    respond: edl-blocklist
    target: 'alert.entities.ip[0]'
    guard: {{ approvers: {approvers}, approval_timeout: 1h, external_target: true }}
guardrails:
  rate_limits: {{ edl-blocklist: 100000/h }}
"#
    )
}

/// An alert with one IP; distinct `n` give distinct IPs.
pub fn alert(id: &str, n: u32) -> Value {
    json!({"id": id, "source": "edr", "title": "beacon", "severity": "high",
        "entities": [{"kind": "ip", "value": format!("198.51.{}.{}", (n / 250) % 250, n % 250 + 1)}]})
}

/// Creates tenant `name` with the EDL plugin and `playbooks` (put by the
/// server admin); returns its tokens by principal: `tenant-admin`,
/// `ingest`, `viewer` and `analyst-1` … `analyst-{analysts}`.
pub async fn tenant(
    server: &Server,
    name: &str,
    playbooks: &[(&str, String)],
    analysts: usize,
) -> BTreeMap<String, String> {
    let admin = server.admin.clone();
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &admin,
            &json!({"id": name, "grants": {"default": {"capabilities": ["log", "kv", "memory", "config"], "kv_quota_bytes": 4194304}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/{name}/plugins"),
            &admin,
            &upload("edl-blocklist"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for (playbook, yaml) in playbooks {
        let (status, body) = server
            .call(
                "PUT",
                &format!("/v1/tenants/{name}/playbooks/{playbook}"),
                Some(&admin),
                Some(yaml.as_bytes().to_vec()),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let mut tokens = BTreeMap::new();
    let mut wanted: Vec<(String, &str)> = vec![
        ("tenant-admin".to_owned(), "tenant-admin"),
        ("ingest".to_owned(), "ingest"),
        ("viewer".to_owned(), "viewer"),
    ];
    wanted.extend((1..=analysts).map(|i| (format!("analyst-{i}"), "analyst")));
    for (principal, role) in wanted {
        let (status, body) = server
            .json(
                "POST",
                &format!("/v1/tenants/{name}/tokens"),
                &admin,
                &json!({"principal": principal, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{principal}: {body}");
        tokens.insert(principal, body["token"].as_str().expect("token").to_owned());
    }
    tokens
}

/// Ingests `alert` and returns its run id (the approval is `<run>.act`).
pub async fn ingest(server: &Server, tenant: &str, token: &str, alert: &Value) -> String {
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/{tenant}/alerts"),
            token,
            alert,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["results"][0]["runs"][0]
        .as_str()
        .expect("a run")
        .to_owned()
}

/// How many audit records of `kind` the run has.
pub async fn audit_count(
    server: &Server,
    tenant: &str,
    token: &str,
    run: &str,
    kind: &str,
) -> usize {
    let (status, body) = server
        .call(
            "GET",
            &format!("/v1/tenants/{tenant}/audit?run={run}&kind={kind}&limit=1000"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().map_or(0, Vec::len)
}

/// A raw HTTP/1.1 exchange: writes `head` and `body` (ignoring a peer that
/// stops reading), returns the status line's code, the response head and
/// the body text. For requests the server answers before reading them.
pub async fn raw(
    addr: std::net::SocketAddr,
    head: String,
    body: impl AsRef<[u8]> + Send + 'static,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(head.as_bytes()).await;
        let _ = writer.write_all(body.as_ref()).await;
        writer
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), reader.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&response);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if response.len() >= end + 4 + length {
                break;
            }
        }
    }
    sending.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}
