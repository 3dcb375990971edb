//! The probes' smaller findings: costly expressions, rate answers, empty
//! bodies, one 401 for every bad token, webhook hosts, metrics access.

use serde_json::{Value, json};

use crate::harness::Server;
use crate::{raw, serial, tenant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_comprehension_is_refused_at_upload() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme", &[], 0).await;
    let nested = r#"name: nested
trigger: { alert: "alert.entity_list.all(a, alert.entity_list.all(b, alert.entity_list.all(c, a.value != 'zz')))" }
steps:
  - id: act
    respond: edl-blocklist
    target: 'alert.entities.ip[0]'
"#;
    let (status, body) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/nested",
            Some(&tokens["tenant-admin"]),
            Some(nested.as_bytes().to_vec()),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("too costly"), "{body}");
    // Also as a dedup key or a target.
    for (field, line) in [
        (
            "target",
            "    target: 'alert.entity_list.map(a, alert.entity_list.map(b, b.value))[0][0]'",
        ),
        (
            "when",
            "    when: 'alert.entity_list.exists(a, alert.entity_list.exists(b, a.value == b.value))'",
        ),
    ] {
        let yaml = format!(
            "name: costly\ntrigger: {{ alert: 'true' }}\nsteps:\n  - id: act\n    respond: edl-blocklist\n{line}\n{}",
            if field == "target" {
                ""
            } else {
                "    target: 'alert.entities.ip[0]'\n"
            }
        );
        let (status, body) = server
            .call(
                "PUT",
                "/v1/tenants/acme/playbooks/costly",
                Some(&tokens["tenant-admin"]),
                Some(yaml.into_bytes()),
            )
            .await;
        assert_eq!(status, 422, "{field}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("too costly"),
            "{field}: {body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_answers_say_when_and_how_much() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants",
            &server.admin,
            &json!({"id": "slow", "ingest_per_second": 5}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = server
        .json(
            "POST",
            "/v1/tenants/slow/tokens",
            &server.admin,
            &json!({"principal": "feeder", "role": "ingest"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    let batch = |n: usize, from: usize| -> Vec<u8> {
        let alerts: Vec<Value> = (from..from + n)
            .map(|i| json!({"id": format!("b{i}"), "source": "edr", "title": "t", "severity": "low", "entities": []}))
            .collect();
        serde_json::to_vec(&alerts).expect("json")
    };
    let send = |body: Vec<u8>| {
        let head = format!(
            "POST /v1/tenants/slow/alerts HTTP/1.1\r\nhost: rampart\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        raw(server.addr, head, body)
    };
    // More than a burst (twice the rate) can never pass: 413 with the most.
    let (status, _, text) = send(batch(11, 0)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("at most 10"), "{text}");
    // Past the rate: 429 with Retry-After.
    let (status, _, text) = send(batch(10, 100)).await;
    assert_eq!(status, 200, "{text}");
    let (status, head, text) = send(batch(3, 200)).await;
    assert_eq!(status, 429, "{text}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );

    // An empty events body is a bad request.
    let (status, body) = server
        .call(
            "POST",
            "/v1/tenants/slow/events",
            Some(&token),
            Some(Vec::new()),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_the_same_401() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme", &[], 0).await;
    let mint = |principal: &str, ttl: Option<u64>| {
        let mut body = json!({"principal": principal, "role": "viewer"});
        if let Some(ttl) = ttl {
            body["ttl_secs"] = json!(ttl);
        }
        body
    };
    let (_, revoked) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &server.admin,
            &mint("gone", None),
        )
        .await;
    let (status, body) = server
        .call(
            "POST",
            &format!(
                "/v1/tenants/acme/tokens/{}/revoke",
                revoked["id"].as_str().expect("id")
            ),
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, expiring) = server
        .json(
            "POST",
            "/v1/tenants/acme/tokens",
            &server.admin,
            &mint("brief", Some(1)),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let mut answers = Vec::new();
    for token in [
        "rmp_0000000000000000000000000000000000000000000000000000000000000000",
        revoked["token"].as_str().expect("token"),
        expiring["token"].as_str().expect("token"),
    ] {
        let (status, body) = server
            .call("GET", "/v1/tenants/acme/runs", Some(token), None)
            .await;
        assert_eq!(status, 401, "{body}");
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);

    // A webhook to `localhost.` is internal, as delivery would find it.
    for url in [
        "http://localhost.:9/hook",
        "http://LOCALHOST:9/hook",
        "http://a.localhost./hook",
    ] {
        let (status, body) = server
            .json(
                "PUT",
                "/v1/tenants/acme/webhooks/approvals",
                &tokens["tenant-admin"],
                &json!({"url": url, "secret": "0123456789abcdef0123"}),
            )
            .await;
        assert_eq!(status, 403, "{url}: {body}");
    }

    // Metrics need a metrics or admin token.
    assert_eq!(server.call("GET", "/metrics", None, None).await.0, 401);
    assert_eq!(
        server
            .call("GET", "/metrics", Some(&tokens["viewer"]), None)
            .await
            .0,
        403
    );
    assert_eq!(
        server
            .call("GET", "/metrics", Some(&server.admin), None)
            .await
            .0,
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_at_start_up_is_not_a_change() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let _tokens = tenant(&server, "acme", &[("one", crate::supervised("one", 1))], 0).await;
    let before = config_changes(&server).await;
    assert!(
        before >= 2,
        "the upload and the playbook are changes: {before}"
    );
    let admin = server.stop().await;
    let server = Server::start(dir.path(), Some(admin)).await;
    assert_eq!(
        config_changes(&server).await,
        before,
        "a restart wrote config_changed records"
    );
    server.stop().await;
}

async fn config_changes(server: &Server) -> usize {
    let (status, body) = server
        .call(
            "GET",
            "/v1/tenants/acme/audit?kind=config_changed&limit=1000",
            Some(&server.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().map_or(0, Vec::len)
}

/// Whether the server closed `stream` within `wait` (read gives 0 or an
/// error).
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_excess_connections_are_closed() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("dir");
    let limits = rampart_server::guard::ConnectionLimits {
        per_address: 8,
        idle: std::time::Duration::from_secs(1),
        header: std::time::Duration::from_secs(2),
    };
    let server = Server::start_limited(
        dir.path(),
        None,
        None,
        rampart::RuntimeConfig::default(),
        limits,
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("connect"),
        );
    }
    // Past the cap of 8 per address: closed at once.
    let mut refused = 0;
    for stream in held.iter_mut().skip(8) {
        refused += usize::from(closed_within(stream, std::time::Duration::from_millis(500)).await);
    }
    assert_eq!(refused, 4, "connections past the cap were kept");
    // Half a request header, then silence: closed at the idle deadline.
    use tokio::io::AsyncWriteExt;
    held[0]
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let mut idle_closed = 0;
    for stream in held.iter_mut().take(8) {
        idle_closed += usize::from(closed_within(stream, std::time::Duration::from_secs(3)).await);
    }
    assert_eq!(idle_closed, 8, "idle connections were kept");
    drop(held);
    // A header dripped a byte every 300 ms is never idle for 1 s, but its
    // headers are not all there within the 2 s header deadline: cut.
    let mut drip = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    drip.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let (mut reader, mut writer) = drip.into_split();
    let dripper = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if writer.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 256];
    let answer = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        use tokio::io::AsyncReadExt;
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    dripper.abort();
    let cut_after = started.elapsed();
    assert!(
        answer.is_ok() && cut_after < std::time::Duration::from_secs(5),
        "a dripped header was still open after {cut_after:?}"
    );
    // The address's slots came back.
    let (status, _) = server.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    server.stop().await;
}
