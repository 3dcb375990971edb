//! Ways in and out: OCSF findings as alerts, the ingest rate, the EDL for firewalls, CSV inventories.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsf_detection_findings_are_ingested_as_alerts() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/alerts/ocsf-detection-finding.json"
    ))
    .expect("fixture");
    let finding: Value = serde_json::from_str(&text).expect("json");
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &finding,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    let alert = &run["alert"];
    assert_eq!(alert["id"], "ocsf-finding-0001");
    assert_eq!(alert["source"], "ExampleEDR");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["techniques"], json!(["T1059.001", "T1071"]));
    assert_eq!(
        alert["entities"][0],
        json!({"kind": "ip", "value": "77.239.124.102"}),
        "{alert}"
    );
    assert_eq!(run["steps"]["act"]["target"]["value"], "77.239.124.102");
    // Another OCSF class, or a finding without its uid, is refused with where.
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &json!([alert_value("ok-1"), {"class_uid": 3002}]),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["location"]["index"], 1, "{reply}");
    let (_, runs) = server
        .call(
            "GET",
            "/v1/tenants/acme/runs",
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(
        runs["runs"].as_array().map(Vec::len),
        Some(1),
        "a refused batch accepts nothing"
    );
    server.stop().await;
}

fn alert_value(id: &str) -> Value {
    alert(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_rate_limited_per_tenant() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let admin = server.admin.clone();
    assert_eq!(
        server
            .json(
                "POST",
                "/v1/tenants",
                &admin,
                &json!({"id": "slow", "ingest_per_second": 2})
            )
            .await
            .0,
        201
    );
    let batch: Vec<Value> = (0..4).map(|i| alert(&format!("r{i}"))).collect();
    assert_eq!(
        server
            .json("POST", "/v1/tenants/slow/alerts", &admin, &json!(batch))
            .await
            .0,
        200,
        "burst of 2x the rate"
    );
    let (status, reply) = server
        .json("POST", "/v1/tenants/slow/alerts", &admin, &alert("r9"))
        .await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["error"], "rate_limited");
    server.stop().await;
}

/// The EDL a firewall polls: plain text, basic auth with a tenant token,
/// only the tenant's own list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edl_is_served_to_firewalls_with_basic_auth() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let globex = tenant(&server, "globex").await;
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("edl-1"),
        )
        .await;
    assert!(reply["results"][0]["runs"][0].is_string(), "{reply}");
    approve_first_pending(&server, &tokens).await;
    let basic = |token: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("firewall:{token}"))
        )
    };
    let get = |auth: Option<String>, path: &'static str| {
        let addr = server.addr;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let auth = auth
                .map(|a| format!("authorization: {a}\r\n"))
                .unwrap_or_default();
            let request =
                format!("GET {path} HTTP/1.1\r\nhost: fw\r\n{auth}connection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    let listed = get(Some(basic(&tokens["viewer"])), "/edl/acme/block").await;
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains("content-type: text/plain"), "{listed}");
    assert!(listed.ends_with("203.0.113.9\n"), "{listed}");
    let anonymous = get(None, "/edl/acme/block").await;
    assert!(
        anonymous.starts_with("HTTP/1.1 401") && anonymous.contains("www-authenticate: Basic"),
        "{anonymous}"
    );
    let forged = get(Some(basic("rmp_forged")), "/edl/acme/block").await;
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    let foreign = get(Some(basic(&globex["viewer"])), "/edl/acme/block").await;
    assert!(
        foreign.starts_with("HTTP/1.1 404"),
        "another tenant's token: {foreign}"
    );
    let empty = get(Some(basic(&globex["viewer"])), "/edl/globex/block").await;
    assert!(
        empty.starts_with("HTTP/1.1 200") && empty.ends_with("\r\n\r\n\n"),
        "{empty}"
    );
    let traversal = get(Some(basic(&tokens["viewer"])), "/edl/acme/..%2Fidem").await;
    assert!(traversal.starts_with("HTTP/1.1 404"), "{traversal}");
    server.stop().await;
}

/// Inventory and identity imports over HTTP: the example CSVs are accepted
/// and read back; a file with problems is refused with every problem (line
/// and column) and the old table stays in place; roles apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_and_identities_import_as_csv() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/context");
    let assets = std::fs::read_to_string(format!("{examples}/assets.csv")).expect("assets");
    let users = std::fs::read_to_string(format!("{examples}/users.csv")).expect("users");

    let (status, body) = server
        .csv("/v1/tenants/acme/inventory", &admin, &assets)
        .await;
    assert_eq!((status, &body["assets"]), (200, &json!(11)), "{body}");
    let (status, body) = server
        .csv("/v1/tenants/acme/identities", &admin, &users)
        .await;
    assert_eq!((status, &body["identities"]), (200, &json!(6)), "{body}");

    let bad = "hostname,ips,criticality\nweb-1,10.0.0.300,extreme\nweb-1,,low\n";
    let (status, body) = server.csv("/v1/tenants/acme/inventory", &admin, bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_table");
    let problems = body["location"]["problems"].as_array().expect("problems");
    let lines: Vec<(u64, &str)> = problems
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().expect("line"),
                p["column"].as_str().expect("column"),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [(2, "ips"), (2, "criticality"), (3, "hostname")],
        "{body}"
    );

    let viewer = &tokens["viewer"];
    let (status, inventory) = server
        .call("GET", "/v1/tenants/acme/inventory", Some(viewer), None)
        .await;
    assert_eq!(status, 200);
    let assets = inventory["assets"].as_array().expect("assets");
    assert_eq!(assets.len(), 11, "the refused file replaced nothing");
    let dc = assets
        .iter()
        .find(|a| a["name"] == "MORDORDC.theshire.local")
        .expect("dc");
    assert_eq!(
        (&dc["criticality"], &dc["protected"]),
        (&json!("critical"), &json!(true))
    );
    let (status, people) = server
        .call("GET", "/v1/tenants/acme/identities", Some(viewer), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(people["identities"][0]["user"], "wardog");
    assert_eq!(people["identities"][0]["privileged"], true);
    let (status, _) = server
        .csv("/v1/tenants/acme/identities", viewer, &users)
        .await;
    assert_eq!(status, 403, "a viewer cannot replace the directory");
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/identities",
            Some(&admin),
            Some(b"{\"identities\": 3}".to_vec()),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("invalid_json")),
        "{body}"
    );
}

/// Grants that leave out `kv_quota_bytes` get the documented 16 MiB, the
/// same as every other path: the kv-using blocklist responder works for a
/// tenant created over the API with a bare capability list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_without_a_kv_quota_get_the_default() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let grants = json!({"default": {"capabilities": ["log", "kv", "memory", "config"]}});
    let tokens = tenant_granted(&server, "acme", grants).await;
    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("kv-1"),
        )
        .await;
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    approve_first_pending(&server, &tokens).await;
    let (_, run) = server
        .call(
            "GET",
            &format!("/v1/tenants/acme/runs/{run_id}"),
            Some(&tokens["viewer"]),
            None,
        )
        .await;
    assert_eq!(
        run["steps"]["act"]["output"]["outcome"], "executed",
        "{run}"
    );
    server.stop().await;
}
