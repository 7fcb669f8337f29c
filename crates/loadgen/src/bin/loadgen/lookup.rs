//! Scenario 4: `GET /api/v1/stream` at a fixed concurrency for a fixed time,
//! each worker on its own keep-alive connection, cycling through many users.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::client::{HttpConnection, TokenMinter};
use crate::hist::Histogram;
use crate::procfs;

/// How a lookup run is shaped.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    /// The server.
    pub addr: SocketAddr,
    /// HS256 secret.
    pub secret: String,
    /// Title looked up.
    pub movie_id: String,
    /// Users are `{user_prefix}-{0..users}`.
    pub user_prefix: String,
    /// Distinct users (and tokens).
    pub users: usize,
    /// Requests in flight at once (one connection each).
    pub concurrency: usize,
    /// How long to run.
    pub duration: Duration,
    /// The server's pid, for CPU.
    pub server_pid: Option<u32>,
    /// Label of the target.
    pub target: String,
}

/// What a lookup run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LookupReport {
    /// What was measured.
    pub target: String,
    /// Workers.
    pub concurrency: usize,
    /// Seconds run.
    pub seconds: f64,
    /// Successful answers.
    pub requests: u64,
    /// Successful answers per second.
    pub per_second: f64,
    /// Latency, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// Non-200 answers and failed requests.
    pub errors: u64,
    /// Server CPU µs per answer.
    pub cpu_us_per_request: f64,
}

/// Runs the lookups and reports.
pub async fn run(plan: LookupPlan) -> Result<LookupReport, String> {
    let minter = TokenMinter::new(&plan.secret).map_err(|e| e.to_string())?;
    let users = plan.users.max(1);
    let tokens: Vec<String> = (0..users)
        .map(|i| {
            minter.token(
                &format!("{}-{i}", plan.user_prefix),
                Duration::from_secs(86_400),
            )
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let tokens = std::sync::Arc::new(tokens);
    let path = std::sync::Arc::new(format!("/api/v1/stream?movie_id={}", plan.movie_id));
    let mut connections = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        connections.push(
            HttpConnection::connect(plan.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?,
        );
    }
    let cpu_before = plan.server_pid.and_then(|pid| procfs::sample(pid).ok());
    let started = Instant::now();
    let end = started + plan.duration;
    let mut workers = tokio::task::JoinSet::new();
    for (worker, mut connection) in connections.into_iter().enumerate() {
        let tokens = tokens.clone();
        let path = path.clone();
        let concurrency = plan.concurrency;
        workers.spawn(async move {
            let mut latency = Histogram::default();
            let mut errors = 0u64;
            let mut next = worker;
            while Instant::now() < end {
                let token = &tokens[next % tokens.len()];
                next += concurrency;
                let sent = Instant::now();
                match connection
                    .request(Method::GET, &path, Some(token), None)
                    .await
                {
                    Ok((status, _)) if status.is_success() => latency.record(sent.elapsed()),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latency, errors)
        });
    }
    let mut latency = Histogram::default();
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (worker_latency, worker_errors) = done.map_err(|e| e.to_string())?;
        latency.merge(&worker_latency);
        errors += worker_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = plan.server_pid.and_then(|pid| procfs::sample(pid).ok());
    let requests = latency.count();
    let cpu_us_per_request = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if requests > 0 => {
            (after.cpu_seconds - before.cpu_seconds) * 1e6 / requests as f64
        }
        _ => 0.0,
    };
    Ok(LookupReport {
        target: plan.target,
        concurrency: plan.concurrency,
        seconds,
        requests,
        per_second: requests as f64 / seconds,
        p50_ms: latency.quantile_ms(0.5),
        p99_ms: latency.quantile_ms(0.99),
        max_ms: latency.max_ms(),
        errors,
        cpu_us_per_request,
    })
}
