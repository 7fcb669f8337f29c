//! The coordinator: splits the viewers into shards (in this process or in
//! child processes that re-run this binary), walks them through the phases —
//! connect, plateau, storm, stop, check — and samples the server between them.
//!
//! Server figures come from the server itself, never from client-side guesses:
//! CPU seconds and RSS from `/proc/<pid>`, ticks, writes and write latency from
//! its `/metrics`. A store in its own process (`--store-pid`,
//! `--store-control`) is sampled over the same window and reported apart.
//! Through the window the server is also sampled as a time series (`drift`),
//! and lookups may run against it at the same time (`lookup`), so that a
//! read's latency is measured while the sessions tick.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

use crate::client::ServerCounters;
use crate::drift::{self, Drift, WindowSample};
use crate::hist::Histogram;
use crate::lookup::{self, LookupPlan, LookupReport};
use crate::procfs::{self, ProcSample};
use crate::shard::{Command, Event, ShardPlan, ShardStats, StormStats, run_shard};
use crate::store_node::{self, StoreNode, StoreNodeReport};

/// How long every shard together may take to connect, beyond the paced time.
const CONNECT_SLACK: Duration = Duration::from_secs(120);
/// How long the coordinator waits for a phase's reports (stop, storm, check).
const PHASE_DEADLINE: Duration = Duration::from_secs(240);

/// How one run is shaped.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The shard plan with `first_viewer`/`viewers`/`connect_rate` for the whole run.
    pub shard: ShardPlan,
    /// Shards in child processes (1: in this process).
    pub processes: usize,
    /// Plateau window.
    pub duration: Duration,
    /// Pause after the last connect before the window opens.
    pub settle: Duration,
    /// Drop and reconnect every session after the plateau.
    pub storm: bool,
    /// The server's pid, for CPU and RSS.
    pub server_pid: Option<u32>,
    /// The store's own process, when it has one on this machine.
    pub store_node: StoreNode,
    /// Label of the target in the report (`server`, `bare-sink`, …).
    pub target: String,
    /// Time between two samples of the window's time series.
    pub sample_every: Duration,
    /// The server's store directory, whose size on disk is sampled.
    pub store_dir: Option<std::path::PathBuf>,
    /// Lookups to run through the window (their duration is the window's).
    pub lookups: Option<LookupPlan>,
}

