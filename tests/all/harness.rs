//! A real `rampart serve` on a loopback port over a temp data directory,
//! and an HTTP/1 client for it: shared by the server and containment tests.
// Two test binaries include this file and each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::executor::Executor;
use rampart::store::SledStore;
use rampart_server::auth::Role;
use rampart_server::{AppState, serve};
use serde_json::{Value, json};

use rampart_e2e::plugins_dir;

pub struct Server {
    pub addr: SocketAddr,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn start(dir: &Path, admin: Option<String>) -> Server {
        Server::start_with(dir, admin, None).await
    }

    pub async fn start_with(
        dir: &Path,
        admin: Option<String>,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Server {
        Server::start_configured(dir, admin, tls, RuntimeConfig::default()).await
    }

    /// A server whose runtime has `config` (its cache directory is set
    /// here, under `dir`).
    pub async fn start_configured(
        dir: &Path,
        admin: Option<String>,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        config: RuntimeConfig,
    ) -> Server {
        Server::start_limited(dir, admin, tls, config, Default::default()).await
    }

    /// A server with connection `limits`.
    pub async fn start_limited(
        dir: &Path,
        admin: Option<String>,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        config: RuntimeConfig,
        limits: rampart_server::guard::ConnectionLimits,
    ) -> Server {
        let store = SledStore::open(&dir.join("data")).expect("store");
        Server::start_on(dir, admin, tls, config, limits, store).await
    }

    /// A server on `store` (any backend) instead of sled in `dir`.
    pub async fn start_on(
        dir: &Path,
        admin: Option<String>,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
        config: RuntimeConfig,
        limits: rampart_server::guard::ConnectionLimits,
        store: impl rampart::store::Backend,
    ) -> Server {
        let config = RuntimeConfig {
            cache_dir: Some(dir.join("cache")),
            ..config
        };
        let executor = Executor::new(
            config,
            store,
            AuditKey::from_bytes(vec![5; 32]).expect("key"),
        )
        .expect("executor");
        let secrets = rampart::secrets::SecretBox::from_key(&[6u8; 32]).expect("master key");
        let state = AppState::open(executor, secrets)
            .await
            .expect("state")
            .with_connection_limits(limits);
        let admin = match admin {
            Some(token) => token,
            None => {
                state
                    .tokens()
                    .create("root", None, Role::Admin, None)
                    .expect("admin")
                    .0
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            match tls {
                Some(config) => {
                    let listener =
                        rampart_server::tls::TlsListener::new(listener, config).expect("tls");
                    serve(state, listener, shutdown).await
                }
                None => serve(state, listener, shutdown).await,
            }
            .expect("serve");
        });
        Server {
            addr,
            admin,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) -> String {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.admin.clone()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        self.call_as(method, path, token, body, None).await
    }

    /// A CSV upload (`Content-Type: text/csv`).
    pub async fn csv(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        self.call_as(
            "PUT",
            path,
            Some(token),
            Some(body.as_bytes().to_vec()),
            Some("text/csv"),
        )
        .await
    }

    pub async fn call_as(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> (u16, Value) {
        let (status, _, value) = self
            .send(method, path, token, body, content_type, &[])
            .await;
        (status, value)
    }

    /// A request with `headers` besides the token and content type; the
    /// response's status, headers and body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, hyper::HeaderMap, Value) {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util_io::Io(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "rampart");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .expect("request");
        let response = sender.send_request(request).await.expect("send");
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, response_headers, value)
    }

    pub async fn json(&self, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.call(
            method,
            path,
            Some(token),
            Some(serde_json::to_vec(body).expect("json")),
        )
        .await
    }
}

/// hyper needs its own IO traits; a tiny adapter over tokio's.
mod hyper_util_io {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub struct Io(pub tokio::net::TcpStream);

    impl hyper::rt::Read for Io {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            let filled = {
                // SAFETY: tokio's ReadBuf only writes initialised bytes into the unfilled part.
                let unfilled = unsafe { buf.as_mut() };
                let mut read_buf = tokio::io::ReadBuf::uninit(unfilled);
                match tokio::io::AsyncRead::poll_read(
                    Pin::new(&mut self.get_mut().0),
                    cx,
                    &mut read_buf,
                ) {
                    Poll::Ready(Ok(())) => read_buf.filled().len(),
                    other => return other,
                }
            };
            // SAFETY: `filled` bytes were just initialised by the read above.
            unsafe { buf.advance(filled) };
            Poll::Ready(Ok(()))
        }
    }

    impl hyper::rt::Write for Io {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            tokio::io::AsyncWrite::poll_write(Pin::new(&mut self.get_mut().0), cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            tokio::io::AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().0), cx)
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().0), cx)
        }
    }
}

pub fn upload(name: &str) -> Value {
    let manifest =
        std::fs::read_to_string(plugins_dir().join(format!("{name}.toml"))).expect("manifest");
    let wasm = std::fs::read(plugins_dir().join(format!("{name}.wasm"))).expect("wasm");
    json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}

pub fn upload_fixture(name: &str) -> Value {
    let manifest = std::fs::read_to_string(plugins_dir().join(format!("fixtures/{name}.toml")))
        .expect("manifest");
    let wasm = std::fs::read(plugins_dir().join(format!("fixtures/{name}.wasm"))).expect("wasm");
    json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}
