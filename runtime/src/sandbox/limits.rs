//! Per-call resource accounting: the memory cap (and peak), and the
//! statistics every call reports.

use std::time::Duration;

use serde::Serialize;
use wasmtime::ResourceLimiter;

/// Enforces a call's memory cap and remembers the peak and any refusal.
#[derive(Debug)]
pub(crate) struct CallLimiter {
    pub(crate) memory_cap: usize,
    pub(crate) peak_memory: usize,
    pub(crate) memory_refused: bool,
}

impl CallLimiter {
    pub(crate) fn new(memory_cap: u64) -> Self {
        CallLimiter {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            peak_memory: 0,
            memory_refused: false,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_refused = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k entries is far beyond any
        // plugin and keeps a hostile one from eating host memory this way.
        Ok(desired <= 100_000)
    }
}

/// What one call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct CallStats {
    /// Wall-clock time from sandbox creation to result.
    #[serde(serialize_with = "as_micros")]
    pub duration: Duration,
    /// Fuel burned, host-call charges included.
    pub fuel: u64,
    /// Largest linear memory reached, in bytes.
    pub peak_memory_bytes: u64,
    /// Calls from the plugin into the host.
    pub host_calls: u64,
}

fn as_micros<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}
