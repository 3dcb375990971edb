//! `rampart serve` and `rampart token create`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use rampart::RuntimeConfig;
use rampart::audit::AuditKey;
use rampart::executor::Executor;
use rampart::store::{Keyspace, SledStore};
use rampart::tenant::TenantId;
use rampart_postgres::PgStore;
use rampart_server::auth::{Role, Tokens};
use rampart_server::{AppState, serve};

use super::Failure;

/// Where the server keeps its state: `--store`.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// sled in `--data` (the default).
    Sled,
    /// A PostgreSQL database (`postgres://user:password@host:port/db`).
    Postgres(String),
}

fn parse_store(value: &str) -> Result<StoreChoice, String> {
    if value == "sled" {
        Ok(StoreChoice::Sled)
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(StoreChoice::Postgres(value.to_owned()))
    } else {
        Err(format!(
            "`{value}` is neither `sled` nor a postgres:// connection URL"
        ))
    }
}

/// Where the server's work queue lives: `--queue`.
#[derive(Debug, Clone)]
pub enum QueueChoice {
    /// In this process (the default): one node.
    Local,
    /// NATS JetStream (`nats://host:port[/namespace]`), shared by every node
    /// of a cluster.
    Nats(String),
}

fn parse_queue(value: &str) -> Result<QueueChoice, String> {
    if value == "local" {
        Ok(QueueChoice::Local)
    } else if value.starts_with("nats://") {
        rampart_nats::QueueAddress::parse(value).map_err(|err| err.to_string())?;
        Ok(QueueChoice::Nats(value.to_owned()))
    } else {
        Err(format!("`{value}` is neither `local` nor a nats:// URL"))
    }
}

fn parse_node_id(value: &str) -> Result<String, String> {
    match rampart::cluster::node_id_problem(value) {
        Some(problem) => Err(problem),
        None => Ok(value.to_owned()),
    }
}

/// This machine's host name and the port: a node id that tells the nodes
/// of one machine apart and stays the same across restarts.
fn default_node_id(port: u16) -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(50)
        .collect();
    let host = if host.is_empty() {
        "node".to_owned()
    } else {
        host
    };
    format!("{host}-{port}")
}

/// The store `choice` names, opened; with the connections a PostgreSQL
/// pool may hold.
enum Opened {
    Sled(SledStore),
    Postgres(Box<PgStore>),
}

impl Opened {
    fn open(
        choice: &StoreChoice,
        data: &std::path::Path,
        connections: u32,
    ) -> Result<Self, Failure> {
        match choice {
            StoreChoice::Sled => SledStore::open(data)
                .map(Opened::Sled)
                .map_err(|err| Failure::load(err.to_string())),
            StoreChoice::Postgres(url) => PgStore::connect(url, connections)
                .map(|store| Opened::Postgres(Box::new(store)))
                .map_err(|err| Failure::load(err.to_string())),
        }
    }

