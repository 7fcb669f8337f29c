//! Scenario 6: the embedded store on its own — many concurrent writers, each
//! waiting for its write to be durable, as session actors do — to measure
//! sustained group-committed writes per second and writes per fsync. The
//! server's `/metrics` counts writes but not commits, so this reads the store's
//! own counters (`EmbeddedStore::stats`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use resume_server::store::embedded::EmbeddedStore;
use resume_server::store::{PositionStore, PositionWrite};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::hist::Histogram;

/// How a store run is shaped.
#[derive(Debug, Clone)]
pub struct StorePlan {
    /// Directory for the database (created; left for the caller to remove).
    pub data_dir: PathBuf,
    /// Concurrent writers, one user each.
    pub writers: usize,
    /// Total writes per second to aim for (0: as fast as the store takes them).
    pub rate: f64,
    /// How long to run.
    pub duration: Duration,
    /// The writer's commit delay.
    pub commit_delay: Duration,
}

/// What a store run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreReport {
    /// Concurrent writers.
    pub writers: usize,
    /// Aimed-for writes per second (0: closed loop).
    pub rate: f64,
    /// Seconds run.
    pub seconds: f64,
    /// Durable writes.
    pub writes: u64,
    /// Durable writes per second.
    pub writes_per_second: f64,
    /// Transactions (one fsync each).
    pub commits: u64,
    /// Writes per transaction.
    pub writes_per_commit: f64,
    /// This process's CPU (all threads: the writers' tasks, the store's
    /// writer thread) per durable write, µs.
    #[serde(default)]
    pub cpu_us_per_write: f64,
    /// The writer's commit delay, ms.
    #[serde(default)]
    pub commit_delay_ms: f64,
    /// `put` latency, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// Failed writes.
    pub errors: u64,
}

/// Runs the writers and reports.
pub async fn run(plan: StorePlan) -> Result<StoreReport, String> {
    let store = Arc::new(
        EmbeddedStore::open_with(&plan.data_dir, plan.commit_delay).map_err(|e| e.to_string())?,
    );
    let cpu = || crate::procfs::sample(std::process::id()).map(|sample| sample.cpu_seconds);
    let cpu0 = cpu().map_err(|e| e.to_string())?;
    let stats = store.stats();
    let (writes0, commits0) = (
        stats.writes.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed),
    );
    let started = Instant::now();
    let end = started + plan.duration;
    let per_writer = if plan.rate > 0.0 {
        Some(Duration::from_secs_f64(plan.writers as f64 / plan.rate))
    } else {
        None
    };
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..plan.writers {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let mut latency = Histogram::default();
            let mut errors = 0u64;
            let mut position_ms = 0;
            let user_id = format!("store-bench-{writer}");
            let mut next = Instant::now();
            if let Some(gap) = per_writer {
                next += gap.mul_f64((writer as f64 * 0.618_033_988_749_895).fract());
            }
            while Instant::now() < end {
                if let Some(gap) = per_writer {
                    tokio::time::sleep_until(next).await;
                    next += gap;
                }
                position_ms += 1000;
                let write = PositionWrite {
                    user_id: user_id.clone(),
                    movie_id: "inception".into(),
                    position_ms,
                    written_at_micros: resume_server::clock::now_micros(),
                    watched: Default::default(),
                };
                let sent = Instant::now();
                match store.put(write).await {
                    Ok(_) => latency.record(sent.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latency, errors)
        });
    }
    let mut latency = Histogram::default();
    let mut errors = 0;
    while let Some(done) = writers.join_next().await {
        let (writer_latency, writer_errors) = done.map_err(|e| e.to_string())?;
        latency.merge(&writer_latency);
        errors += writer_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu().map_err(|e| e.to_string())? - cpu0;
    let writes = stats.writes.load(Ordering::Relaxed) - writes0;
    let commits = stats.commits.load(Ordering::Relaxed) - commits0;
    Ok(StoreReport {
        writers: plan.writers,
        rate: plan.rate,
        seconds,
        writes,
        writes_per_second: writes as f64 / seconds,
        commits,
        writes_per_commit: writes as f64 / commits.max(1) as f64,
        cpu_us_per_write: cpu_seconds * 1e6 / writes.max(1) as f64,
        commit_delay_ms: plan.commit_delay.as_secs_f64() * 1e3,
        p50_ms: latency.quantile_ms(0.5),
        p99_ms: latency.quantile_ms(0.99),
        errors,
    })
}
