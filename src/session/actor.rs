//! The session actor: one task per playback session that owns the socket and the
//! session's position, and decides when to write it.
//!
//! The task keeps the latest position and the time the server received it (the
//! write timestamp), and writes to the store:
//! * every flush interval, if the position changed since the last write (a paused
//!   player costs nothing);
//! * at once when the player reports `ended`;
//! * when the socket ends (close frame, TCP drop, read error, idle timeout) and
//!   when the server shuts down.
//!
//! A write completes the title (marks it watched) when `resume::completes`
//! says so: its position is at or past the threshold, or it is the position
//! the player reported `ended` at. (An `ended` that repeats a position already
//! written adds no write, so it completes the title only through the
//! threshold.)
//!
//! At most one write is in flight; a failed write is retried with backoff, always
//! with the latest position and its own receive timestamp, so memory per session
//! is constant whatever the store does. The socket is generic so that tests can
//! drive the actor over an in-memory channel with paused time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::book::{BookSettings, PositionBook, Settled, WriteResult};
use super::flood::{FloodGuard, FloodVerdict};
use super::protocol::{
    ClientMessage, PlaybackState, ServerMessage, SupersededBy, error_code, parse_client_message,
};
use super::registry::{LivePosition, SessionTicket};
use crate::clock::SharedClock;
use crate::metrics::{FlushReason, Metrics, RejectReason, WriteOutcome};
use crate::resume::{CompletionThreshold, completes, seconds_from_ms};
use crate::store::{PositionWrite, PutOutcome, SharedStore, StoreError, Stored, WatchedChange};

/// Close code: the server is going away (shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: policy violation (sustained flood).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: a frame or message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// How long a server-initiated close waits for the client's close reply.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// Timing and limits of every session, from the config.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Write the position this often when it changed.
    pub flush_interval: Duration,
    /// How long playback must run on from a position behind the hello's resume
    /// point before it is written (zero: at once).
    pub provisional_confirm: Duration,
    /// Send a ping this often.
    pub ping_interval: Duration,
    /// End the session after this long without any frame from the client.
    pub idle_timeout: Duration,
    /// Allowed messages per second.
    pub tick_rate: f64,
    /// Give up on a client that does not take a message for this long.
    pub send_timeout: Duration,
    /// From here on a write completes the title.
    pub completion_threshold: CompletionThreshold,
}

/// What every session of the process shares, behind one pointer per session
/// instead of a handle each.
pub struct SessionShared {
    /// Timing and limits.
    pub settings: SessionSettings,
    /// Where positions go.
    pub store: SharedStore,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Stamps positions as they arrive.
    pub clock: SharedClock,
}

/// Everything one session needs, handed over by the upgrade handler.
pub struct SessionContext {
    /// The title's duration, for clamping.
    pub duration_ms: u64,
    /// Sent in the hello message; positions behind it are provisional.
    pub resume_position_ms: u64,
    /// Settings and services shared by every session.
    pub shared: Arc<SessionShared>,
    /// The registry entry, released when the task ends (after the final write).
    pub ticket: SessionTicket,
    /// Held until the session ends, after its final write, so that shutdown
    /// waits for sessions that are upgraded but not started yet too.
    pub tracked: TaskTrackerToken,
}

/// What a frame from the client asks of the socket loop.
enum Step {
    /// Nothing to send.
    Continue,
    /// Send this answer (an error message).
    Reply(Message),
    /// The socket part of the session is over.
    End(SocketEnd),
}

/// Why the socket part of a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SocketEnd {
    /// The client sent a close frame; ours answers it.
    ClientClosed,
    /// The client dropped the connection, or a read or write failed.
    ClientGone,
    /// No frame within the idle timeout.
    Idle,
    /// A frame over the size limit.
    TooBig,
    /// A sustained flood.
    Flood,
    /// The server is shutting down.
    Shutdown,
}

type WriteFuture = Pin<Box<dyn Future<Output = Result<PutOutcome, StoreError>> + Send>>;

