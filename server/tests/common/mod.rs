//! What the process tests share: the built fixtures, a raw HTTP client,
//! admin tokens and a `rampart serve` child.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

pub fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/fixtures");
    assert!(
        dir.join("hostile.wasm").is_file(),
        "run `cargo xtask plugins` first"
    );
    dir
}

/// The upload body for plugin `name` (`name.toml` and `name.wasm` in `dir`).
pub fn upload_body(dir: &Path, name: &str) -> Value {
    let manifest = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
    let wasm = std::fs::read(dir.join(format!("{name}.wasm"))).unwrap();
    json!({"manifest": manifest, "wasm_base64": base64::engine::general_purpose::STANDARD.encode(wasm)})
}

pub fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

/// One HTTP/1.1 request with `connection: close`; (status, body).
pub fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> (u16, Vec<u8>) {
    try_call(addr, method, path, token, body, &[]).unwrap_or_else(|err| panic!("{err}"))
}

/// [`call`] with extra headers, failing (instead of panicking) when the
/// server is gone: a client of a node that may be killed.
pub fn try_call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    let failed =
        |what: &str, err: std::io::Error| format!("{method} {path} on {addr}: {what}: {err}");
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| failed("connect", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| failed("timeout", e))?;
    let body = body.unwrap_or_default();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: rampart\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| failed("write", e))?;
    stream.write_all(body).map_err(|e| failed("write", e))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| failed("read", e))?;
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{method} {path} on {addr}: no complete answer"))?;
    let status = String::from_utf8_lossy(&answer[9..12])
        .parse()
        .map_err(|_| format!("{method} {path} on {addr}: no status"))?;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let mut body = answer[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Ok((status, body))
}

pub fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&bytes[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&bytes[line_end + 2..line_end + 2 + size]);
        bytes = &bytes[line_end + 2 + size + 2..];
    }
    out
}

pub fn json_call(addr: &str, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let (status, bytes) = call(addr, method, path, token, Some(body.to_string().as_bytes()));
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

/// The first admin token of the data directory under `dir`.
pub fn admin_token(dir: &Path) -> String {
    admin_token_with(dir, &[])
}

/// An admin token made by `rampart token create` with `extra` arguments
/// (`--store …`).
pub fn admin_token_with(dir: &Path, extra: &[&str]) -> String {
    let token = rampart()
        .args(["token", "create", "--principal", "root", "--audit-key"])
        .arg(dir.join("audit.key"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    String::from_utf8_lossy(&token.stdout).trim().to_owned()
}

/// A config file with tenant `acme` granted what the hostile fixture imports.
pub fn hostile_tenant_config(dir: &Path) -> PathBuf {
    let config = dir.join("rampart.yaml");
    std::fs::write(
        &config,
        "tenants:\n  - id: acme\n    grants:\n      default: { capabilities: [log, kv, config, http, intel, memory], kv_quota_bytes: 1048576 }\n",
    )
    .unwrap();
    config
}

pub struct Served {
    pub child: Child,
    pub addr: String,
}

impl Served {
    // The child is waited for in `stop` (or killed and waited for here).
    #[allow(clippy::zombie_processes)]
    pub fn start(dir: &Path, config: &Path, log: &Path, level: &str) -> Served {
        Served::start_with(dir, config, log, level, &[])
    }

    #[allow(clippy::zombie_processes)]
    pub fn start_with(
        dir: &Path,
        config: &Path,
        log: &Path,
        level: &str,
        extra: &[&str],
    ) -> Served {
        Served::start_env(dir, config, log, level, extra, &[])
    }

    #[allow(clippy::zombie_processes)]
    pub fn start_env(
        dir: &Path,
        config: &Path,
        log: &Path,
        level: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let log_file = std::fs::File::create(log).expect("log");
        let mut child = rampart()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--audit-key")
            .arg(dir.join("audit.key"))
            .arg("--master-key-file")
            .arg(dir.join("master.key"))
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", level)
            .env_remove("RAMPART_LOG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn");
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(rest) = text
                .split("listening on http://")
                .nth(1)
                .or_else(|| text.split("listening on https://").nth(1))
            {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                return Served { child, addr };
            }
            if started.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not start: {}",
                    text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGINT, as an operator's Ctrl-C: graceful shutdown.
    pub fn stop(self) {
        self.stop_with("-INT");
    }

    /// Sends `signal` (`-INT`, `-TERM`) and waits for a clean exit.
    pub fn stop_with(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([signal, &pid]).status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "serve exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("serve did not stop on {signal}");
    }
}

/// POSTs per idempotency key, as the counting API saw them.
pub type Posts = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>;

/// An API that applies each idempotency key once and counts POSTs per key.
pub fn counting_api() -> (u16, Posts) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts: Posts = Posts::default();
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let status = if let Some(key) = path.strip_prefix("/status/") {
                    if seen.lock().unwrap().contains_key(key) {
                        200
                    } else {
                        404
                    }
                } else if let Some(key) = path.strip_prefix("/act/") {
                    if method == "POST" {
                        *seen.lock().unwrap().entry(key.to_owned()).or_default() += 1;
                    }
                    200
                } else {
                    404
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            });
        }
    });
    (port, posts)
}

/// `rampart serve` run to its end (for start-ups that must be refused):
/// state in `data`, the keys of `dir`, then `extra`.
pub fn serve_output(dir: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    rampart()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--audit-key")
        .arg(dir.join("audit.key"))
        .arg("--master-key-file")
        .arg(dir.join("master.key"))
        .args(extra)
        .output()
        .unwrap()
}
