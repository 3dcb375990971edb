//! Every operation for every role and tenant: what each principal may do and see.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix_and_tenant_isolation() {
    let dir = tempfile::tempdir().expect("dir");
    matrix(Server::start(dir.path(), None).await).await;
}

/// The same matrix, unchanged, on a server whose state is in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix_and_tenant_isolation_on_postgres() {
    let dir = tempfile::tempdir().expect("dir");
    let store = crate::conformance::fresh_pg();
    let server = Server::start_on(
        dir.path(),
        None,
        None,
        rampart::RuntimeConfig::default(),
        Default::default(),
        store,
    )
    .await;
    matrix(server).await;
}

async fn matrix(server: Server) {
    let acme = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let (_, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &acme["ingest"],
            &alert("a1"),
        )
        .await;
    let run_id = body["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, pending) = server
        .call(
            "GET",
            "/v1/tenants/acme/approvals",
            Some(&acme["viewer"]),
            None,
        )
        .await;
    let approval = pending["approvals"][0]["id"]
        .as_str()
        .expect("approval")
        .to_owned();

    // (method, path, body, role that may) for every tenant endpoint.
    let endpoints: Vec<(&str, String, Option<Value>, &[&str])> = vec![
        (
            "GET",
            "/v1/tenants/acme/runs".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            format!("/v1/tenants/acme/runs/{run_id}"),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/playbooks".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/approvals".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/audit/verify".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/measurements".into(),
            None,
            &["tenant-admin", "analyst", "viewer"],
        ),
        (
            "GET",
            "/v1/tenants/acme/audit/export".into(),
            None,
            &["tenant-admin"],
        ),
        (
            "PUT",
            "/v1/tenants/acme/inventory".into(),
            Some(json!({"assets": []})),
            &["tenant-admin"],
        ),
        // A tenant admin may do everything in its tenant.
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            Some(alert("matrix")),
            &["ingest", "tenant-admin"],
        ),
        (
            "POST",
            format!("/v1/tenants/acme/approvals/{approval}/deny"),
            Some(json!({"reason": "matrix"})),
            &["analyst", "tenant-admin"],
        ),
    ];
    for (method, path, body, allowed) in &endpoints {
        for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
            if allowed.contains(&role) {
                continue; // exercised by the allowed calls below
            }
            let (status, reply) = match body {
                Some(body) => server.json(method, path, &acme[role], body).await,
                None => server.call(method, path, Some(&acme[role]), None).await,
            };
            assert_eq!(status, 403, "{role} {method} {path}: {reply}");
            assert!(
                reply["error"].is_string() && reply["detail"].is_string(),
                "error shape: {reply}"
            );
            // Tenant B's tokens of every role see nothing of tenant A.
            let (status, _) = match body {
                Some(body) => server.json(method, path, &globex[role], body).await,
                None => server.call(method, path, Some(&globex[role]), None).await,
            };
            assert_eq!(status, 404, "globex {role} {method} {path}");
        }
        let role = allowed[0];
        let (status, reply) = match body {
            Some(body) => server.json(method, path, &acme[role], body).await,
            None => server.call(method, path, Some(&acme[role]), None).await,
        };
        assert!(status < 300, "{role} {method} {path}: {status} {reply}");
    }
    // Admin-only endpoints.
    for role in ["tenant-admin", "analyst", "ingest", "viewer"] {
        assert_eq!(
            server
                .call("GET", "/v1/tenants", Some(&acme[role]), None)
                .await
                .0,
            403,
            "{role}"
        );
        assert_eq!(
            server
                .json("POST", "/v1/tenants", &acme[role], &json!({"id": "evil"}))
                .await
                .0,
            403,
            "{role}"
        );
    }
    // Only an admin may grant private ranges.
    let grants = json!({"default": {"capabilities": ["http"], "http_hosts": ["10.0.0.5"], "allow_private": ["10.0.0.0/8"]}});
    assert_eq!(
        server
            .json(
                "PUT",
                "/v1/tenants/acme/grants",
                &acme["tenant-admin"],
                &grants
            )
            .await
            .0,
        403
    );
    // Nothing changed for globex by acme's attempts, and acme's run is intact.
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/globex/runs",
            Some(&globex["viewer"]),
            None,
        )
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0));
    // No, garbage, revoked and expired tokens.
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", None, None)
            .await
            .0,
        401
    );
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some("rmp_forged"), None)
            .await
            .0,
        401
    );
    let (_, made) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &acme["tenant-admin"],
            &json!({"principal": "temp", "role": "viewer", "ttl_secs": 1}),
        )
        .await;
    let temp = made["token"].as_str().expect("token").to_owned();
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&temp), None)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&temp), None)
            .await
            .0,
        401,
        "expired"
    );
    let (_, made) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &acme["tenant-admin"],
            &json!({"principal": "gone", "role": "viewer"}),
        )
        .await;
    let gone = made["token"].as_str().expect("token").to_owned();
    let id = made["id"].as_str().expect("id").to_owned();
    assert_eq!(
        server
            .call(
                "POST",
                &format!("/v1/tenants/acme/tokens/{id}/revoke"),
                Some(&acme["tenant-admin"]),
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call("GET", "/v1/tenants/acme/runs", Some(&gone), None)
            .await
            .0,
        401,
        "revoked"
    );
    server.stop().await;
}
