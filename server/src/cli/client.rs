//! `rampart api ...`: the daily operations against a running server.

use std::path::PathBuf;

use base64::Engine as _;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::Failure;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Server address, e.g. http://127.0.0.1:8080 or https://soc.example:8443.
    #[arg(long, env = "RAMPART_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// PEM CA certificate(s) to trust for an https server (default: the
    /// public web roots).
    #[arg(long, env = "RAMPART_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Bearer token.
    #[arg(long, env = "RAMPART_TOKEN", hide_env_values = true)]
    token: String,
    /// Tenant.
    #[arg(long, env = "RAMPART_TENANT", default_value = "local")]
    tenant: String,
    #[command(subcommand)]
    command: ApiCommand,
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// Create the tenant (admin token). Without `--grants`, every plugin
    /// gets log, kv, memory, intel, context and config (no outbound HTTP).
    CreateTenant {
        /// Grants as JSON (`{"default": {...}, "plugins": {"name": {...}}}`).
        #[arg(long)]
        grants: Option<PathBuf>,
    },
    /// Upload a plugin: its manifest (the component path is relative to it).
    UploadPlugin {
        /// The manifest.
        manifest: PathBuf,
    },
    /// Create or replace a playbook.
    PutPlaybook {
        /// The YAML file.
        file: PathBuf,
    },
    /// Replace the asset inventory (JSON).
    PutInventory {
        /// The inventory: JSON, or CSV (`.csv`: hostname, ips, owner,
        /// criticality, tags, protected).
        file: PathBuf,
    },
    /// Replace the tenant's identity directory.
    PutIdentities {
        /// The people: JSON, or CSV (`.csv`: user, email, display_name,
        /// department, title, privileged, mfa, groups).
        file: PathBuf,
    },
    /// Send an alert file (one JSON alert, an array, or JSON lines).
    Send {
        /// The file.
        file: PathBuf,
        /// Shift every alert's `time` so the newest is now, keeping their
        /// spacing (sample alerts replayed today measure a true MTTD).
        #[arg(long)]
        retime: bool,
    },
    /// List runs.
    Runs,
    /// Show one run.
    Run {
        /// Run id.
        id: String,
    },
    /// List pending approvals.
    Approvals,
    /// Approve.
    Approve {
        /// Approval id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Deny.
    Deny {
        /// Approval id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Verify the tenant's audit chain on the server.
    Verify,
    /// Store telemetry events (a JSON-lines file) for hunts.
    SendEvents {
        /// The file.
        file: PathBuf,
    },
    /// Register (or change) a scheduled hunt.
    PutHunt {
        /// Hunt name.
        name: String,
        /// The hunt plugin.
        #[arg(long)]
        plugin: String,
        /// Crontab schedule, e.g. "*/5 * * * *".
        #[arg(long)]
        schedule: String,
        /// Params (JSON).
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// Run a hunt now over the events since its watermark.
    RunHunt {
        /// Hunt name.
        name: String,
    },
    /// MTTD/MTTC and the other measurements, per playbook.
    Measurements,
    /// A readable report: runs by playbook and status, verdicts, risk,
    /// actions by outcome, guardrail reasons, pending approvals, MTTD/MTTC.
    Summary,
}

struct Client {
    authority: String,
    token: String,
    /// For an https server: the TLS client and the name to verify.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// A TLS client trusting `ca_cert` (PEM) or, without one, the web roots.
fn tls_connector(ca_cert: Option<&std::path::Path>) -> Result<tokio_rustls::TlsConnector, Failure> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let pem = read(path)?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|err| {
                    Failure::usage(format!("{}: not a PEM certificate: {err}", path.display()))
                })?;
                roots.add(cert).map_err(|err| {
                    Failure::usage(format!(
                        "{}: unusable CA certificate: {err}",
                        path.display()
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Failure::usage(format!(
                    "{}: no certificate in the file",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| Failure::usage(format!("TLS: {err}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One request over `io`: status and body.
async fn exchange<T>(
    io: T,
    request: hyper::Request<Full<bytes::Bytes>>,
) -> Result<(u16, bytes::Bytes), Failure>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|err| Failure::call(format!("HTTP: {err}")))?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| Failure::call(format!("HTTP: {err}")))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|err| Failure::call(format!("HTTP: {err}")))?
        .to_bytes();
    Ok((status, bytes))
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), Failure> {
        self.call_as(method, path, body, "application/json").await
    }

    /// [`Client::call`] with a body of `content_type`.
    async fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<(u16, Value), Failure> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|err| Failure::usage(format!("cannot reach {}: {err}", self.authority)))?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(|err| Failure::usage(err.to_string()))?;
        let (status, bytes) = match &self.tls {
            None => exchange(stream, request).await?,
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|err| Failure::call(format!("TLS with {}: {err}", self.authority)))?;
                exchange(stream, request).await?
            }
        };
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }
}

/// The alerts of `body` (one or an array) with times shifted so the newest
/// is now.
fn retimed(mut body: Value) -> Value {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX);
    let alerts: Vec<&mut Value> = match &mut body {
        Value::Array(list) => list.iter_mut().collect(),
        one => vec![one],
    };
    let newest = alerts.iter().filter_map(|a| a["time"].as_i64()).max();
    if let Some(newest) = newest {
        let shift = now.saturating_sub(newest);
        for alert in alerts {
            if let Some(time) = alert["time"].as_i64() {
                alert["time"] = Value::from(time.saturating_add(shift));
            }
        }
    }
    body
}

