//! The call pool: a tokio runtime of its own on which plugin calls that
//! run long run (guest code, the host work it causes, its waits).
//!
//! A call starts on the caller's task — most calls end within
//! microseconds, and a hop to another thread would cost more than the call
//! — and moves to the pool at its first epoch tick (every 10 ms): from then
//! on the caller's runtime (the HTTP server's two workers, say) only awaits
//! the result. A guest that makes the host lift a huge output, or a loop
//! that burns its whole deadline, occupies a pool thread — at most its
//! tenant's CPU share of them (see [`share`](super::share)) — and never an
//! async worker that serves requests, health checks or other tenants'
//! storage. The OS then shares the cores between the two runtimes
//! preemptively, at a far finer grain than tokio can between tasks; the
//! pool's threads run at a lower priority ([`CALL_THREAD_NICE`]) so that
//! under plugin load the control plane (ingest, approvals, health checks)
//! is scheduled first.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use super::PluginError;

tokio::task_local! {
    /// Set by the epoch callback when the call has run a tick: move it.
    static WANTS_POOL: Arc<AtomicBool>;
}

/// The flag of the call being polled (a fresh one outside a pool call).
pub(crate) fn wants_pool_flag() -> Arc<AtomicBool> {
    WANTS_POOL
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::new(AtomicBool::new(false)))
}

/// The nice value of the pool's threads (Linux): the OS favours the
/// request-serving threads over guest work when both want a core.
pub const CALL_THREAD_NICE: i32 = 10;

/// Lowers the calling thread's priority (Linux applies `setpriority` with
/// `who = 0` to the calling thread only). Best effort: a failure leaves the
/// thread at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority takes plain integers and touches no memory.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, CALL_THREAD_NICE);
    }
}

/// A runtime for plugin calls; shut down in the background when dropped
/// (dropping a runtime inside another one's task would panic).
pub(crate) struct CallPool {
    runtime: Option<tokio::runtime::Runtime>,
}

impl CallPool {
    /// A pool of `threads` workers.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("rampart-call")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(CallPool {
            runtime: Some(runtime),
        })
    }

    /// Runs `call` here until it has run an epoch tick, then on the pool,
    /// and waits for it. A call that panicked on the pool (a host bug,
    /// never a guest's doing) is reported, not propagated.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PluginError> {
        let Some(runtime) = &self.runtime else {
            return Err(PluginError::Unavailable(
                "the call pool is shut down".to_owned(),
            ));
        };
        let wants_pool = Arc::new(AtomicBool::new(false));
        let mut call = Box::pin(WANTS_POOL.scope(wants_pool.clone(), call));
        let finished_here = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending if wants_pool.load(Ordering::Relaxed) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(value) = finished_here {
            return Ok(value);
        }
        runtime
            .spawn(call)
            .await
            .map_err(|err| PluginError::Unavailable(format!("plugin call task ended: {err}")))
    }
}

impl CallPool {
    /// Runs CPU-bound host work on the pool (its threads run at nice 10).
    pub(crate) async fn work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PluginError> {
        let Some(runtime) = &self.runtime else {
            return Err(PluginError::Unavailable(
                "the call pool is shut down".to_owned(),
            ));
        };
        runtime
            .spawn(async move { work() })
            .await
            .map_err(|err| PluginError::Unavailable(format!("host work task ended: {err}")))
    }
}

impl Drop for CallPool {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