/// Everything measured in one run. Fields missing from an older report read as
/// their defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunReport {
    /// `sessions` or `http`.
    pub mode: String,
    /// What was measured.
    pub target: String,
    /// Viewers planned.
    pub viewers: usize,
    /// Viewers whose first connection succeeded.
    pub connected: usize,
    /// First connections per second (all shards, until the last one was up).
    pub connects_per_second: f64,
    /// Hello (or HTTP connect) latency, ms.
    pub hello_p50_ms: f64,
    /// See `hello_p50_ms`.
    pub hello_p99_ms: f64,
    /// See `hello_p50_ms`.
    pub hello_max_ms: f64,
    /// Ticks or posts sent by the clients over the whole run.
    pub sent: u64,
    /// Acks (`saved` or 204) over the whole run.
    pub acks: u64,
    /// `saved` delay beyond the flush interval, ms.
    pub ack_delay_p50_ms: f64,
    /// See `ack_delay_p50_ms`.
    pub ack_delay_p99_ms: f64,
    /// See `ack_delay_p50_ms`.
    pub ack_delay_max_ms: f64,
    /// HTTP post latency, ms.
    pub request_p50_ms: f64,
    /// See `request_p50_ms`.
    pub request_p99_ms: f64,
    /// Errors of every kind seen by the clients.
    pub errors: u64,
    /// Connections the server ended unasked.
    pub unexpected_closes: u64,
    /// A few error messages.
    pub error_examples: Vec<String>,
    /// Length of the plateau window, s.
    pub window_seconds: f64,
    /// Ticks the server accepted in the window (from its metrics).
    pub window_ticks: f64,
    /// Positions the server wrote in the window (from its metrics).
    pub window_writes: f64,
    /// Server CPU seconds (user + sys) in the window.
    pub window_cpu_seconds: f64,
    /// Store write latency in the window, from the server's
    /// `resume_store_write_seconds` histogram (interpolated inside its
    /// power-of-two buckets), ms.
    pub write_p50_ms: f64,
    /// See `write_p50_ms`.
    pub write_p99_ms: f64,
    /// Mean store write latency in the window (the histogram's sum ÷ count), ms.
    pub write_mean_ms: f64,
    /// Store writes in flight in the server, averaged over the window: the
    /// window's summed write latency ÷ its length (Little's law).
    pub writes_in_flight_mean: f64,
    /// `saved` acks received in the window.
    pub window_acks: u64,
    /// `saved` delay beyond the flush interval of the window's acks only, ms.
    pub window_ack_delay_p50_ms: f64,
    /// See `window_ack_delay_p50_ms`.
    pub window_ack_delay_p99_ms: f64,
    /// See `window_ack_delay_p50_ms`.
    pub window_ack_delay_max_ms: f64,
    /// The store's own process over the window, when it was named; not billed to the server.
    pub store_node: Option<StoreNodeReport>,
    /// Server before any viewer connected.
    pub server_idle: Option<ProcSample>,
    /// Server RSS at plateau (median of samples in the window), bytes.
    pub rss_plateau_bytes: u64,
    /// Server after every viewer closed.
    pub server_after: Option<ProcSample>,
    /// (RSS at plateau − idle RSS) / connected viewers, bytes.
    pub rss_per_viewer_bytes: f64,
    /// Server CPU µs per accepted tick (sessions) or per post (HTTP).
    pub cpu_us_per_message: f64,
    /// Server CPU µs per viewer-second of playback.
    pub cpu_us_per_viewer_second: f64,
    /// Store writes per viewer-minute.
    pub writes_per_viewer_minute: f64,
    /// The server sampled through the window (`--sample-every`).
    pub samples: Vec<WindowSample>,
    /// The window's start against its end.
    pub drift: Option<Drift>,
    /// Lookups run while the sessions ticked, when asked for.
    pub window_lookups: Option<LookupReport>,
    /// Reconnect storm outcome, when one ran.
    pub storm: Option<StormReport>,
    /// Viewers read back through `GET /api/v1/stream`.
    pub checked: usize,
    /// Of those, positions that were not the last one sent.
    pub check_wrong: usize,
    /// A few mismatches.
    pub check_examples: Vec<String>,
}

/// A reconnect storm, all shards together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormReport {
    /// Sessions that were up when they were dropped.
    pub expected: usize,
    /// Sessions back with a hello.
    pub reconnected: usize,
    /// Seconds until the last one was back.
    pub seconds: f64,
    /// Refused attempts that were retried.
    pub retries: u64,
    /// Hellos behind the last position sent.
    pub hello_behind: u64,
    /// Reconnect latency, ms.
    pub hello_p50_ms: f64,
    /// See `hello_p50_ms`.
    pub hello_p99_ms: f64,
}

/// A shard as the coordinator sees it: commands in, events out.
struct ShardLink {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    child: Option<tokio::process::Child>,
}

/// Splits `total` into `parts` near-equal shares.
fn share(total: usize, parts: usize, index: usize) -> (usize, usize) {
    let base = total / parts;
    let extra = total % parts;
    let count = base + usize::from(index < extra);
    let first = index * base + index.min(extra);
    (first, count)
}

fn spawn_links(plan: &RunPlan) -> std::io::Result<Vec<ShardLink>> {
    let processes = plan.processes.max(1);
    let mut links = Vec::with_capacity(processes);
    for index in 0..processes {
        let (offset, viewers) = share(plan.shard.viewers, processes, index);
        let shard = ShardPlan {
            first_viewer: plan.shard.first_viewer + offset,
            viewers,
            connect_rate: plan.shard.connect_rate / processes as f64,
            max_connecting: plan.shard.max_connecting.div_ceil(processes),
            ..plan.shard.clone()
        };
        links.push(if processes == 1 {
            in_process(shard)
        } else {
            child_process(&shard)?
        });
    }
    Ok(links)
}

fn in_process(plan: ShardPlan) -> ShardLink {
    let (commands, command_rx) = mpsc::channel(4);
    let (event_tx, events) = mpsc::channel(4);
    tokio::spawn(run_shard(plan, command_rx, event_tx));
    ShardLink {
        commands,
        events,
        child: None,
    }
}

