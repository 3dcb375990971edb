//! Connection limits under the HTTP server: a cap on open connections per
//! client address, and an inactivity deadline per connection, so idle
//! keep-alive sockets and half-sent requests cannot pile up until the
//! process runs out of file descriptors.
//!
//! A listener wrapper (`axum::serve` takes any [`Listener`]): a connection
//! past its address's cap is closed as soon as it is accepted; an accepted
//! one is closed when nothing has been read from or written to it for the
//! idle time (an idle keep-alive, a request whose headers stopped coming).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections per client address.
    pub per_address: usize,
    /// Close a connection after this long without a byte either way.
    pub idle: Duration,
    /// A request's headers must all arrive within this long of its start
    /// (a drip of header bytes is not activity enough).
    pub header: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            per_address: 256,
            // Longer than the longest request the server answers (a plugin
            // upload compiles for up to 60 s with no byte on the wire).
            idle: Duration::from_secs(120),
            header: Duration::from_secs(20),
        }
    }
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A listener that applies [`ConnectionLimits`].
#[derive(Debug)]
pub struct Guarded<L> {
    inner: L,
    limits: ConnectionLimits,
    open: Counts,
}

impl<L> Guarded<L> {
    /// `inner` with `limits`.
    pub fn new(inner: L, limits: ConnectionLimits) -> Self {
        Guarded {
            inner,
            limits,
            open: Arc::default(),
        }
    }
}

fn counts(open: &Counts) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    open.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<L> Listener for Guarded<L>
where
    L: Listener<Addr = SocketAddr>,
{
    type Io = GuardedIo<L::Io>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = self.inner.accept().await;
            let ip = addr.ip();
            {
                let mut open = counts(&self.open);
                let count = open.entry(ip).or_default();
                if *count >= self.limits.per_address {
                    tracing::warn!(
                        "refused a connection from {ip}: it already has {count} open (the cap per address)"
                    );
                    drop(io);
                    continue;
                }
                *count += 1;
            }
            let io = GuardedIo {
                inner: io,
                idle: self.limits.idle,
                deadline: Box::pin(tokio::time::sleep(self.limits.idle)),
                _slot: Slot {
                    open: self.open.clone(),
                    ip,
                },
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Gives the address's connection back when the connection is dropped.
#[derive(Debug)]
struct Slot {
    open: Counts,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = counts(&self.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection with an inactivity deadline.
#[derive(Debug)]
pub struct GuardedIo<T> {
    inner: T,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Held for the connection's life; its drop gives the slot back.
    _slot: Slot,
}

impl<T> GuardedIo<T> {
    fn touch(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.touch();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
