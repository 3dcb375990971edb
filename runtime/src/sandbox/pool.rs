//! The call pool: a tokio runtime of its own on which every plugin call
//! runs (instantiation, guest code, the host work it causes, its waits).
//!
//! The caller's runtime (the HTTP server's two workers, say) only awaits
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

use super::PluginError;

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

    /// Runs `call` on the pool and waits for it. A call that panicked (a
    /// host bug, never a guest's doing) is reported, not propagated.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PluginError> {
        let Some(runtime) = &self.runtime else {
            return Err(PluginError::Unavailable(
                "the call pool is shut down".to_owned(),
            ));
        };
        runtime
            .spawn(call)
            .await
            .map_err(|err| PluginError::Unavailable(format!("plugin call task ended: {err}")))
    }
}

impl Drop for CallPool {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