/// Re-runs this binary as `loadgen shard --plan <json>`: commands go to its
/// stdin and events come back on its stdout, one JSON document per line.
fn child_process(plan: &ShardPlan) -> std::io::Result<ShardLink> {
    let plan_json = serde_json::to_string(plan).map_err(std::io::Error::other)?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["shard", "--plan", &plan_json])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("child without pipes"));
    };
    let (commands, mut command_rx) = mpsc::channel::<Command>(4);
    let (event_tx, events) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(command) = command_rx.recv().await {
            let Ok(mut line) = serde_json::to_string(&command) else {
                break;
            };
            line.push('\n');
            if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
                break;
            }
        }
        // Dropping stdin tells the child to finish.
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(event) => {
                    if event_tx.send(event).await.is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("loadgen: unreadable shard report: {e}"),
            }
        }
    });
    Ok(ShardLink {
        commands,
        events,
        child: Some(child),
    })
}

/// Sends `command` to every shard (none for `None`) and collects one event from each.
async fn phase<T>(
    links: &mut [ShardLink],
    command: Option<Command>,
    deadline: Duration,
    pick: impl Fn(Event) -> Option<T>,
) -> Result<Vec<T>, String> {
    if let Some(command) = command {
        for link in links.iter() {
            link.commands
                .send(command)
                .await
                .map_err(|_| format!("a shard ended before {command:?}"))?;
        }
    }
    let limit = deadline;
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(links.len());
    for link in links.iter_mut() {
        match tokio::time::timeout_at(deadline, link.events.recv()).await {
            Ok(Some(event)) => {
                out.push(pick(event).ok_or_else(|| "a shard reported out of order".to_string())?)
            }
            Ok(None) => return Err("a shard ended without reporting".into()),
            Err(_) => return Err(format!("shards did not report within {limit:?}")),
        }
    }
    Ok(out)
}

fn sample(pid: Option<u32>) -> Option<ProcSample> {
    pid.and_then(|pid| procfs::sample(pid).ok())
}

fn window_sample(
    plan: &RunPlan,
    window_start: Instant,
    proc: Option<ProcSample>,
    counters: &Option<ServerCounters>,
) -> WindowSample {
    WindowSample {
        seconds: window_start.elapsed().as_secs_f64(),
        rss_bytes: proc.map_or(0, |p| p.rss_bytes),
        cpu_seconds: proc.map_or(0.0, |p| p.cpu_seconds),
        ticks: counters.as_ref().map_or(0.0, |c| c.ticks),
        writes: counters.as_ref().map_or(0.0, |c| c.writes),
        store_bytes: plan
            .store_dir
            .as_deref()
            .and_then(|dir| drift::dir_bytes(dir).ok()),
    }
}

/// Waits until the server reports no live session (its final writes are done).
async fn wait_for_sessions_to_end(addr: SocketAddr) {
    let deadline = Instant::now() + PHASE_DEADLINE;
    while Instant::now() < deadline {
        match ServerCounters::read(addr).await {
            Some(counters) if counters.live_sessions > 0.0 => {}
            _ => return,
        }
        sleep(Duration::from_millis(50)).await;
    }
    eprintln!("loadgen: the server still reports live sessions");
}

