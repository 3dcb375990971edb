//! `cargo xtask <command>`:
//!
//! - `plugins`: builds every guest crate (plugins/*, tests/fixtures/guests/*)
//!   for `wasm32-wasip2` and writes `target/plugins/<name>.wasm` beside its
//!   manifest `target/plugins/<name>.toml` with the sha256 filled in
//!   (fixtures go to `target/plugins/fixtures/`). Installs the target with
//!   rustup if it is missing.
//! - `demo [--exit]`: `plugins`, one sandboxed call, a dry-run replay, then
//!   `rampart serve` on a fresh embedded store driven over the API with the
//!   example plugins, context, intel, playbooks, alerts and a Sigma hunt; it
//!   prints what happened and keeps serving (Ctrl-C stops it) unless
//!   `--exit`, which stops the server and verifies the audit log offline.
//! - `test`: `plugins`, then formatting, clippy (host and guests) and every
//!   test of the workspace (with a PostgreSQL server it starts, see
//!   `services.rs`), then checks that `examples/embed` compiles no
//!   server crate and runs it. This is what CI runs.

mod services;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

const GUEST_TARGET: &str = "wasm32-wasip2";
const GUEST_PROFILE: &str = "plugin";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("plugins") => build_plugins(&root),
        Some("test") => test(&root, &args[1..]),
        Some("demo") => demo(&root, args[1..].iter().any(|a| a == "--exit")),
        _ => {
            eprintln!("usage: cargo xtask plugins | demo [--exit] | test [extra cargo test args]");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// The command as a shell line, environment names only: tokens and keys
/// passed through the environment are never printed.
fn shown(command: &Command) -> String {
    let envs: Vec<String> = command
        .get_envs()
        .map(|(name, _)| format!("{}=…", name.to_string_lossy()))
        .collect();
    let args: Vec<String> = command
        .get_args()
        .map(|a| format!("{:?}", a.to_string_lossy()))
        .collect();
    format!(
        "{}{:?} {}",
        if envs.is_empty() {
            String::new()
        } else {
            format!("{} ", envs.join(" "))
        },
        command.get_program().to_string_lossy(),
        args.join(" ")
    )
}

fn run(command: &mut Command) -> Result<()> {
    let line = shown(command);
    eprintln!("+ {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {line}"))?;
    if !status.success() {
        bail!("{line} failed: {status}");
    }
    Ok(())
}

fn ensure_guest_target() -> Result<()> {
    let output = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the wasm32-wasip2 target")?;
    let installed = String::from_utf8_lossy(&output.stdout);
    if !installed.lines().any(|line| line.trim() == GUEST_TARGET) {
        run(Command::new("rustup").args(["target", "add", GUEST_TARGET]))?;
    }
    Ok(())
}

/// A guest crate: its package name and the directory holding its Cargo.toml.
struct Guest {
    package: String,
    dir: PathBuf,
    fixture: bool,
}

fn guests(root: &Path) -> Result<Vec<Guest>> {
    let mut found = Vec::new();
    for (parent, fixture) in [("plugins", false), ("tests/fixtures/guests", true)] {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
            .with_context(|| format!("reading {parent}"))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|dir| dir.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let manifest: toml::Table =
                toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml"))?)?;
            let package = manifest
                .get("package")
                .and_then(|package| package.get("name"))
                .and_then(|name| name.as_str())
                .with_context(|| format!("{} has no package name", dir.display()))?
                .to_owned();
            found.push(Guest {
                package,
                dir,
                fixture,
            });
        }
    }
    Ok(found)
}

