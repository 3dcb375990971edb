//! `rampart plugin inspect` and `rampart plugin call`: what a vendor uses to
//! look at and try a plugin by hand.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use rampart::model::{ActionRequest, Alert, Enrichment, Event};
use rampart::store::{MemoryStore, Store};
use rampart::tenant::{Capability, Grants, PluginGrant, Secret, TenantId};
use rampart::{CallContext, Runtime, RuntimeConfig};
use serde_json::{Value, json};

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a component's kind, contract version, imports, exports and sha256.
    Inspect {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Run one call in the sandbox and print the JSON result with its cost.
    ///
    /// Input by kind: enricher: an alert; scorer: an alert, or
    /// {"alert": ..., "enrichments": [...]}; responder: an action request;
    /// hunt: {"params": ..., "events": [...]}.
    Call {
        /// The plugin manifest (its [component] path is relative to it).
        manifest: PathBuf,
        /// Input JSON, or @FILE to read it from a file.
        #[arg(long)]
        input: String,
        /// Tenant to run as.
        #[arg(long, default_value = "local")]
        tenant: String,
        /// A plugin setting, KEY=VALUE (repeatable).
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// A plugin secret, KEY=VALUE (repeatable).
        #[arg(long = "secret", value_name = "KEY=VALUE")]
        secrets: Vec<String>,
        /// Allow HTTP to this host[:port] or *.domain (repeatable).
        #[arg(long = "allow-http", value_name = "HOST")]
        allow_http: Vec<String>,
        /// Allow HTTP to resolve into this internal range (repeatable).
        #[arg(long = "allow-private", value_name = "CIDR")]
        allow_private: Vec<String>,
        /// Load an ipsum-format feed into the intel index first.
        #[arg(long = "intel-ipsum", value_name = "FILE")]
        intel_ipsum: Option<PathBuf>,
        /// Responders: plan only.
        #[arg(long)]
        dry_run: bool,
        /// Where compiled components are kept between calls (default:
        /// $RAMPART_CACHE_DIR, else $XDG_CACHE_HOME/rampart, else
        /// ~/.cache/rampart). Each artifact's sha256 is checked before it
        /// is loaded.
        #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
        cache_dir: Option<PathBuf>,
        /// Compile the component on this call and keep nothing.
        #[arg(long)]
        no_cache: bool,
    },
}

pub async fn run(command: PluginCommand) -> Result<(), Failure> {
    match command {
        PluginCommand::Inspect { file } => inspect(&file),
        PluginCommand::Call {
            manifest,
            input,
            tenant,
            settings,
            secrets,
            allow_http,
            allow_private,
            intel_ipsum,
            dry_run,
            cache_dir,
            no_cache,
        } => {
            let options = CallOptions {
                tenant,
                settings,
                secrets,
                allow_http,
                allow_private,
                intel_ipsum,
                dry_run,
                cache_dir: if no_cache {
                    None
                } else {
                    cache_dir.or_else(default_cache_dir)
                },
            };
            call(&manifest, &input, options).await
        }
    }
}

fn inspect(file: &Path) -> Result<(), Failure> {
    let config = rampart::EngineConfig::default();
    let wasm = rampart::sandbox::read_regular_file(file, config.compile.max_component_bytes)
        .map_err(|err| Failure::usage(err.to_string()))?;
    let engine = rampart::Engine::new(config).map_err(|err| Failure::load(err.to_string()))?;
    let report = rampart::sandbox::inspect(&engine, &wasm)
        .map_err(|err| Failure::load(format!("{}: {err}", file.display())))?;
    print_json(&json!(report));
    Ok(())
}

struct CallOptions {
    tenant: String,
    settings: Vec<String>,
    secrets: Vec<String>,
    allow_http: Vec<String>,
    allow_private: Vec<String>,
    intel_ipsum: Option<PathBuf>,
    dry_run: bool,
    cache_dir: Option<PathBuf>,
}

/// The per-user artifact cache: `$RAMPART_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/rampart`, else `~/.cache/rampart`.
fn default_cache_dir() -> Option<PathBuf> {
    let set = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    set("RAMPART_CACHE_DIR")
        .or_else(|| set("XDG_CACHE_HOME").map(|dir| dir.join("rampart")))
        .or_else(|| set("HOME").map(|home| home.join(".cache").join("rampart")))
}

/// Creates the cache directory readable and writable by this user only
/// (the cache trusts what it wrote; nobody else may write there).
fn private_dir(dir: &Path) -> Result<(), Failure> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|err| Failure::usage(format!("cache directory {}: {err}", dir.display())))
}

fn key_value(flag: &str, entry: &str) -> Result<(String, String), Failure> {
    entry
        .split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| Failure::usage(format!("--{flag} `{entry}` is not KEY=VALUE")))
}

fn read_input(input: &str) -> Result<Value, Failure> {
    let text = match input.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|err| Failure::usage(format!("cannot read {path}: {err}")))?,
        None => input.to_owned(),
    };
    serde_json::from_str(&text).map_err(|err| Failure::usage(format!("--input is not JSON: {err}")))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, value: Value) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|err| Failure::usage(format!("--input is not a valid {what}: {err}")))
}