/// The actor's state besides the socket.
struct SessionActor {
    ctx: SessionContext,
    /// The position rules (`super::book`).
    book: PositionBook,
    flood: FloodGuard,
    /// The write in flight.
    pending: Option<WriteFuture>,
    /// Receive stamp of the position the player reported `ended` at: its write
    /// completes the title.
    ended_at_micros: Option<i64>,
    /// When the last frame arrived (or the session started): the idle timeout
    /// counts from here.
    heard_at: Instant,
    /// When the last frame was sent to the client (the hello at first): a
    /// ping is due one ping interval after it.
    sent_at: Instant,
}

/// What a session talks through: axum's WebSocket in the server, an in-memory
/// pair in tests.
pub trait SessionSocket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<S> SessionSocket for S where
    S: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
{
}

/// Runs a session to its end: hello, ticks, writes, final write, close.
pub fn run_session<S>(socket: S, ctx: SessionContext) -> impl Future<Output = ()> + Send
where
    S: SessionSocket,
{
    // Built here and captured as it is, so the task holds the actor once (an
    // async fn keeps a slot for each argument beside the locals it moves into).
    let mut actor = SessionActor::new(ctx);
    let mut socket = socket;
    async move {
        let end = actor.open(&mut socket).await;
        // Boxed: the final write's and the close's state is needed once, at
        // the end, not in every live session's task.
        Box::pin(actor.finish(socket, end)).await;
    }
}

impl SessionActor {
    fn new(ctx: SessionContext) -> Self {
        let now = Instant::now();
        let settings = &ctx.shared.settings;
        let book_settings = BookSettings {
            flush_interval: settings.flush_interval,
            confirm_after: settings.provisional_confirm,
        };
        Self {
            flood: FloodGuard::new(settings.tick_rate, now),
            book: PositionBook::new(book_settings, ctx.resume_position_ms),
            pending: None,
            ended_at_micros: None,
            heard_at: now,
            sent_at: now,
            ctx,
        }
    }

    /// The hello, then the socket loop; returns why the socket part ended.
    async fn open<S>(&mut self, socket: &mut S) -> SocketEnd
    where
        S: SessionSocket,
    {
        self.ctx.shared.metrics.live_sessions.inc();
        self.ctx.shared.metrics.sessions_opened.inc();
        let session = self.ctx.ticket.session();
        let hello = ServerMessage::Hello {
            session_id: session.session_id,
            movie_id: &session.movie_id,
            resume_position_seconds: seconds_from_ms(self.ctx.resume_position_ms),
            flush_interval_ms: self.ctx.shared.settings.flush_interval.as_millis() as u64,
        }
        .to_json();
        let send_timeout = self.ctx.shared.settings.send_timeout;
        if send(socket, Message::Text(hello.into()), send_timeout).await {
            self.serve(socket).await
        } else {
            SocketEnd::ClientGone
        }
    }

    /// The end of a session: the final write, the close handshake the way the
    /// socket ended calls for, and the final write again if the close outran it.
    async fn finish<S>(mut self, mut socket: S, end: SocketEnd)
    where
        S: SessionSocket,
    {
        let send_timeout = self.ctx.shared.settings.send_timeout;
        let reason = if end == SocketEnd::Shutdown {
            FlushReason::Shutdown
        } else {
            FlushReason::Close
        };
        // The final write lands before the close completes, so a reader on any node
        // that sees the close also sees the position. A store that does not answer
        // in time does not hold the close back; the write goes on after it.
        let _ = timeout(send_timeout, self.write_final(reason)).await;
        let close_code = match end {
            SocketEnd::ClientGone => None,
            SocketEnd::ClientClosed => {
                // The library queued the reply to the client's close; send it now.
                let _ = timeout(send_timeout, socket.close()).await;
                None
            }
            SocketEnd::Idle => Some((CLOSE_GOING_AWAY, "idle timeout")),
            SocketEnd::TooBig => Some((CLOSE_TOO_BIG, "frame too large")),
            SocketEnd::Flood => Some((CLOSE_POLICY, "too many messages")),
            SocketEnd::Shutdown => Some((CLOSE_GOING_AWAY, "server shutting down")),
        };
        let mut close_sent = false;
        if let Some((code, reason)) = close_code {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            close_sent = send(&mut socket, Message::Close(Some(frame)), send_timeout).await;
        }
        if close_sent {
            await_close_reply(&mut socket, CLOSE_REPLY_WAIT).await;
        }
        drop(socket);
        self.write_final(reason).await;
        self.ctx.shared.metrics.live_sessions.dec();
    }