fn build_plugins(root: &Path) -> Result<()> {
    ensure_guest_target()?;
    let guests = guests(root)?;
    let mut build = cargo();
    build.current_dir(root).args([
        "build",
        "--target",
        GUEST_TARGET,
        "--profile",
        GUEST_PROFILE,
    ]);
    for guest in &guests {
        build.args(["--package", &guest.package]);
    }
    run(&mut build)?;

    let built = root.join("target").join(GUEST_TARGET).join(GUEST_PROFILE);
    let out = root.join("target").join("plugins");
    std::fs::create_dir_all(out.join("fixtures"))?;
    for guest in &guests {
        let artifact = built.join(format!("{}.wasm", guest.package.replace('-', "_")));
        let bytes =
            std::fs::read(&artifact).with_context(|| format!("reading {}", artifact.display()))?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let dest_dir = if guest.fixture {
            out.join("fixtures")
        } else {
            out.clone()
        };
        let wasm = dest_dir.join(format!("{}.wasm", guest.package));
        std::fs::write(&wasm, &bytes)?;
        let template = guest.dir.join("rampart.toml");
        if template.is_file() {
            let mut manifest: toml::Table = toml::from_str(&std::fs::read_to_string(&template)?)
                .with_context(|| format!("parsing {}", template.display()))?;
            let component = manifest
                .entry("component")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(component) = component.as_table_mut() else {
                bail!("{}: [component] is not a table", template.display());
            };
            component.insert(
                "path".to_owned(),
                toml::Value::String(format!("{}.wasm", guest.package)),
            );
            component.insert("sha256".to_owned(), toml::Value::String(digest.clone()));
            std::fs::write(
                dest_dir.join(format!("{}.toml", guest.package)),
                toml::to_string(&manifest)?,
            )?;
        }
        eprintln!(
            "  {} ({} KiB, sha256 {})",
            wasm.display(),
            bytes.len() / 1024,
            &digest[..16]
        );
    }
    Ok(())
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    build_plugins(root)?;
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .current_dir(root)
        .args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    let mut guest_clippy = cargo();
    guest_clippy.current_dir(root).args([
        "clippy",
        "--target",
        GUEST_TARGET,
        "--profile",
        GUEST_PROFILE,
    ]);
    for guest in guests(root)? {
        guest_clippy.args(["--package", &guest.package]);
    }
    run(guest_clippy.args(["--package", "rampart-sdk", "--", "-D", "warnings"]))?;
    // Started before the tests and stopped when this returns, also on a
    // failure.
    let postgres = services::Postgres::for_tests()?;
    let nats = services::Nats::for_tests()?;
    let mut tests = cargo();
    tests
        .current_dir(root)
        .arg("test")
        .env("RAMPART_TEST_PG_URL", &postgres.url)
        .env("RAMPART_TEST_NATS_URL", &nats.url);
    tests.args(extra);
    run(&mut tests)?;
    // The SDK's rustdoc examples (one per plugin kind) compile on the host too.
    run(cargo()
        .current_dir(root)
        .args(["test", "--package", "rampart-sdk", "--doc"]))?;
    // Plugins' own unit tests run natively (`--lib`: the cdylib's export
    // names only link for wasm).
    let mut plugin_tests = cargo();
    plugin_tests.current_dir(root).args(["test", "--lib"]);
    for guest in guests(root)? {
        if !guest.fixture {
            plugin_tests.args(["--package", &guest.package]);
        }
    }
    run(&mut plugin_tests)?;
    // The patched copy of sigma-rust keeps passing its own tests.
    run(cargo().current_dir(root).args([
        "test",
        "--quiet",
        "--manifest-path",
        "vendor/sigma-rust/Cargo.toml",
        "--target-dir",
        "target/vendor",
    ]))?;
    embedder_has_no_server_crates(root)?;
    // The embedder runs: tenant, playbook, alert, two approvals, audit,
    // restore, all without HTTP (it exits non-zero when any of it fails).
    run(cargo()
        .current_dir(root)
        .args(["run", "--quiet", "--package", "rampart-embed-example"]))
}

