//! A quorum counts people: principals with stable ids, names validated and
//! unique, no token minted for someone else or above one's role, no vote
//! from a principal created after the request, none from the requester.

use serde_json::json;

use crate::harness::Server;
use crate::{alert, ingest, serial, supervised, tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sock_puppets_do_not_meet_a_quorum() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme", &[("two", supervised("two", 2))], 2).await;
    let boss = tokens["tenant-admin"].clone();
    let mint = |principal: &str, role: &str| json!({"principal": principal, "role": role});

    let run = ingest(&server, "acme", &tokens["ingest"], &alert("a1", 1)).await;
    let approve = format!("/v1/tenants/acme/approvals/{run}.act/approve");

    // Puppets minted after the request do not count, whoever votes.
    let mut puppets = Vec::new();
    for name in ["sock-puppet-1", "sock-puppet-2"] {
        let (status, body) = server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &boss,
                &mint(name, "analyst"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        puppets.push(body["token"].as_str().expect("token").to_owned());
    }
    let (status, body) = server
        .json("POST", &approve, &boss, &json!({"reason": "mine"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "pending");
    for puppet in &puppets {
        let (status, body) = server
            .json("POST", &approve, puppet, &json!({"reason": "agree"}))
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "approver_ineligible", "{body}");
    }
    // A second token of the same principal is the same voter.
    let (status, body) = server
        .json("POST", &approve, &boss, &json!({"reason": "again"}))
        .await;
    assert_eq!(status, 409, "{body}");
    // A real second person meets it.
    let (status, body) = server
        .json(
            "POST",
            &approve,
            &tokens["analyst-1"],
            &json!({"reason": "agree"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "approved");
    let ids: Vec<&str> = body["approvals"]
        .as_array()
        .expect("votes")
        .iter()
        .map(|v| v["principal_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|id| id.starts_with("prn-")), "{ids:?}");

    // No token for an existing principal but one's own, nor for the admin's name.
    for (name, role, expected) in [
        ("analyst-1", "analyst", 409),
        ("root", "analyst", 409),
        ("tenant-admin", "analyst", 409),
        ("bad\nname", "analyst", 400),
        ("nul\u{0}name", "analyst", 400),
        (" padded", "analyst", 400),
        ("", "analyst", 400),
    ] {
        let (status, body) = server
            .json("POST", "/v1/tenants/acme/tokens", &boss, &mint(name, role))
            .await;
        assert_eq!(status, expected, "{name:?}: {body}");
    }
    let long = "x".repeat(129);
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &boss,
                &mint(&long, "analyst")
            )
            .await
            .0,
        400
    );
    // The boss may mint more of its own tokens (same role), not an admin's.
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &boss,
                &mint("tenant-admin", "tenant-admin")
            )
            .await
            .0,
        201
    );
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &boss,
                &mint("overlord", "admin")
            )
            .await
            .0,
        403
    );
    // An analyst mints nothing.
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &tokens["analyst-1"],
                &mint("helper", "viewer")
            )
            .await
            .0,
        403
    );
    // Lifetimes: neither zero nor beyond ten years.
    for ttl in [0u64, 9_223_372_036_854_775, 10 * 365 * 24 * 3600 + 1] {
        let (status, body) = server
            .json(
                "POST",
                "/v1/tenants/acme/tokens",
                &boss,
                &json!({"principal": format!("ttl-{ttl}"), "role": "viewer", "ttl_secs": ttl}),
            )
            .await;
        assert_eq!(status, 400, "ttl {ttl}: {body}");
    }
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &boss,
            &json!({"principal": "short-lived", "role": "viewer", "ttl_secs": 3600}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires"].as_i64().expect("expires") > 0);

    // The playbook's owner requests its actions and may not approve them.
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/two",
            Some(&boss),
            Some(supervised("two", 2).into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = ingest(&server, "acme", &tokens["ingest"], &alert("a2", 2)).await;
    let (status, body) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{run}.act/approve"),
            &boss,
            &json!({"reason": "my own playbook"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "approver_ineligible");
    server.stop().await;
}