/// `text/csv` for a `.csv` file, JSON otherwise.
fn table_type(path: &std::path::Path) -> &'static str {
    if path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("csv"))
    {
        "text/csv"
    } else {
        "application/json"
    }
}

/// Largest file `rampart api` sends (the server's body limit is lower).
const MAX_UPLOAD_FILE_BYTES: usize = 256 << 20;

/// Bytes of one `send-events` request: well under the server's 16 MiB body
/// limit.
const EVENT_CHUNK_BYTES: usize = 8 << 20;
/// Events in one `send-events` request (the server takes at most 100,000).
const EVENT_CHUNK_EVENTS: usize = 50_000;

/// The events of `text` (a JSON array, one object, or JSON lines) as JSON
/// lines with their line numbers in the file (1 for an array's items).
fn event_lines(text: &str) -> Result<Vec<(usize, String)>, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items.iter().map(|item| (1, item.to_string())).collect()),
        Ok(single @ Value::Object(_)) => Ok(vec![(1, single.to_string())]),
        Ok(_) => Err(Failure::usage(
            "events must be a JSON array, an object or JSON lines",
        )),
        Err(_) => Ok(text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| (n + 1, line.to_owned()))
            .collect()),
    }
}

/// `send-events`: the file in requests of at most [`EVENT_CHUNK_BYTES`] and
/// [`EVENT_CHUNK_EVENTS`] events, with a progress bar; stops at the first
/// refused request and says which lines it held.
async fn send_events(
    client: &Client,
    tenant: &str,
    file: &std::path::Path,
) -> Result<(u16, Value), Failure> {
    let bytes = read(file)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{}: not UTF-8", file.display())))?;
    let lines = event_lines(&text)?;
    if let Some((n, _)) = lines
        .iter()
        .find(|(_, line)| line.len() > EVENT_CHUNK_BYTES)
    {
        return Err(Failure::usage(format!(
            "{}: line {n} is one event larger than {} MiB",
            file.display(),
            EVENT_CHUNK_BYTES >> 20
        )));
    }
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut stored, mut requests, mut start) = (0u64, 0usize, 0usize);
    while start < lines.len() {
        let (mut end, mut size) = (start, 0usize);
        while end < lines.len()
            && end - start < EVENT_CHUNK_EVENTS
            && size + lines[end].1.len() < EVENT_CHUNK_BYTES
        {
            size += lines[end].1.len() + 1;
            end += 1;
        }
        let mut body = String::with_capacity(size);
        for (_, line) in &lines[start..end] {
            body.push_str(line);
            body.push('\n');
        }
        let (status, reply) = client
            .call_as(
                "POST",
                &format!("/v1/tenants/{tenant}/events"),
                Some(body.into_bytes()),
                "application/x-ndjson",
            )
            .await?;
        if !(200..300).contains(&status) {
            bar.abandon();
            let (first, last) = (lines[start].0, lines[end - 1].0);
            return Ok((
                status,
                json!({"error": reply, "stored_before": stored, "lines": format!("{first}-{last}")}),
            ));
        }
        stored += reply["stored"].as_u64().unwrap_or(0);
        requests += 1;
        bar.set_position(end as u64);
        start = end;
    }
    bar.finish_and_clear();
    Ok((
        200,
        json!({"stored": stored, "events": lines.len(), "requests": requests}),
    ))
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    rampart::sandbox::read_regular_file(path, MAX_UPLOAD_FILE_BYTES)
        .map_err(|err| Failure::usage(err.to_string()))
}