    /// The socket loop; returns why it ended.
    ///
    /// Each turn decides what to send without awaiting anything, and the one
    /// send of the turn happens after the `select!`: a message, an outcome or
    /// a reply held across that send would otherwise take room in every
    /// session's task for its whole life.
    async fn serve<S>(&mut self, socket: &mut S) -> SocketEnd
    where
        S: SessionSocket,
    {
        // Created once: every session waits on the same token, and a fresh
        // `cancelled()` per message would register and unregister a waiter on its
        // shared list each time.
        let cancelled = self.ctx.shared.shutdown.clone().cancelled_owned();
        let timer = sleep_until(self.next_deadline());
        tokio::pin!(cancelled, timer);
        loop {
            let deadline = self.next_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            let turn = tokio::select! {
                biased;
                () = &mut cancelled => Err(SocketEnd::Shutdown),
                outcome = wait_for(&mut self.pending) => {
                    self.pending = None;
                    Ok(self.write_finished(outcome).map(|ack| Message::Text(ack.into())))
                }
                frame = socket.next() => self.on_frame(frame),
                () = &mut timer => self.on_timer(),
            };
            match turn {
                Err(end) => return end,
                Ok(None) => {}
                Ok(Some(message)) => {
                    let limit = self.ctx.shared.settings.send_timeout;
                    if !send(socket, message, limit).await {
                        return SocketEnd::ClientGone;
                    }
                    self.sent_at = Instant::now();
                }
            }
        }
    }

    /// What a frame (or the end of the stream) does: the message to send, if
    /// any, or why the socket part ends.
    fn on_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<Option<Message>, SocketEnd> {
        let Some(frame) = frame else {
            return Err(SocketEnd::ClientGone);
        };
        let message = match frame {
            Ok(message) => message,
            Err(e) if is_too_big(&e) => return Err(SocketEnd::TooBig),
            Err(_) => return Err(SocketEnd::ClientGone),
        };
        // One monotonic reading per frame serves the idle timer, the flood
        // check and the tick.
        let now = Instant::now();
        self.heard_at = now;
        match self.on_message(message, now) {
            Step::Continue => Ok(None),
            Step::End(end) => Err(end),
            Step::Reply(reply) => Ok(Some(reply)),
        }
    }

    /// What the timer does when it fires: ends an idle session, sends a ping
    /// when one is due, and starts a write when one is due.
    fn on_timer(&mut self) -> Result<Option<Message>, SocketEnd> {
        let now = Instant::now();
        if now >= self.heard_at + self.ctx.shared.settings.idle_timeout {
            return Err(SocketEnd::Idle);
        }
        // A ping is due only after an interval in which nothing was sent: an
        // acknowledgement keeps the connection busy in the server's direction
        // just as well (proxies time out quiet upstreams), so a playing
        // viewer, whose positions are acknowledged every few seconds, costs no
        // pings.
        let ping = (now >= self.ping_due()).then(|| Message::Ping(Default::default()));
        self.start_write(now);
        Ok(ping)
    }

    /// When a ping is due: one interval after the last frame sent.
    fn ping_due(&self) -> Instant {
        self.sent_at + self.ctx.shared.settings.ping_interval
    }

    /// The earliest moment the actor must wake up without input.
    fn next_deadline(&self) -> Instant {
        let deadline = self
            .ping_due()
            .min(self.heard_at + self.ctx.shared.settings.idle_timeout);
        match self.book.next_write_at() {
            Some(at) if self.pending.is_none() => deadline.min(at),
            _ => deadline,
        }
    }

