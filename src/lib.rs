//! resume-server remembers where every viewer stopped watching and puts them back
//! there when they press Play.
//!
//! How the parts fit:
//! * **Write path.** A player opens one WebSocket per playback session
//!   (`http::session`); a session actor (`session::actor`) keeps the latest
//!   position and writes it to the store every flush interval, when the player
//!   ends, when the socket closes and when the server shuts down. The position
//!   rules it follows are a pure state machine (`session::book`). The seed's
//!   plain `POST /api/v1/stream/progress` (`http::stream`) stays for clients
//!   without WebSockets.
//! * **Read path.** `GET /api/v1/stream` asks `position_reads` where the viewer
//!   is — the newest of a live session's position on this node and the store's
//!   winner, a delete hiding anything received before it — and applies the
//!   completion threshold (`resume`). The hello of a session, a raw progress
//!   read and continue watching ask the same function; which titles continue
//!   watching offers, a series as one row that moves on to the next episode,
//!   is `continue_watching`'s pure decision.
//! * **Store.** `store::PositionStore`, last-write-wins by the time the server
//!   received a position, with the viewer's watched state beside it: the embedded redb store by default, Cassandra/ScyllaDB
//!   in production.
//! * **Readiness.** `readiness` probes the store in the background and keeps
//!   what `/readyz` answers, with hysteresis.
//! * **Browser sessions.** A browser cannot set headers on a WebSocket, so it
//!   asks for a single-use, short-lived ticket over the API
//!   (`session_tickets`, `http::session_ticket`) and opens the session with it;
//!   `http::session_auth` decides which credential an upgrade carries.
//! * **Browser lockdown.** Every response carries the browser's security
//!   headers (`http::security_headers`), and the demo login is rate-limited
//!   (`demo_login_limit`).
//! * `config` holds every knob (`secret` keeps secrets off the command line and
//!   out of logs), `auth` verifies tokens, `catalog` knows the titles, `metrics`
//!   counts, and [`run`] ties it together with a shutdown that waits for every
//!   session's final write.

#![forbid(unsafe_code)]

pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod continue_watching;
pub mod demo_login_limit;
pub mod error;
pub mod http;
pub mod metrics;
pub mod position_reads;
pub mod readiness;
pub mod resume;
pub mod secret;
pub mod server;
pub mod session;
pub mod session_tickets;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::AuthKeys;
use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, ConfigError, StoreKind};
use crate::state::AppState;
use crate::store::cassandra::{CassandraSettings, CassandraStore};
use crate::store::embedded::EmbeddedStore;
use crate::store::{SharedStore, StoreError};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The catalog is invalid.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The store could not be opened.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Serving failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> Result<SharedStore, RunError> {
    Ok(match config.store {
        StoreKind::Embedded => Arc::new(
            EmbeddedStore::open_with(
                &config.data_dir,
                Duration::from_millis(config.store_commit_delay_ms),
            )?
            .with_expiry(config.position_ttl(), Arc::new(clock::SystemClock)),
        ),
        StoreKind::Cassandra => {
            let settings = CassandraSettings::from_config(config)?;
            if config.init_schema {
                store::cassandra::apply_schema(&settings).await?;
            }
            Arc::new(CassandraStore::connect(&settings).await?)
        }
    })
}

/// Builds the application state from a validated config and an opened store.
fn build_state(
    config: &Config,
    store: SharedStore,
    clock: clock::SharedClock,
) -> Result<AppState, RunError> {
    let keys = AuthKeys::from_config(config)?;
    if keys.is_demo_mode() {
        tracing::warn!(
            "no RESUME_JWT_SECRET or RESUME_JWT_PUBLIC_KEY configured: demo mode, with a random \
             secret and an open POST /api/v1/demo/token login. Do not expose this server."
        );
    }
    let catalog = match &config.catalog {
        Some(path) => Catalog::from_file(path)?,
        None => Catalog::built_in(),
    };
    Ok(AppState::on_clock(config, keys, catalog, store, clock))
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting, tells
/// every session to write its position and close (1001), and waits for them up
/// to the shutdown grace period.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    let store = open_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// [`run`] with a store the caller opened (tests wrap stores to inject faults).
pub async fn run_with_store(
    config: Config,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    serve(config, store, listener, shutdown).await
}

/// [`run`] on a wall clock the caller holds (tests move it to expire session
/// tickets without waiting).
pub async fn run_with_clock(
    config: Config,
    clock: clock::SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    config.validate()?;
    let store = open_store(&config).await?;
    serve_on_clock(config, store, clock, listener, shutdown).await
}

/// Serves a validated config on an opened store (the body of [`run`]).
async fn serve(
    config: Config,
    store: SharedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    serve_on_clock(
        config,
        store,
        Arc::new(clock::SystemClock),
        listener,
        shutdown,
    )
    .await
}

/// [`serve`] with the wall clock that stamps writes and expires tickets.
async fn serve_on_clock(
    config: Config,
    store: SharedStore,
    clock: clock::SharedClock,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let state = build_state(&config, store, clock)?;
    let prober = readiness::spawn_prober(
        state.store.clone(),
        state.readiness.clone(),
        state.metrics.clone(),
        readiness::ReadinessSettings::from_config(&config),
        state.shutdown.clone(),
    );
    let app = http::app(state.clone(), &config.static_dir);
    tracing::info!(address = %listener.local_addr()?, store = ?config.store, "listening");

    let sessions_stop = state.shutdown.clone();
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let limits = server::ConnectionLimits::from_config(&config);
    // One grace period for the whole stop: the HTTP drain and the sessions'
    // final writes run at the same time and share its deadline.
    let deadline = Arc::new(std::sync::OnceLock::new());
    let deadline_set = Arc::clone(&deadline);
    server::serve(listener, app, limits, async move {
        shutdown.await;
        let _ = deadline_set.set(tokio::time::Instant::now() + grace);
        tracing::info!("shutting down: closing sessions and writing their positions");
        sessions_stop.cancel();
    })
    .await;

    // Awaited after the abort so that the prober's handle on the store is gone
    // when `run` returns (an embedded store's file can then be opened again).
    prober.abort();
    let _ = prober.await;
    state.session_tasks.close();
    let deadline = deadline
        .get()
        .copied()
        .unwrap_or_else(|| tokio::time::Instant::now() + grace);
    if tokio::time::timeout_at(deadline, state.session_tasks.wait())
        .await
        .is_err()
    {
        tracing::error!(
            remaining = state.sessions.live_count(),
            "shutdown grace period over; some sessions did not finish their final write"
        );
    } else {
        tracing::info!("every session finished");
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
