//! One shard of simulated viewers: opens their connections at a paced rate,
//! keeps them busy (WebSocket ticks or HTTP progress posts), and obeys the
//! coordinator's commands (storm, stop, check) while reporting what it saw.
//!
//! A shard runs either inside the coordinator's process or in a child process
//! (one process may hold at most 20,000 open files, so 19,000 client sockets
//! need several). It does not sample the server; the coordinator does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{ClientError, HttpConnection, Socket, TokenMinter, open_session};
use crate::hist::Histogram;

/// How long a hello or an HTTP answer may take before it counts as an error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean close waits for the server's close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest pause between reconnect attempts during a storm.
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Send times of this many recent ticks are kept to time `saved` acks.
const SENT_RING: usize = 64;
/// Error messages kept as examples in the report.
const ERROR_EXAMPLES: usize = 5;

/// What each viewer of the shard does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum ViewerKind {
    /// A WebSocket session ticking `tick_rate` times a second.
    Session {
        /// Ticks per second per session.
        tick_rate: f64,
    },
    /// `POST /api/v1/stream/progress` every `interval_ms` over a keep-alive connection.
    Http {
        /// Milliseconds between posts.
        interval_ms: u64,
    },
}

/// Everything a shard needs; serialized to hand it to a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardPlan {
    /// The server.
    pub addr: SocketAddr,
    /// HS256 secret to mint tokens with.
    pub secret: String,
    /// Title every viewer plays.
    pub movie_id: String,
    /// Viewer `i` is user `{user_prefix}-{i}`.
    pub user_prefix: String,
    /// Global index of this shard's first viewer.
    pub first_viewer: usize,
    /// Viewers of this shard.
    pub viewers: usize,
    /// New connections per second.
    pub connect_rate: f64,
    /// Connections being opened at once at most.
    pub max_connecting: usize,
    /// What the viewers do.
    pub kind: ViewerKind,
    /// Sample-check every n-th viewer's final position (0: none).
    pub check_every: usize,
}

/// Orders from the coordinator.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Command {
    /// Start timing `saved` acks for the plateau window apart from the rest of the run.
    OpenWindow,
    /// Stop timing the window's acks and report them.
    CloseWindow,
    /// Drop every connection at once and reconnect.
    Storm,
    /// Close every connection cleanly.
    Stop,
    /// Read sampled viewers' positions back through `GET /api/v1/stream`.
    Check,
}

/// Reports to the coordinator, one per phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// Acks are being timed for the window.
    WindowOpened,
    /// `saved` delays beyond the flush interval of the acks received in the window.
    WindowClosed(Histogram),
    /// Every viewer is connected or has failed.
    Connected(ShardStats),
    /// After a storm, every surviving viewer is back.
    Reconnected(StormStats),
    /// Every viewer has closed.
    Closed(ShardStats),
    /// The sample check is done.
    Checked(CheckStats),
}

/// Counters of a shard so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardStats {
    /// Viewers planned.
    pub viewers: usize,
    /// Viewers whose first connection succeeded (hello or keep-alive connect).
    pub connected: usize,
    /// Seconds from the shard's start until the last first connection succeeded or failed.
    pub connect_seconds: f64,
    /// Connect start to hello (sessions) or to connection established (HTTP).
    pub hello: Histogram,
    /// Ticks or posts sent.
    pub sent: u64,
    /// `saved` acks (sessions) or 204s (HTTP).
    pub acks: u64,
    /// Session acks: delay beyond the flush interval after the tick that armed the flush.
    pub ack_delay: Histogram,
    /// HTTP posts: request latency.
    pub request_latency: Histogram,
    /// Failed connects, non-2xx answers, error messages from the server, timeouts.
    pub errors: u64,
    /// Connections the server closed or dropped while they should have stayed open.
    pub unexpected_closes: u64,
    /// A few error messages, for the log.
    pub error_examples: Vec<String>,
}

/// Outcome of a reconnect storm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormStats {
    /// Viewers that were connected when the storm started.
    pub expected: usize,
    /// Viewers back with a hello.
    pub reconnected: usize,
    /// Seconds from the drop until the last viewer was back.
    pub seconds: f64,
    /// Attempts refused with a retryable error (503, 429, reset) and retried.
    pub retries: u64,
    /// Hellos whose resume position was behind the last position sent.
    pub hello_behind: u64,
    /// Hello latency of the reconnects (from the first attempt).
    pub hello: Histogram,
}