/// An embedder (`examples/embed`, the library without its `server`
/// feature) compiles no HTTP server or CLI crates.
fn embedder_has_no_server_crates(root: &Path) -> Result<()> {
    let output = cargo()
        .current_dir(root)
        .args([
            "tree",
            "--package",
            "rampart-embed-example",
            "--edges",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .context("cargo tree")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let server: Vec<&str> = tree
        .lines()
        .filter(|line| {
            ["axum ", "clap ", "indicatif ", "tracing-subscriber "]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .collect();
    anyhow::ensure!(
        server.is_empty(),
        "examples/embed pulls server crates into an embedder: {}",
        server.join(", ")
    );
    println!(
        "examples/embed depends on no server crate (axum, clap, indicatif, tracing-subscriber)"
    );
    Ok(())
}

fn demo(root: &Path, exit: bool) -> Result<()> {
    build_plugins(root)?;
    run(cargo().current_dir(root).args([
        "build",
        "--quiet",
        "--package",
        "rampart-server",
        "--bin",
        "rampart",
    ]))?;
    let rampart_bin = root.join("target/debug/rampart");
    let rampart = |args: &[&str]| -> Result<()> {
        run(Command::new(&rampart_bin).current_dir(root).args(args))
    };

    // One sandboxed call, then the playbook engine on the embedded store.
    rampart(&[
        "plugin",
        "call",
        "target/plugins/ip-reputation.toml",
        "--input",
        "@examples/alerts/ssh-bruteforce.json",
        "--intel-ipsum",
        "examples/data/ipsum/ipsum.txt",
    ])?;
    rampart(&["playbook", "check", "examples/playbooks/ip-triage.yaml"])?;
    // The summary table goes to the terminal, the per-action detail (JSON)
    // to a file.
    let replay_out = root.join("target/replay-ip-triage.json");
    run(Command::new(&rampart_bin)
        .current_dir(root)
        .args([
            "replay",
            "--playbook",
            "examples/playbooks/ip-triage.yaml",
            "--alerts",
            "examples/alerts/replay.jsonl",
            "--intel-ipsum",
            "examples/data/ipsum/ipsum.txt",
            "--inventory",
            "examples/inventory.json",
        ])
        .stdout(std::fs::File::create(&replay_out)?))?;
    eprintln!("(replay detail: {})", replay_out.display());

    // The server: a fresh data directory, the first admin token, then the
    // daily operations over HTTP with `rampart api`.
    let demo = root.join("target/demo");
    let _ = std::fs::remove_dir_all(&demo);
    std::fs::create_dir_all(&demo)?;
    let data = demo.join("data").to_string_lossy().into_owned();
    let key = demo.join("keys/audit.key").to_string_lossy().into_owned();
    let token_out = Command::new(&rampart_bin)
        .args([
            "token",
            "create",
            "--data",
            &data,
            "--audit-key",
            &key,
            "--principal",
            "demo-admin",
        ])
        .output()?;
    let token = String::from_utf8_lossy(&token_out.stdout).trim().to_owned();
    anyhow::ensure!(
        token_out.status.success() && !token.is_empty(),
        "token create failed: {}",
        String::from_utf8_lossy(&token_out.stderr)
    );
    // Threat intel, imported once into the data directory and shared by the
    // tenants that subscribe (here: acme). The full maltrail dev sample when
    // ../shared/data is there, else the slice in tests/fixtures.
    let shared_maltrail = root.join("../shared/data/ti_maltrail");
    let maltrail: Vec<String> = if shared_maltrail.is_dir() {
        (1..=4)
            .map(|part| {
                shared_maltrail
                    .join(format!("trails_static.part{part}.tar.gz"))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    } else {
        vec!["tests/fixtures/intel/maltrail-slice.tar.gz".to_owned()]
    };
    let feeds: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "ipsum",
            "ipsum",
            vec!["examples/data/ipsum/ipsum.txt".to_owned()],
        ),
        ("maltrail", "maltrail", maltrail),
        (
            "stix-apt1",
            "stix",
            vec!["tests/fixtures/intel/stix/apt1.json".to_owned()],
        ),
        (
            "eset-agrius",
            "hashes",
            vec!["tests/fixtures/intel/eset/agrius/samples.sha256".to_owned()],
        ),
    ];
    for (feed, format, files) in &feeds {
        let mut command = Command::new(&rampart_bin);
        command.current_dir(root).args([
            "intel",
            "import",
            "--data",
            &data,
            "--feed",
            feed,
            "--format",
            format,
            "--subscribe",
            "acme",
        ]);
        command.args(files).stdout(std::process::Stdio::null());
        run(&mut command)?;
    }
    // A free loopback port, then wait until the server accepts connections.
    // 127.0.0.1:8080 when it is free (stable URLs), else any free port.
    let listen = std::net::TcpListener::bind("127.0.0.1:8080")
        .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?
        .local_addr()?
        .to_string();
    let listen = listen.as_str();
    let master = demo.join("keys/master.key").to_string_lossy().into_owned();
    let mut server = Command::new(&rampart_bin)
        .args([
            "serve",
            "--data",
            &data,
            "--audit-key",
            &key,
            "--master-key-file",
            &master,
            "--listen",
            listen,
        ])
        .spawn()?;
    let outcome = (|| -> Result<()> {
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(listen).is_err() {
            anyhow::ensure!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the server did not start on {listen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        // Setup answers (JSON) go to a log; the summary at the end is what
        // a reader wants to see.
        let setup_log = demo.join("setup.log");
        let api_to = |args: &[&str], to_log: bool| -> Result<()> {
            let mut command = Command::new(&rampart_bin);
            // The token goes through the environment, never the printed command line.
            command
                .current_dir(root)
                .env("RAMPART_TOKEN", &token)
                .arg("api")
                .args(["--server", &format!("http://{listen}"), "--tenant", "acme"])
                .args(args);
            if to_log {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&setup_log)?;
                command.stdout(log);
            }
            run(&mut command)
        };
        let api = |args: &[&str]| api_to(args, true);
        // Grants: context for every plugin; outbound HTTP only for the
        // vendor plugins, each to its own vendor's host.
        api(&["create-tenant", "--grants", "examples/grants.json"])?;
        for plugin in [
            "ip-reputation",
            "threat-intel",
            "asset-context",
            "identity-context",
            "risk-scorer",
            "edl-blocklist",
            "edr-contain",
            "idp-suspend",
            "sigma-hunt",
        ] {
            api(&["upload-plugin", &format!("target/plugins/{plugin}.toml")])?;
        }
        // The tenant's own context, as a CMDB and an IdP would export it.
        api(&["put-inventory", "examples/context/assets.csv"])?;
        api(&["put-identities", "examples/context/users.csv"])?;
        for playbook in [
            "supervised-block",
            "intel-triage",
            "malware-triage",
            "identity-triage",
        ] {
            api(&[
                "put-playbook",
                &format!("examples/playbooks/{playbook}.yaml"),
            ])?;
        }
        api(&["send", "--retime", "examples/alerts/ssh-bruteforce.json"])?;
        api(&["send", "--retime", "examples/alerts/replay.jsonl"])?;
        // A SOC's morning: malware on two hosts (one a domain controller),
        // a privileged sign-in from a listed address, a listed domain.
        api(&["send", "--retime", "examples/alerts/soc-day.jsonl"])?;
        // A scheduled Sigma hunt over ingested Mordor telemetry; its findings
        // become alerts that run the playbooks. Run once now for the demo.
        api(&["send-events", "examples/events/mordor-lsass-dumps.jsonl"])?;
        api(&[
            "put-hunt",
            "sigma",
            "--plugin",
            "sigma-hunt",
            "--schedule",
            "*/5 * * * *",
            "--params",
            r#"{"min_level": "medium"}"#,
        ])?;
        api(&["run-hunt", "sigma"])?;
        eprintln!("(API answers: {})\n", setup_log.display());
        api_to(&["summary"], false)?;
        api_to(&["verify"], false)
    })();
    if outcome.is_ok() && !exit {
        // Keep serving: the token goes to a file only its owner can read.
        let token_file = demo.join("admin.token");
        std::fs::write(&token_file, format!("{token}\n"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let base = format!("http://{listen}");
        let token_path = token_file.display();
        let bin = rampart_bin.display();
        println!(
            "\nRampart is serving on {base} (tenant `acme`). Have a look:\n\
             \n  export RAMPART_TOKEN=$(cat {token_path})\n\
             \n  curl -s -H \"Authorization: Bearer $RAMPART_TOKEN\" {base}/v1/tenants/acme/runs?limit=20\
             \n  curl -s -H \"Authorization: Bearer $RAMPART_TOKEN\" {base}/v1/tenants/acme/approvals\
             \n  curl -s -H \"Authorization: Bearer $RAMPART_TOKEN\" {base}/v1/tenants/acme/measurements\
             \n  curl -s -H \"Authorization: Bearer $RAMPART_TOKEN\" {base}/v1/tenants/acme/inventory\
             \n  curl -s -u firewall:$RAMPART_TOKEN {base}/edl/acme/block        # the EDL firewalls poll\
             \n  curl -s {base}/metrics\
             \n  curl -s {base}/v1/openapi.json\
             \n  {bin} api --server {base} --tenant acme approvals   # approve <id> / deny <id>\
             \n\nCtrl-C stops the server (in-flight work finishes, audit heads are signed);\
             \nthen `{bin} audit verify --data {data} --audit-key {key}` checks the chain offline."
        );
        let status = server.wait()?;
        anyhow::ensure!(
            status.success() || status.code().is_none(),
            "the server exited with {status}"
        );
        return Ok(());
    }
    // Graceful stop (SIGINT): in-flight requests finish, audit heads are signed.
    let _ = Command::new("kill")
        .args(["-INT", &server.id().to_string()])
        .status();
    let _ = server.wait();
    outcome?;
    rampart(&["audit", "verify", "--data", &data, "--audit-key", &key])
}