    /// What one message from the client does: the session's state changes
    /// here, and the socket loop sends the reply, if any.
    ///
    /// Every frame but a close counts toward the rate. A well-formed tick is
    /// recorded whatever the rate; over the rate nothing is answered, and a
    /// sustained flood ends the session (its latest tick recorded first).
    fn on_message(&mut self, message: Message, now: Instant) -> Step {
        if let Message::Close(_) = message {
            return Step::End(SocketEnd::ClientClosed);
        }
        let verdict = self.flood.check(now);
        let reply = match message {
            Message::Text(text) => match parse_client_message(&text, self.ctx.duration_ms) {
                Ok(ClientMessage::Tick { position_ms, state }) => {
                    self.ctx.shared.metrics.ticks_received.inc();
                    let wall = self.ctx.shared.clock.now_micros();
                    if let Some(shown) = self.book.tick(position_ms, state, now, wall) {
                        self.ctx.ticket.session().set_latest(shown);
                    }
                    if state == Some(PlaybackState::Ended) {
                        self.ended_at_micros = self.book.visible().map(|v| v.received_at_micros);
                    }
                    if verdict == FloodVerdict::Drop {
                        self.ctx.shared.metrics.ticks_coalesced.inc();
                    }
                    None
                }
                Err(e) => Some((e.reason(), e.to_string())),
            },
            Message::Binary(_) => Some((
                RejectReason::Binary,
                "binary frames are not supported".into(),
            )),
            _ => None,
        };
        match verdict {
            FloodVerdict::Close => {
                self.ctx.shared.metrics.rejected(RejectReason::RateLimited);
                return Step::End(SocketEnd::Flood);
            }
            FloodVerdict::Drop => return Step::Continue,
            FloodVerdict::Allow => {}
        }
        match reply {
            Some((reason, message)) => {
                Step::Reply(reject(&self.ctx.shared.metrics, reason, message))
            }
            None => Step::Continue,
        }
    }

    /// Starts the write the book says is due, if none is in flight.
    fn start_write(&mut self, now: Instant) {
        if self.pending.is_some() {
            return;
        }
        if let Some((position, reason)) = self.book.start_write(now) {
            self.ctx.shared.metrics.flushed(reason);
            self.pending = Some(self.write_future(position));
        }
    }

    fn write_future(&self, position: LivePosition) -> WriteFuture {
        let store = Arc::clone(&self.ctx.shared.store);
        let metrics = Arc::clone(&self.ctx.shared.metrics);
        let ended = self.ended_at_micros == Some(position.received_at_micros);
        let threshold = self.ctx.shared.settings.completion_threshold;
        let watched = if completes(position.position_ms, self.ctx.duration_ms, threshold, ended) {
            WatchedChange::Completed
        } else {
            WatchedChange::Unchanged
        };
        let write = PositionWrite {
            user_id: self.ctx.ticket.user().as_str().to_owned(),
            movie_id: self.ctx.ticket.session().movie_id.to_string(),
            position_ms: position.position_ms,
            written_at_micros: position.received_at_micros,
            watched,
        };
        Box::pin(async move {
            let started = Instant::now();
            let outcome = store.put(write).await;
            let label = match &outcome {
                Ok(PutOutcome::Applied) => WriteOutcome::Ok,
                Ok(PutOutcome::Superseded(_)) => WriteOutcome::Superseded,
                Err(_) => WriteOutcome::Failed,
            };
            metrics.store_write(label, started.elapsed().as_secs_f64());
            outcome
        })
    }

    /// Books the outcome of the write in flight; returns the acknowledgement to
    /// send: `saved` for a stored winner, `superseded` for a write that lost.
    fn write_finished(&mut self, outcome: Result<PutOutcome, StoreError>) -> Option<String> {
        let result = match &outcome {
            Ok(PutOutcome::Applied) => WriteResult::Applied,
            Ok(PutOutcome::Superseded(_)) => WriteResult::Superseded,
            Err(e) => {
                tracing::debug!(error = %e, "session write failed; retrying with backoff");
                WriteResult::Failed
            }
        };
        let Settled { position, won } = self.book.write_finished(result, Instant::now())?;
        let position_seconds = seconds_from_ms(position.position_ms);
        let message = match outcome {
            Ok(PutOutcome::Superseded(winner)) if !won => ServerMessage::Superseded {
                position_seconds,
                by: match winner {
                    Stored::Position(current) => SupersededBy::NewerPosition {
                        current_position_seconds: seconds_from_ms(current.position_ms),
                    },
                    Stored::Deleted { .. } => SupersededBy::Delete,
                },
            },
            _ => ServerMessage::Saved { position_seconds },
        };
        Some(message.to_json())
    }

