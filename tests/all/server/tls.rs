//! The API over TLS.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let missing =
        rampart_server::tls::server_config(&fixtures.join("nope.pem"), &fixtures.join("key.pem"));
    assert!(
        missing
            .as_ref()
            .is_err_and(|e| e.to_string().contains("nope.pem")),
        "{missing:?}"
    );
    let swapped =
        rampart_server::tls::server_config(&fixtures.join("key.pem"), &fixtures.join("cert.pem"));
    assert!(swapped.is_err(), "a key file is not a certificate");
    let config =
        rampart_server::tls::server_config(&fixtures.join("cert.pem"), &fixtures.join("key.pem"))
            .expect("fixture cert");
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start_with(dir.path(), None, Some(config)).await;

    // A client that trusts only the fixture certificate.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(fixtures.join("ca.pem")).expect("ca");
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    // A silent client that never handshakes holds up nobody.
    let _silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, stream).await.expect("handshake");
    let request = format!(
        "GET /v1/tenants HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        server.admin
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"tenants\""), "{answer}");
    // Plain HTTP on the TLS port gets no API answer.
    let (status, _) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut plain = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let _ = plain
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await;
        let mut buf = Vec::new();
        let _ = plain.read_to_end(&mut buf).await;
        (String::from_utf8_lossy(&buf).into_owned(), ())
    })
    .await
    .expect("the server closes a plain-HTTP connection");
    assert!(!status.contains("200 OK"), "{status}");
    server.stop().await;
}
