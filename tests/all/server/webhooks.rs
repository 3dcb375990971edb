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
