//! The production shape, as real processes on loopback: one `cql-test-node`
//! and three `resume-server`s on the Cassandra store (consistency `one`), every
//! port chosen at run time. Viewers move between nodes, nodes die or restart,
//! the store goes away; positions must survive all of it by the rules of
//! docs/protocol.md: last-write-wins by receive time across nodes, a close
//! that is durable before it completes, a crash that loses at most a flush
//! interval, a restart or a store outage that loses nothing.
//!
//! The tests take turns ([`ONE_CLUSTER_AT_A_TIME`]): each runs four processes
//! and hundreds of sessions, and their timing bounds assume two cores are not
//! shared with another cluster. Each prints its measured figures.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::support::cluster::{
    Cluster, ONE_CLUSTER_AT_A_TIME, PositionRead, RECONNECT_BACKOFF_MAX, ReadSampler, TICK_PERIOD,
    TICK_STEP_SECONDS, ViewerBook, Viewers, close_cleanly,
};
use crate::support::{DEADLINE, Session, wait_until};

/// A long title (7800 s), so no position reaches the completion threshold.
const MOVIE: &str = "inception";

/// The flush interval of the load tests: short, to keep them fast.
const FLUSH: Duration = Duration::from_millis(500);

/// How far back before a kill the acknowledgements count as "just before".
const ACK_WINDOW: Duration = Duration::from_secs(5);

/// Sessions in the crash and restart tests.
const SESSIONS: usize = 500;

/// Sessions in the store-outage tests.
const OUTAGE_SESSIONS: usize = 300;

/// The read-path sampler: concurrent readers, each reading at most once per
/// period, of every tenth viewer (50, a third on each starting node), so each
/// sampled viewer is read several times on each node.
const SAMPLER_WORKERS: usize = 4;
const SAMPLER_PERIOD: Duration = Duration::from_millis(20);
const SAMPLE_EVERY: usize = 10;

/// Reads the sampler must make in each phase of a test (before and after a
/// kill, around each restart): about four per sampled viewer.
const SAMPLES_PER_PHASE: u64 = (SESSIONS / SAMPLE_EVERY * 4) as u64;

fn sampled_viewers() -> Vec<usize> {
    (0..SESSIONS).step_by(SAMPLE_EVERY).collect()
}

/// The next acknowledgement (`saved` or `superseded`) on `session`; an error
/// message fails the test.
async fn ack(session: &mut Session) -> Value {
    loop {
        let message = session.next_json().await.expect("open until acknowledged");
        match message["type"].as_str() {
            Some("saved" | "superseded") => return message,
            Some("error") => panic!("the server rejected a tick: {message}"),
            _ => continue,
        }
    }
}

/// Opens a session of `user` on node `index` and returns it with its hello's
/// resume point.
async fn open(cluster: &Cluster, index: usize, user: &str) -> (Session, f64) {
    let mut session = Session::connect(cluster.addr(index), user, MOVIE)
        .await
        .expect("upgrade");
    let hello = session.expect("hello").await;
    let resume = hello["resume_position_seconds"]
        .as_f64()
        .expect("hello has a resume point");
    (session, resume)
}

/// `user`'s position on [`MOVIE`] in continue watching on node `index`.
async fn continue_watching_position(cluster: &Cluster, index: usize, user: &str) -> Option<f64> {
    cluster
        .continue_watching(index, user)
        .await
        .iter()
        .find(|item| item["movie_id"] == MOVIE)
        .and_then(|item| item["position_seconds"].as_f64())
}

/// Waits until continue watching on node `index` shows `user` at `seconds`.
async fn wait_for_continue_watching(cluster: &Cluster, index: usize, user: &str, seconds: f64) {
    wait_until(
        &format!(
            "continue watching on node {} shows {user} at {seconds}",
            index + 1
        ),
        || async { continue_watching_position(cluster, index, user).await == Some(seconds) },
    )
    .await;
}

/// Waits until node `index`'s read path answers `seconds` for `user` (a tick
/// that reached its session there, written or not).
async fn wait_for_read(cluster: &Cluster, index: usize, user: &str, seconds: f64) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let read = cluster.position(index, user, MOVIE).await;
        if read == PositionRead::Position(seconds) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} never read {user} at {seconds}; the last read: {read:?}",
            index + 1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until node `index`'s `/readyz` answers `status`; on timeout the
