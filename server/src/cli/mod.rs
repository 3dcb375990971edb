//! Subcommands of the `rampart` binary.

mod audit;
mod client;
mod intel;
mod playbooks;
mod plugin;
mod serve;
mod summary;

use clap::{Parser, Subcommand};

/// Rampart: sandboxed WebAssembly plugins for SOAR playbooks.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about)]
pub struct Cli {
    /// Log as JSON lines (to stderr).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Work with playbooks.
    #[command(subcommand)]
    Playbook(playbooks::PlaybookCommand),
    /// Run one alert through a playbook (embedded store) and print the run.
    Run(playbooks::RunArgs),
    /// Dry-run many alerts (JSON lines) through a playbook and summarise.
    Replay(playbooks::ReplayArgs),
    /// Verify or export the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Talk to a running server (alerts, runs, approvals, audit).
    Api(client::ApiArgs),
    /// Run the HTTP control API with the embedded store.
    Serve(serve::ServeArgs),
    /// Threat-intel feeds: import, look up, list.
    #[command(subcommand)]
    Intel(intel::IntelCommand),
    /// Create an API token (the first admin token comes from here).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Compile one component from stdin to stdout (the server runs this
    /// in a child process with a memory limit and a deadline).
    #[command(hide = true)]
    CompileWorker(serve::CompileWorkerArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once.
    Create(serve::TokenArgs),
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

/// Exit codes: 2 bad usage or input, 3 plugin refused at load, 4 call failed.
impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
    pub fn load(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 3,
        }
    }
    pub fn call(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 4,
        }
    }
}

pub fn init_tracing(json: bool) {
    // RAMPART_LOG, else the usual RUST_LOG, else warnings only.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Plugin(command) => plugin::run(command).await,
        Command::Playbook(command) => playbooks::check(command),
        Command::Run(args) => playbooks::run(args).await,
        Command::Replay(args) => playbooks::replay(args).await,
        Command::Audit(command) => audit::run(command),
        Command::Serve(args) => serve::run_server(args).await,
        Command::Api(args) => client::run(args).await,
        Command::Token(TokenCommand::Create(args)) => serve::create_token(args),
        Command::Intel(command) => intel::run(command),
        Command::CompileWorker(args) => serve::compile_worker(args),
    }
}

/// Prints `value` as pretty JSON on stdout; a closed pipe (`| head`) is not
/// an error worth a panic: the reader has what it wanted.
/// The rule a guardrail reason states, without the target or numbers it
/// names, so reports can group reasons by rule.
pub fn guardrail_rule(reason: &str) -> String {
    reason
        .split([':', '('])
        .next()
        .unwrap_or(reason)
        .chars()
        .take(60)
        .collect()
}

pub fn print_json(value: &serde_json::Value) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = serde_json::to_writer_pretty(&mut stdout, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout));
    if let Err(err) = written
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot print result: {err}");
    }
}