    fn space(&self) -> &Keyspace {
        match self {
            Opened::Sled(store) => store.space(),
            Opened::Postgres(store) => store.space(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Local directory: the sled store (locked while the server runs) when
    /// `--store sled`, and the default place of the plugin cache.
    #[arg(long, default_value = "rampart-data")]
    data: PathBuf,
    /// Where state lives: `sled` (in `--data`) or a PostgreSQL URL
    /// `postgres://user:password@host:port/db` (schema applied at start;
    /// one server per database for now).
    #[arg(long, env = "RAMPART_STORE", default_value = "sled", value_parser = parse_store)]
    store: StoreChoice,
    /// Most PostgreSQL connections this server holds.
    #[arg(long, default_value_t = 16)]
    store_connections: u32,
    /// Where accepted work waits for a worker: `local` (in this process) or
    /// a NATS JetStream URL `nats://host:port[/namespace]` shared by every
    /// node of a cluster (needs `--store postgres://…`, the same for all).
    #[arg(long, env = "RAMPART_QUEUE", default_value = "local", value_parser = parse_queue)]
    queue: QueueChoice,
    /// This node's id, in audit records, metrics and the start line
    /// (default: `<host name>-<listen port>`).
    #[arg(long, env = "RAMPART_NODE_ID", value_parser = parse_node_id)]
    node_id: Option<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Audit checkpoint key, outside the data directory (created if missing).
    #[arg(long, env = "RAMPART_AUDIT_KEY", default_value = "rampart-audit.key")]
    audit_key: PathBuf,
    /// Compiled-plugin cache (default: `<data>.cache`).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Master key for secrets at rest, outside the data directory (created if missing).
    #[arg(
        long,
        env = "RAMPART_MASTER_KEY_FILE",
        default_value = "rampart-master.key"
    )]
    master_key_file: PathBuf,
    /// Tenants, grants, quotas and inventories as code (YAML); validated
    /// before anything starts, authoritative for the tenants it names.
    #[arg(long)]
    config: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Longest a plugin upload may compile (in a child process; past it the
    /// upload is refused).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    compile_timeout: std::time::Duration,
    /// Most memory one plugin compile may use, MiB.
    #[arg(long, default_value_t = 2048)]
    compile_memory_mib: u64,
    /// Serve `/metrics` without a token (totals only, no tenant names). By
    /// default it needs a token of role `metrics` or `admin`.
    #[arg(long)]
    public_metrics: bool,
    /// Close a connection after this long without a byte either way.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Open connections per client address (more are closed at once).
    #[arg(long, default_value_t = 256)]
    max_connections_per_address: usize,
    /// A request's headers must all arrive within this long of its start.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
}

/// The engine settings of the server that asks for the compile.
#[derive(Debug, Args)]
pub struct CompileWorkerArgs {
    #[arg(long)]
    max_memory_bytes: u64,
    #[arg(long)]
    max_wasm_stack: usize,
    #[arg(long)]
    keep_resident_bytes: usize,
}

/// Compiles the component on stdin for an engine with the given settings
/// and writes the artifact on stdout.
pub fn compile_worker(args: CompileWorkerArgs) -> Result<(), Failure> {
    let config = rampart::EngineConfig {
        max_memory_bytes: args.max_memory_bytes,
        max_wasm_stack: args.max_wasm_stack,
        // One instance slot: the worker only compiles, and a full pool's
        // stack mappings would count against its memory limit. (Pool sizes
        // do not change compiled code.)
        max_instances: 1,
        keep_resident_bytes: args.keep_resident_bytes,
        ..rampart::EngineConfig::default()
    };
    let max = config.compile.max_component_bytes;
    let engine =
        rampart::Engine::for_compiling(&config).map_err(|err| Failure::load(err.to_string()))?;
    rampart::sandbox::compiler::run_worker(&engine, max)
        .map_err(|err| Failure::load(err.to_string()))
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Data directory (must not be in use by a running server).
    #[arg(long, default_value = "rampart-data")]
    data: PathBuf,
    /// The server's store: `sled` (in `--data`) or its PostgreSQL URL.
    #[arg(long, env = "RAMPART_STORE", default_value = "sled", value_parser = parse_store)]
    store: StoreChoice,
    /// The server's audit key (tokens are sealed under a key derived from
    /// it; give the same `--audit-key` as `rampart serve`).
    #[arg(long, env = "RAMPART_AUDIT_KEY", default_value = "rampart-audit.key")]
    audit_key: PathBuf,
    /// Who the token is for.
    #[arg(long)]
    principal: String,
    /// admin | tenant-admin | analyst | ingest | viewer.
    #[arg(long, default_value = "admin")]
    role: String,
    /// The tenant (all roles but admin).
    #[arg(long)]
    tenant: Option<String>,
    /// Lifetime in seconds (default: no expiry).
    #[arg(long)]
    ttl_secs: Option<u64>,
}

pub async fn run_server(args: ServeArgs) -> Result<(), Failure> {
    for (flag, value) in [
        ("--idle-timeout", args.idle_timeout),
        ("--header-timeout", args.header_timeout),
    ] {
        if value.is_zero() {
            return Err(Failure::usage(format!(
                "{flag} must be longer than 0 s (a connection could not send a byte)"
            )));
        }
    }
    // A bad config file fails before anything is opened or written.
    let server_config = args
        .config
        .as_deref()
        .map(rampart::config::load)
        .transpose()
        .map_err(|err| Failure::usage(err.to_string()))?;
    // Bad TLS files fail before anything is opened.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            rampart_server::tls::server_config(cert, key)
                .map_err(|err| Failure::usage(err.to_string()))?,
        ),
        _ => None,
    };
    if matches!(args.queue, QueueChoice::Nats(_)) && matches!(args.store, StoreChoice::Sled) {
        return Err(Failure::usage(
            "--queue nats://… makes this server one node of a cluster, and the nodes share their state: give them --store postgres://… (sled is one process's store)",
        ));
    }
    let node_id = args
        .node_id
        .clone()
        .unwrap_or_else(|| default_node_id(args.listen.port()));
    let key = AuditKey::load_or_create(&args.audit_key, Some(&args.data))
        .map_err(|err| Failure::usage(err.to_string()))?;
    let store = Opened::open(&args.store, &args.data, args.store_connections)?;
    // Held for as long as the server runs: one server per database, or
    // any number of nodes sharing a queue.
    let _claimed = match &store {
        Opened::Postgres(store) => Some(
            match args.queue {
                QueueChoice::Local => store.claim(),
                QueueChoice::Nats(_) => store.claim_as_node(),
            }
            .map_err(|err| Failure::load(err.to_string()))?,
        ),
        Opened::Sled(_) => None,
    };
    let queue: std::sync::Arc<dyn rampart::executor::queue::WorkQueue> = match &args.queue {
        QueueChoice::Local => std::sync::Arc::new(rampart::executor::queue::LocalQueue::new(
            rampart::executor::DEFAULT_RUN_SHARE,
        )),
        QueueChoice::Nats(url) => std::sync::Arc::new(
            rampart_nats::NatsQueue::connect(url, &node_id, rampart::executor::DEFAULT_RUN_SHARE)
                .await
                .map_err(|err| Failure::load(err.to_string()))?,
        ),
    };
    let node = rampart::cluster::Node {
        id: node_id.clone(),
        queue,
    };
    let cache = args
        .cache_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.cache", args.data.display())));
    let compiler =
        std::env::current_exe()
            .ok()
            .map(|program| rampart::sandbox::compiler::CompilerProcess {
                timeout: args.compile_timeout,
                memory_bytes: args.compile_memory_mib.saturating_mul(1 << 20),
                ..rampart::sandbox::compiler::CompilerProcess::rampart(program)
            });
    let config = RuntimeConfig {
        cache_dir: Some(cache),
        compiler,
        ..RuntimeConfig::default()
    };
    let executor = match store {
        Opened::Sled(store) => Executor::on_node(config, store, key, node),
        Opened::Postgres(store) => Executor::on_node(config, *store, key, node),
    }
    .map_err(|err| Failure::load(err.to_string()))?;
    let secret_box = rampart::secrets::SecretBox::open(&args.master_key_file, Some(&args.data))
        .map_err(|err| Failure::usage(err.to_string()))?;
    let state = AppState::open_with(executor, secret_box, server_config.as_ref())
        .await
        .map_err(|err| Failure::load(format!("restoring state: {}", err.detail)))?
        .with_public_metrics(args.public_metrics)
        .with_connection_limits(rampart_server::guard::ConnectionLimits {
            per_address: args.max_connections_per_address.max(1),
            idle: args.idle_timeout,
            header: args.header_timeout,
        });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| Failure::usage(format!("cannot listen on {}: {err}", args.listen)))?;
    let bound = listener
        .local_addr()
        .map_err(|err| Failure::usage(err.to_string()))?;
    // SIGTERM is what systemd, docker and Kubernetes send; SIGINT is Ctrl-C.
    // Both finish in-flight requests and sign every audit head.
    // Both are registered now, before "listening" is printed: a signal that
    // comes right after start-up is handled, not the default (exit at once).
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|err| Failure::usage(format!("cannot watch SIGTERM: {err}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|err| Failure::usage(format!("cannot watch SIGINT: {err}")))?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("shutting down: finishing in-flight requests, signing audit heads");
    };
    let served = match tls {
        Some(config) => {
            let listener = rampart_server::tls::TlsListener::new(listener, config)
                .map_err(|err| Failure::usage(err.to_string()))?;
            eprintln!(
                "rampart listening on https://{bound} (node {node_id}, {}, {})",
                shown_store(&args.store, &args.data),
                shown_queue(&args.queue)
            );
            serve(state, listener, shutdown).await
        }
        _ => {
            eprintln!(
                "rampart listening on http://{bound} (node {node_id}, {}, {})",
                shown_store(&args.store, &args.data),
                shown_queue(&args.queue)
            );
            serve(state, listener, shutdown).await
        }
    };
    served.map_err(|err| Failure::call(err.to_string()))
}