/// Outcome of the sample check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CheckStats {
    /// Viewers read back.
    pub checked: usize,
    /// Viewers whose position differed from the last one sent (or could not be read).
    pub wrong: usize,
    /// A few mismatches, for the log.
    pub examples: Vec<String>,
}

/// Where the shard's viewers are; each viewer follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connect and keep going.
    Run,
    /// Drop and reconnect (the number tells storms apart).
    Storm(u32),
    /// Close and end.
    Stop,
}

/// State shared by the shard's viewer tasks.
struct ShardContext {
    plan: ShardPlan,
    minter: TokenMinter,
    started: Instant,
    /// Last position sent by each viewer, in ms + 1 (0: none yet).
    last_sent: Vec<AtomicU64>,
    connected: AtomicUsize,
    connect_failed: AtomicUsize,
    /// Microseconds after `started` of the last first-connection outcome.
    connect_done_us: AtomicU64,
    /// Viewers connected now.
    alive: AtomicUsize,
    reconnected: AtomicUsize,
    reconnect_failed: AtomicUsize,
    retries: AtomicU64,
    hello_behind: AtomicU64,
    sent: AtomicU64,
    acks: AtomicU64,
    errors: AtomicU64,
    unexpected_closes: AtomicU64,
    hello: Mutex<Histogram>,
    storm_hello: Mutex<Histogram>,
    ack_delay: Mutex<Histogram>,
    /// The plateau window's share of `ack_delay`, while the window is open.
    window_ack_delay: Mutex<Option<Histogram>>,
    request_latency: Mutex<Histogram>,
    error_examples: Mutex<Vec<String>>,
}

impl ShardContext {
    fn new(plan: ShardPlan) -> Result<Self, ClientError> {
        Ok(Self {
            minter: TokenMinter::new(&plan.secret)?,
            started: Instant::now(),
            last_sent: (0..plan.viewers).map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicUsize::new(0),
            connect_failed: AtomicUsize::new(0),
            connect_done_us: AtomicU64::new(0),
            alive: AtomicUsize::new(0),
            reconnected: AtomicUsize::new(0),
            reconnect_failed: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            hello_behind: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unexpected_closes: AtomicU64::new(0),
            hello: Mutex::default(),
            storm_hello: Mutex::default(),
            ack_delay: Mutex::default(),
            window_ack_delay: Mutex::default(),
            request_latency: Mutex::default(),
            error_examples: Mutex::default(),
            plan,
        })
    }

    /// A day-long token for viewer `local`; on failure the error is counted and
    /// the viewer's first connection is reported as failed.
    fn viewer_token(&self, local: usize) -> Option<String> {
        match self
            .minter
            .token(&self.user(local), Duration::from_secs(86_400))
        {
            Ok(token) => Some(token),
            Err(e) => {
                self.error("token", e);
                self.first_connection(false);
                None
            }
        }
    }

    fn user(&self, local: usize) -> String {
        format!(
            "{}-{}",
            self.plan.user_prefix,
            self.plan.first_viewer + local
        )
    }

    fn error(&self, what: &str, error: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut examples = lock(&self.error_examples);
        if examples.len() < ERROR_EXAMPLES {
            examples.push(format!("{what}: {error}"));
        }
    }

