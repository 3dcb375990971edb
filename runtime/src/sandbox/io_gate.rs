//! Where a guest waits, it gives its tenant's CPU share back.
//!
//! A call holds one of its tenant's CPU permits while it runs — guest code
//! and host work alike (lifting a large output, a lookup), so that a
//! tenant's calls together use at most its share of the async workers. A
//! call that *waits* (on the network, a timer) must not hold it: every
//! wait of WASI 0.2 goes through `wasi:io/poll` (`poll`, `pollable.block`)
//! or a blocking stream operation, so those are redefined here over
//! wasmtime-wasi-io's own implementation, with the permit released for the
//! wait and queued for again after it.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    Host as _, HostInputStream as _, HostOutputStream as _, StreamError as WitStreamError,
};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream, StreamResult};

use super::state::HostState;

/// The interface versions wasmtime-wasi-io defines (wasmtime matches
/// every guest's `0.2.x` import to them).
const POLL: &str = "wasi:io/poll@0.2.12";
const STREAMS: &str = "wasi:io/streams@0.2.12";

type StreamOutcome<T> = wasmtime::Result<(Result<T, WitStreamError>,)>;

fn stream_outcome<T>(state: &mut HostState, result: StreamResult<T>) -> StreamOutcome<T> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(state.table.convert_stream_error(err)?),)),
    }
}

/// Redefines the waiting functions of `wasi:io` (after WASI is linked).
pub(crate) fn gate_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap_async(
        "poll",
        |mut store, (pollables,): (Vec<Resource<DynPollable>>,)| {
            Box::new(async move {
                let cpu = store.data().cpu.clone();
                cpu.release();
                let ready = store.data_mut().table.poll(pollables).await;
                cpu.take().await;
                Ok((ready?,))
            })
        },
    )?;
    poll.func_wrap_async(
        "[method]pollable.block",
        |mut store, (pollable,): (Resource<DynPollable>,)| {
            Box::new(async move {
                let cpu = store.data().cpu.clone();
                cpu.release();
                let done = store.data_mut().table.block(pollable).await;
                cpu.take().await;
                done
            })
        },
    )?;
    let mut streams = linker.instance(STREAMS)?;
    streams.func_wrap_async(
        "[method]input-stream.blocking-read",
        |mut store, (stream, len): (Resource<DynInputStream>, u64)| {
            Box::new(async move {
                let cpu = store.data().cpu.clone();
                cpu.release();
                let read = store.data_mut().table.blocking_read(stream, len).await;
                cpu.take().await;
                stream_outcome(store.data_mut(), read)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-write-and-flush",
        |mut store, (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            Box::new(async move {
                let cpu = store.data().cpu.clone();
                cpu.release();
                let written = store
                    .data_mut()
                    .table
                    .blocking_write_and_flush(stream, bytes)
                    .await;
                cpu.take().await;
                stream_outcome(store.data_mut(), written)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-flush",
        |mut store, (stream,): (Resource<DynOutputStream>,)| {
            Box::new(async move {
                let cpu = store.data().cpu.clone();
                cpu.release();
                let flushed = store.data_mut().table.blocking_flush(stream).await;
                cpu.take().await;
                stream_outcome(store.data_mut(), flushed)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
