//! Compiling in a child process, with a memory limit and a deadline.
//!
//! cranelift's time and memory cannot be bounded from inside the process
//! that runs it, and the static checks of [`bounds`](super::bounds) only
//! bound them roughly. So where the embedder says how (the `rampart serve`
//! binary does: its hidden `compile-worker` subcommand), a component is
//! compiled by a child process that gets the wasm on stdin, writes the
//! compiled artifact on stdout, and runs under `RLIMIT_DATA` (memory) and
//! `RLIMIT_CPU` (seconds), and is killed at its wall-clock deadline. A child
//! that is killed or runs out of memory is a refusal that says which bound
//! it hit; the server process never holds the compile's memory.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::Component;

/// How to compile out of process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerProcess {
    /// The program; run as `<program> compile-worker <engine args>`.
    pub program: PathBuf,
    /// Wall time one compile may take (CPU seconds are capped the same).
    pub timeout: Duration,
    /// Memory the child may allocate (`RLIMIT_DATA`), bytes.
    pub memory_bytes: u64,
}

impl CompilerProcess {
    /// The `rampart` binary's own worker with default bounds: 60 s and
    /// 2 GiB per compile.
    pub fn rampart(program: PathBuf) -> Self {
        CompilerProcess {
            program,
            timeout: Duration::from_secs(60),
            memory_bytes: 2 << 30,
        }
    }
}

/// Why a compile in the child failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The child could not be started or talked to.
    #[error("cannot run the compile worker {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The compile took longer than allowed.
    #[error("compiling took longer than the {limit_s} s allowed per upload")]
    Timeout {
        /// The limit, seconds.
        limit_s: u64,
    },
    /// The compile needed more memory than allowed.
    #[error("compiling needed more than the {limit_mib} MiB of memory allowed per upload")]
    OutOfMemory {
        /// The limit, MiB.
        limit_mib: u64,
    },
    /// wasmtime refused the component, or the worker failed otherwise.
    #[error("{0}")]
    Refused(String),
    /// The artifact did not load into this engine.
    #[error("the compile worker's artifact does not load: {0}")]
    Artifact(String),
}

/// Compiles `wasm` in a child process for `engine` (whose settings the
/// worker reproduces from `engine_args`).
pub(crate) fn compile(
    process: &CompilerProcess,
    engine: &wasmtime::Engine,
    engine_args: &[String],
    wasm: &[u8],
) -> Result<Component, CompileError> {
    let spawn_error = |source| CompileError::Spawn {
        program: process.program.clone(),
        source,
    };
    let mut command = Command::new(&process.program);
    command
        .arg("compile-worker")
        .args(engine_args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit_child(&mut command, process);
    let mut child = command.spawn().map_err(spawn_error)?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(spawn_error(std::io::Error::other("no pipes")));
    };
    // Feed and drain on threads of their own, so a full pipe never blocks
    // the deadline below.
    let input = wasm.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(64 << 10).read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait().map_err(spawn_error)? {
            Some(status) => break status,
            None if started.elapsed() >= process.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = feeder.join();
                return Err(CompileError::Timeout {
                    limit_s: process.timeout.as_secs(),
                });
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let _ = feeder.join();
    let artifact = reader.join().unwrap_or_default();
    let said = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(judge_failure(process, status, &said));
    }
    // SAFETY: the bytes are what `Engine::precompile_component` wrote in
    // our own worker (the same binary) for an engine configured like this
    // one; wasmtime checks the header and the engine settings and refuses
    // an artifact made for another configuration.
    unsafe { Component::deserialize(engine, &artifact) }
        .map_err(|err| CompileError::Artifact(format!("{err:#}")))
}

fn judge_failure(
    process: &CompilerProcess,
    status: std::process::ExitStatus,
    said: &str,
) -> CompileError {
    use std::os::unix::process::ExitStatusExt;
    let last = said.lines().rev().find(|line| !line.trim().is_empty());
    tracing::warn!(
        %status,
        said = last.map(crate::caps::log::sanitise).unwrap_or_default(),
        "compile worker failed"
    );
    let out_of_memory = CompileError::OutOfMemory {
        limit_mib: process.memory_bytes >> 20,
    };
    if said.contains("memory allocation of") || said.contains("out of memory") {
        return out_of_memory;
    }
    match status.signal() {
        // RLIMIT_CPU: SIGXCPU, then SIGKILL.
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => CompileError::Timeout {
            limit_s: process.timeout.as_secs(),
        },
        // An allocation failure aborts (or segfaults on a failed mmap).
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) => out_of_memory,
        _ => {
            let line = said.lines().rev().find(|line| !line.trim().is_empty());
            CompileError::Refused(line.unwrap_or("the compile worker failed").to_owned())
        }
    }
}

#[cfg(unix)]
fn limit_child(command: &mut Command, process: &CompilerProcess) {
    use std::os::unix::process::CommandExt;
    let memory = process.memory_bytes;
    let cpu = process.timeout.as_secs().saturating_add(1);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe and touches no memory of
    // ours beyond the two stack values.
    unsafe {
        command.pre_exec(move || {
            let data = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            let seconds = libc::rlimit {
                rlim_cur: cpu,
                rlim_max: cpu.saturating_add(1),
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &data) != 0
                || libc::setrlimit(libc::RLIMIT_CPU, &seconds) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The worker side: reads a component on stdin (at most `max_bytes`),
/// compiles it for `engine` and writes the artifact on stdout.
pub fn run_worker(engine: &wasmtime::Engine, max_bytes: usize) -> Result<(), CompileError> {
    let mut wasm = Vec::new();
    std::io::stdin()
        .take(
            u64::try_from(max_bytes)
                .unwrap_or(u64::MAX)
                .saturating_add(1),
        )
        .read_to_end(&mut wasm)
        .map_err(|err| CompileError::Refused(format!("reading the component: {err}")))?;
    if wasm.len() > max_bytes {
        return Err(CompileError::Refused(format!(
            "component larger than {max_bytes} bytes"
        )));
    }
    let artifact = engine
        .precompile_component(&wasm)
        .map_err(|err| CompileError::Refused(format!("{err:#}")))?;
    std::io::stdout()
        .write_all(&artifact)
        .map_err(|err| CompileError::Refused(format!("writing the artifact: {err}")))
}
