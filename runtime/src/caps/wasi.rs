//! The WASI context every sandbox gets: all of WASI 0.2 is linked (so that
//! components from componentize-py or -js, which import filesystem and
//! sockets, still load) but nothing is granted: no preopened directories,
//! no environment, no arguments, empty stdin, no sockets, no name lookup.
//! Stderr is captured (bounded) so a guest's panic message can be reported.

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Bytes of guest stderr kept per call.
pub const STDERR_CAPACITY: usize = 16 << 10;

/// A WASI context that grants nothing; stderr goes to `stderr`.
pub fn deny_all(stderr: MemoryOutputPipe) -> WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build()
}
