//! A node that speaks CQL only inside TLS, as a cluster with
//! `client_encryption_options` enabled and optional set to false does.
//!
//! The caller brings the whole rustls server configuration (certificate, key,
//! and a client-certificate verifier if the node must demand one), so a test
//! decides what the node presents and requires; this module only runs the
//! handshake before the usual connection loop. A client that fails the
//! handshake (plain CQL, an untrusted certificate) is disconnected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::{CqlTestNode, Shared, connection};

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl CqlTestNode {
    /// Starts an empty node on a free loopback port that accepts only TLS
    /// connections, configured by `config`.
    pub async fn start_tls(config: Arc<ServerConfig>) -> CqlTestNode {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::listen(any_port, Some(TlsAcceptor::from(config)))
            .await
            .expect("bind a loopback port")
    }
}

/// Completes the TLS handshake on `stream`, then serves it as any connection.
pub(super) async fn serve(acceptor: TlsAcceptor, stream: TcpStream, shared: Arc<Shared>) {
    // A failed or stalled handshake just ends the connection: rustls has sent
    // its alert, and there is no one else to tell.
    if let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        connection::serve(stream, shared).await;
    }
}
