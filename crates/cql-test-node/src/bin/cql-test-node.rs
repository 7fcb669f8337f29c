//! `cql-test-node`: the CQL test node as a process, for tests and benchmarks that
//! run resume-server as real binaries (several servers on one "cluster").
//!
//! It prints one JSON line with the addresses it bound (`{"cql":…,"control":…}`),
//! so callers can ask for port 0 and learn the ports, then serves until killed,
//! or with `--until-stdin-closes` until its standard input closes (so a test
//! process that dies takes the node along).
//!
//! The control endpoint switches fault modes while it runs:
//! `PUT /mode` with a body of `normal`, `unresponsive`, `failing`, `overloaded` or `slow <ms>`,
//! and `GET /stats` for the node's request counters.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use clap::Parser;
use cql_test_node::{CqlTestNode, NodeMode};
use tokio::io::AsyncReadExt;

/// A one-node Cassandra stand-in (native protocol v4) for testing resume-server.
#[derive(Debug, Parser)]
#[command(name = "cql-test-node", version)]
struct Cli {
    /// Address of the CQL native protocol listener.
    #[arg(long, default_value = "127.0.0.1:9042")]
    listen: SocketAddr,
    /// Address of the HTTP control endpoint (fault modes, counters).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Fault mode at start: normal, unresponsive, failing, overloaded, or "slow <ms>".
    #[arg(long, default_value = "normal", value_parser = parse_mode)]
    mode: NodeMode,
    /// Stop when standard input closes (for a parent process holding a pipe).
    #[arg(long)]
    until_stdin_closes: bool,
}

fn parse_mode(text: &str) -> Result<NodeMode, String> {
    let text = text.trim();
    match text {
        "normal" => Ok(NodeMode::Normal),
        "unresponsive" => Ok(NodeMode::Unresponsive),
        "failing" => Ok(NodeMode::Failing),
        "overloaded" => Ok(NodeMode::Overloaded),
        _ => text
            .strip_prefix("slow")
            .map(|ms| ms.trim_start_matches([' ', ':', '=']))
            .and_then(|ms| ms.parse::<u64>().ok())
            .map(|ms| NodeMode::Slow(Duration::from_millis(ms)))
            .ok_or_else(|| {
                format!(
                    "unknown mode {text:?}: normal, unresponsive, failing, overloaded or \"slow <ms>\""
                )
            }),
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let node = CqlTestNode::start_on(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    node.set_mode(cli.mode);
    let control = tokio::net::TcpListener::bind(cli.control)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.control))?;
    let control_addr = control.local_addr().map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::json!({"cql": node.addr().to_string(), "control": control_addr.to_string()})
    );
    let node = std::sync::Arc::new(node);
    let app = Router::new()
        .route("/mode", put(set_mode))
        .route("/stats", get(stats))
        .with_state(node);
    let serve = axum::serve(control, app);
    if cli.until_stdin_closes {
        tokio::select! {
            served = serve => served.map_err(|e| e.to_string()),
            () = stdin_closed() => Ok(()),
        }
    } else {
        serve.await.map_err(|e| e.to_string())
    }
}

async fn set_mode(
    State(node): State<std::sync::Arc<CqlTestNode>>,
    body: String,
) -> Result<StatusCode, (StatusCode, String)> {
    let mode = parse_mode(&body).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    node.set_mode(mode);
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(node): State<std::sync::Arc<CqlTestNode>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "write_requests": node.write_requests(),
        "swallowed_requests": node.swallowed_requests(),
        "peak_writes_in_flight": node.peak_writes_in_flight(),
    }))
}

/// Resolves when standard input reaches its end (the parent closed it or died).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
}
