//! The wasmtime engine Rampart runs every plugin on.
//!
//! One engine per process: component model on, the pooling allocator (so a
//! fresh sandbox per call costs microseconds), fuel metering, and epoch
//! interruption driven by a ticker thread so that a looping guest yields to
//! the async executor every tick and stops at its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("engine configuration: {0}")]
    Config(String),
    /// The ticker thread could not start.
    #[error("epoch ticker: {0}")]
    Ticker(std::io::Error),
}

/// Runtime-wide ceilings and tuning. Manifest and grant limits are capped by
/// these.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most linear memory one call may use, in bytes.
    pub max_memory_bytes: u64,
    /// Most fuel one call may burn.
    pub max_fuel: u64,
    /// Longest deadline of one call.
    pub max_timeout: Duration,
    /// Epoch tick: the granularity of deadlines and of yielding.
    pub epoch_tick: Duration,
    /// Sandboxes that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Fuel charged for every call from a plugin into the host.
    pub host_call_fuel: u64,
    /// Largest output (sum of strings and lists) a call may return, in bytes.
    pub max_output_bytes: usize,
    /// Linear memory bytes kept resident in a pooling slot between calls
    /// (reset with memset rather than madvise: fewer page faults).
    pub keep_resident_bytes: usize,
    /// Guest wasm stack size.
    pub max_wasm_stack: usize,
    /// Fuel charged per byte a host call reads or builds for the guest
    /// (intel, memory, context, kv, log, random), on top of
    /// `host_call_fuel`: host work costs in proportion to its size.
    pub host_byte_fuel: u64,
    /// Caps on the number of items a call may return.
    pub output_items: OutputItemCaps,
    /// Whole-session budget of a hunt (open, every push, close): wall time.
    pub max_session_time: Duration,
    /// Whole-session budget of a hunt: fuel.
    pub max_session_fuel: u64,
    /// What a component may weigh before it is compiled.
    pub compile: CompileBounds,
    /// Largest single WASI random request (`get-random-bytes` and the
    /// insecure variant), bytes; larger requests trap.
    pub max_random_bytes: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_memory_bytes: 512 << 20,
            max_fuel: 20_000_000_000,
            max_timeout: Duration::from_secs(120),
            epoch_tick: Duration::from_millis(10),
            max_instances: 200,
            host_call_fuel: 10_000,
            max_output_bytes: 4 << 20,
            keep_resident_bytes: 64 << 10,
            max_wasm_stack: 512 << 10,
            host_byte_fuel: 4,
            output_items: OutputItemCaps::default(),
            max_session_time: Duration::from_secs(60),
            max_session_fuel: 50_000_000_000,
            compile: CompileBounds::default(),
            max_random_bytes: 64 << 10,
        }
    }
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Wake it from its tick sleep so dropping an engine is immediate.
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The shared wasmtime engine with its epoch ticker.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    config: Arc<EngineConfig>,
    _ticker: Arc<Ticker>,
}

impl Engine {
    /// Builds the engine and starts its ticker.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut pooling = PoolingAllocationConfig::new();
        pooling
            .total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances)
            .total_tables(config.max_instances * 2)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(config.keep_resident_bytes)
            .table_keep_resident(64 << 10);

        let mut wasm = Self::codegen_config(&config);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let inner =
            wasmtime::Engine::new(&wasm).map_err(|err| EngineError::Config(err.to_string()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = inner.clone();
            let stop = stop.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("rampart-epoch".to_owned())
                .spawn(move || {
                    let mut next = std::time::Instant::now() + tick;
                    while !stop.load(Ordering::Relaxed) {
                        let now = std::time::Instant::now();
                        if now < next {
                            std::thread::park_timeout(next - now);
                            continue;
                        }
                        engine.increment_epoch();
                        next = std::time::Instant::now() + tick;
                    }
                })
                .map_err(EngineError::Ticker)?
        };
        Ok(Engine {
            inner,
            config: Arc::new(config),
            _ticker: Arc::new(Ticker {
                stop,
                thread: Some(thread),
            }),
        })
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// The wasmtime settings that shape compiled code (an engine for
    /// compiling only needs these; the allocator does not change the code).
    fn codegen_config(config: &EngineConfig) -> Config {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .concurrency_support(false)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack);
        wasm
    }

    /// An engine that only compiles (the compile worker's): the code
    /// settings of [`Engine::new`], the on-demand allocator (no pool to
    /// reserve, no ticker), so that its memory limit is the compile's.
    pub fn for_compiling(config: &EngineConfig) -> Result<wasmtime::Engine, EngineError> {
        wasmtime::Engine::new(&Self::codegen_config(config))
            .map_err(|err| EngineError::Config(err.to_string()))
    }

    /// The settings that shape compiled code, as `compile-worker`
    /// arguments: a worker given them builds an engine whose artifacts this
    /// one loads.
    pub fn worker_args(&self) -> Vec<String> {
        let config = &self.config;
        vec![
            "--max-memory-bytes".to_owned(),
            config.max_memory_bytes.to_string(),
            "--max-wasm-stack".to_owned(),
            config.max_wasm_stack.to_string(),
            "--keep-resident-bytes".to_owned(),
            config.keep_resident_bytes.to_string(),
        ]
    }

    /// The ceilings and tuning.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The runtime-wide ceilings as [`crate::tenant::Limits`].
    pub fn ceilings(&self) -> crate::tenant::Limits {
        crate::tenant::Limits {
            memory_bytes: self.config.max_memory_bytes,
            fuel: self.config.max_fuel,
            timeout: self.config.max_timeout,
        }
    }
}

/// Most items of each kind one call may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputItemCaps {
    /// Enrichments from one `enrich`.
    pub enrichments: usize,
    /// Tags of one enrichment.
    pub tags: usize,
    /// Reasons of one score.
    pub reasons: usize,
    /// Findings from one hunt push or close.
    pub findings: usize,
    /// Entities, techniques, event ids or references of one finding.
    pub finding_items: usize,
    /// JSON values (every object, array, string, number, ...) the host
    /// builds from one call's `data`/`detail` fields together.
    pub json_values: usize,
}

impl Default for OutputItemCaps {
    fn default() -> Self {
        OutputItemCaps {
            enrichments: 1_000,
            tags: 64,
            reasons: 64,
            findings: 10_000,
            finding_items: 256,
            json_values: 200_000,
        }
    }
}

/// Bounds a component must stay within to be compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileBounds {
    /// Largest component file, bytes.
    pub max_component_bytes: usize,
    /// Most functions with a body, over every core module inside.
    pub max_functions: usize,
    /// Largest function body, bytes.
    pub max_function_bytes: usize,
    /// Most core modules inside one component.
    pub max_modules: usize,
}

impl Default for CompileBounds {
    /// Room for a componentize-py or StarlingMonkey component (tens of
    /// MB, tens of thousands of functions) and far below a compile bomb.
    fn default() -> Self {
        CompileBounds {
            max_component_bytes: 64 << 20,
            max_functions: 100_000,
            max_function_bytes: 1 << 20,
            max_modules: 64,
        }
    }
}