    /// Finishes the write in flight and writes what is left, retrying until the
    /// store has settled it. Cancel-safe: a write in flight stays in `pending`.
    async fn write_final(&mut self, reason: FlushReason) {
        self.book.close(reason, Instant::now());
        loop {
            if self.pending.is_some() {
                let outcome = wait_for(&mut self.pending).await;
                self.pending = None;
                self.write_finished(outcome);
            }
            if self.book.is_settled() {
                return;
            }
            let Some(at) = self.book.next_write_at() else {
                return;
            };
            sleep_until(at).await;
            self.start_write(Instant::now());
        }
    }
}

/// Completes the closing handshake: reads (and discards) until the client's close
/// arrives, so that unread data does not turn our close into a TCP reset.
async fn await_close_reply<S>(socket: &mut S, limit: Duration)
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _ = timeout(limit, async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Waits for the write in flight; never resolves when there is none.
async fn wait_for(pending: &mut Option<WriteFuture>) -> Result<PutOutcome, StoreError> {
    match pending {
        Some(write) => write.await,
        None => std::future::pending().await,
    }
}

/// Sends a message within the send timeout; false when the client is gone or stuck.
///
/// Boxed: the send and its timer live on the heap only while a send is under
/// way, instead of taking room in every session task for its whole life.
fn send<'s, S>(
    socket: &'s mut S,
    message: Message,
    limit: Duration,
) -> Pin<Box<dyn Future<Output = bool> + Send + 's>>
where
    S: Sink<Message, Error = axum::Error> + Unpin + Send,
{
    Box::pin(async move { matches!(timeout(limit, socket.send(message)).await, Ok(Ok(()))) })
}

fn reject(metrics: &Metrics, reason: RejectReason, message: String) -> Message {
    metrics.rejected(reason);
    Message::Text(
        ServerMessage::Error {
            code: error_code(reason),
            message,
        }
        .to_json()
        .into(),
    )
}

