//! The accept loop: HTTP/1 connections served by hyper with a timer, so a
//! request's headers must arrive within a deadline (a slow-header drip that
//! keeps a connection "active" byte by byte is cut), on the connection
//! limits of [`super::guard`]. In-flight requests finish on shutdown.
//!
//! `axum::serve` builds its hyper connection without a timer, and hyper's
//! header deadline only runs with one; this loop is that function with the
//! timer and the deadline set.

use std::future::Future;
use std::time::Duration;

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

/// Serves `router` on `listener` until `shutdown` completes, then waits for
/// every open connection to finish its request.
pub async fn serve_connections<L>(
    mut listener: L,
    router: axum::Router,
    header_deadline: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener,
    L::Io: Send + 'static,
{
    // Dropping `stop_tx` tells every connection to shut down gracefully;
    // each connection holds a `done_rx` until it ends.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, _addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        // An axum router is always ready and never fails: calling it
        // directly is what `poll_ready` then `call` would do.
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = router.clone();
            async move {
                tower_service::Service::call(&mut router, request.map(axum::body::Body::new)).await
            }
        });
        let mut stop_rx = stop_rx.clone();
        let done_rx = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_deadline);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::trace!("connection ended: {err}");
                    }
                }
                _ = stop_rx.changed() => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(err) = connection.await {
                        tracing::trace!("connection ended at shutdown: {err}");
                    }
                }
            }
            drop(done_rx);
        });
    }
    drop(stop_rx);
    drop(stop_tx);
    drop(done_rx);
    done_tx.closed().await;
}
