//! The shared state every handler receives, and its construction from the config.
//!
//! One `Arc` holds every part: axum clones the state for each extractor that
//! asks for it, and one reference count per request is cheaper than one per
//! part (a dozen, on the read path). Nothing here is global.

use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthKeys, UserId};
use crate::catalog::{Catalog, Movie};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::demo_login_limit::DemoLoginLimiter;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::position_reads::PositionReads;
use crate::readiness::Readiness;
use crate::resume::{CompletionThreshold, ResumeDecision, resume_position};
use crate::session::{SessionRegistry, SessionSettings, SessionShared};
use crate::session_tickets::SessionTicketBook;
use crate::store::{SharedStore, Stored};

/// A session whose client takes no message for this long is treated as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings the HTTP layer reads per request.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Completion threshold of the read paths.
    pub threshold: CompletionThreshold,
    /// Continue-watching leaves out titles watched less than this (ms).
    pub min_resume_ms: u64,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame/message.
    pub max_frame_bytes: usize,
    /// WebSocket read buffer per session.
    pub ws_read_buffer_bytes: usize,
    /// WebSocket write buffer per session.
    pub ws_write_buffer_bytes: usize,
    /// Origins allowed for browser calls and session upgrades; empty = same origin only.
    pub allowed_origins: Arc<[String]>,
    /// Whether `POST /api/v1/demo/token` exists.
    pub demo_login: bool,
    /// Whether a session upgrade may carry its token as `?access_token=` (deprecated).
    pub allow_query_token: bool,
}

/// Everything handlers share, cheap to clone (see the module docs).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The token verification the auth extractors need.
impl FromRef<AppState> for AuthKeys {
    fn from_ref(state: &AppState) -> AuthKeys {
        state.keys.clone()
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    /// Token verification.
    pub keys: AuthKeys,
    /// Titles.
    pub catalog: Catalog,
    /// Positions.
    pub store: SharedStore,
    /// Live sessions on this node.
    pub sessions: Arc<SessionRegistry>,
    /// Session timing and limits, and the services every session uses.
    pub session_shared: Arc<SessionShared>,
    /// Per-request settings.
    pub http: Arc<HttpSettings>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down; sessions watch it.
    pub shutdown: CancellationToken,
    /// Tracks session tasks, which axum's graceful shutdown does not wait for.
    pub session_tasks: TaskTracker,
    /// Stamps every write with the time it was received.
    pub clock: SharedClock,
    /// What `/readyz` answers, kept by the readiness prober.
    pub readiness: Readiness,
    /// Unredeemed session tickets issued by this node.
    pub session_tickets: Arc<SessionTicketBook>,
    /// Buckets of the demo login's rate limit.
    pub demo_logins: Arc<DemoLoginLimiter>,
}

impl AppState {
    /// Builds the state around an already-opened store.
    pub fn new(config: &Config, keys: AuthKeys, catalog: Catalog, store: SharedStore) -> Self {
        Self::on_clock(config, keys, catalog, store, Arc::new(SystemClock))
    }

    /// [`AppState::new`] with `clock` stamping writes and expiring tickets.
    pub fn on_clock(
        config: &Config,
        keys: AuthKeys,
        catalog: Catalog,
        store: SharedStore,
        clock: SharedClock,
    ) -> Self {
        let metrics = Arc::new(Metrics::for_store(store.as_ref()));
        let session_settings = SessionSettings {
            flush_interval: config.flush_interval(),
            provisional_confirm: Duration::from_millis(config.provisional_confirm_ms),
            ping_interval: Duration::from_millis(config.ping_interval_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            tick_rate: config.tick_rate,
            send_timeout: SEND_TIMEOUT,
            completion_threshold: CompletionThreshold::from_fraction(config.completion_threshold),
        };
        let http = HttpSettings {
            threshold: CompletionThreshold::from_fraction(config.completion_threshold),
            min_resume_ms: (config.min_resume_seconds * 1000.0).round() as u64,
            max_body_bytes: config.max_body_bytes,
            max_frame_bytes: config.max_frame_bytes,
            ws_read_buffer_bytes: config.ws_read_buffer_bytes,
            ws_write_buffer_bytes: config.ws_write_buffer_bytes,
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            demo_login: keys.is_demo_mode() || (config.demo_login && keys.can_sign()),
            allow_query_token: config.allow_query_token,
        };
        let session_tickets = SessionTicketBook::new(
            Duration::from_secs(config.session_ticket_ttl_secs),
            config.max_session_tickets_per_user as usize,
            config.max_session_tickets as usize,
        );
        let demo_logins = DemoLoginLimiter::new(
            NonZeroU32::new(config.demo_login_per_minute).unwrap_or(NonZeroU32::MIN),
            NonZeroU32::new(config.demo_login_burst).unwrap_or(NonZeroU32::MIN),
            config.demo_login_max_clients as usize,
        );
        let shutdown = CancellationToken::new();
        let session_shared = SessionShared {
            settings: session_settings,
            store: Arc::clone(&store),
            metrics: Arc::clone(&metrics),
            shutdown: shutdown.clone(),
            clock: Arc::clone(&clock),
        };
        Self(Arc::new(AppParts {
            keys,
            catalog,
            store,
            sessions: SessionRegistry::new(config.max_sessions, config.max_sessions_per_user),
            session_shared: Arc::new(session_shared),
            http: Arc::new(http),
            metrics,
            shutdown,
            session_tasks: TaskTracker::new(),
            clock,
            readiness: Readiness::default(),
            session_tickets: Arc::new(session_tickets),
            demo_logins: Arc::new(demo_logins),
        }))
    }
}

impl AppParts {
    /// Looks a title up or answers 404.
    pub fn movie(&self, movie_id: &str) -> Result<&Movie, ApiError> {
        self.catalog
            .get(movie_id)
            .ok_or_else(|| ApiError::NotFound(format!("unknown movie_id {movie_id:?}")))
    }

    /// The reads of "where is this viewer" (`crate::position_reads`).
    pub fn positions(&self) -> PositionReads<'_> {
        PositionReads {
            store: &*self.store,
            sessions: &self.sessions,
            metrics: &self.metrics,
            now_micros: self.clock.now_micros(),
        }
    }

    /// The user's newest position or delete on a title, live sessions
    /// included, with the title's watched state.
    pub async fn current_position(
        &self,
        user: &UserId,
        movie_id: &str,
    ) -> Result<Option<Stored>, ApiError> {
        Ok(self.positions().current(user, movie_id).await?)
    }

    /// Where playback of `movie` starts for `user`.
    pub async fn resume_decision(
        &self,
        user: &UserId,
        movie: &Movie,
    ) -> Result<ResumeDecision, ApiError> {
        let saved = self.current_position(user, &movie.movie_id).await?;
        Ok(resume_position(
            saved.and_then(Stored::into_position).map(|s| s.position_ms),
            movie.duration_ms(),
            self.http.threshold,
        ))
    }
}