    fn first_connection(&self, ok: bool) {
        if ok {
            self.connected.fetch_add(1, Ordering::Relaxed);
            self.alive.fetch_add(1, Ordering::Relaxed);
        } else {
            self.connect_failed.fetch_add(1, Ordering::Relaxed);
        }
        let us = self.started.elapsed().as_micros() as u64;
        self.connect_done_us.fetch_max(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ShardStats {
        ShardStats {
            viewers: self.plan.viewers,
            connected: self.connected.load(Ordering::Relaxed),
            connect_seconds: self.connect_done_us.load(Ordering::Relaxed) as f64 / 1e6,
            hello: lock(&self.hello).clone(),
            sent: self.sent.load(Ordering::Relaxed),
            acks: self.acks.load(Ordering::Relaxed),
            ack_delay: lock(&self.ack_delay).clone(),
            request_latency: lock(&self.request_latency).clone(),
            errors: self.errors.load(Ordering::Relaxed),
            unexpected_closes: self.unexpected_closes.load(Ordering::Relaxed),
            error_examples: lock(&self.error_examples).clone(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking viewer task cannot leave a histogram half-updated in a way that matters.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where viewer `global` starts playing, in ms: spread so that positions differ.
fn base_position_ms(global: usize) -> u64 {
    (100 + (global % 1000) as u64) * 1000
}

/// A fixed, evenly spread fraction in [0, 1) for viewer `global`, so that ticks
/// and retries of different viewers do not line up.
fn spread(global: usize) -> f64 {
    (global as f64 * 0.618_033_988_749_895).fract()
}

/// Runs a shard until its command channel closes; reports on `events`.
pub async fn run_shard(
    plan: ShardPlan,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let ctx = match ShardContext::new(plan) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            eprintln!("loadgen shard: {e}");
            return;
        }
    };
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let mut viewers = spawn_viewers(&ctx, phase_rx).await;
    let all_done = || {
        ctx.connected.load(Ordering::Relaxed) + ctx.connect_failed.load(Ordering::Relaxed)
            >= ctx.plan.viewers
    };
    while !all_done() {
        sleep(Duration::from_millis(10)).await;
    }
    let _ = events.send(Event::Connected(ctx.snapshot())).await;

    let mut storms = 0;
    let mut stopped = false;
    while let Some(command) = commands.recv().await {
        let event = match command {
            Command::Storm => {
                storms += 1;
                Event::Reconnected(storm(&ctx, &phase_tx, storms).await)
            }
            Command::Stop => {
                stopped = true;
                stop(&ctx, &phase_tx, &mut viewers).await;
                Event::Closed(ctx.snapshot())
            }
            Command::Check => Event::Checked(check(&ctx).await),
            Command::OpenWindow => {
                *lock(&ctx.window_ack_delay) = Some(Histogram::default());
                Event::WindowOpened
            }
            Command::CloseWindow => {
                Event::WindowClosed(lock(&ctx.window_ack_delay).take().unwrap_or_default())
            }
        };
        if events.send(event).await.is_err() {
            break;
        }
    }
    if !stopped {
        stop(&ctx, &phase_tx, &mut viewers).await;
    }
}

async fn spawn_viewers(ctx: &Arc<ShardContext>, phase: watch::Receiver<Phase>) -> JoinSet<()> {
    let mut viewers = JoinSet::new();
    let connecting = Arc::new(tokio::sync::Semaphore::new(ctx.plan.max_connecting.max(1)));
    let rate = ctx.plan.connect_rate.max(1.0);
    for local in 0..ctx.plan.viewers {
        // Paced by the clock rather than by sleeping per viewer, so the rate holds
        // even when the timer is coarser than the gap between two connects.
        let due = ctx.started + Duration::from_secs_f64(local as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let Ok(permit) = Arc::clone(&connecting).acquire_owned().await else {
            break;
        };
        let ctx = Arc::clone(ctx);
        let phase = phase.clone();
        viewers.spawn(async move {
            match ctx.plan.kind {
                ViewerKind::Session { tick_rate } => {
                    session_viewer(ctx, local, tick_rate, phase, permit).await;
                }
                ViewerKind::Http { interval_ms } => {
                    http_viewer(ctx, local, interval_ms, phase, permit).await;
                }
            }
        });
    }
    viewers
}

async fn storm(ctx: &ShardContext, phase: &watch::Sender<Phase>, number: u32) -> StormStats {
    let expected = ctx.alive.load(Ordering::Relaxed);
    ctx.reconnected.store(0, Ordering::Relaxed);
    ctx.reconnect_failed.store(0, Ordering::Relaxed);
    ctx.retries.store(0, Ordering::Relaxed);
    ctx.hello_behind.store(0, Ordering::Relaxed);
    *lock(&ctx.storm_hello) = Histogram::default();
    let started = Instant::now();
    let _ = phase.send(Phase::Storm(number));
    let deadline = started + Duration::from_secs(180);
    while ctx.reconnected.load(Ordering::Relaxed) + ctx.reconnect_failed.load(Ordering::Relaxed)
        < expected
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(5)).await;
    }
    StormStats {
        expected,
        reconnected: ctx.reconnected.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        retries: ctx.retries.load(Ordering::Relaxed),
        hello_behind: ctx.hello_behind.load(Ordering::Relaxed),
        hello: lock(&ctx.storm_hello).clone(),
    }
}

async fn stop(ctx: &ShardContext, phase: &watch::Sender<Phase>, viewers: &mut JoinSet<()>) {
    let _ = phase.send(Phase::Stop);
    let deadline = Instant::now() + CLOSE_TIMEOUT + ANSWER_TIMEOUT;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, viewers.join_next()).await {}
    if !viewers.is_empty() {
        ctx.error(
            "stop",
            format!("{} viewers did not end in time", viewers.len()),
        );
        viewers.abort_all();
    }
}

/// Reads sampled viewers' positions through the read path and compares them
/// with the last position each one sent.
async fn check(ctx: &ShardContext) -> CheckStats {
    let mut stats = CheckStats::default();
    let every = ctx.plan.check_every;
    if every == 0 {
        return stats;
    }
    let mut connection = None;
    for local in (0..ctx.plan.viewers).step_by(every) {
        let last = ctx.last_sent[local].load(Ordering::Relaxed);
        let Some(expected_ms) = last.checked_sub(1) else {
            continue;
        };
        stats.checked += 1;
        let user = ctx.user(local);
        let outcome = read_position(ctx, &mut connection, &user).await;
        let ok =
            matches!(outcome, Ok(seconds) if (seconds * 1000.0 - expected_ms as f64).abs() < 0.5);
        if !ok {
            stats.wrong += 1;
            if stats.examples.len() < ERROR_EXAMPLES {
                stats.examples.push(format!(
                    "{user}: expected {} s, read {outcome:?}",
                    expected_ms as f64 / 1000.0
                ));
            }
        }
    }
    stats
}

async fn read_position(
    ctx: &ShardContext,
    connection: &mut Option<HttpConnection>,
    user: &str,
) -> Result<f64, ClientError> {
    if connection.is_none() {
        *connection = Some(HttpConnection::connect(ctx.plan.addr).await?);
    }
    let Some(conn) = connection.as_mut() else {
        return Err(ClientError::Protocol("no connection".into()));
    };
    let token = ctx.minter.token(user, Duration::from_secs(3600))?;
    let path = format!("/api/v1/stream?movie_id={}", ctx.plan.movie_id);
    let answer = timeout(
        ANSWER_TIMEOUT,
        conn.request(Method::GET, &path, Some(&token), None),
    )
    .await;
    let (status, body) = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            *connection = None;
            return Err(e);
        }
        Err(_) => {
            *connection = None;
            return Err(ClientError::Timeout);
        }
    };
    if !status.is_success() {
        return Err(ClientError::Status(status.as_u16()));
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ClientError::Protocol(format!("read path answer: {e}")))?;
    value["resume_position_seconds"]
        .as_f64()
        .ok_or_else(|| ClientError::Protocol("no resume_position_seconds".into()))
}