/// failure shows the node's last warnings (the store's own explanation).
async fn wait_for_readiness(cluster: &Cluster, index: usize, status: u16) {
    let deadline = Instant::now() + DEADLINE;
    while cluster.readyz(index).await != Some(status) {
        if Instant::now() >= deadline {
            let log = cluster.log(index);
            let warnings: Vec<&str> = log
                .lines()
                .filter(|line| line.contains(" WARN ") && !line.contains("tower_http"))
                .rev()
                .take(3)
                .collect();
            panic!(
                "node {} did not answer /readyz {status} within {DEADLINE:?}; its last warnings:\n{}",
                index + 1,
                warnings.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running node other than `index` (to read what the store holds rather
/// than a live session there).
fn another_node(cluster: &Cluster, index: usize) -> usize {
    (1..cluster.len())
        .map(|step| (index + step) % cluster.len())
        .find(|&other| cluster.is_up(other))
        .expect("another node is up")
}

/// After every viewer closed cleanly: each viewer's position, read on a node
/// other than the one it closed on, is exactly its last tick. Returns how many
/// were not (with the first few described).
async fn positions_lost(cluster: &Cluster, viewers: &[ViewerBook], prefix: &str) -> Vec<String> {
    stream::iter(viewers.iter().enumerate())
        .map(|(i, book)| async move {
            let user = format!("{prefix}-{i}");
            let closed_on = book.closed_on.expect("closed on a node");
            let other = another_node(cluster, closed_on);
            let read = cluster.position(other, &user, MOVIE).await;
            let sent = book.last_sent();
            (read.position() != sent).then(|| {
                format!(
                    "{user}: node {} reads {read:?}, last tick {sent:?} (closed on node {})",
                    other + 1,
                    closed_on + 1
                )
            })
        })
        .buffer_unordered(32)
        .filter_map(|lost| async move { lost })
        .collect::<Vec<_>>()
        .await
}

/// Every viewer closed cleanly and heard nothing unexpected.
fn assert_clean_ends(books: &[ViewerBook], prefix: &str) {
    for (i, book) in books.iter().enumerate() {
        assert!(
            book.closed_cleanly,
            "{prefix}-{i}: no close reply: {}",
            book.summary()
        );
        assert!(
            book.unexpected.is_empty(),
            "{prefix}-{i}: unexpected messages: {:?}",
            book.unexpected
        );
    }
}

/// (1) One viewer, two devices, two nodes: the position received last wins,
/// whatever order the writes land in and whichever node wrote it; continue
/// watching on a third node shows the winner; a close is durable before the
/// server answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_on_two_nodes_last_received_wins_and_a_close_is_durable() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Two seconds between a tick and its write: the window in which the
    // other device's tick and close (a few ms) must land for the late write
    // below, with room for a busy machine.
    let flush = Duration::from_secs(2);
    let cluster = Cluster::start(3, flush, &[]).await;
    let user = "two-devices";
    // The phone on node 1, the TV on node 2; nothing saved yet, so neither
    // hello guards a resume point and every position counts at once.
    let (mut phone, resume) = open(&cluster, 0, user).await;
    assert_eq!(resume, 0.0);
    let (mut tv, resume) = open(&cluster, 1, user).await;
    assert_eq!(resume, 0.0);

    // Interleaved: phone 100, then TV 200, then phone 150 (a rewind received
    // last: it wins although it is the smaller).
    for (phone_ticks, seconds) in [(true, 100.0), (false, 200.0), (true, 150.0)] {
        let (device, session) = if phone_ticks {
            ("phone", &mut phone)
        } else {
            ("tv", &mut tv)
        };
        session.tick(seconds).await;
        let acknowledged = ack(session).await;
        assert_eq!(
            (
                acknowledged["type"].as_str(),
                acknowledged["position_seconds"].as_f64()
            ),
            (Some("saved"), Some(seconds)),
            "{device} at {seconds}: {acknowledged}"
        );
        wait_for_continue_watching(&cluster, 2, user, seconds).await;
    }

    // Received first, written last: the TV's 3000 reaches node 2 and waits
    // out its flush interval; meanwhile the phone reports 1500 and closes, so
    // 1500 (received later) is written first.
    tv.tick(3000.0).await;
    wait_for_read(&cluster, 1, user, 3000.0).await;
    phone.tick(1500.0).await;
    assert!(
        close_cleanly(&mut phone).await,
        "the server answers the phone's close"
    );
    // The close is answered only once its write is durable: node 2 reads it
    // at once (its own live 3000 was received earlier and loses), and so does
    // node 3, from the store alone. No waiting here.
    assert_eq!(
        cluster.position(1, user, MOVIE).await,
        PositionRead::Position(1500.0),
        "node 2 reads the phone's close at once"
    );
    assert_eq!(
        cluster.position(2, user, MOVIE).await,
        PositionRead::Position(1500.0),
        "node 3 reads the phone's close at once"
    );
    // The TV's late write of 3000 loses to the position received after it.
    let late = ack(&mut tv).await;
    assert_eq!(late["type"], "superseded", "the TV's late write: {late}");
    assert_eq!(late["position_seconds"], 3000.0, "{late}");
    assert_eq!(late["by"], "newer_position", "{late}");
    assert_eq!(late["current_position_seconds"], 1500.0, "{late}");
    assert_eq!(
        continue_watching_position(&cluster, 2, user).await,
        Some(1500.0),
        "continue watching on node 3 after the late write"
    );
    // The TV closes: it has nothing newer to write.
    assert!(close_cleanly(&mut tv).await);
    for index in 0..3 {
        assert_eq!(
            cluster.position(index, user, MOVIE).await,
            PositionRead::Position(1500.0),
            "node {} after both closed",
            index + 1
        );
    }
}

/// (2) Node 1 is SIGKILLed under 500 playing sessions spread over three nodes.
/// Its viewers reconnect elsewhere and resend their latest position; what the
/// crash lost is at most the positions of the last flush interval (plus a
/// tick), never one acknowledged as saved; the players pause at the kill, so
/// only the resend can store what was lost, and it must; no read moves a
/// viewer backwards; at the end every last tick is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_at_most_a_flush_interval() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started = Instant::now();
    let prefix = "killed";
    let mut cluster = Cluster::start(3, FLUSH, &[]).await;
    let viewers = Viewers::start(&cluster.directory, prefix, SESSIONS, MOVIE);
    viewers
        .wait_for_all("every viewer has three positions saved", |_, b| {
            b.saved_count >= 3
        })
        .await;
    let sampler = ReadSampler::start(
        &cluster.directory,
        &viewers,
        sampled_viewers(),
        MOVIE,
        SAMPLER_WORKERS,
        SAMPLER_PERIOD,
    );
    sampler.wait_for_reads(SAMPLES_PER_PHASE).await;

    let before = viewers.books();
    assert!(before.iter().all(|b| b.node.is_some() && b.drops == 0));
    let killed_at = Instant::now();
    cluster.kill(0).await;
    let victims: Vec<usize> = (0..SESSIONS)
        .filter(|&i| before[i].node == Some(0))
        .collect();
    assert!(
        victims.len() >= SESSIONS / 3 - 10,
        "node 1 held {} sessions",
        victims.len()
    );
    // The players pause now, so nothing but a viewer's resend after its
    // reconnect can store the ticks the crash lost (or that went into the dead
    // socket): a resend at or after the hello's resume point must be written.
    viewers.hold().await;
    viewers
        .wait_for_all(
            "every viewer of node 1 is back elsewhere and every last tick is saved",
            |i, b| {
                let back =
                    before[i].node != Some(0) || (b.node.is_some() && !b.reconnects.is_empty());
                back && b.last_saved == b.last_sent()
            },
        )
        .await;
    // Play on, sampled, for a few more saves everywhere, then close.
    viewers.play();
    sampler.wait_for_reads(SAMPLES_PER_PHASE).await;
    viewers
        .wait_for_all("every viewer has three more positions saved", |i, b| {
            b.saved_count >= before[i].saved_count + 3
        })
        .await;
    let samples = sampler.finish().await;
    let books = viewers.close_all().await;
    assert_clean_ends(&books, prefix);

    // How long writes took just before the kill, as the players saw them
    // (tick sent → `saved`): about a flush interval, plus the write.
    let mut recent_acks: Vec<Duration> = before
        .iter()
        .flat_map(|b| b.ack_delays.iter())
        .filter(|(at, _)| killed_at.duration_since(*at) <= ACK_WINDOW)
        .map(|(_, delay)| *delay)
        .collect();
    recent_acks.sort();
    assert!(!recent_acks.is_empty(), "acknowledgements before the kill");
    let ack_median = recent_acks[recent_acks.len() / 2];
    let ack_max = recent_acks[recent_acks.len() - 1];
    assert!(
        ack_median <= FLUSH + TICK_PERIOD,
        "positions are written about a flush interval after they are sent: median {ack_median:?}"
    );
    // A crash loses what was not written yet: the ticks of the last flush
    // interval, plus a tick for the write itself; on a machine so busy that
    // writes took longer just before the kill, what they took.
    let loss_bound = (FLUSH + TICK_PERIOD).max(ack_max);
    let mut lost_ticks_max = 0.0f64;
    let mut lost_window_max = Duration::ZERO;
    let mut beyond_nominal = 0;
    let mut rejoin_max = Duration::ZERO;
    for &i in &victims {
        let book = &books[i];
        let reconnect = book.reconnects.first().expect("reconnected");
        assert_ne!(reconnect.node, 0, "{prefix}-{i} came back on the dead node");
        rejoin_max = rejoin_max.max(reconnect.after);
        // The hello on the new node offers what the cluster kept of this viewer.
        let kept = reconnect.resume;
        assert!(
            reconnect.saved.is_none_or(|saved| kept >= saved),
            "{prefix}-{i}: the crash lost a saved position: kept {kept}, saved {:?}",
            reconnect.saved
        );
        assert!(
            kept <= reconnect.latest,
            "{prefix}-{i}: kept {kept}, beyond its latest tick {}",
            reconnect.latest
        );
        // The oldest tick lost was sent at most `loss_bound` before the kill.
        let sent_before_kill = book
            .sent
            .iter()
            .rev()
            .find(|(_, at)| *at < killed_at)
            .map(|(p, _)| *p)
            .expect("ticked before the kill");
        if kept < sent_before_kill {
            let first_lost = kept + TICK_STEP_SECONDS;
            let sent_at = book
                .sent_at(first_lost)
                .unwrap_or_else(|| panic!("{prefix}-{i}: tick {first_lost} not in the history"));
            let window = killed_at.saturating_duration_since(sent_at);
            lost_window_max = lost_window_max.max(window);
            lost_ticks_max = lost_ticks_max.max((sent_before_kill - kept) / TICK_STEP_SECONDS);
            beyond_nominal += usize::from(window > FLUSH + TICK_PERIOD);
            assert!(
                window <= loss_bound,
                "{prefix}-{i}: lost ticks from {first_lost} (sent {window:?} before the kill) to \
                 {sent_before_kill}; writes took at most {ack_max:?} before the kill"
            );
        }
    }
    for (i, book) in books.iter().enumerate() {
        if before[i].node != Some(0) {
            assert_eq!(
                book.drops, 0,
                "{prefix}-{i} lost a socket on a healthy node"
            );
        }
    }
    let lost = positions_lost(&cluster, &books, prefix).await;
    eprintln!(
        "cluster kill: {} of {SESSIONS} sessions on the killed node; tick to saved before the \
         kill: median {ack_median:?}, max {ack_max:?}; lost at the kill: at most \
         {lost_ticks_max} ticks, the oldest sent {lost_window_max:?} before it (bound \
         {loss_bound:?}; {beyond_nominal} viewers beyond flush + tick = {:?}); \
         rejoin max {rejoin_max:?}; {} reads sampled ({} failed), {} backwards; \
         {} last ticks missing after close; {:?} in all",
        victims.len(),
        FLUSH + TICK_PERIOD,
        samples.reads,
        samples.failed,
        samples.violations.len(),
        lost.len(),
        started.elapsed(),
    );
    assert!(
        samples.violations.is_empty(),
        "{} reads moved a viewer backwards, e.g. {:?}",
        samples.violations.len(),
        &samples.violations[..samples.violations.len().min(5)]
    );
    assert!(
        lost.is_empty(),
        "{} last ticks not stored, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// How long a viewer dropped by a node's shutdown may take to get a new
/// hello: the longest single reconnect wait plus a margin for a second attempt
/// and a busy two-core machine (three debug servers, 500 sessions).
const REJOIN_BOUND: Duration = RECONNECT_BACKOFF_MAX.saturating_add(Duration::from_secs(5));

/// How long before its SIGTERM a tick may have been sent and still not be
/// written by the shutdown: a shutdown writes what the sessions have read, and
/// a busy session may not have read a tick that arrived just before the signal.
const SHUTDOWN_READ_LAG: Duration = Duration::from_millis(250);

/// (3) A rolling restart: each node in turn gets SIGTERM and starts again
/// (on its old port when it is still free) while 500 sessions play. Nothing is
/// lost, nothing moves backwards, and every dropped viewer is back within
/// [`REJOIN_BOUND`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started = Instant::now();
    let prefix = "rolling";
    let mut cluster = Cluster::start(3, FLUSH, &[]).await;
    let viewers = Viewers::start(&cluster.directory, prefix, SESSIONS, MOVIE);
    viewers
        .wait_for_all("every viewer has two positions saved", |_, b| {
            b.saved_count >= 2
        })
        .await;
    let sampler = ReadSampler::start(
        &cluster.directory,
        &viewers,
        sampled_viewers(),
        MOVIE,
        SAMPLER_WORKERS,
        SAMPLER_PERIOD,
    );
    let mut same_ports = 0;
    let mut terminated_at = Vec::new();
    for node in 0..cluster.len() {
        sampler.wait_for_reads(SAMPLES_PER_PHASE / 2).await;
        let before = viewers.books();
        terminated_at.push(Instant::now());
        let (status, log) = cluster.terminate(node).await;
        assert!(
            status.success(),
            "node {} exit status {status}\n{log}",
            node + 1
        );
        assert!(
            log.contains("every session finished"),
            "node {} finished its sessions' writes\n{log}",
            node + 1
        );
        same_ports += usize::from(cluster.restart(node).await);
        viewers
            .wait_for_all(
                &format!(
                    "every viewer of node {} is back with its latest position saved",
                    node + 1
                ),
                |i, b| {
                    let dropped = before[i].node == Some(node);
                    let back = b.reconnects.len() > before[i].reconnects.len() && b.node.is_some();
                    !dropped
                        || (back
                            && b.reconnects
                                .last()
                                .is_some_and(|r| b.last_saved >= Some(r.latest)))
                },
            )
            .await;
    }
    sampler.wait_for_reads(SAMPLES_PER_PHASE / 2).await;
    let samples = sampler.finish().await;
    let books = viewers.close_all().await;
    assert_clean_ends(&books, prefix);

    let mut rejoin_max = Duration::ZERO;
    let mut rejoins = 0;
    let mut hellos_behind = 0;
    let mut unread_before_sigterm = Duration::ZERO;
    for (i, book) in books.iter().enumerate() {
        assert_eq!(
            book.reconnects.len(),
            book.drops as usize,
            "{prefix}-{i}: every dropped socket was followed by a new hello"
        );
        for reconnect in &book.reconnects {
            rejoins += 1;
            rejoin_max = rejoin_max.max(reconnect.after);
            assert!(
                reconnect.after <= REJOIN_BOUND,
                "{prefix}-{i} was back on node {} only after {:?}",
                reconnect.node + 1,
                reconnect.after
            );
            assert!(
                reconnect
                    .saved
                    .is_none_or(|saved| reconnect.resume >= saved),
                "{prefix}-{i}: a restart lost a saved position: {reconnect:?}"
            );
            assert!(
                reconnect.resume <= reconnect.latest,
                "{prefix}-{i}: {reconnect:?}"
            );
            // A shutdown writes every position its sessions have read. Ticks
            // the server had not read when SIGTERM came (sent just before it,
            // or after) may be missing from the hello; the viewer resends them.
            if reconnect.resume < reconnect.latest {
                hellos_behind += 1;
                let first_missing = reconnect.resume + TICK_STEP_SECONDS;
                let sent_at = book.sent_at(first_missing).unwrap_or_else(|| {
                    panic!("{prefix}-{i}: tick {first_missing} not in the history")
                });
                let before_sigterm =
                    terminated_at[reconnect.from].saturating_duration_since(sent_at);
                unread_before_sigterm = unread_before_sigterm.max(before_sigterm);
                assert!(
                    before_sigterm <= SHUTDOWN_READ_LAG,
                    "{prefix}-{i}: node {} did not write tick {first_missing}, sent {before_sigterm:?} \
                     before its SIGTERM: {reconnect:?}",
                    reconnect.from + 1
                );
            }
        }
    }
    let lost = positions_lost(&cluster, &books, prefix).await;
    eprintln!(
        "cluster rolling restart: {rejoins} rejoins, max {rejoin_max:?} (bound {REJOIN_BOUND:?}); \
         {same_ports} of 3 nodes back on their old port; {hellos_behind} hellos behind the \
         latest tick (resent), the oldest unwritten tick sent {unread_before_sigterm:?} before \
         SIGTERM; {} reads sampled ({} failed), {} backwards; {} positions lost; {:?} in all",
        samples.reads,
        samples.failed,
        samples.violations.len(),
        lost.len(),
        started.elapsed(),
    );
    assert!(
        rejoins >= SESSIONS,
        "every viewer moved at least once: {rejoins}"
    );
    assert!(
        samples.violations.is_empty(),
        "{} reads moved a viewer backwards, e.g. {:?}",
        samples.violations.len(),
        &samples.violations[..samples.violations.len().min(5)]
    );
    assert!(
        lost.is_empty(),
        "{} positions lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// How long the store stays away in the outage tests. Shorter than the ~20 s
/// of a real incident to keep CI fast, and long enough for what matters:
/// far beyond every timeout in play (a 500 ms Cassandra request timeout here,
/// the store's four attempts per write, the readiness probe), several ticks
/// per viewer received while nothing can be written, and a session retry
/// backoff that grows to its 8 s cap (250 ms doubling: 0.25 + 0.5 + 1 + 2 + 4
/// = 7.75 s), so recovery waits out the longest retry step.
const OUTAGE: Duration = Duration::from_secs(8);

/// (4) The store goes away (`mode`) for [`OUTAGE`] under 300 playing sessions:
/// every node stays up, readiness follows the store, sessions stay open and
/// keep their positions, and once the store is back every latest position is
/// written without the players doing anything.
async fn the_store_goes_away(mode: &str) {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started = Instant::now();
    let prefix = format!("away-{mode}");
    // The store's session renewal (a fresh driver session after a while
    // without a connected node) scaled down with the outage, as the request
    // timeout is.
    let cluster = Cluster::start(
        3,
        FLUSH,
        &[
            ("RESUME_CASSANDRA_REQUEST_TIMEOUT_MS", "500"),
            ("RESUME_CASSANDRA_RENEW_SESSION_AFTER_MS", "3000"),
            ("RESUME_CASSANDRA_CONNECT_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    let viewers = Viewers::start(&cluster.directory, &prefix, OUTAGE_SESSIONS, MOVIE);
    viewers
        .wait_for_all("every viewer has two positions saved", |_, b| {
            b.saved_count >= 2
        })
        .await;
    for node in 0..cluster.len() {
        assert_eq!(
            cluster.readyz(node).await,
            Some(200),
            "node {} ready",
            node + 1
        );
    }

    cluster.store.set_mode(mode).await;
    let away_since = Instant::now();
    for node in 0..cluster.len() {
        wait_for_readiness(&cluster, node, 503).await;
    }
    // Players keep playing; every node stays alive throughout.
    let mut probe = tokio::time::interval(Duration::from_millis(250));
    probe.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while away_since.elapsed() < OUTAGE {
        probe.tick().await;
        for node in 0..cluster.len() {
            assert_eq!(
                cluster.healthz(node).await,
                Some(200),
                "node {} stays up while the store is {mode}",
                node + 1
            );
        }
    }
    viewers.hold().await;
    let held = viewers.books();
    assert!(
        held.iter().all(|b| b.drops == 0 && b.node.is_some()),
        "every session stayed open"
    );
    assert!(
        held.iter().any(|b| b.last_saved < b.last_sent()),
        "the outage left positions unwritten"
    );
    // Each session holds its latest position: the node holding it answers
    // from it while the store cannot.
    stream::iter(held.iter().enumerate())
        .for_each_concurrent(50, |(i, book)| {
            let user = viewers.user(i).to_owned();
            let cluster = &cluster;
            async move {
                let node = book.node.expect("connected");
                let latest = book.last_sent().expect("ticked");
                wait_for_read(cluster, node, &user, latest).await;
            }
        })
        .await;
    // A node without the session has nothing to answer from.
    let holder = held[0].node.expect("connected");
    assert_eq!(
        cluster
            .position(another_node(&cluster, holder), viewers.user(0), MOVIE)
            .await,
        PositionRead::Status(503),
        "a read on a node without the session while the store is {mode}"
    );
    let outage = away_since.elapsed();

    cluster.store.set_mode("normal").await;
    let back_at = Instant::now();
    for node in 0..cluster.len() {
        wait_for_readiness(&cluster, node, 200).await;
    }
    let ready_after = back_at.elapsed();
    viewers
        .wait_for_all("every latest position is written", |_, b| {
            b.last_saved == b.last_sent()
        })
        .await;
    let written_after = back_at.elapsed();
    let mut failed_writes = 0.0;
    for node in 0..cluster.len() {
        failed_writes += cluster
            .metric(node, "resume_store_writes_total", "outcome=\"Failed\"")
            .await;
    }
    let books = viewers.close_all().await;
    assert_clean_ends(&books, &prefix);
    assert!(books.iter().all(|b| b.drops == 0), "no session dropped");
    let lost = positions_lost(&cluster, &books, &prefix).await;
    eprintln!(
        "cluster store {mode}: {OUTAGE_SESSIONS} sessions through {outage:?} away, \
         {failed_writes} failed writes; ready {ready_after:?} and every latest position \
         written {written_after:?} after the store came back; {} positions lost; {:?} in all",
        lost.len(),
        started.elapsed(),
    );
    assert!(
        failed_writes > 0.0,
        "the outage reached the sessions' writes"
    );
    if mode == "unresponsive" {
        // What brought the nodes back (see an_unresponsive_store_loses_nothing).
        let mut renewed = 0.0;
        for node in 0..cluster.len() {
            renewed += cluster
                .metric(
                    node,
                    "resume_cassandra_session_renewals_total",
                    "outcome=\"renewed\"",
                )
                .await;
        }
        assert!(renewed > 0.0, "a node renewed its driver session");
    }
    assert!(
        lost.is_empty(),
        "{} positions lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// A store that swallows requests: the driver gives up its connection after
/// more than 1024 requests time out on it, and the connection that replaces it
/// waits forever on a setup request the store swallowed (the driver puts no
/// limit on setup). Only the store's session renewal brings the nodes back;
/// without it they answer `/readyz` 503 and write nothing after the store
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_store_loses_nothing() {
    the_store_goes_away("unresponsive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_loses_nothing() {
    the_store_goes_away("failing").await;
}

/// (6) A series across nodes: an episode finished through node 1 (the player
/// reports its end) is what node 2's continue watching moves on from, read
/// from the store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_episode_finished_on_one_node_offers_the_next_on_another() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(2, FLUSH, &[]).await;
    let user = "series-viewer";
    let mut session = Session::connect(cluster.addr(0), user, "night-shift-s1e1")
        .await
        .expect("upgrade");
    session.expect("hello").await;
    session.tick(5.0).await;
    // The end, reported below the completion threshold: only `ended` finishes it.
    session.tick_state(12.0, "ended").await;
    // Acknowledged once durable, so node 2 reads it at once.
    session.expect_saved(12.0).await;
    let items = cluster.continue_watching(1, user).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let up_next = &items[0];
    assert_eq!(up_next["movie_id"], "night-shift-s1e2", "{up_next}");
    assert_eq!(up_next["kind"], "up_next", "{up_next}");
    assert_eq!(up_next["position_seconds"], 0.0, "{up_next}");
    assert_eq!(up_next["series_id"], "night-shift", "{up_next}");
    assert!(close_cleanly(&mut session).await);
}