/// Runs one load run and returns its report.
pub async fn run(plan: RunPlan) -> Result<RunReport, String> {
    let addr = plan.shard.addr;
    let mode = match plan.shard.kind {
        crate::shard::ViewerKind::Session { .. } => "sessions",
        crate::shard::ViewerKind::Http { .. } => "http",
    };
    let server_idle = sample(plan.server_pid);
    let mut links = spawn_links(&plan).map_err(|e| format!("cannot start shards: {e}"))?;
    let paced =
        Duration::from_secs_f64(plan.shard.viewers as f64 / plan.shard.connect_rate.max(1.0));
    let connected = phase(&mut links, None, paced + CONNECT_SLACK, |e| match e {
        Event::Connected(stats) => Some(stats),
        _ => None,
    })
    .await?;
    let connect = merge(&connected);
    eprintln!(
        "loadgen: {} of {} connected in {:.1} s",
        connect.connected, connect.viewers, connect.connect_seconds
    );

    sleep(plan.settle).await;
    phase(
        &mut links,
        Some(Command::OpenWindow),
        PHASE_DEADLINE,
        |e| match e {
            Event::WindowOpened => Some(()),
            _ => None,
        },
    )
    .await?;
    let start_counters = ServerCounters::read(addr).await;
    let start_proc = sample(plan.server_pid);
    let start_node = plan.store_node.read().await;
    let window_start = Instant::now();
    let lookups = plan.lookups.clone().map(|lookups| {
        tokio::spawn(lookup::run(LookupPlan {
            duration: plan.duration,
            ..lookups
        }))
    });
    let mut rss_samples = Vec::new();
    let mut samples = vec![window_sample(
        &plan,
        window_start,
        start_proc,
        &start_counters,
    )];
    let mut next_sample = plan.sample_every;
    while window_start.elapsed() < plan.duration {
        if let Some(s) = sample(plan.server_pid) {
            rss_samples.push(s.rss_bytes);
        }
        if window_start.elapsed() >= next_sample {
            next_sample += plan.sample_every;
            let counters = ServerCounters::read(addr).await;
            samples.push(window_sample(
                &plan,
                window_start,
                sample(plan.server_pid),
                &counters,
            ));
        }
        let left = plan.duration.saturating_sub(window_start.elapsed());
        sleep(left.min(Duration::from_secs(1))).await;
    }
    let end_proc = sample(plan.server_pid);
    let end_node = plan.store_node.read().await;
    let end_counters = ServerCounters::read(addr).await;
    let window_seconds = window_start.elapsed().as_secs_f64();
    samples.push(window_sample(&plan, window_start, end_proc, &end_counters));
    let window_lookups = match lookups {
        Some(task) => Some(
            task.await
                .map_err(|e| format!("lookups: {e}"))?
                .map_err(|e| format!("lookups: {e}"))?,
        ),
        None => None,
    };
    let window_acks = phase(
        &mut links,
        Some(Command::CloseWindow),
        PHASE_DEADLINE,
        |e| match e {
            Event::WindowClosed(acks) => Some(acks),
            _ => None,
        },
    )
    .await?;
    let mut window_ack_delay = Histogram::default();
    window_acks.iter().for_each(|h| window_ack_delay.merge(h));

    let storm = if plan.storm {
        eprintln!("loadgen: reconnect storm");
        let storms = phase(
            &mut links,
            Some(Command::Storm),
            PHASE_DEADLINE,
            |e| match e {
                Event::Reconnected(stats) => Some(stats),
                _ => None,
            },
        )
        .await?;
        Some(merge_storms(&storms))
    } else {
        None
    };

    let closed = phase(
        &mut links,
        Some(Command::Stop),
        PHASE_DEADLINE,
        |e| match e {
            Event::Closed(stats) => Some(stats),
            _ => None,
        },
    )
    .await?;
    wait_for_sessions_to_end(addr).await;
    let server_after = sample(plan.server_pid);
    let checks = phase(
        &mut links,
        Some(Command::Check),
        PHASE_DEADLINE,
        |e| match e {
            Event::Checked(stats) => Some(stats),
            _ => None,
        },
    )
    .await?;
    for mut link in links {
        drop(link.commands);
        if let Some(child) = link.child.as_mut() {
            let _ = tokio::time::timeout(PHASE_DEADLINE, child.wait()).await;
        }
    }

    let total = merge(&closed);
    let mut report = RunReport {
        mode: mode.into(),
        target: plan.target.clone(),
        viewers: total.viewers,
        connected: connect.connected,
        connects_per_second: connect.connected as f64 / connect.connect_seconds.max(1e-9),
        hello_p50_ms: connect.hello.quantile_ms(0.5),
        hello_p99_ms: connect.hello.quantile_ms(0.99),
        hello_max_ms: connect.hello.max_ms(),
        sent: total.sent,
        acks: total.acks,
        ack_delay_p50_ms: total.ack_delay.quantile_ms(0.5),
        ack_delay_p99_ms: total.ack_delay.quantile_ms(0.99),
        ack_delay_max_ms: total.ack_delay.max_ms(),
        request_p50_ms: total.request_latency.quantile_ms(0.5),
        request_p99_ms: total.request_latency.quantile_ms(0.99),
        errors: total.errors,
        unexpected_closes: total.unexpected_closes,
        error_examples: total.error_examples.clone(),
        window_seconds,
        window_acks: window_ack_delay.count(),
        window_ack_delay_p50_ms: window_ack_delay.quantile_ms(0.5),
        window_ack_delay_p99_ms: window_ack_delay.quantile_ms(0.99),
        window_ack_delay_max_ms: window_ack_delay.max_ms(),
        server_idle,
        server_after,
        drift: drift::summarize(&samples),
        samples,
        window_lookups,
        storm,
        store_node: plan
            .store_node
            .is_named()
            .then(|| store_node::window(&start_node, &end_node)),
        ..RunReport::default()
    };
    if let (Some(start), Some(end)) = (start_counters, end_counters) {
        report.window_ticks = end.ticks - start.ticks;
        report.window_writes = end.writes - start.writes;
        let writes = end.write_seconds.since(&start.write_seconds);
        report.write_p50_ms = writes.quantile(0.5) * 1000.0;
        report.write_p99_ms = writes.quantile(0.99) * 1000.0;
        report.write_mean_ms = writes.mean() * 1000.0;
        report.writes_in_flight_mean = writes.sum() / window_seconds.max(1e-9);
    }
    if let (Some(start), Some(end)) = (start_proc, end_proc) {
        report.window_cpu_seconds = end.cpu_seconds - start.cpu_seconds;
    }
    rss_samples.sort_unstable();
    report.rss_plateau_bytes = rss_samples.get(rss_samples.len() / 2).copied().unwrap_or(0);
    let viewers = report.connected.max(1) as f64;
    if let Some(idle) = server_idle {
        report.rss_per_viewer_bytes =
            (report.rss_plateau_bytes as f64 - idle.rss_bytes as f64) / viewers;
    }
    let messages = match plan.shard.kind {
        crate::shard::ViewerKind::Session { .. } => report.window_ticks,
        // The progress route has no per-request counter but its writes: one per 204.
        crate::shard::ViewerKind::Http { .. } => report.window_writes,
    };
    if messages > 0.0 {
        report.cpu_us_per_message = report.window_cpu_seconds * 1e6 / messages;
    }
    report.cpu_us_per_viewer_second = report.window_cpu_seconds * 1e6 / (viewers * window_seconds);
    report.writes_per_viewer_minute = report.window_writes / viewers / (window_seconds / 60.0);
    for check in &checks {
        report.checked += check.checked;
        report.check_wrong += check.wrong;
        report
            .check_examples
            .extend(check.examples.iter().take(5).cloned());
    }
    Ok(report)
}

