//! A pending approval is announced to a signed webhook.

use super::*;

/// Receives HTTP requests and hands each (head, body) to the test.
async fn webhook_receiver() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (sink, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut bytes = Vec::new();
            let mut buf = [0u8; 4096];
            let (head, body) = loop {
                let Ok(read) = socket.read(&mut buf).await else {
                    break (String::new(), Vec::new());
                };
                if read == 0 {
                    break (String::new(), Vec::new());
                }
                bytes.extend_from_slice(&buf[..read]);
                let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    break (head, bytes[end + 4..end + 4 + length].to_vec());
                }
            };
            let _ = socket
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
            let _ = sink.send((head, body));
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_is_announced_to_a_signed_webhook() {
    use hmac::Mac as _;
    const SECRET: &str = "whsec-0123456789abcdef";
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let (port, mut received) = webhook_receiver().await;
    let hook = json!({"url": format!("http://127.0.0.1:{port}/hooks/rampart"), "secret": SECRET});
    // A loopback receiver is an internal address: a tenant admin may not
    // point the server at it, an admin may.
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/webhooks/approvals",
            &tokens["tenant-admin"],
            &hook,
        )
        .await;
    assert_eq!(status, 403, "{reply}");
    let (status, reply) = server
        .json(
            "PUT",
            "/v1/tenants/acme/webhooks/approvals",
            &admin,
            &json!({"url": "ftp://x/", "secret": SECRET}),
        )
        .await;
    assert_eq!(
        (status, reply["location"]["field"].as_str()),
        (400, Some("url")),
        "{reply}"
    );
    let (status, reply) = server
        .json("PUT", "/v1/tenants/acme/webhooks/approvals", &admin, &hook)
        .await;
    assert_eq!(status, 200, "{reply}");
    let (_, shown) = server
        .call(
            "GET",
            "/v1/tenants/acme/webhooks/approvals",
            Some(&admin),
            None,
        )
        .await;
    assert!(!shown.to_string().contains(SECRET), "{shown}");

    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("hook-1"),
        )
        .await;
    let run_id = reply["results"][0]["runs"][0]
        .as_str()
        .expect("run")
        .to_owned();
    let (head, body) = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
        .await
        .expect("the webhook was called")
        .expect("a request");
    assert!(head.starts_with("post /hooks/rampart "), "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    // The receiver's check, written independently of the server's code.
    let timestamp = header("x-rampart-timestamp");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(&body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(header("x-rampart-signature"), expected);
    let now = rampart::executor::now_ms() / 1000;
    assert!((now - timestamp.parse::<i64>().expect("timestamp")).abs() < 60);
    let announced: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(announced["event"], "approval.requested");
    assert_eq!(announced["approval"]["run_id"], json!(run_id));
    let approval = announced["approval"]["id"].as_str().expect("id");
    assert_eq!(
        announced["approve"],
        json!(format!("/v1/tenants/acme/approvals/{approval}/approve"))
    );
    assert!(!String::from_utf8_lossy(&body).contains(SECRET));
    // The announced approval is the pending one, and can be approved.
    let (status, decided) = server
        .json(
            "POST",
            &format!("/v1/tenants/acme/approvals/{approval}/approve"),
            &tokens["analyst"],
            &json!({"reason": "paged via webhook"}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    let (_, shown) = server
        .call(
            "GET",
            "/v1/tenants/acme/webhooks/approvals",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(shown["deliveries"]["delivered"], 1, "{shown}");
    assert_eq!(
        server
            .call(
                "DELETE",
                "/v1/tenants/acme/webhooks/approvals",
                Some(&admin),
                None
            )
            .await
            .0,
        204
    );
    let _ = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("hook-2"),
        )
        .await;
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), received.recv())
            .await
            .is_err(),
        "a removed webhook is not called"
    );
    let files = files_containing(dir.path(), SECRET.as_bytes());
    assert!(
        files.is_empty(),
        "the webhook secret is on disk in clear: {files:?}"
    );
    server.stop().await;
}

