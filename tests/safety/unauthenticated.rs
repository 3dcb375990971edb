//! The token is checked before anything of a request is read or parsed.

use std::sync::Arc;

use futures::future::join_all;

use crate::harness::Server;
use crate::{raw, serial};

/// This process's resident set, KiB (the server runs in it).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn request(
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
    content_type: &str,
) -> String {
    let auth = auth.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nhost: rampart\r\n{auth}content-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_without_a_valid_token_get_401() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &server.admin,
            &serde_json::json!({"id": "acme"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00, 0x80]),
        ("application/json", b"[1, 2, 3]".to_vec()),
        ("application/json", b"{\"id\": 12}".to_vec()),
        ("text/csv", b"\xff,\xfe\n".to_vec()),
        ("application/json", Vec::new()),
    ];
    let paths = [
        ("POST", "/v1/tenants/acme/alerts"),
        ("POST", "/v1/tenants/anything/alerts"),
        ("GET", "/v1/tenants/acme/runs?limit=abc&since=yesterday"),
        ("GET", "/v1/tenants/acme/runs?status=%ZZ"),
        ("GET", "/v1/tenants/%ZZ/runs"),
        ("GET", "/v1/tenants/%FF%FE/runs/x"),
        (
            "GET",
            "/v1/tenants/acme/audit?after_seq=-1&limit=99999999999999999999",
        ),
        ("GET", "/v1/tenants/acme/measurements?since=x"),
        ("PUT", "/v1/tenants/acme/playbooks/p"),
        ("PUT", "/v1/tenants/acme/inventory"),
        ("POST", "/v1/tenants/acme/approvals/x/approve"),
        ("POST", "/v1/tenants/acme/events"),
        ("POST", "/v1/tenants"),
        ("POST", "/v1/intel/feeds/ipsum"),
        ("GET", "/v1/no/such/endpoint?x=%"),
        ("GET", "/metrics"),
    ];
    let auths = [
        None,
        Some("Bearer rmp_forged"),
        Some("Basic Zm9vOmJhcg=="),
        Some("Bearer "),
    ];
    let (mut cases, mut not_401) = (0, Vec::new());
    for (method, path) in paths {
        for (content_type, body) in &bodies {
            for auth in auths {
                cases += 1;
                let head = request(method, path, auth, body, content_type);
                let (status, _, text) = raw(server.addr, head, body.clone()).await;
                if status != 401 {
                    not_401.push(format!(
                        "{method} {path} {auth:?} {content_type}: {status} {text}"
                    ));
                }
            }
        }
    }
    println!(
        "[unauthenticated] {cases} malformed requests, {} not 401",
        not_401.len()
    );
    assert!(not_401.is_empty(), "{not_401:#?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_16_mib_bodies_cost_no_memory() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Arc::new(Server::start(dir.path(), None).await);
    // A 16 MiB JSON array of small objects: as a `serde_json::Value` tree it
    // would take well over a gigabyte.
    let mut body = b"[".to_vec();
    while body.len() < (16 << 20) - 16 {
        body.extend_from_slice(b"{\"a\":[1,2]},");
    }
    body.pop();
    body.push(b']');
    let body = bytes::Bytes::from(body);
    let before = rss_kib();
    let mut peak = before;
    for round in 0..3 {
        let sends = (0..4).map(|_| {
            let server = server.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let head = request(
                    "POST",
                    "/v1/tenants/anything/alerts",
                    None,
                    &body,
                    "application/json",
                );
                raw(server.addr, head, body).await.0
            })
        });
        let statuses: Vec<u16> = join_all(sends)
            .await
            .into_iter()
            .map(|s| s.expect("task"))
            .collect();
        assert!(
            statuses.iter().all(|s| *s == 401),
            "round {round}: {statuses:?}"
        );
        peak = peak.max(rss_kib());
    }
    let grown_mib = (peak.saturating_sub(before)) / 1024;
    println!(
        "[unauthenticated] 12 x 16 MiB bodies (4 at once): RSS {} -> peak {} MiB (+{grown_mib} MiB); all 401",
        before / 1024,
        peak / 1024
    );
    // The test's one copy of the body was allocated before `before`.
    assert!(grown_mib < 64, "RSS grew {grown_mib} MiB");
    let (status, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    Arc::into_inner(server).expect("one owner").stop().await;
}
