//! Services the test suite needs, started for the run and stopped after
//! it: PostgreSQL (a throw-away cluster from Debian's `postgresql`
//! package, initdb into a temporary directory, on a free loopback port)
//! and NATS with JetStream (Debian's `nats-server -js`, its store in a
//! temporary directory, on a free loopback port).
//!
//! `RAMPART_TEST_PG_URL` / `RAMPART_TEST_NATS_URL`, when set, name servers
//! to use instead. When neither is possible the run fails saying what is
//! missing: the tests that need the services are never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

/// A PostgreSQL server for the run; stopped (if this run started it) when
/// dropped.
pub struct Postgres {
    /// `postgres://…` of a database the tests may create databases from.
    pub url: String,
    started: Option<Started>,
}

struct Started {
    bin: PathBuf,
    dir: PathBuf,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/<version>/bin` with an `initdb`.
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A PostgreSQL program, as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn checked(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

impl Postgres {
    /// The server `RAMPART_TEST_PG_URL` names, or one started now.
    pub fn for_tests() -> Result<Self> {
        if let Ok(url) = std::env::var("RAMPART_TEST_PG_URL") {
            eprintln!("PostgreSQL: using RAMPART_TEST_PG_URL");
            return Ok(Postgres { url, started: None });
        }
        if postgres_bin().is_none() && is_root() {
            // A fresh machine of this kind: Debian's package, as the test
            // command installs what it needs.
            eprintln!("PostgreSQL not found: installing Debian's postgresql package");
            let _ = Command::new("apt-get").arg("update").status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "postgresql"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        let Some(bin) = postgres_bin() else {
            bail!(
                "the tests need PostgreSQL and found none: no /usr/lib/postgresql/<version>/bin/initdb. \
                 Install Debian's package (`apt-get install postgresql`) or set RAMPART_TEST_PG_URL \
                 to a server you run"
            );
        };
        let as_postgres = is_root();
        // Under the system's temporary directory, which the `postgres`
        // user can reach (a checkout may not be).
        let dir =
            std::env::temp_dir().join(format!("rampart-test-postgres-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if as_postgres {
            checked(
                Command::new("chown").arg("postgres").arg(&dir),
                "chown postgres (the cluster's directory)",
            )?;
        }
        checked(
            pg_command(&bin, "initdb", as_postgres)
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-A", "trust", "-U", "rampart", "--no-sync"]),
            "initdb",
        )?;
        let port = free_port()?;
        checked(
            pg_command(&bin, "pg_ctl", as_postgres)
                .arg("-D")
                .arg(dir.join("data"))
                .arg("-l")
                .arg(dir.join("server.log"))
                .arg("-o")
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
                    dir.display()
                ))
                .args(["-w", "-t", "60", "start"]),
            "pg_ctl start",
        )?;
        eprintln!(
            "PostgreSQL {} started on 127.0.0.1:{port} for this run (log: {})",
            bin.display(),
            dir.join("server.log").display()
        );
        Ok(Postgres {
            url: format!("postgres://rampart@127.0.0.1:{port}/postgres"),
            started: Some(Started {
                bin,
                dir,
                as_postgres,
            }),
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(started) = &self.started {
            let _ = pg_command(&started.bin, "pg_ctl", started.as_postgres)
                .arg("-D")
                .arg(started.dir.join("data"))
                .args(["stop", "-m", "fast", "-w"])
                .output();
            let _ = std::fs::remove_dir_all(&started.dir);
        }
    }
}

/// A NATS server with JetStream for the run; stopped (if this run started
/// it) when dropped.
pub struct Nats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    started: Option<(std::process::Child, PathBuf)>,
}

fn nats_server() -> Option<PathBuf> {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

impl Nats {
    /// The server `RAMPART_TEST_NATS_URL` names, or one started now.
    pub fn for_tests() -> Result<Self> {
        if let Ok(url) = std::env::var("RAMPART_TEST_NATS_URL") {
            eprintln!("NATS: using RAMPART_TEST_NATS_URL");
            return Ok(Nats { url, started: None });
        }
        if nats_server().is_none() && is_root() {
            eprintln!("nats-server not found: installing Debian's nats-server package");
            let _ = Command::new("apt-get").arg("update").status();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "nats-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        let Some(program) = nats_server() else {
            bail!(
                "the tests need NATS with JetStream and found no nats-server: install Debian's \
                 package (`apt-get install nats-server`) or set RAMPART_TEST_NATS_URL to a \
                 server you run with -js"
            );
        };
        let dir = std::env::temp_dir().join(format!("rampart-test-nats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = Command::new(&program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let nats = Nats {
            url: format!("nats://127.0.0.1:{port}"),
            started: Some((child, dir.clone())),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(
                std::time::Instant::now() < deadline,
                "nats-server did not listen on 127.0.0.1:{port} within 20 s (log: {})",
                dir.join("server.log").display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!(
            "NATS {} -js started on 127.0.0.1:{port} for this run (log: {})",
            program.display(),
            dir.join("server.log").display()
        );
        Ok(nats)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some((child, dir)) = &mut self.started {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
