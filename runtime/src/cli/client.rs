//! `rampart api ...`: the daily operations against a running server.

use std::path::PathBuf;

use base64::Engine as _;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::Failure;

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Server address, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "RAMPART_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
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
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
                .await
                .map_err(|err| Failure::call(format!("HTTP: {err}")))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
            .map_err(|err| Failure::usage(err.to_string()))?;
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

fn read(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    rampart::sandbox::read_regular_file(path, MAX_UPLOAD_FILE_BYTES)
        .map_err(|err| Failure::usage(err.to_string()))
}

pub async fn run(args: ApiArgs) -> Result<(), Failure> {
    let authority = args
        .server
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if args.server.starts_with("https://") {
        return Err(Failure::usage(
            "the CLI client speaks plain HTTP only; put TLS in front of it on a trusted path",
        ));
    }
    let client = Client {
        authority,
        token: args.token,
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
        ApiCommand::SendEvents { file } => {
            client
                .call(
                    "POST",
                    &format!("/v1/tenants/{t}/events"),
                    Some(read(&file)?),
                )
                .await?
        }
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