/// Run verdicts pushed as OCSF to a Splunk HEC-shaped receiver: only an
/// admin may point the server at a loopback receiver, the token is sent
/// and never shown, every delivery (and a failed one, after its retries) is
/// an audit record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_verdicts_are_pushed_as_ocsf_to_a_hec_receiver_and_audited() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let admin = server.admin.clone();
    let cheap =
        "name: cheap\ntrigger: { alert: 'true' }\nsteps:\n  - id: risk\n    score: risk-scorer\n";
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/cheap",
            Some(&admin),
            Some(cheap.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (port, mut received) = webhook_receiver().await;
    let sink = json!({"url": format!("http://127.0.0.1:{port}/services/collector/event"), "format": "hec", "token": "hec-0123456789"});
    let path = "/v1/tenants/acme/sinks/findings";
    assert_eq!(
        server
            .json("PUT", path, &tokens["tenant-admin"], &sink)
            .await
            .0,
        403,
        "loopback needs an admin"
    );
    let (status, config) = server.json("PUT", path, &admin, &sink).await;
    assert_eq!(status, 200, "{config}");
    let (_, shown) = server
        .call("GET", path, Some(&tokens["tenant-admin"]), None)
        .await;
    assert_eq!(shown["has_token"], true);
    assert!(!shown.to_string().contains("hec-0123456789"), "{shown}");

    let (_, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("sink-1"),
        )
        .await;
    let runs: Vec<String> = reply["results"][0]["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let (head, body) = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("delivery");
    assert!(head.starts_with("post /services/collector/event"), "{head}");
    assert!(
        head.contains("authorization: splunk hec-0123456789"),
        "{head}"
    );
    let event: Value = serde_json::from_slice(&body).expect("one HEC event");
    assert_eq!(event["sourcetype"], "ocsf:detection_finding");
    assert_eq!(event["event"]["class_uid"], 2004);
    let uid = event["event"]["finding_info"]["uid"]
        .as_str()
        .expect("uid")
        .to_owned();
    assert!(runs.contains(&uid), "the finished run {uid} of {runs:?}");
    let audited = |needle: &'static str| {
        let server = &server;
        let token = tokens["viewer"].clone();
        async move {
            for _ in 0..100 {
                let (_, audit) = server
                    .call(
                        "GET",
                        "/v1/tenants/acme/audit?kind=findings_exported",
                        Some(&token),
                        None,
                    )
                    .await;
                if audit.to_string().contains(needle) {
                    return audit;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("no findings_exported record with {needle}");
        }
    };
    audited("\"status\":204").await;

    // A hunt's new findings go the same way.
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &admin,
            &upload("cmdline-hunt"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let event = "{\"id\": \"e1\", \"time\": 1, \"data\": {\"CommandLine\": \"powershell.exe -nop -enc SQBFAFgA\"}}\n";
    server
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tokens["ingest"]),
            Some(event.as_bytes().to_vec()),
        )
        .await;
    let hunt = json!({"plugin": "cmdline-hunt", "schedule": "0 0 1 1 *"});
    assert_eq!(
        server
            .json("PUT", "/v1/tenants/acme/hunts/cmdline", &admin, &hunt)
            .await
            .0,
        200
    );
    assert_eq!(
        server
            .call(
                "POST",
                "/v1/tenants/acme/hunts/cmdline/run",
                Some(&admin),
                None
            )
            .await
            .0,
        200
    );
    let finding = loop {
        let (_, body) = tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
            .await
            .expect("the hunt's findings within 10 s")
            .expect("delivery");
        let event: Value = serde_json::from_slice(&body).expect("one HEC event");
        if event["event"]["finding_info"]["types"][0] == "hunt" {
            break event;
        }
    };
    assert_eq!(
        finding["event"]["finding_info"]["uid"], "cmdline:encoded-powershell:e1",
        "{finding}"
    );
    audited("\"hunt\":\"cmdline\"").await;

    // A receiver that is gone: retried, then audited as failed.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gone_port = gone.local_addr().expect("addr").port();
    drop(gone);
    let sink = json!({"url": format!("http://127.0.0.1:{gone_port}/bulk"), "format": "opensearch"});
    assert_eq!(server.json("PUT", path, &admin, &sink).await.0, 200);
    server
        .json(
            "POST",
            "/v1/tenants/acme/alerts",
            &tokens["ingest"],
            &alert("sink-2"),
        )
        .await;
    audited("\"error\"").await;
    assert_eq!(
        server
            .call("DELETE", path, Some(&tokens["tenant-admin"]), None)
            .await
            .0,
        204
    );
    assert_eq!(
        server
            .call("GET", path, Some(&tokens["tenant-admin"]), None)
            .await
            .0,
        404
    );
    server.stop().await;
}
