//! The accept loop: HTTP/1.1 connections with the bounds `axum::serve` does not
//! offer.
//!
//! * A cap on HTTP connections being served (`--max-connections`): each
//!   connection task owns a semaphore permit, so a flood of connections waits
//!   in the kernel's backlog instead of growing memory.
//! * A deadline for request headers (`--header-read-timeout-ms`), which also
//!   closes idle keep-alive connections and handshakes that never complete
//!   (slowloris).
//! * Graceful shutdown: stop accepting, let requests in progress finish.
//! * The client's address on every request, as axum's `ConnectInfo` (the
//!   demo login's rate limit is per address).
//!
//! Upgraded WebSocket connections leave hyper (and release their permit) once
//! the upgrade is done; sessions have their own cap and tracker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer;

/// Bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// HTTP connections served at once.
    pub max_connections: usize,
    /// Time a client has to send complete request headers.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for requests in progress.
    pub drain_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits `config` sets; the drain shares the shutdown grace period.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.max_connections,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            drain_timeout: Duration::from_millis(config.shutdown_grace_ms),
        }
    }
}

/// Pause after an accept error (such as running out of file descriptors), so
/// the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Binds `address` with an explicit accept backlog: under a reconnect storm the
/// default (128 here) overflows and the kernel drops connection attempts that
/// clients retry only after a second or more.
pub fn bind(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Ticks are tiny; do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let service =
            TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(app.clone()));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let draining = draining.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = draining.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    draining.cancel();
    connections.close();
    if tokio::time::timeout(limits.drain_timeout, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests were still running when the drain timeout passed");
    }
}
