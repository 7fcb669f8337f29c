//! The client side of the server's API: tokens, one keep-alive HTTP/1.1
//! connection per simulated viewer, WebSocket session upgrades, and `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, tungstenite};

use crate::hist::ServerHistogram;

/// Why a request or session failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or socket I/O.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// HTTP protocol.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
    /// WebSocket handshake or frame.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The server answered with an unexpected status.
    #[error("status {0}")]
    Status(u16),
    /// The server said something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The token could not be signed.
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

impl ClientError {
    /// Whether retrying later may succeed (server full, user cap, refused or
    /// reset, or a connection closed before the upgrade's answer), as a
    /// player retries with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status(code) => *code == 503 || *code == 429,
            Self::Io(_) | Self::Timeout | Self::Http(_) => true,
            Self::Ws(tungstenite::Error::Http(response)) => {
                let code = response.status().as_u16();
                code == 503 || code == 429
            }
            Self::Ws(
                tungstenite::Error::Io(_)
                | tungstenite::Error::ConnectionClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::HandshakeIncomplete,
                ),
            ) => true,
            _ => false,
        }
    }
}

/// Signs HS256 tokens the way the identity provider would.
#[derive(Clone)]
pub struct TokenMinter {
    /// The shared secret as a key.
    key: EncodingKey,
}

impl TokenMinter {
    /// A minter for `secret`.
    pub fn new(secret: &str) -> Result<Self, ClientError> {
        Ok(Self {
            key: EncodingKey::from_secret(secret.as_bytes())?,
        })
    }

    /// A token for `user` valid for `ttl`.
    pub fn token(&self, user: &str, ttl: Duration) -> Result<String, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = json!({"sub": user, "exp": now + ttl.as_secs()});
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )?)
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConnection {
    /// Sends requests over the connection; the connection task ends when it drops.
    sender: SendRequest<Full<Bytes>>,
    /// `Host` header value.
    host: String,
}

impl HttpConnection {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the sender drops or the server closes; errors surface on the next request.
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        json_body: Option<String>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match json_body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(body))
            }
            None => Full::new(Bytes::new()),
        };
        self.sender.ready().await?;
        let response = self.sender.send_request(request.body(body)?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Client-side WebSocket buffers: small, like the server's, so that 19,000
/// client sockets fit in a few hundred MiB.
pub fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 10))
        .max_frame_size(Some(64 << 10))
}

/// A client WebSocket.
pub type Socket = WebSocketStream<TcpStream>;

/// Opens a playback session: TCP connect, then the authenticated upgrade.
pub async fn open_session(
    addr: SocketAddr,
    movie_id: &str,
    token: &str,
) -> Result<Socket, ClientError> {
    let mut request =
        format!("ws://{addr}/api/v1/stream/session?movie_id={movie_id}").into_client_request()?;
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::Protocol("token is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (socket, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(client_ws_config()))
            .await?;
    Ok(socket)
}

/// The server's Prometheus text, or `None` when it has no `/metrics`.
pub async fn scrape_metrics(addr: SocketAddr) -> Option<String> {
    let mut connection = HttpConnection::connect(addr).await.ok()?;
    let (status, body) = connection
        .request(Method::GET, "/metrics", None, None)
        .await
        .ok()?;
    status
        .is_success()
        .then(|| String::from_utf8_lossy(&body).into_owned())
}

/// Sums every sample of `name` (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(key, _)| key.split_once('{').map_or(*key, |(metric, _)| metric) == name)
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// The counters the coordinator reads from the server.
#[derive(Debug, Clone, Default)]
pub struct ServerCounters {
    /// Ticks the server accepted.
    pub ticks: f64,
    /// Positions written to the store (session writes and HTTP progress).
    pub writes: f64,
    /// Sessions open now.
    pub live_sessions: f64,
    /// Latency of every store write so far (`resume_store_write_seconds`).
    pub write_seconds: ServerHistogram,
}

impl ServerCounters {
    /// Reads the counters; `None` when the target has no metrics.
    pub async fn read(addr: SocketAddr) -> Option<Self> {
        let text = scrape_metrics(addr).await?;
        Some(Self {
            ticks: metric_sum(&text, "resume_ticks_received_total"),
            writes: metric_sum(&text, "resume_store_writes_total")
                + metric_sum(&text, "resume_http_progress_writes_total"),
            live_sessions: metric_sum(&text, "resume_live_sessions"),
            write_seconds: ServerHistogram::parse(&text, "resume_store_write_seconds"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_label_sets_of_one_metric() {
        let text = "# HELP x\nresume_store_writes_total{outcome=\"ok\"} 5\n\
                    resume_store_writes_total{outcome=\"failed\"} 1\n\
                    resume_store_writes_totally 9\nresume_live_sessions 3\n";
        assert_eq!(metric_sum(text, "resume_store_writes_total"), 6.0);
        assert_eq!(metric_sum(text, "resume_live_sessions"), 3.0);
    }

    #[test]
    fn a_connection_closed_during_the_handshake_is_retried_and_a_refusal_is_not() {
        use tungstenite::error::ProtocolError;
        let incomplete = ClientError::Ws(tungstenite::Error::Protocol(
            ProtocolError::HandshakeIncomplete,
        ));
        assert!(incomplete.is_transient());
        assert!(ClientError::Status(503).is_transient());
        assert!(!ClientError::Status(401).is_transient());
        let bad_header = ClientError::Ws(tungstenite::Error::Protocol(
            ProtocolError::SecWebSocketAcceptKeyMismatch,
        ));
        assert!(!bad_header.is_transient());
    }
}
