//! `loadgen`: the load generator and benchmark driver of resume-server.
//!
//! * `sessions` opens N authenticated WebSocket sessions at a paced rate, ticks
//!   each for a plateau window, optionally drops and reconnects them all at once
//!   (a reconnect storm), closes them, and sample-checks final positions through
//!   the read path.
//! * `http` does the same with the seed's design: `POST /api/v1/stream/progress`
//!   every few seconds per viewer over keep-alive connections.
//! * `lookup` hammers `GET /api/v1/stream` at a fixed concurrency.
//! * `store` drives the embedded store directly (group commit, writes per fsync).
//! * `sessions --lookup-concurrency N` runs `lookup`'s client through the
//!   plateau too, and `--sample-every`/`--store-dir` record the server through
//!   it (a soak's drift: RSS, CPU per tick, store size, start against end).
//! * `engines` puts the embedded store's engine (redb) against an LSM engine
//!   (fjall) on the store's own write pattern.
//! * `table` turns the JSON reports of `bench/run.sh` into one Markdown table.
//!
//! Layout: `coordinator` runs the phases and samples the server (`procfs`,
//! `/metrics`); `shard` owns the simulated viewers, in this process or in child
//! processes (`shard` subcommand, JSON lines over stdin/stdout), because one
//! process may only hold so many sockets; `client` speaks the server's API;
//! `hist` holds the mergeable latency histogram and the reader of the server's;
//! `store_node` samples a store that runs in its own process (the CQL test
//! node), apart from the server.

#![forbid(unsafe_code)]

mod client;
mod coordinator;
mod drift;
mod engines;
mod hist;
mod lookup;
mod procfs;
mod shard;
mod store_bench;
mod store_node;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::coordinator::{RunPlan, RunReport};
use crate::lookup::LookupPlan;
use crate::shard::{Command, ShardPlan, ViewerKind};
use crate::store_node::StoreNode;