/// Whether a read error is a frame or message over the size limit.
fn is_too_big(error: &axum::Error) -> bool {
    let source = std::error::Error::source(error);
    matches!(
        source.and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>()),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests {
    use crate::auth::UserId;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Poll};

    use async_trait::async_trait;
    use tokio::sync::mpsc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::session::book::RETRY_MAX;
    use crate::session::registry::SessionRegistry;
    use crate::store::PositionStore;

    /// Records writes; can be told to fail.
    #[derive(Default)]
    struct RecordingStore {
        writes: Mutex<Vec<PositionWrite>>,
        attempts: Mutex<Vec<PositionWrite>>,
        failing: AtomicBool,
    }

    #[async_trait]
    impl PositionStore for RecordingStore {
        async fn put(&self, write: PositionWrite) -> Result<PutOutcome, StoreError> {
            self.attempts.lock().unwrap().push(write.clone());
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.writes.lock().unwrap().push(write);
            Ok(PutOutcome::Applied)
        }
        async fn delete(&self, _: &str, _: &str, _: i64) -> Result<(), StoreError> {
            Ok(())
        }
        async fn get(&self, _: &str, _: &str) -> Result<Option<Stored>, StoreError> {
            Ok(None)
        }
        async fn list(&self, _: &str) -> Result<Vec<Stored>, StoreError> {
            Ok(Vec::new())
        }
        async fn check_health(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl RecordingStore {
        fn positions(&self) -> Vec<u64> {
            self.writes
                .lock()
                .unwrap()
                .iter()
                .map(|w| w.position_ms)
                .collect()
        }
    }

    /// An in-memory socket: the test plays the client.
    struct FakeSocket {
        incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        outgoing: mpsc::UnboundedSender<Message>,
    }

    impl Stream for FakeSocket {
        type Item = Result<Message, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for FakeSocket {
        type Error = axum::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing.send(item).map_err(axum::Error::new)
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Wall time at the start of every test.
    const T0: i64 = 1_700_000_000_000_000;

    /// A session of "alice" on a 120 s title with the default timings.
    fn test_context(
        store: Arc<RecordingStore>,
        shutdown: CancellationToken,
        clock: Arc<ManualClock>,
    ) -> SessionContext {
        let registry = SessionRegistry::new(10, 10);
        let user = UserId::parse("alice").unwrap();
        SessionContext {
            ticket: registry.admit(&user, "clock").unwrap(),
            duration_ms: 120_000,
            resume_position_ms: 0,
            shared: Arc::new(SessionShared {
                settings: SessionSettings {
                    flush_interval: Duration::from_secs(4),
                    provisional_confirm: Duration::from_secs(10),
                    ping_interval: Duration::from_secs(20),
                    idle_timeout: Duration::from_secs(60),
                    tick_rate: 10.0,
                    send_timeout: Duration::from_secs(10),
                    completion_threshold: CompletionThreshold::from_fraction(0.95),
                },
                store,
                metrics: Arc::new(Metrics::default()),
                shutdown,
                clock,
            }),
            tracked: tokio_util::task::TaskTracker::new().token(),
        }
    }

    struct Harness {
        client: mpsc::UnboundedSender<Result<Message, axum::Error>>,
        server: mpsc::UnboundedReceiver<Message>,
        store: Arc<RecordingStore>,
        shutdown: CancellationToken,
        clock: Arc<ManualClock>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn start() -> Self {
            let (client, incoming) = mpsc::unbounded_channel();
            let (outgoing, server) = mpsc::unbounded_channel();
            let store = Arc::new(RecordingStore::default());
            let shutdown = CancellationToken::new();
            let clock = ManualClock::at(T0);
            let context = test_context(store.clone(), shutdown.clone(), clock.clone());
            let task = tokio::spawn(run_session(FakeSocket { incoming, outgoing }, context));
            Self {
                client,
                server,
                store,
                shutdown,
                clock,
                task,
            }
        }

        fn tick(&self, seconds: f64) {
            let text = format!(r#"{{"type":"tick","position_seconds":{seconds}}}"#);
            self.client.send(Ok(Message::Text(text.into()))).unwrap();
        }

        /// Lets the actor run everything that is ready at the current instant.
        async fn settle() {
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }

        async fn advance(duration: Duration) {
            Self::settle().await;
            tokio::time::advance(duration).await;
            Self::settle().await;
        }

        fn sent(&mut self) -> Vec<Message> {
            std::iter::from_fn(|| self.server.try_recv().ok()).collect()
        }
    }

    /// The size of the future a function returns, without calling it.
    fn returned_size<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every live session holds one of these; 19,000 sessions per process is
    /// the design point (docs/BENCHMARKS.md), so growth here is a regression.
    /// Measured on the real socket type, as the upgrade callback hands it to
    /// tokio. Axum's upgrade task and tokio's header and trailer come on top,
    /// and tokio rounds the allocation up to a multiple of 128 bytes: at 1,032
    /// bytes here a session's task takes 1,280 (`bench/heap.sh`; 2,176 when
    /// the callback wrapped this future in one of its own).
    #[test]
    fn the_session_task_stays_small() {
        let size = returned_size(run_session::<axum::extract::ws::WebSocket>);
        assert!(size <= 1032, "the session future grew to {size} bytes");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_each_interval_only_when_the_position_moved() {
        let mut h = Harness::start();
        h.tick(1.0);
        Harness::advance(Duration::from_millis(3_999)).await;
        assert!(
            h.store.positions().is_empty(),
            "nothing before the interval"
        );
        Harness::advance(Duration::from_millis(1)).await;
        assert_eq!(h.store.positions(), [1_000]);
        // Unchanged (paused) for many intervals: no more writes.
        for _ in 0..10 {
            h.tick(1.0);
            Harness::advance(Duration::from_secs(4)).await;
        }
        assert_eq!(h.store.positions(), [1_000]);
        h.tick(2.0);
        h.tick(3.0);
        Harness::advance(Duration::from_secs(4)).await;
        assert_eq!(h.store.positions(), [1_000, 3_000]);
        let saved: Vec<_> = h
            .sent()
            .into_iter()
            .filter_map(|m| match m {
                Message::Text(t) if t.contains("saved") => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(saved.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_write_timestamp_is_the_receive_time_not_the_flush_time() {
        let h = Harness::start();
        h.clock.advance(1_000_000);
        h.tick(5.0);
        Harness::settle().await;
        // The wall clock moves on before the flush; the write keeps the receive time.
        h.clock.advance(4_000_000);
        Harness::advance(Duration::from_secs(4)).await;
        let written = h.store.writes.lock().unwrap()[0].written_at_micros;
        assert_eq!(written, T0 + 1_000_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_the_socket_writes_the_latest_position() {
        let h = Harness::start();
        h.tick(7.0);
        h.tick(8.0);
        drop(h.client);
        h.task.await.unwrap();
        assert_eq!(h.store.positions(), [8_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_retry_with_backoff_and_the_same_timestamp() {
        let h = Harness::start();
        h.store.failing.store(true, Ordering::SeqCst);
        h.tick(9.0);
        Harness::advance(Duration::from_secs(4)).await;
        for _ in 0..6 {
            Harness::advance(RETRY_MAX).await;
        }
        let attempts = h.store.attempts.lock().unwrap().clone();
        assert!(attempts.len() >= 4, "retried: {}", attempts.len());
        // Backoff caps the retry count: 4 s + 6 × 8 s allows far fewer than one try per 250 ms.
        assert!(attempts.len() < 20, "backed off: {}", attempts.len());
        assert!(
            attempts.windows(2).all(|w| w[0] == w[1]),
            "same position and timestamp"
        );
        h.store.failing.store(false, Ordering::SeqCst);
        Harness::advance(RETRY_MAX).await;
        assert_eq!(h.store.positions(), [9_000]);
        assert_eq!(h.store.writes.lock().unwrap()[0], attempts[0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_playing_viewer_gets_acknowledgements_instead_of_pings() {
        let mut h = Harness::start();
        for second in 0..65 {
            h.tick(f64::from(second));
            Harness::advance(Duration::from_secs(1)).await;
        }
        let sent = h.sent();
        assert!(
            sent.iter()
                .any(|m| matches!(m, Message::Text(t) if t.contains("saved")))
        );
        assert!(
            !sent.iter().any(|m| matches!(m, Message::Ping(_))),
            "{sent:?}"
        );
        // A paused player repeating its position gets no acknowledgements, so
        // pings come back to keep the server's direction of the line busy.
        for _ in 0..30 {
            h.tick(64.0);
            Harness::advance(Duration::from_secs(1)).await;
        }
        assert!(h.sent().iter().any(|m| matches!(m, Message::Ping(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn pings_every_interval_and_ends_idle_sessions_with_a_write() {
        let mut h = Harness::start();
        h.tick(4.0);
        Harness::advance(Duration::from_secs(20)).await;
        assert!(h.sent().iter().any(|m| matches!(m, Message::Ping(_))));
        // 60 s after the last frame the session ends, writing what it holds.
        h.tick(4.5);
        Harness::advance(Duration::from_secs(59)).await;
        assert!(!h.task.is_finished());
        Harness::advance(Duration::from_secs(1)).await;
        Harness::advance(CLOSE_REPLY_WAIT).await;
        assert!(h.task.is_finished());
        assert_eq!(h.store.positions(), [4_000, 4_500]);
        assert!(
            h.sent()
                .iter()
                .any(|m| matches!(m, Message::Close(Some(f)) if f.code == CLOSE_GOING_AWAY))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_closes_with_1001_and_writes() {
        let mut h = Harness::start();
        h.tick(6.0);
        Harness::settle().await;
        h.shutdown.cancel();
        Harness::advance(CLOSE_REPLY_WAIT).await;
        assert!(h.task.is_finished());
        assert_eq!(h.store.positions(), [6_000]);
        assert!(
            h.sent()
                .iter()
                .any(|m| matches!(m, Message::Close(Some(f)) if f.code == CLOSE_GOING_AWAY))
        );
    }
}