/// What a session's hello says.
struct Hello {
    resume_position_ms: u64,
    /// Absent on the bare sink, which never acks.
    flush_interval: Option<Duration>,
}

/// Connects and waits for the hello.
async fn connect_session(ctx: &ShardContext, token: &str) -> Result<(Socket, Hello), ClientError> {
    let open = async {
        let mut socket = open_session(ctx.plan.addr, &ctx.plan.movie_id, token).await?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let hello: Value = serde_json::from_str(&text)
                        .map_err(|e| ClientError::Protocol(format!("hello: {e}")))?;
                    if hello["type"] != "hello" {
                        return Err(ClientError::Protocol(format!("first message: {text}")));
                    }
                    let hello = Hello {
                        resume_position_ms: (hello["resume_position_seconds"]
                            .as_f64()
                            .unwrap_or(0.0)
                            * 1000.0)
                            .round() as u64,
                        flush_interval: hello["flush_interval_ms"]
                            .as_u64()
                            .map(Duration::from_millis),
                    };
                    return Ok((socket, hello));
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(ClientError::Protocol("closed before hello".into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    };
    timeout(ANSWER_TIMEOUT, open)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

/// How a connected stretch of a session ended.
enum SessionEnd {
    Storm,
    Stop,
    Gone,
}

/// Times `saved` acks: the flush is armed by the first tick after the last
/// write started, which is the tick right after the last acked position.
struct AckClock {
    base_ms: u64,
    step_ms: u64,
    sent_at: Vec<Option<Instant>>,
    /// Index of the tick that armed the next flush.
    arming: u64,
}

impl AckClock {
    fn sent(&mut self, tick: u64, at: Instant) {
        self.sent_at[tick as usize % SENT_RING] = Some(at);
    }

    /// Delay of an ack of `position_ms` beyond `flush_interval`.
    fn acked(&mut self, position_ms: u64, flush_interval: Duration) -> Option<Duration> {
        let tick = position_ms.checked_sub(self.base_ms)? / self.step_ms;
        if tick < self.arming || tick - self.arming >= SENT_RING as u64 {
            return None;
        }
        let armed_at = self.sent_at[self.arming as usize % SENT_RING]?;
        self.arming = tick + 1;
        Some(armed_at.elapsed().saturating_sub(flush_interval))
    }
}

async fn session_viewer(
    ctx: Arc<ShardContext>,
    local: usize,
    tick_rate: f64,
    mut phase: watch::Receiver<Phase>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let global = ctx.plan.first_viewer + local;
    let Some(token) = ctx.viewer_token(local) else {
        return;
    };
    let period = Duration::from_secs_f64(1.0 / tick_rate.max(0.001));
    let step_ms = (period.as_millis() as u64).max(1);
    let mut acks = AckClock {
        base_ms: base_position_ms(global),
        step_ms,
        sent_at: vec![None; SENT_RING],
        arming: 0,
    };
    let mut next_tick: u64 = 0;
    let started = Instant::now();
    let (mut socket, mut hello) = match connect_session(&ctx, &token).await {
        Ok(connected) => connected,
        Err(e) => {
            ctx.error("connect", e);
            ctx.first_connection(false);
            return;
        }
    };
    lock(&ctx.hello).record(started.elapsed());
    ctx.first_connection(true);
    drop(permit);
    loop {
        let end = tick_loop(
            &ctx,
            local,
            &mut socket,
            &hello,
            period,
            &mut next_tick,
            &mut acks,
            &mut phase,
        )
        .await;
        match end {
            SessionEnd::Gone => {
                ctx.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                ctx.alive.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            SessionEnd::Stop => {
                let _ = timeout(CLOSE_TIMEOUT, close_session(&mut socket)).await;
                ctx.alive.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            SessionEnd::Storm => {
                // Drop the TCP connection without a close frame, like a network blip.
                drop(socket);
                let reconnect_started = Instant::now();
                let mut attempt = 0u32;
                let (new_socket, new_hello) = loop {
                    match connect_session(&ctx, &token).await {
                        Ok(connected) => break connected,
                        Err(e) if e.is_transient() && *phase.borrow() != Phase::Stop => {
                            ctx.retries.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                            let backoff =
                                Duration::from_millis(50 << attempt.min(4)).min(RETRY_MAX);
                            sleep(backoff.mul_f64(0.5 + spread(global))).await;
                        }
                        Err(e) => {
                            ctx.error("reconnect", e);
                            ctx.reconnect_failed.fetch_add(1, Ordering::Relaxed);
                            ctx.alive.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                    }
                };
                lock(&ctx.storm_hello).record(reconnect_started.elapsed());
                let last = ctx.last_sent[local].load(Ordering::Relaxed);
                if last > 0 && new_hello.resume_position_ms < last - 1 {
                    ctx.hello_behind.fetch_add(1, Ordering::Relaxed);
                }
                ctx.reconnected.fetch_add(1, Ordering::Relaxed);
                socket = new_socket;
                hello = new_hello;
                // The new session's first write is armed by its first tick.
                acks.arming = next_tick;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn tick_loop(
    ctx: &ShardContext,
    local: usize,
    socket: &mut Socket,
    hello: &Hello,
    period: Duration,
    next_tick: &mut u64,
    acks: &mut AckClock,
    phase: &mut watch::Receiver<Phase>,
) -> SessionEnd {
    let global = ctx.plan.first_viewer + local;
    let first = Instant::now() + period.mul_f64(spread(global));
    let mut ticker = interval_at(first, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    phase.borrow_and_update();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let position_ms = acks.base_ms + *next_tick * acks.step_ms;
                let text = format!(
                    r#"{{"type":"tick","position_seconds":{}}}"#,
                    position_ms as f64 / 1000.0
                );
                acks.sent(*next_tick, Instant::now());
                if socket.send(Message::text(text)).await.is_err() {
                    return SessionEnd::Gone;
                }
                *next_tick += 1;
                ctx.last_sent[local].store(position_ms + 1, Ordering::Relaxed);
                ctx.sent.fetch_add(1, Ordering::Relaxed);
            }
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => on_server_text(ctx, &text, hello, acks),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return SessionEnd::Gone,
                Some(Ok(_)) => {}
            },
            changed = phase.changed() => {
                if changed.is_err() {
                    return SessionEnd::Stop;
                }
                match *phase.borrow_and_update() {
                    Phase::Run => {}
                    Phase::Storm(_) => return SessionEnd::Storm,
                    Phase::Stop => return SessionEnd::Stop,
                }
            }
        }
    }
}

fn on_server_text(ctx: &ShardContext, text: &str, hello: &Hello, acks: &mut AckClock) {
    let message: Value = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(e) => return ctx.error("server message", e),
    };
    match message["type"].as_str() {
        Some("saved") => {
            ctx.acks.fetch_add(1, Ordering::Relaxed);
            let position_ms =
                (message["position_seconds"].as_f64().unwrap_or(0.0) * 1000.0).round() as u64;
            if let Some(flush) = hello.flush_interval
                && let Some(delay) = acks.acked(position_ms, flush)
            {
                lock(&ctx.ack_delay).record(delay);
                if let Some(window) = lock(&ctx.window_ack_delay).as_mut() {
                    window.record(delay);
                }
            }
        }
        _ => ctx.error("server message", text),
    }
}

/// Sends a close frame and waits for the server's.
async fn close_session(socket: &mut Socket) {
    let _ = socket.close(None).await;
    while let Some(Ok(_)) = socket.next().await {}
}

async fn http_viewer(
    ctx: Arc<ShardContext>,
    local: usize,
    interval_ms: u64,
    mut phase: watch::Receiver<Phase>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let global = ctx.plan.first_viewer + local;
    let Some(token) = ctx.viewer_token(local) else {
        return;
    };
    let started = Instant::now();
    let mut connection = match HttpConnection::connect(ctx.plan.addr).await {
        Ok(connection) => connection,
        Err(e) => {
            ctx.error("connect", e);
            ctx.first_connection(false);
            return;
        }
    };
    lock(&ctx.hello).record(started.elapsed());
    ctx.first_connection(true);
    drop(permit);
    let period = Duration::from_millis(interval_ms.max(1));
    let mut ticker = interval_at(Instant::now() + period.mul_f64(spread(global)), period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut position_ms = base_position_ms(global);
    phase.borrow_and_update();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let body = json!({"movie_id": ctx.plan.movie_id, "position_seconds": position_ms as f64 / 1000.0}).to_string();
                let sent = Instant::now();
                ctx.sent.fetch_add(1, Ordering::Relaxed);
                let answer = timeout(
                    ANSWER_TIMEOUT,
                    connection.request(Method::POST, "/api/v1/stream/progress", Some(&token), Some(body)),
                ).await;
                match answer {
                    Ok(Ok((status, _))) if status.as_u16() == 204 => {
                        lock(&ctx.request_latency).record(sent.elapsed());
                        ctx.acks.fetch_add(1, Ordering::Relaxed);
                        ctx.last_sent[local].store(position_ms + 1, Ordering::Relaxed);
                    }
                    Ok(Ok((status, _))) => ctx.error("progress", format!("status {status}")),
                    Ok(Err(e)) => {
                        ctx.error("progress", e);
                        ctx.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(_) => {
                        ctx.error("progress", ClientError::Timeout);
                        break;
                    }
                }
                position_ms += interval_ms;
            }
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow_and_update() == Phase::Stop {
                    break;
                }
            }
        }
    }
    ctx.alive.fetch_sub(1, Ordering::Relaxed);
}
