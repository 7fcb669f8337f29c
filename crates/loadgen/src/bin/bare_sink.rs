//! `bare_sink`: a bench-only server that shows the ceiling of the stack
//! resume-server is built on (benchmark scenarios 2 and 4, docs/BENCHMARKS.md).
//!
//! Same axum + tokio + tungstenite stack, the same HTTP layer (the server's
//! accept loop with its connection limits and header deadline, its request
//! tracing and the security headers on every response), the same JWT verification (the server's own `AuthKeys`
//! extractors) and the same WebSocket buffer settings as `http::session`, but a session only sends a constant hello, then parses each
//! tick's JSON and drops it: no actor timers, no registry, no store, no acks.
//! `GET /api/v1/stream` verifies the token and returns a constant body.
//! `/metrics` counts ticks and live sessions under the server's metric names so
//! `loadgen` measures both targets the same way. Never deploy it.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::Router;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{FromRef, State, WebSocketUpgrade};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use resume_server::auth::{AuthKeys, AuthenticatedUser};
use resume_server::config::Config;
use resume_server::secret::Secret;
use serde::Deserialize;

/// Command line of `bare_sink`; the WebSocket knobs default to the server's.
#[derive(Debug, Parser)]
#[command(
    name = "bare_sink",
    about = "Bench-only: the stack's ceiling for resume-server."
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "RESUME_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// HS256 secret, as the server's.
    #[arg(long, env = "RESUME_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Largest WebSocket frame or message (server: --max-frame-bytes).
    #[arg(long, env = "RESUME_MAX_FRAME_BYTES", default_value_t = 4096)]
    max_frame_bytes: usize,
    /// Initial WebSocket read buffer (server: --ws-read-buffer-bytes).
    #[arg(long, env = "RESUME_WS_READ_BUFFER_BYTES", default_value_t = 256)]
    ws_read_buffer_bytes: usize,
    /// WebSocket write buffer (server: --ws-write-buffer-bytes).
    #[arg(long, env = "RESUME_WS_WRITE_BUFFER_BYTES", default_value_t = 0)]
    ws_write_buffer_bytes: usize,
    /// Listen backlog (server: --listen-backlog).
    #[arg(long, env = "RESUME_LISTEN_BACKLOG", default_value_t = 4096)]
    listen_backlog: u32,
}

/// Shared state of the sink.
#[derive(Clone, FromRef)]
struct SinkState {
    /// The server's token verification.
    keys: AuthKeys,
    /// Counters for `/metrics`.
    counters: Arc<Counters>,
    /// WebSocket buffer settings.
    buffers: Arc<Buffers>,
}

/// What `/metrics` reports.
#[derive(Default)]
struct Counters {
    /// Ticks parsed.
    ticks: AtomicU64,
    /// Sessions open now.
    live: AtomicI64,
}

/// The WebSocket buffer settings, applied exactly as `http::session` does.
struct Buffers {
    read: usize,
    write: usize,
    max_frame: usize,
}

/// The part of a tick the sink parses (the server's parser checks more).
#[derive(Deserialize)]
struct Tick {
    #[serde(rename = "type")]
    _kind: String,
    #[serde(rename = "position_seconds")]
    _position_seconds: f64,
}

/// Constant hello; no `flush_interval_ms`, so loadgen expects no acks.
const HELLO: &str = r#"{"type":"hello","resume_position_seconds":0}"#;

/// Constant answer of the lookup route, shaped like the real one.
const STREAM_BODY: &str = r#"{"movie_id":"inception","title":"Inception","stream_url":"/media/inception.m3u8","duration_seconds":7800.0,"resume_position_seconds":0.0,"completed":false}"#;

async fn session(
    State(state): State<SinkState>,
    AuthenticatedUser(_user): AuthenticatedUser,
    upgrade: WebSocketUpgrade,
) -> Response {
    let buffers = &state.buffers;
    let counters = Arc::clone(&state.counters);
    upgrade
        .read_buffer_size(buffers.read)
        .write_buffer_size(buffers.write)
        .max_write_buffer_size(buffers.max_frame.max(buffers.write) * 16)
        .max_frame_size(buffers.max_frame)
        .max_message_size(buffers.max_frame)
        .on_upgrade(move |socket| sink(socket, counters))
}

async fn sink(mut socket: WebSocket, counters: Arc<Counters>) {
    counters.live.fetch_add(1, Ordering::Relaxed);
    if socket.send(Message::text(HELLO)).await.is_ok() {
        while let Some(Ok(message)) = socket.recv().await {
            match message {
                Message::Text(text) if serde_json::from_str::<Tick>(&text).is_ok() => {
                    counters.ticks.fetch_add(1, Ordering::Relaxed);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
    counters.live.fetch_sub(1, Ordering::Relaxed);
}

async fn stream(AuthenticatedUser(_user): AuthenticatedUser) -> Response {
    ([(CONTENT_TYPE, "application/json")], STREAM_BODY).into_response()
}

async fn metrics(State(counters): State<Arc<Counters>>) -> String {
    format!(
        "resume_ticks_received_total {}\nresume_live_sessions {}\n",
        counters.ticks.load(Ordering::Relaxed),
        counters.live.load(Ordering::Relaxed)
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::from_env_and_args(["bare_sink"]) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bare_sink: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    config.jwt_secret = Some(Secret::new(cli.jwt_secret));
    let keys = match config
        .validate()
        .and_then(|()| AuthKeys::from_config(&config))
    {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("bare_sink: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let state = SinkState {
        keys,
        counters: Arc::default(),
        buffers: Arc::new(Buffers {
            read: cli.ws_read_buffer_bytes,
            write: cli.ws_write_buffer_bytes,
            max_frame: cli.max_frame_bytes,
        }),
    };
    // The server's HTTP layer (request tracing, the security headers on every
    // response, accept loop, connection limits), so that a comparison with the
    // server measures its handlers, not the layer.
    let routes = Router::new()
        .route("/api/v1/stream/session", get(session))
        .route("/api/v1/stream", get(stream))
        .route("/metrics", get(metrics))
        .with_state(state);
    let app = resume_server::http::with_request_tracing(
        resume_server::http::security_headers::with_security_headers(routes),
    );
    let limits = resume_server::server::ConnectionLimits::from_config(&config);
    let listener = match resume_server::server::bind(cli.listen, cli.listen_backlog) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bare_sink: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    // The bound address, so that `--listen 127.0.0.1:0` tells its port.
    match listener.local_addr() {
        Ok(bound) => eprintln!("bare_sink listening on {bound}"),
        Err(_) => eprintln!("bare_sink listening on {}", cli.listen),
    }
    resume_server::server::serve(listener, app, limits, resume_server::shutdown_signal()).await;
    std::process::ExitCode::SUCCESS
}