/// Command line of `loadgen`.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Load generator and benchmarks for resume-server."
)]
struct Cli {
    /// What to run.
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// WebSocket sessions: connect, tick, (storm), close, check.
    Sessions(SessionsArgs),
    /// HTTP progress posts over keep-alive connections.
    Http(HttpArgs),
    /// Resume lookups at fixed concurrency.
    Lookup(LookupArgs),
    /// The embedded store alone: group-committed writes per second and per fsync.
    Store(StoreArgs),
    /// redb against fjall on the embedded store's write pattern.
    Engines(EnginesArgs),
    /// Print the Markdown table of a directory of reports.
    Table {
        /// Directory holding `<kind>-<target>-<run>.json` reports.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Internal: one shard in a child process (commands on stdin, events on stdout).
    #[command(hide = true)]
    Shard {
        /// The shard plan as JSON.
        #[arg(long)]
        plan: String,
    },
}

/// Flags shared by every mode that talks to a server.
#[derive(Debug, Args)]
struct Target {
    /// The server (loopback in benchmarks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// HS256 secret the server verifies tokens with.
    #[arg(long, env = "RESUME_JWT_SECRET", hide_env_values = true)]
    secret: String,
    /// Title every viewer plays; long, so positions stay below the completion threshold.
    #[arg(long, default_value = "inception")]
    movie: String,
    /// Viewer i is user `{user_prefix}-{i}`, one user each (the per-user session cap is small).
    #[arg(long, default_value = "viewer")]
    user_prefix: String,
    /// The server's pid, for CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Pid of the store's own process on this machine (cql-test-node): its CPU
    /// and RSS in the window are reported apart, not billed to the server.
    #[arg(long)]
    store_pid: Option<u32>,
    /// The cql-test-node's control endpoint, for its write counters (`GET /stats`).
    #[arg(long)]
    store_control: Option<SocketAddr>,
    /// Label of the target in the report.
    #[arg(long, default_value = "server")]
    target: String,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Flags of a run of many viewers.
#[derive(Debug, Args)]
struct Crowd {
    /// Viewers.
    #[arg(long, default_value_t = 1000)]
    viewers: usize,
    /// New connections per second, all processes together.
    #[arg(long, default_value_t = 5000.0)]
    connect_rate: f64,
    /// Connections being opened at once at most, all processes together.
    #[arg(long, default_value_t = 512)]
    max_connecting: usize,
    /// Seconds of plateau (after every viewer is connected and the settle time).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds between the last connect and the plateau, so that the first
    /// flush interval's writes are under way before measuring.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Processes to spread the viewers over (one holds at most ~20,000 sockets).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Read back every n-th viewer's final position (0: skip, e.g. for the bare sink).
    #[arg(long, default_value_t = 10)]
    check_every: usize,
    /// Seconds between two samples of the server through the plateau (RSS,
    /// CPU, ticks, writes, store size): the report's `samples` and `drift`.
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// The server's data directory: its size on disk is sampled too.
    #[arg(long)]
    store_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SessionsArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    crowd: Crowd,
    /// Ticks per second per session.
    #[arg(long, default_value_t = 1.0)]
    tick_rate: f64,
    /// After the plateau, drop every session at once and measure the reconnect.
    #[arg(long)]
    storm: bool,
    /// Lookups (`GET /api/v1/stream`) in flight through the plateau, on their
    /// own connections; 0: none.
    #[arg(long, default_value_t = 0)]
    lookup_concurrency: usize,
}

#[derive(Debug, Args)]
struct HttpArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    crowd: Crowd,
    /// Milliseconds between two posts of one viewer.
    #[arg(long, default_value_t = 4000)]
    interval_ms: u64,
}

#[derive(Debug, Args)]
struct LookupArgs {
    #[command(flatten)]
    target: Target,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Distinct users to look up (`{user_prefix}-0..users`).
    #[arg(long, default_value_t = 1000)]
    users: usize,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Directory for the database (must not be a server's live data dir).
    #[arg(long)]
    data_dir: PathBuf,
    /// Concurrent writers, each waiting for its write like a session does.
    #[arg(long, default_value_t = 1024)]
    writers: usize,
    /// Total writes per second to aim for; 0 runs closed-loop (as fast as commits allow).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// The writer's commit delay (the server's `--store-commit-delay-ms`).
    #[arg(long, default_value_t = resume_server::store::embedded::DEFAULT_COMMIT_DELAY_MS)]
    commit_delay_ms: u64,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct EnginesArgs {
    /// Directory for both databases (must not exist or be empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// Distinct viewers whose cells are overwritten in turn.
    #[arg(long, default_value_t = 19_000)]
    keys: usize,
    /// Writes per durable commit.
    #[arg(long, default_value_t = 24)]
    batch: usize,
    /// Seconds each engine runs.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn run_plan(target: &Target, crowd: &Crowd, kind: ViewerKind, storm: bool) -> RunPlan {
    RunPlan {
        shard: ShardPlan {
            addr: target.addr,
            secret: target.secret.clone(),
            movie_id: target.movie.clone(),
            user_prefix: target.user_prefix.clone(),
            first_viewer: 0,
            viewers: crowd.viewers,
            connect_rate: crowd.connect_rate,
            max_connecting: crowd.max_connecting,
            kind,
            check_every: crowd.check_every,
        },
        processes: crowd.processes,
        duration: Duration::from_secs_f64(crowd.duration),
        settle: Duration::from_secs_f64(crowd.settle),
        storm,
        server_pid: target.server_pid,
        store_node: StoreNode {
            pid: target.store_pid,
            control: target.store_control,
        },
        target: target.target.clone(),
        sample_every: Duration::from_secs_f64(crowd.sample_every.max(1.0)),
        store_dir: crowd.store_dir.clone(),
        lookups: None,
    }
}

/// Lookups at `concurrency` against the run's target, over the crowd's users
/// (`None` for 0); the coordinator sets their duration to the window's.
fn window_lookups(target: &Target, crowd: &Crowd, concurrency: usize) -> Option<LookupPlan> {
    (concurrency > 0).then(|| LookupPlan {
        addr: target.addr,
        secret: target.secret.clone(),
        movie_id: target.movie.clone(),
        user_prefix: target.user_prefix.clone(),
        users: crowd.viewers,
        concurrency,
        duration: Duration::ZERO,
        // The server's CPU in the window is the sessions' too: not billed per lookup.
        server_pid: None,
        target: target.target.clone(),
    })
}

fn emit<T: Serialize>(report: &T, out: Option<&PathBuf>) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    match out {
        Some(path) => {
            std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
        }
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

fn summarize(report: &RunReport) {
    eprintln!(
        "loadgen {} → {}: {}/{} connected, {:.0} connects/s, hello p50 {:.1} ms p99 {:.1} ms max {:.1} ms; \
         sent {}, acks {} (delay beyond flush p50 {:.1} ms p99 {:.1} ms); errors {}, unexpected closes {}; \
         server CPU {:.2} µs/msg, {:.2} µs/viewer-s, RSS {:.2} KiB/viewer, {:.2} writes/viewer-min; \
         checked {} wrong {}",
        report.mode,
        report.target,
        report.connected,
        report.viewers,
        report.connects_per_second,
        report.hello_p50_ms,
        report.hello_p99_ms,
        report.hello_max_ms,
        report.sent,
        report.acks,
        report.ack_delay_p50_ms,
        report.ack_delay_p99_ms,
        report.errors,
        report.unexpected_closes,
        report.cpu_us_per_message,
        report.cpu_us_per_viewer_second,
        report.rss_per_viewer_bytes / 1024.0,
        report.writes_per_viewer_minute,
        report.checked,
        report.check_wrong,
    );
    if report.window_acks > 0 {
        eprintln!(
            "loadgen window: store writes p50 {:.2} ms p99 {:.2} ms mean {:.2} ms, {:.1} in flight on average; \
             {} acks, delay beyond flush p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
            report.write_p50_ms,
            report.write_p99_ms,
            report.write_mean_ms,
            report.writes_in_flight_mean,
            report.window_acks,
            report.window_ack_delay_p50_ms,
            report.window_ack_delay_p99_ms,
            report.window_ack_delay_max_ms,
        );
    }
    if let Some(node) = &report.store_node {
        eprintln!(
            "loadgen store process: {:.2} cores, RSS {:.1} MiB, {:.0} write requests/s, peak {} writes in flight",
            node.window_cpu_seconds / report.window_seconds.max(1e-9),
            node.rss_bytes as f64 / (1 << 20) as f64,
            node.window_write_requests / report.window_seconds.max(1e-9),
            node.peak_writes_in_flight,
        );
    }
    if let Some(lookups) = &report.window_lookups {
        eprintln!(
            "loadgen lookups while ticking: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}",
            lookups.per_second, lookups.p50_ms, lookups.p99_ms, lookups.max_ms, lookups.errors
        );
    }
    if let Some(drift) = &report.drift {
        eprintln!(
            "loadgen drift over {:.0} s: RSS {:.1} → {:.1} MiB ({:+.1} MiB/h), CPU/tick {:.1} → {:.1} µs, \
             store {} → {} bytes",
            drift.seconds,
            drift.rss_start_bytes as f64 / (1 << 20) as f64,
            drift.rss_end_bytes as f64 / (1 << 20) as f64,
            drift.rss_growth_bytes_per_hour / (1 << 20) as f64,
            drift.cpu_us_per_tick_start,
            drift.cpu_us_per_tick_end,
            drift
                .store_start_bytes
                .map_or("-".into(), |b| b.to_string()),
            drift.store_end_bytes.map_or("-".into(), |b| b.to_string()),
        );
    }
    if let Some(storm) = &report.storm {
        eprintln!(
            "loadgen storm: {}/{} back in {:.2} s, {} retries, {} hellos behind",
            storm.reconnected, storm.expected, storm.seconds, storm.retries, storm.hello_behind
        );
    }
    for example in report.error_examples.iter().chain(&report.check_examples) {
        eprintln!("loadgen:   {example}");
    }
}

/// A child shard: commands from stdin, events to stdout, one JSON per line.
async fn child_shard(plan: &str) -> Result<(), String> {
    let plan: ShardPlan = serde_json::from_str(plan).map_err(|e| format!("plan: {e}"))?;
    let (command_tx, commands) = mpsc::channel(4);
    let (events, mut event_rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Command>(&line) {
                Ok(command) => {
                    if command_tx.send(command).await.is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("loadgen shard: bad command: {e}"),
            }
        }
    });
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(event) = event_rx.recv().await {
            let Ok(mut line) = serde_json::to_string(&event) else {
                continue;
            };
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    shard::run_shard(plan, commands, events).await;
    let _ = writer.await;
    Ok(())
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Mode::Sessions(args) => {
            let kind = ViewerKind::Session {
                tick_rate: args.tick_rate,
            };
            let plan = RunPlan {
                lookups: window_lookups(&args.target, &args.crowd, args.lookup_concurrency),
                ..run_plan(&args.target, &args.crowd, kind, args.storm)
            };
            let report = coordinator::run(plan).await?;
            summarize(&report);
            emit(&report, args.target.out.as_ref())
        }
        Mode::Http(args) => {
            let kind = ViewerKind::Http {
                interval_ms: args.interval_ms,
            };
            let report = coordinator::run(run_plan(&args.target, &args.crowd, kind, false)).await?;
            summarize(&report);
            emit(&report, args.target.out.as_ref())
        }
        Mode::Lookup(args) => {
            let report = lookup::run(lookup::LookupPlan {
                addr: args.target.addr,
                secret: args.target.secret.clone(),
                movie_id: args.target.movie.clone(),
                user_prefix: args.target.user_prefix.clone(),
                users: args.users,
                concurrency: args.concurrency,
                duration: Duration::from_secs_f64(args.duration),
                server_pid: args.target.server_pid,
                target: args.target.target.clone(),
            })
            .await?;
            eprintln!(
                "loadgen lookup → {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}, {:.1} µs CPU/request",
                report.target,
                report.per_second,
                report.p50_ms,
                report.p99_ms,
                report.max_ms,
                report.errors,
                report.cpu_us_per_request
            );
            emit(&report, args.target.out.as_ref())
        }
        Mode::Store(args) => {
            let report = store_bench::run(store_bench::StorePlan {
                data_dir: args.data_dir,
                writers: args.writers,
                rate: args.rate,
                duration: Duration::from_secs_f64(args.duration),
                commit_delay: Duration::from_millis(args.commit_delay_ms),
            })
            .await?;
            eprintln!(
                "loadgen store: {:.0} writes/s, {} commits, {:.1} writes/commit, {:.1} µs CPU/write, p50 {:.2} ms, p99 {:.2} ms, errors {}",
                report.writes_per_second,
                report.commits,
                report.writes_per_commit,
                report.cpu_us_per_write,
                report.p50_ms,
                report.p99_ms,
                report.errors
            );
            emit(&report, args.out.as_ref())
        }
        Mode::Engines(args) => {
            let plan = engines::EnginePlan {
                data_dir: args.data_dir,
                keys: args.keys,
                batch: args.batch,
                duration: Duration::from_secs_f64(args.duration),
            };
            let report = tokio::task::spawn_blocking(move || engines::run(&plan))
                .await
                .map_err(|e| e.to_string())??;
            for e in &report.engines {
                eprintln!(
                    "loadgen engines {}: {} writes per commit, {:.0} writes/s, {:.1} µs CPU/write, \
                     {:.0} µs CPU/commit, commit p50 {:.2} ms p99 {:.2} ms, {} bytes on disk",
                    e.engine,
                    e.batch,
                    e.writes_per_second,
                    e.cpu_us_per_write,
                    e.cpu_us_per_commit,
                    e.commit_p50_ms,
                    e.commit_p99_ms,
                    e.disk_bytes
                );
            }
            emit(&report, args.out.as_ref())
        }
        Mode::Table { dir } => {
            print!("{}", table::render(&dir)?);
            Ok(())
        }
        Mode::Shard { plan } => child_shard(&plan).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}
