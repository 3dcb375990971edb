//! Bad and generated input gets a JSON 4xx, never a 5xx; the OpenAPI document matches the router.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_4xx_never_a_5xx() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let acme = tenant(&server, "acme").await;
    let ingest = &acme["ingest"];
    let viewer = &acme["viewer"];
    let cases: Vec<(&str, String, Vec<u8>, u16)> = vec![
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            b"{not json".to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            br#"{"id": 7}"#.to_vec(),
            400,
        ),
        (
            "POST",
            "/v1/tenants/acme/alerts".into(),
            br#"{"id":"x","source":"s","title":"t","bogus":1}"#.to_vec(),
            400,
        ),
        ("GET", "/v1/tenants/..%2F..%2Fetc/runs".into(), vec![], 404),
        (
            "GET",
            "/v1/tenants/acme/runs/..%2F..%2Fsecrets".into(),
            vec![],
            404,
        ),
        ("GET", "/v1/nothing-here".into(), vec![], 404),
    ];
    // A 17 MiB body: the server answers 413 from the declared length and
    // closes without reading it (a client still writing would see a reset,
    // so this one sends the head only and reads the answer).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST /v1/tenants/acme/alerts HTTP/1.1\r\nhost: rampart\r\nauthorization: Bearer {ingest}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            17 << 20
        );
        let (mut reader, mut writer) = stream.into_split();
        // Write the whole body on the side; the server may stop reading it.
        let writing = tokio::spawn(async move {
            let _ = writer.write_all(head.as_bytes()).await;
            let _ = writer.write_all(&vec![b' '; 17 << 20]).await;
            writer
        });
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            reader.read_to_end(&mut answer),
        )
        .await;
        writing.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    for (method, path, body, expected) in cases {
        let token = if method == "GET" { viewer } else { ingest };
        let (status, reply) = server.call(method, &path, Some(token), Some(body)).await;
        assert_eq!(status, expected, "{method} {path}: {reply}");
        assert!(
            reply["error"].is_string(),
            "{path}: not our error shape: {reply}"
        );
    }
    let (status, reply) = server
        .call(
            "PUT",
            "/v1/tenants/acme/playbooks/bad",
            Some(&server.admin),
            Some(b"name: bad\ntrigger: { alert: '(' }\nsteps: []\n".to_vec()),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    assert!(reply["location"][0]["line"].is_number(), "{reply}");
    let (status, reply) = server
        .json(
            "POST",
            "/v1/tenants/acme/plugins",
            &server.admin,
            &json!({"manifest": "name = 1", "wasm_base64": "AAAA"}),
        )
        .await;
    assert_eq!(status, 422, "{reply}");
    // Nothing half-written: no run from the refused alerts, no playbook `bad`.
    let (_, runs) = server
        .call("GET", "/v1/tenants/acme/runs", Some(&acme["viewer"]), None)
        .await;
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0));
    let (_, playbooks) = server
        .call(
            "GET",
            "/v1/tenants/acme/playbooks",
            Some(&acme["viewer"]),
            None,
        )
        .await;
    assert_eq!(playbooks["playbooks"].as_array().map(Vec::len), Some(1));
    // /metrics needs a token (a `metrics` token sees no tenant names).
    let (status, _) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_the_router_and_hostile_requests_never_get_a_5xx() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), None).await;
    let tokens = tenant(&server, "acme").await;
    let (status, doc) = server.call("GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let routes = rampart_server::openapi::ROUTES;
    assert_eq!(
        doc["paths"].as_object().map(|p| p
            .values()
            .map(|v| v.as_object().map_or(0, |o| o.len()))
            .sum::<usize>()),
        Some(routes.len())
    );
    let admin = server.admin.clone();
    // Every documented route exists (no "no such endpoint").
    for route in routes {
        let path = route
            .path
            .replace("{tenant}", "acme")
            .replace("{plugin}", "edl-blocklist");
        let path = path.replace("{name}", "block").replace("{id}", "x");
        let (_, reply) = server
            .call(
                &route.method.to_ascii_uppercase(),
                &path,
                Some(&admin),
                Some(b"{}".to_vec()),
            )
            .await;
        assert_ne!(
            reply["detail"], "no such endpoint",
            "{} {path} is documented but not routed",
            route.method
        );
    }
    // Hostile requests, generated from the served document: see
    // `schema_driven_requests_never_get_a_5xx`.
    schema_driven_fuzz(&server, &doc, &tokens["viewer"], 400).await;
    server.stop().await;
}