fn merge(stats: &[ShardStats]) -> ShardStats {
    let mut total = ShardStats::default();
    for s in stats {
        total.viewers += s.viewers;
        total.connected += s.connected;
        total.connect_seconds = total.connect_seconds.max(s.connect_seconds);
        total.hello.merge(&s.hello);
        total.sent += s.sent;
        total.acks += s.acks;
        total.ack_delay.merge(&s.ack_delay);
        total.request_latency.merge(&s.request_latency);
        total.errors += s.errors;
        total.unexpected_closes += s.unexpected_closes;
        total
            .error_examples
            .extend(s.error_examples.iter().cloned());
    }
    total
}

fn merge_storms(storms: &[StormStats]) -> StormReport {
    let mut hello = Histogram::default();
    let mut report = StormReport::default();
    for s in storms {
        report.expected += s.expected;
        report.reconnected += s.reconnected;
        report.seconds = report.seconds.max(s.seconds);
        report.retries += s.retries;
        report.hello_behind += s.hello_behind;
        hello.merge(&s.hello);
    }
    report.hello_p50_ms = hello.quantile_ms(0.5);
    report.hello_p99_ms = hello.quantile_ms(0.99);
    report
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_the_total_without_overlap() {
        let parts: Vec<_> = (0..4).map(|i| share(19_001, 4, i)).collect();
        assert_eq!(parts[0], (0, 4751));
        let mut next = 0;
        for (first, count) in parts {
            assert_eq!(first, next);
            next += count;
        }
        assert_eq!(next, 19_001);
    }
}