async fn call(manifest: &Path, input: &str, options: CallOptions) -> Result<(), Failure> {
    let input = read_input(input)?;
    let tenant = TenantId::new(options.tenant).map_err(|err| Failure::usage(err.to_string()))?;
    let mut grant = PluginGrant::with_capabilities(Capability::ALL);
    for entry in &options.settings {
        let (key, value) = key_value("setting", entry)?;
        grant.settings.insert(key, value);
    }
    for entry in &options.secrets {
        let (key, value) = key_value("secret", entry)?;
        grant.secrets.insert(key, Secret::new(value));
    }
    grant.http_hosts = options.allow_http;
    for cidr in &options.allow_private {
        grant.allow_private.push(cidr.parse().map_err(|_| {
            Failure::usage(format!("--allow-private `{cidr}` is not a CIDR range"))
        })?);
    }
    let grants = Grants {
        default: grant,
        ..Grants::default()
    };

    let store = Arc::new(MemoryStore::default());
    if let Some(feed) = &options.intel_ipsum {
        let text = std::fs::read_to_string(feed)
            .map_err(|err| Failure::usage(format!("cannot read {}: {err}", feed.display())))?;
        let indicators = rampart::feeds::parse_ipsum("ipsum", &text)
            .map_err(|err| Failure::usage(format!("{}: {err}", feed.display())))?;
        store
            .intel_insert(&tenant, indicators)
            .map_err(|err| Failure::usage(err.to_string()))?;
    }
    if let Some(dir) = &options.cache_dir {
        private_dir(dir)?;
    }
    let config = RuntimeConfig {
        cache_dir: options.cache_dir.clone(),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config, store).map_err(|err| Failure::load(err.to_string()))?;
    let started = std::time::Instant::now();
    let plugin = runtime
        .load_file(&tenant, &grants, manifest)
        .await
        .map_err(|err| Failure::load(format!("{}: {err}", manifest.display())))?;
    let load_ms = started.elapsed().as_millis();
    let artifact = plugin.artifact_source();
    // A dry run is enforced by the host (no outbound HTTP, a throwaway
    // kv), not left to the plugin's reading of its `dry_run` flag.
    let context = CallContext {
        dry_run: options.dry_run,
        ..CallContext::default()
    };
    let failed =
        |err: rampart::PluginError| Failure::call(format!("{}: {err}", plugin.manifest().name));
    let output = match plugin.manifest().kind {
        rampart::manifest::PluginKind::Enricher => {
            let alert: Alert = parse("alert", input)?;
            json!(plugin.enrich(&alert, &context).await.map_err(failed)?)
        }
        rampart::manifest::PluginKind::Scorer => {
            let (alert, enrichments): (Alert, Vec<Enrichment>) = match input.get("alert") {
                Some(alert) => (
                    parse("alert", alert.clone())?,
                    parse(
                        "enrichment list",
                        input.get("enrichments").cloned().unwrap_or(json!([])),
                    )?,
                ),
                None => (parse("alert", input)?, Vec::new()),
            };
            json!(
                plugin
                    .score(&alert, &enrichments, &context)
                    .await
                    .map_err(failed)?
            )
        }
        rampart::manifest::PluginKind::Responder => {
            let request: ActionRequest = parse("action request", input)?;
            json!(
                plugin
                    .respond(&request, options.dry_run, &context)
                    .await
                    .map_err(failed)?
            )
        }
        rampart::manifest::PluginKind::Hunt => {
            let params = input.get("params").cloned().unwrap_or(json!({}));
            let events: Vec<Event> = parse(
                "event list",
                input.get("events").cloned().unwrap_or(json!([])),
            )?;
            let mut session = plugin.open_hunt(&params).await.map_err(failed)?;
            let mut findings = Vec::new();
            let mut fuel = session.open_stats().fuel;
            for batch in events.chunks(500) {
                let called = session.push(batch).await.map_err(failed)?;
                fuel += called.stats.fuel;
                findings.extend(called.value);
            }
            let closed = session.close().await.map_err(failed)?;
            fuel += closed.stats.fuel;
            findings.extend(closed.value);
            json!({"value": findings, "stats": {"fuel": fuel, "events": events.len()}})
        }
    };
    print_json(&output);
    eprintln!(
        "load {load_ms} ms ({})",
        serde_json::to_value(artifact)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
    if let Some(stats) = output.get("stats") {
        eprintln!(
            "duration {} µs, fuel {}, peak memory {} KiB, host calls {}",
            stats
                .get("duration")
                .and_then(Value::as_u64)
                .map_or("-".to_owned(), |v| v.to_string()),
            stats.get("fuel").and_then(Value::as_u64).unwrap_or(0),
            stats
                .get("peak_memory_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                / 1024,
            stats.get("host_calls").and_then(Value::as_u64).unwrap_or(0),
        );
    }
    Ok(())
}

fn print_json(value: &Value) {
    super::print_json(value);
}
