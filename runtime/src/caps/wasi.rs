//! The WASI context every sandbox gets: all of WASI 0.2 is linked (so that
//! components from componentize-py or -js, which import filesystem and
//! sockets, still load) but nothing is granted: no preopened directories,
//! no environment, no arguments, empty stdin, no sockets, no name lookup.
//! Stderr is captured (bounded) so a guest's panic message can be reported.
//!
//! Randomness is bounded per call (`max_random_bytes`; a larger request
//! traps) and counted, so that the bytes it makes are charged as fuel.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Bytes of guest stderr kept per call.
pub const STDERR_CAPACITY: usize = 16 << 10;

/// wasmtime-wasi's generator, counting the bytes it hands out.
pub struct CountingRng {
    inner: Box<dyn rand_core::Rng + Send>,
    made: Arc<AtomicU64>,
}

impl Default for CountingRng {
    fn default() -> Self {
        CountingRng {
            inner: wasmtime_wasi::random::thread_rng(),
            made: Arc::default(),
        }
    }
}

impl CountingRng {
    /// The counter of bytes made (shared; the host resets it as it charges).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.made.clone()
    }

    /// Another generator counting into the same counter (for
    /// `wasi:random/insecure`).
    pub fn sibling(&self) -> Self {
        CountingRng {
            inner: wasmtime_wasi::random::thread_rng(),
            made: self.made.clone(),
        }
    }

    fn count(&self, bytes: usize) {
        self.made
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl rand_core::TryRng for CountingRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.count(4);
        Ok(self.inner.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.count(8);
        Ok(self.inner.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.count(dst.len());
        self.inner.fill_bytes(dst);
        Ok(())
    }
}

/// A WASI context that grants nothing; stderr goes to `stderr`; secure
/// randomness comes from `random`, at most `max_random_bytes` per request.
pub fn deny_all(stderr: MemoryOutputPipe, random: CountingRng, max_random_bytes: u64) -> WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr)
        .insecure_random(random.sibling())
        .secure_random(random)
        .max_random_size(max_random_bytes)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}
