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

/// Counters of plugin calls, by tenant, plugin and outcome.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CallCounter {
    /// Calls.
    pub calls: u64,
    /// Summed wall time, microseconds.
    pub duration_us: u64,
    /// Summed fuel.
    pub fuel: u64,
    /// Calls that took at most each of [`CallCounter::BUCKETS_US`]
    /// (cumulative, as Prometheus histograms count).
    pub buckets: [u64; 12],
}

impl CallCounter {
    /// Upper bounds of the latency histogram, microseconds.
    pub const BUCKETS_US: [u64; 12] = [
        25, 50, 100, 250, 500, 1_000, 5_000, 25_000, 100_000, 500_000, 1_000_000, 5_000_000,
    ];

    pub(crate) fn record(&mut self, stats: &CallStats) {
        let micros = u64::try_from(stats.duration.as_micros()).unwrap_or(u64::MAX);
        self.calls += 1;
        self.duration_us = self.duration_us.saturating_add(micros);
        self.fuel = self.fuel.saturating_add(stats.fuel);
        for (bucket, bound) in self.buckets.iter_mut().zip(Self::BUCKETS_US) {
            if micros <= bound {
                *bucket += 1;
            }
        }
    }

    /// Adds another counter's totals to this one.
    pub fn merge(&mut self, other: &CallCounter) {
        self.calls += other.calls;
        self.duration_us = self.duration_us.saturating_add(other.duration_us);
        self.fuel = self.fuel.saturating_add(other.fuel);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
    }
}