pub async fn run(args: ApiArgs) -> Result<(), Failure> {
    let (https, rest) = match (
        args.server.strip_prefix("https://"),
        args.server.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, args.server.as_str()),
    };
    let mut authority = rest.trim_end_matches('/').to_owned();
    let tls = if https {
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
            // No port: https's own.
            _ => {
                let host = authority.clone();
                authority.push_str(":443");
                host
            }
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|err| {
            Failure::usage(format!("--server: `{host}` is not a host name: {err}"))
        })?;
        Some((tls_connector(args.ca_cert.as_deref())?, name))
    } else {
        if args.ca_cert.is_some() {
            return Err(Failure::usage("--ca-cert needs an https:// --server"));
        }
        None
    };
    let client = Client {
        authority,
        token: args.token,
        tls,
    };
    let t = &args.tenant;
    let (status, value) = match args.command {
        ApiCommand::CreateTenant { grants } => {
            let grants: Value = match grants {
                Some(path) => serde_json::from_slice(&read(&path)?).map_err(|err| {
                    Failure::usage(format!("{}: not JSON: {err}", path.display()))
                })?,
                None => {
                    json!({"default": {"capabilities": ["log", "kv", "memory", "intel", "context", "config"], "kv_quota_bytes": 16777216}})
                }
            };
            client
                .call(
                    "POST",
                    "/v1/tenants",
                    Some(
                        serde_json::to_vec(&json!({"id": t, "grants": grants})).unwrap_or_default(),
                    ),
                )
                .await?
        }
        ApiCommand::UploadPlugin { manifest } => {
            let text = String::from_utf8_lossy(&read(&manifest)?).into_owned();
            let locked = rampart::manifest::parse(&manifest.display().to_string(), &text)
                .map_err(|err| Failure::usage(err.to_string()))?;
            let component = manifest
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(locked.component_path.unwrap_or_default());
            let wasm = base64::engine::general_purpose::STANDARD.encode(read(&component)?);
            client
                .call(
                    "POST",
                    &format!("/v1/tenants/{t}/plugins"),
                    Some(
                        serde_json::to_vec(&json!({"manifest": text, "wasm_base64": wasm}))
                            .unwrap_or_default(),
                    ),
                )
                .await?
        }
        ApiCommand::PutPlaybook { file } => {
            let yaml = read(&file)?;
            let name = String::from_utf8_lossy(&yaml)
                .lines()
                .find_map(|l| {
                    l.strip_prefix("name:")
                        .map(|n| n.trim().trim_matches(['"', '\'']).to_owned())
                })
                .ok_or_else(|| Failure::usage(format!("{}: no `name:` line", file.display())))?;
            client
                .call(
                    "PUT",
                    &format!("/v1/tenants/{t}/playbooks/{name}"),
                    Some(yaml),
                )
                .await?
        }
        ApiCommand::PutInventory { file } => {
            client
                .call_as(
                    "PUT",
                    &format!("/v1/tenants/{t}/inventory"),
                    Some(read(&file)?),
                    table_type(&file),
                )
                .await?
        }
        ApiCommand::PutIdentities { file } => {
            client
                .call_as(
                    "PUT",
                    &format!("/v1/tenants/{t}/identities"),
                    Some(read(&file)?),
                    table_type(&file),
                )
                .await?
        }
        ApiCommand::Send { file, retime } => {
            let text = String::from_utf8_lossy(&read(&file)?).into_owned();
            let body: Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(_) => Value::Array(
                    text.lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(serde_json::from_str)
                        .collect::<Result<Vec<Value>, _>>()
                        .map_err(|err| {
                            Failure::usage(format!(
                                "{}: neither JSON nor JSON lines: {err}",
                                file.display()
                            ))
                        })?,
                ),
            };
            let body = if retime { retimed(body) } else { body };
            client
                .call(
                    "POST",
                    &format!("/v1/tenants/{t}/alerts"),
                    Some(serde_json::to_vec(&body).unwrap_or_default()),
                )
                .await?
        }
        ApiCommand::Runs => {
            client
                .call("GET", &format!("/v1/tenants/{t}/runs"), None)
                .await?
        }
        ApiCommand::Run { id } => {
            client
                .call("GET", &format!("/v1/tenants/{t}/runs/{id}"), None)
                .await?
        }
        ApiCommand::Approvals => {
            client
                .call("GET", &format!("/v1/tenants/{t}/approvals"), None)
                .await?
        }
        ApiCommand::Approve { id, reason } => {
            client
                .call(
                    "POST",
                    &format!("/v1/tenants/{t}/approvals/{id}/approve"),
                    Some(serde_json::to_vec(&json!({"reason": reason})).unwrap_or_default()),
                )
                .await?
        }
        ApiCommand::Deny { id, reason } => {
            client
                .call(
                    "POST",
                    &format!("/v1/tenants/{t}/approvals/{id}/deny"),
                    Some(serde_json::to_vec(&json!({"reason": reason})).unwrap_or_default()),
                )
                .await?
        }
        ApiCommand::SendEvents { file } => send_events(&client, t, &file).await?,
        ApiCommand::PutHunt {
            name,
            plugin,
            schedule,
            params,
        } => {
            let params: Value = serde_json::from_str(&params)
                .map_err(|err| Failure::usage(format!("--params is not JSON: {err}")))?;
            client
                .call(
                    "PUT",
                    &format!("/v1/tenants/{t}/hunts/{name}"),
                    Some(
                        serde_json::to_vec(
                            &json!({"plugin": plugin, "schedule": schedule, "params": params}),
                        )
                        .unwrap_or_default(),
                    ),
                )
                .await?
        }
        ApiCommand::RunHunt { name } => {
            client
                .call("POST", &format!("/v1/tenants/{t}/hunts/{name}/run"), None)
                .await?
        }
        ApiCommand::Summary => {
            let get = |path: String| -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<Value, Failure>> + '_>,
            > {
                let client = &client;
                Box::pin(async move {
                    let (status, value) = client.call("GET", &path, None).await?;
                    if status >= 400 {
                        return Err(Failure::call(format!(
                            "GET {path}: {status} {}",
                            value["detail"].as_str().unwrap_or_default()
                        )));
                    }
                    Ok(value)
                })
            };
            let get_text = |path: String| -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<String, Failure>> + '_>,
            > {
                let get = &get;
                Box::pin(async move {
                    Ok(match get(path).await? {
                        Value::String(text) => text,
                        other => other.to_string(),
                    })
                })
            };
            let report = super::summary::report(&get, &get_text, t).await?;
            print!("{report}");
            return Ok(());
        }
        ApiCommand::Measurements => {
            client
                .call("GET", &format!("/v1/tenants/{t}/measurements"), None)
                .await?
        }
        ApiCommand::Verify => {
            client
                .call("GET", &format!("/v1/tenants/{t}/audit/verify"), None)
                .await?
        }
    };
    super::print_json(&value);
    if status >= 400 {
        return Err(Failure::call(format!(
            "server answered {status}: {}",
            value["detail"].as_str().unwrap_or_default()
        )));
    }
    Ok(())
}