/// Requests generated from the OpenAPI document with proptest: every
/// operation, its path parameters (hostile strings, traversal, huge,
/// other tenants), its query parameters by declared type (and garbage),
/// and bodies (hostile, arbitrary JSON, raw bytes). Never a 5xx; every
/// error in our JSON shape.
async fn schema_driven_fuzz(server: &Server, doc: &Value, viewer: &str, cases: u32) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    // The document is a valid OpenAPI 3.1 document: it parses, every
    // reference resolves, every templated path parameter is declared.
    let text = doc.to_string();
    let spec = oas3::from_json(&text).expect("OpenAPI 3.1 document");
    assert!(
        spec.validate_version()
            .is_ok_and(|v| v.major == 3 && v.minor == 1)
    );
    let mut operations = Vec::new();
    for (path, method, operation) in spec.operations() {
        let parameters = operation.parameters(&spec).expect("parameters resolve");
        for segment in path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                assert!(
                    parameters.iter().any(|p| p.name == name),
                    "{method} {path}: {{{name}}} undeclared"
                );
            }
        }
        operation
            .request_body(&spec)
            .expect("request body resolves");
        let raw = &doc["paths"][&path][method.as_str().to_ascii_lowercase()]["responses"];
        assert_eq!(
            operation.responses(&spec).len(),
            raw.as_object().map_or(0, |o| o.len()),
            "{method} {path}: every response resolves"
        );
        let query: Vec<(String, String)> = parameters
            .iter()
            .filter(|p| matches!(p.location, oas3::spec::ParameterIn::Query))
            .map(|p| {
                let kind = doc["paths"][&path][method.as_str().to_ascii_lowercase()]["parameters"]
                    .as_array()
                    .and_then(|all| all.iter().find(|q| q["name"] == json!(p.name)))
                    .and_then(|q| q["schema"]["type"].as_str())
                    .unwrap_or("string")
                    .to_owned();
                (p.name.clone(), kind)
            })
            .collect();
        operations.push((method.as_str().to_owned(), path.clone(), query));
    }
    assert_eq!(operations.len(), rampart_server::openapi::ROUTES.len());

    let segment = prop_oneof![
        Just("acme".to_owned()),
        Just("globex".to_owned()),
        Just("..".to_owned()),
        Just("..%2F..%2Fetc".to_owned()),
        Just("%00".to_owned()),
        Just("%FF%FE".to_owned()),
        Just("%E2%80%AE".to_owned()),
        Just("z".repeat(3000)),
        "[a-z0-9-]{1,12}",
        "\\PC{0,16}".prop_map(|s| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>()),
    ];
    let query_value = |kind: &str| -> BoxedStrategy<String> {
        match kind {
            "integer" => prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                Just("-1".to_owned()),
                Just("1e400".to_owned()),
                "[a-z%]{0,8}",
            ]
            .boxed(),
            _ => prop_oneof![
                Just("running".to_owned()),
                Just("action_executed".to_owned()),
                "[a-z_%0-9]{0,20}",
            ]
            .boxed(),
        }
    };
    let json_leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    let json_value = json_leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id".to_owned()),
                    Just("grants".to_owned()),
                    Just("value".to_owned()),
                    Just("manifest".to_owned()),
                    Just("url".to_owned()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        json_value.prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..64),
        Just(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        Just(
            b"name: x\ntrigger: {alert: 'true'}\nsteps: [{id: a, enrich: risk-scorer}]\n".to_vec()
        ),
        Just(br#"{"class_uid": 2004, "finding_info": {"uid": 5}}"#.to_vec()),
        Just(br#"{"manifest": "name = \"x\"", "wasm_base64": "!!!"}"#.to_vec()),
    ];
    let ops = operations.clone();
    let request = (0..ops.len()).prop_flat_map(move |index| {
        let (_, path, query) = ops[index].clone();
        let names: Vec<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        let query_strategies: Vec<BoxedStrategy<Option<(String, String)>>> = query
            .iter()
            .map(|(name, kind)| {
                let name = name.clone();
                proptest::option::of(query_value(kind).prop_map(move |v| (name.clone(), v))).boxed()
            })
            .collect();
        (
            Just(index),
            proptest::collection::vec(segment.clone(), names.len()),
            query_strategies,
            body.clone(),
            any::<bool>(),
        )
    });
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let admin = server.admin.clone();
    let sent = std::sync::atomic::AtomicU32::new(0);
    let by_status = std::sync::Mutex::new(std::collections::BTreeMap::<u16, u32>::new());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&request, |(index, segments, query, body, as_viewer)| {
            let (method, template, _) = &operations[index];
            let mut segments = segments.into_iter();
            let mut path = template
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        segments.next().unwrap_or_default()
                    } else {
                        s.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let pairs: Vec<String> = query
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if !pairs.is_empty() {
                path = format!("{path}?{}", pairs.join("&"));
            }
            let token = if as_viewer { viewer } else { admin.as_str() };
            let (status, reply) = handle.block_on(server.call(
                &method.to_ascii_uppercase(),
                &path,
                Some(token),
                Some(body),
            ));
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *by_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(status)
                .or_default() += 1;
            prop_assert!(status < 500, "{method} {path}: {status} {reply}");
            if status >= 400 {
                prop_assert!(
                    reply["error"].is_string(),
                    "{method} {path}: {status} not our error shape: {reply}"
                );
            }
            Ok(())
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert_eq!(sent.into_inner(), cases);
    let by_status = by_status
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The generator reaches past authorisation and validation too.
    assert!(
        by_status.keys().any(|s| *s < 300) && by_status.keys().any(|s| *s == 400),
        "{by_status:?}"
    );
    eprintln!("schema-driven fuzz: {cases} requests by status {by_status:?}");
}