/// The queue for the start-up line.
fn shown_queue(choice: &QueueChoice) -> String {
    match choice {
        QueueChoice::Local => "queue in process".to_owned(),
        QueueChoice::Nats(url) => {
            let rest = url.trim_start_matches("nats://");
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("queue nats://{host}")
        }
    }
}

/// The store for the start-up line, a URL's password left out.
fn shown_store(choice: &StoreChoice, data: &std::path::Path) -> String {
    match choice {
        StoreChoice::Sled => format!("data {}", data.display()),
        StoreChoice::Postgres(url) => {
            // Neither the user info nor the query (which may carry a
            // `password=`) is shown.
            let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
            let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("store {scheme}://…@{host}")
        }
    }
}

pub fn create_token(args: TokenArgs) -> Result<(), Failure> {
    let role: Role =
        serde_json::from_value(serde_json::Value::String(args.role.clone())).map_err(|_| {
            Failure::usage(format!(
                "--role `{}` is not admin, tenant-admin, analyst, ingest, viewer or metrics",
                args.role
            ))
        })?;
    let tenant = args
        .tenant
        .map(TenantId::new)
        .transpose()
        .map_err(|err| Failure::usage(err.to_string()))?;
    let store = Opened::open(&args.store, &args.data, 2)?;
    let key = AuditKey::load_or_create(&args.audit_key, Some(&args.data))
        .map_err(|err| Failure::usage(err.to_string()))?;
    let seal = rampart::audit::seal::SealKey::derive(&key);
    let tokens =
        Tokens::open(store.space(), &seal).map_err(|err| Failure::load(err.to_string()))?;
    let ttl = match args.ttl_secs {
        Some(secs) if secs == 0 || secs > rampart_server::MAX_TOKEN_TTL_SECS => {
            return Err(Failure::usage(format!(
                "--ttl-secs must be between 1 and {} (ten years); got {secs}",
                rampart_server::MAX_TOKEN_TTL_SECS
            )));
        }
        Some(secs) => Some(i64::try_from(secs * 1000).unwrap_or(i64::MAX)),
        None => None,
    };
    let (token, record) = tokens
        .create(&args.principal, tenant, role, ttl)
        .map_err(|err| Failure::usage(err.to_string()))?;
    eprintln!(
        "token {} for {} ({:?}); shown once, store it now:",
        record.id, record.principal, record.role
    );
    println!("{token}");
    Ok(())
}
