//! The Cassandra / ScyllaDB backend of [`PositionStore`], through the `scylla` driver.
//!
//! Why it is shaped this way:
//! * **Last-write-wins is the database's.** Every position is
//!   `INSERT … USING TIMESTAMP <written_at_micros>`, so the cluster itself keeps
//!   the newest value per cell, whatever order writes arrive in and whichever
//!   replica they reach. That also makes every write idempotent: a write is
//!   retried ([`retry`]) with the *same* timestamp after a timeout, which the
//!   driver's default policy refuses to do for plain writes.
//! * **Deletes are soft tombstones readers can see.** A delete is the same
//!   timestamped `INSERT` of every column, with `deleted = true` (and position
//!   0), so reads report it with its timestamp ([`Stored::Deleted`]) instead of
//!   finding nothing, as a CQL `DELETE` would leave them. Every write writes
//!   every column, so a row is one write's cells; on a timestamp tie Cassandra
//!   keeps the larger value of each cell, so `deleted = true` beats `false` and
//!   the tombstone wins the tie, as in the embedded store. A row with
//!   `deleted = true` is a tombstone whatever its other cells say; a null
//!   `deleted` (a row written before the column existed) is a position.
//! * **The watched state is two more cells of the row** (`watched`,
//!   `last_completed_at_us`), written only by the puts that change it, in the
//!   same statement and under the same `USING TIMESTAMP`
//!   ([`Statements::insert_completed`], [`Statements::insert_unwatched`]).
//!   Every other write leaves them, and their timestamps, alone, so the
//!   cluster's per-cell last-write-wins keeps them apart from the position:
//!   rewatching or deleting a title leaves it watched. A null `watched` (never
//!   set, or a row from before the column) is not watched.
//! * **A put reads its key back to say whether it won.** The cluster's
//!   last-write-wins gives no answer on `INSERT`: a write older than the stored
//!   one "succeeds" and changes nothing. So after the write succeeds, `put`
//!   reads the row at the same consistency level. When reads and writes at that
//!   level overlap (R + W > RF: `local_quorum` for both, or a single replica),
//!   that read sees the write or something newer: the row is exactly our write
//!   ([`PutOutcome::Applied`]) or the winner that beat it
//!   ([`PutOutcome::Superseded`]). If the levels do not overlap (e.g. `one` with
//!   RF > 1) the read may miss the write; seeing nothing newer, the put reports
//!   `Applied`. The cost is one read per write, on the same replicas.
//! * **Bounded requests in flight.** A semaphore
//!   (`--cassandra-max-writes-in-flight`) caps the puts and deletes talking to
//!   the cluster, a put's read-back included, so a slow cluster makes writers
//!   wait instead of piling up requests. A writer lets its slot go while it
//!   backs off between attempts, and waits for one at most
//!   `--cassandra-write-slot-timeout-ms`, then fails as unavailable (its
//!   session retries later).
//! * **One retry layer per failure** ([`retry`]): the driver retries what its
//!   default policy covers (overload, server errors, broken connections: on the
//!   next node), the store only write timeouts and client-side timeouts, the
//!   session everything else with its own backoff.
//! * **Each request kind has its profile** ([`profiles`]): client timeouts
//!   above the server's, read and write consistency, speculative execution for
//!   the stream-start `get`, LZ4 frames.
//! * **Observable.** Every operation is timed and its failures counted by kind,
//!   next to the driver's own metrics ([`metrics`]); `check_health` needs a
//!   connected node in the local datacenter ([`readiness`]) and an answer.
//! * **A stuck driver session is replaced.** When no usable node has been
//!   connected for `--cassandra-renew-session-after-ms`, the store opens a
//!   fresh session beside the old one and swaps it in ([`renewal`]): the
//!   driver's pool does not recover by itself from a node that swallowed its
//!   connection setup.
//! * **Prepared, token-aware statements only.** Each statement binds the partition
//!   key (`user_id`), so the driver sends it straight to a replica.
//! * **The schema is checked, not guessed.** `connect` prepares every statement;
//!   a missing table fails start-up with a message that says how to create it
//!   ([`apply_schema`] / `--init-schema`), and a table that lacks a column of
//!   `schema.cql` with the same advice (`schema apply` adds missing columns)
//!   and the `ALTER TABLE`s it would run.
//!
//! This module knows nothing of HTTP or sessions; the schema text lives in
//! `schema.cql` ([`schema`]) and the statement text in [`statements`].

pub mod metrics;
pub mod profiles;
pub mod readiness;
pub mod renewal;
pub mod retry;
pub mod schema;
pub mod settings;
pub mod statements;
pub mod tls;
pub mod topology;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use futures_util::StreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{Semaphore, SemaphorePermit};

pub use schema::{SCHEMA_CQL, apply_schema, schema_statements, schema_statements_of};
pub use settings::CassandraSettings;
pub use statements::Statements;

use super::{
    PositionStore, PositionWrite, PutOutcome, SavedPosition, StoreError, Stored, WatchedChange,
    WatchedState,
};
use metrics::{Operation, OperationTimer, RenewalOutcome, StoreMetrics};
use profiles::Profiles;
use renewal::RenewalRule;
use retry::{FailureKind, backoff_delay, failure_kind, store_error, store_retries};

/// The Cassandra-backed [`PositionStore`].
pub struct CassandraStore {
    /// The session in use; replaced as a whole when it is renewed.
    link: Arc<ArcSwap<Link>>,
    /// When and how to replace `link`; `None` when renewal is off.
    renewal: Option<SessionRenewal>,
    /// One permit per put or delete talking to the cluster (a read-back keeps
    /// its write's; a writer backing off between attempts lets its go).
    write_slots: Semaphore,
    /// Longest a writer waits for a permit of `write_slots`.
    write_slot_timeout: Duration,
    /// Datacenter the driver sends requests to; `check_health` needs a
    /// connected node there (any node when `None`).
    local_dc: Option<String>,
    /// Latency, failures and retries of each operation; the driver's metrics.
    metrics: StoreMetrics,
    /// `USING TTL` of every write, in seconds (0: rows never expire).
    ttl_seconds: i32,
    /// Why the keyspace's replication is risky, if it is (see [`topology`]).
    replication_warning: Option<String>,
    /// Attempts per write, the first included; a put's read-back gets as many.
    write_attempts: u32,
    /// Backoff before the first retry.
    retry_base_delay: Duration,
    /// Longest backoff between attempts.
    retry_max_delay: Duration,
}

/// What talks to the cluster: a driver session and the statements prepared
/// on it. Each request takes the one in use when it starts.
struct Link {
    /// The driver session: connection pools to every node, cluster metadata.
    session: Session,
    /// The prepared data statements (see [`Statements`]).
    prepared: PreparedStatements,
    /// `put`'s read-back: `select_one` with the plain read profile (no
    /// speculative execution).
    read_back: PreparedStatement,
}

/// The store's side of [`renewal`]: the rule, and what a new session needs.
struct SessionRenewal {
    /// Fed by every health check.
    rule: Mutex<RenewalRule>,
    /// Set while a new session is being opened: one at a time.
    in_progress: Arc<AtomicBool>,
    /// The settings the store connected with.
    settings: CassandraSettings,
}

/// The statements of [`Statements`], prepared once per session; all idempotent.
struct PreparedStatements {
    /// `put`: timestamped upsert of one position.
    insert: PreparedStatement,
    /// `put` of a position that completes the title.
    insert_completed: PreparedStatement,
    /// `put` of a position that marks the title unwatched.
    insert_unwatched: PreparedStatement,
    /// `delete`: timestamped upsert of a soft tombstone.
    delete: PreparedStatement,
    /// `get`: one title of one viewer (the stream-start profile).
    select_one: PreparedStatement,
    /// `list`: a viewer's partition.
    select_user: PreparedStatement,
    /// `check_health`: a coordinator-local query.
    health: PreparedStatement,
}

impl CassandraStore {
    /// Connects to the cluster and prepares every statement.
    ///
    /// Fails with [`StoreError::Unavailable`] when no node answers in time, with
    /// [`StoreError::Backend`] naming `resume-server schema apply` when the
    /// keyspace or table does not exist, and naming the `ALTER TABLE` to run
    /// when the table lacks a column of `schema.cql`.
    pub async fn connect(settings: &CassandraSettings) -> Result<CassandraStore, StoreError> {
        let deadline = settings.connect_timeout;
        tokio::time::timeout(deadline, Self::connect_unbounded(settings))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "no answer from Cassandra at {} within {deadline:?}",
                    settings.nodes.join(",")
                ))
            })?
    }

    async fn connect_unbounded(settings: &CassandraSettings) -> Result<CassandraStore, StoreError> {
        let session = open_session(settings, Some(&settings.keyspace)).await?;
        let replication_warning = topology::check(&session, settings)?;
        let link = Link::prepare(session, settings).await?;
        tracing::info!(nodes = %settings.nodes.join(","), keyspace = %settings.keyspace, "connected to Cassandra");
        Ok(CassandraStore {
            link: Arc::new(ArcSwap::from_pointee(link)),
            renewal: settings.renew_session_after.map(|after| SessionRenewal {
                rule: Mutex::new(RenewalRule::new(after)),
                in_progress: Arc::new(AtomicBool::new(false)),
                settings: settings.clone(),
            }),
            write_slots: Semaphore::new(settings.max_writes_in_flight),
            write_slot_timeout: settings.requests.write_slot_timeout,
            local_dc: settings.local_dc.clone(),
            metrics: StoreMetrics::default(),
            ttl_seconds: settings.position_ttl_seconds,
            replication_warning,
            write_attempts: settings.write_attempts.max(1),
            retry_base_delay: settings.retry_base_delay,
            retry_max_delay: settings.retry_max_delay,
        })
    }

    /// Feeds the renewal rule one observation; when it says so, opens a new
    /// session in the background (one at a time, bounded by the connect
    /// timeout) and swaps it in once it is ready.
    fn consider_renewal(&self, connected: bool) {
        let Some(renewal) = &self.renewal else {
            return;
        };
        let due = renewal
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(connected, Instant::now());
        if !due || renewal.in_progress.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(
            after = ?renewal.settings.renew_session_after,
            "no usable Cassandra node connected for that long: opening a new driver session"
        );
        let link = Arc::clone(&self.link);
        let in_progress = Arc::clone(&renewal.in_progress);
        let settings = renewal.settings.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let opened = tokio::time::timeout(settings.connect_timeout, async {
                let session = open_session(&settings, Some(&settings.keyspace)).await?;
                Link::prepare(session, &settings).await
            })
            .await;
            match opened {
                Ok(Ok(fresh)) => {
                    link.store(Arc::new(fresh));
                    metrics.session_renewal(RenewalOutcome::Renewed);
                    tracing::info!("a new Cassandra driver session is in use");
                }
                Ok(Err(error)) => {
                    metrics.session_renewal(RenewalOutcome::Failed);
                    tracing::warn!(%error, "could not open a new Cassandra driver session; keeping the old one");
                }
                Err(_) => {
                    metrics.session_renewal(RenewalOutcome::Failed);
                    tracing::warn!(timeout = ?settings.connect_timeout, "no new Cassandra driver session in time; keeping the old one");
                }
            }
            in_progress.store(false, Ordering::Release);
        });
    }
}

impl Link {
    /// Prepares every statement on `session`.
    async fn prepare(session: Session, settings: &CassandraSettings) -> Result<Link, StoreError> {
        let text = Statements::for_keyspace(&settings.keyspace);
        let prepared = PreparedStatements {
            insert: prepare(&session, &text.insert, settings).await?,
            insert_completed: prepare(&session, &text.insert_completed, settings).await?,
            insert_unwatched: prepare(&session, &text.insert_unwatched, settings).await?,
            delete: prepare(&session, &text.delete, settings).await?,
            select_one: prepare(&session, &text.select_one, settings).await?,
            select_user: {
                let mut statement = prepare(&session, &text.select_user, settings).await?;
                statement.set_page_size(settings.page_size);
                statement
            },
            health: prepare(&session, &text.health, settings).await?,
        };
        let profiles = Profiles::derive(
            session.get_default_execution_profile_handle(),
            &settings.requests,
        );
        let (prepared, read_back) = prepared.with_profiles(&profiles);
        for statement in [
            &prepared.insert,
            &prepared.insert_completed,
            &prepared.insert_unwatched,
            &prepared.delete,
            &prepared.select_one,
            &prepared.select_user,
        ] {
            if !statement.is_token_aware() {
                tracing::warn!(
                    statement = statement.get_statement(),
                    "statement is not token-aware; requests will go through a coordinator hop"
                );
            }
        }
        Ok(Link {
            session,
            prepared,
            read_back,
        })
    }
}

impl CassandraStore {
    /// Why the keyspace's replication is risky (SimpleStrategy, or fewer than
    /// three replicas), as found at connect; `None` when it is not.
    pub fn replication_warning(&self) -> Option<&str> {
        self.replication_warning.as_deref()
    }

    /// Waits for a free write slot, at most `write_slot_timeout`: a writer that
    /// finds every slot taken for that long fails as unavailable (its session
    /// backs off and tries again) instead of queueing without bound.
    async fn write_slot(
        &self,
        timer: &OperationTimer<'_>,
    ) -> Result<SemaphorePermit<'_>, StoreError> {
        if let Ok(slot) = self.write_slots.try_acquire() {
            return Ok(slot);
        }
        let _waiting = self.metrics.waiting_for_slot();
        match tokio::time::timeout(self.write_slot_timeout, self.write_slots.acquire()).await {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_closed)) => Err(StoreError::Closed),
            Err(_) => {
                self.metrics.slot_timed_out();
                timer.failed(FailureKind::Overloaded);
                Err(StoreError::Unavailable(format!(
                    "no Cassandra write slot free within {:?}: every one of them is busy",
                    self.write_slot_timeout
                )))
            }
        }
    }

    /// Runs one idempotent statement of a write with a write slot in `slot`
    /// (taken first if empty), making another attempt with the same values
    /// (hence, for a write, the same `USING TIMESTAMP`) after the failures the
    /// store retries ([`store_retries`]). The slot is let go while it backs off,
    /// so that a writer waiting out a timeout does not hold back the others.
    async fn run_with_retries<'s>(
        &'s self,
        what: &str,
        timer: &OperationTimer<'_>,
        slot: &mut Option<SemaphorePermit<'s>>,
        statement: fn(&Link) -> &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        let mut retry = 0;
        loop {
            if slot.is_none() {
                *slot = Some(self.write_slot(timer).await?);
            }
            // Each attempt on the session in use now (a renewal may have
            // replaced the one that failed).
            let link = self.link.load_full();
            match link
                .session
                .execute_unpaged(statement(&link), &values)
                .await
            {
                Ok(result) => return Ok(result),
                Err(error) if store_retries(&error) && retry + 1 < self.write_attempts => {
                    retry += 1;
                    *slot = None;
                    self.metrics.retried(timer.op());
                    let delay = backoff_delay(retry, self.retry_base_delay, self.retry_max_delay);
                    tracing::warn!(%error, retry, ?delay, "{what} failed; retrying with the same values");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    timer.failed(failure_kind(&error));
                    return Err(store_error(what, &error));
                }
            }
        }
    }

    /// Runs one read once: the driver's policy retries it where that helps.
    async fn read(
        &self,
        what: &str,
        timer: &OperationTimer<'_>,
        statement: fn(&Link) -> &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        let link = self.link.load_full();
        link.session
            .execute_unpaged(statement(&link), values)
            .await
            .map_err(|error| {
                timer.failed(failure_kind(&error));
                store_error(what, &error)
            })
    }
}

impl PreparedStatements {
    /// The statements with their execution profiles, and a copy of
    /// `select_one` for a put's read-back, which must not speculate.
    fn with_profiles(mut self, profiles: &Profiles) -> (Self, PreparedStatement) {
        let mut read_back = self.select_one.clone();
        read_back.set_execution_profile_handle(Some(profiles.read.clone()));
        for write in [
            &mut self.insert,
            &mut self.insert_completed,
            &mut self.insert_unwatched,
        ] {
            write.set_execution_profile_handle(Some(profiles.write.clone()));
        }
        self.delete
            .set_execution_profile_handle(Some(profiles.write.clone()));
        self.select_one
            .set_execution_profile_handle(Some(profiles.stream_start.clone()));
        self.select_user
            .set_execution_profile_handle(Some(profiles.read.clone()));
        self.health
            .set_execution_profile_handle(Some(profiles.health.clone()));
        (self, read_back)
    }
}

#[async_trait]
impl PositionStore for CassandraStore {
    async fn put(&self, write: PositionWrite) -> Result<PutOutcome, StoreError> {
        let timer = self.metrics.time(Operation::Put);
        let position_ms = i64::try_from(write.position_ms).map_err(|_| {
            StoreError::Backend(format!(
                "position {} ms does not fit a bigint",
                write.position_ms
            ))
        })?;
        let at = write.written_at_micros;
        let mut slot = None;
        let (user, movie, ttl) = (&write.user_id, &write.movie_id, self.ttl_seconds);
        if write.watched == WatchedChange::Completed {
            // The completion is stamped with the write's own timestamp.
            let values = (user, movie, position_ms, at, at, at, ttl);
            let statement: fn(&Link) -> &PreparedStatement = |link| &link.prepared.insert_completed;
            self.run_with_retries("put", &timer, &mut slot, statement, values)
                .await?;
        } else {
            let statement: fn(&Link) -> &PreparedStatement = match write.watched {
                WatchedChange::Unwatched => |link| &link.prepared.insert_unwatched,
                _ => |link| &link.prepared.insert,
            };
            let values = (user, movie, position_ms, at, at, ttl);
            self.run_with_retries("put", &timer, &mut slot, statement, values)
                .await?;
        }
        // The write landed; only the row can say whether it won (see the module
        // docs). The read-back keeps the write's slot: it is part of the write.
        let result = self
            .run_with_retries(
                "put read-back",
                &timer,
                &mut slot,
                |link| &link.read_back,
                (&write.user_id, &write.movie_id),
            )
            .await?;
        let stored = one_row(&write.movie_id, result)?;
        timer.succeeded();
        Ok(put_outcome(&write, stored))
    }

    async fn delete(
        &self,
        user_id: &str,
        movie_id: &str,
        written_at_micros: i64,
    ) -> Result<(), StoreError> {
        let timer = self.metrics.time(Operation::Delete);
        let mut slot = None;
        self.run_with_retries(
            "delete",
            &timer,
            &mut slot,
            |link| &link.prepared.delete,
            (
                user_id,
                movie_id,
                written_at_micros,
                written_at_micros,
                self.ttl_seconds,
            ),
        )
        .await?;
        timer.succeeded();
        Ok(())
    }

    async fn get(&self, user_id: &str, movie_id: &str) -> Result<Option<Stored>, StoreError> {
        let timer = self.metrics.time(Operation::Get);
        let result = self
            .read(
                "get",
                &timer,
                |link| &link.prepared.select_one,
                (user_id, movie_id),
            )
            .await?;
        let stored = one_row(movie_id, result)?;
        timer.succeeded();
        Ok(stored)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<Stored>, StoreError> {
        // Paged (`--cassandra-page-size` rows per request): a viewer's partition
        // holds every title they touched within the TTL, and a catalog can be
        // large, so no single response has to carry all of it.
        let timer = self.metrics.time(Operation::List);
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("list: {e}"));
        let link = self.link.load_full();
        let pager = link
            .session
            .execute_iter(link.prepared.select_user.clone(), (user_id,))
            .await
            .inspect_err(|e| timer.failed(retry::pager_failure_kind(e)))
            .map_err(|e| unavailable(&e))?;
        let mut rows = pager
            .rows_stream::<(
                String,
                Option<i64>,
                Option<i64>,
                Option<bool>,
                Option<bool>,
                Option<i64>,
            )>()
            .map_err(decode_error)?;
        let mut stored = Vec::new();
        while let Some(row) = rows.next().await {
            let (movie_id, position_ms, updated_at, deleted, watched, last_completed) = row
                .inspect_err(|e| timer.failed(retry::row_failure_kind(e)))
                .map_err(|e| unavailable(&e))?;
            let cells = (position_ms, updated_at, deleted, watched, last_completed);
            stored.extend(stored_from_cells(movie_id, cells));
        }
        timer.succeeded();
        Ok(stored)
    }

    /// Ready to serve: a node of the local datacenter (any node without one)
    /// is connected, and the health query is answered in time.
    async fn check_health(&self) -> Result<(), StoreError> {
        let timer = self.metrics.time(Operation::Health);
        let link = self.link.load_full();
        let connected = readiness::require_connected_node(&link.session, self.local_dc.as_deref());
        self.consider_renewal(connected.is_ok());
        connected.inspect_err(|_| timer.failed(FailureKind::Unavailable))?;
        link.session
            .execute_unpaged(&link.prepared.health, ())
            .await
            .map_err(|error| {
                timer.failed(failure_kind(&error));
                StoreError::Unavailable(format!("health check: {error}"))
            })?;
        timer.succeeded();
        Ok(())
    }

    fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let link = Arc::clone(&self.link);
        self.metrics.register(
            registry,
            Box::new(move || link.load().session.get_metrics()),
        );
        let unsafe_replication = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        unsafe_replication.set(i64::from(self.replication_warning.is_some()));
        registry.register(
            "cassandra_replication_unsafe",
            "1 when the keyspace uses SimpleStrategy or fewer than 3 replicas in the local \
             datacenter (found at connect; the log says which)",
            unsafe_replication,
        );
    }
}

/// The row of a `select_one` result, as the trait reports it.
fn one_row(movie_id: &str, result: QueryResult) -> Result<Option<Stored>, StoreError> {
    let rows = result.into_rows_result().map_err(decode_error)?;
    let row = rows.maybe_first_row::<RowCells>().map_err(decode_error)?;
    Ok(row.and_then(|cells| stored_from_cells(movie_id.to_owned(), cells)))
}

/// A row's cells after its key, in the order every select names them:
/// `position_ms, updated_at_us, deleted, watched, last_completed_at_us`.
type RowCells = (
    Option<i64>,
    Option<i64>,
    Option<bool>,
    Option<bool>,
    Option<i64>,
);

/// A row as the trait reports it (see [`stored_row`]).
fn stored_from_cells(movie_id: String, cells: RowCells) -> Option<Stored> {
    let (position_ms, updated_at, deleted, watched, last_completed) = cells;
    let watched = watched_state(watched, last_completed);
    stored_row(movie_id, position_ms, updated_at, deleted, watched)
}

/// The watched cells of a row: a null `watched` (never set, or a row from
/// before the column) is not watched.
fn watched_state(watched: Option<bool>, last_completed_at_us: Option<i64>) -> WatchedState {
    WatchedState {
        watched: watched.unwrap_or(false),
        last_completed_at_micros: last_completed_at_us,
    }
}

/// What a put that wrote `write` and then read `stored` back reports: applied
/// when the row is exactly the write, superseded by a row that beat it (newer,
/// or a tombstone or larger position at the same timestamp).
///
/// A read that shows nothing, or something older than the write, missed it,
/// which only consistency levels whose reads and writes need not overlap allow;
/// nothing newer was seen, so the write counts as applied.
fn put_outcome(write: &PositionWrite, stored: Option<Stored>) -> PutOutcome {
    match stored {
        Some(Stored::Position(saved))
            if saved.updated_at_micros == write.written_at_micros
                && saved.position_ms == write.position_ms =>
        {
            PutOutcome::Applied
        }
        Some(winner) if winner.timestamp_micros() >= write.written_at_micros => {
            PutOutcome::Superseded(winner)
        }
        missed => {
            tracing::debug!(
                movie_id = %write.movie_id,
                read = ?missed,
                "put read-back did not see the write (reads and writes at this consistency need not overlap)"
            );
            PutOutcome::Applied
        }
    }
}

/// A stored row as the trait reports it, or `None` (logged) when the row cannot
/// be read as one. `deleted = true` makes a tombstone whatever the position
/// cell holds; a null `deleted` (a row from before the column) is a position.
fn stored_row(
    movie_id: String,
    position_ms: Option<i64>,
    updated_at: Option<i64>,
    deleted: Option<bool>,
    watched: WatchedState,
) -> Option<Stored> {
    match (deleted, updated_at) {
        (Some(true), Some(deleted_at_micros)) => Some(Stored::Deleted {
            movie_id,
            deleted_at_micros,
            watched,
        }),
        (Some(true), None) => {
            tracing::warn!(%movie_id, "skipping a damaged playback_position tombstone (no updated_at_us)");
            None
        }
        (Some(false) | None, _) => {
            saved_position(movie_id, position_ms, updated_at, watched).map(Stored::Position)
        }
    }
}

/// A stored row as a position, or `None` (logged) when the row cannot be one:
/// a null or negative position is damaged data and must not reach a player.
fn saved_position(
    movie_id: String,
    position_ms: Option<i64>,
    updated_at: Option<i64>,
    watched: WatchedState,
) -> Option<SavedPosition> {
    match (position_ms.map(u64::try_from), updated_at) {
        (Some(Ok(position_ms)), Some(updated_at_micros)) => Some(SavedPosition {
            movie_id,
            position_ms,
            updated_at_micros,
            watched,
        }),
        _ => {
            tracing::warn!(%movie_id, ?position_ms, ?updated_at, "skipping a damaged playback_position row");
            None
        }
    }
}

fn decode_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unexpected result from Cassandra: {error}"))
}

/// Opens a driver session with the settings' consistency, timeout, credentials
/// and load balancing. With `metadata_keyspace`, the driver also reads the
/// minimal schema of that keyspace (replication, table names), which token-aware
/// routing needs; without, it reads no schema at all.
pub async fn open_session(
    settings: &CassandraSettings,
    metadata_keyspace: Option<&str>,
) -> Result<Session, StoreError> {
    tokio::time::timeout(
        settings.connect_timeout,
        build_session(settings, metadata_keyspace),
    )
    .await
    .map_err(|_| {
        StoreError::Unavailable(format!(
            "no answer from Cassandra at {} within {:?}",
            settings.nodes.join(","),
            settings.connect_timeout
        ))
    })?
}

async fn build_session(
    settings: &CassandraSettings,
    metadata_keyspace: Option<&str>,
) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    match (&settings.local_dc, &settings.local_rack) {
        (Some(dc), Some(rack)) => {
            policy = policy.prefer_datacenter_and_rack(dc.clone(), rack.clone());
        }
        (Some(dc), None) => policy = policy.prefer_datacenter(dc.clone()),
        _ => {}
    }
    let profile = settings.requests.session_default(policy.build());
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.nodes)
        .compression(settings.requests.compression)
        .default_execution_profile_handle(profile.into_handle())
        .fetch_schema_metadata(metadata_keyspace.is_some())
        .fetch_full_schema_metadata(false);
    if let Some(keyspace) = metadata_keyspace {
        builder = builder.keyspaces_to_fetch([keyspace]);
    }
    if let Some((user, password)) = &settings.credentials {
        builder = builder.user(user, password.expose());
    }
    if let Some(tls) = &settings.tls {
        builder = builder.tls_context(Some(tls.client_config()));
    }
    builder
        .build()
        .await
        .map_err(|e| tls::connect_error(settings, &e.to_string()))
}

/// Prepares one statement as idempotent; a statement the cluster rejects for
/// its schema becomes an error that says what to run.
async fn prepare(
    session: &Session,
    text: &str,
    settings: &CassandraSettings,
) -> Result<PreparedStatement, StoreError> {
    match session.prepare(text).await {
        Ok(mut statement) => {
            statement.set_is_idempotent(true);
            Ok(statement)
        }
        Err(PrepareError::AllAttemptsFailed {
            first_attempt:
                RequestAttemptError::DbError(DbError::Invalid | DbError::SyntaxError, message),
        }) => Err(StoreError::Backend(
            schema_mismatch(session, settings, text, &message).await,
        )),
        // Anything else is the cluster not answering (pools down, timeouts).
        Err(e) => Err(StoreError::Unavailable(format!("preparing `{text}`: {e}"))),
    }
}

/// Why the cluster rejected `text`, and what to run about it. A table that
/// exists but lacks columns of `schema.cql` gets the `ALTER TABLE`s that add
/// them; the rest is told from the cluster's message.
async fn schema_mismatch(
    session: &Session,
    settings: &CassandraSettings,
    text: &str,
    message: &str,
) -> String {
    let table = format!("{}.{}", settings.keyspace, statements::TABLE);
    match schema::existing_columns(session, &settings.keyspace).await {
        Ok(existing) => {
            if let Some(fixes) = schema::missing_column_statements(&settings.keyspace, &existing) {
                let fixes: Vec<String> = fixes.iter().map(|fix| format!("`{fix}`")).collect();
                return format!(
                    "table {table} is older than schema.cql: run `resume-server schema apply` \
                     (it adds the missing columns) or {} yourself, and start again (the \
                     cluster rejected `{text}`: {message})",
                    fixes.join(", then ")
                );
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot list the table's columns; reporting the cluster's message only");
        }
    }
    schema_mismatch_message(settings, text, message)
}

fn schema_mismatch_message(settings: &CassandraSettings, text: &str, message: &str) -> String {
    let table = format!("{}.{}", settings.keyspace, statements::TABLE);
    let lower = message.to_ascii_lowercase();
    if lower.contains("unconfigured table")
        || lower.contains("does not exist")
        || lower.contains("keyspace")
    {
        format!(
            "table {table} does not exist ({message}); create it with `resume-server schema apply` \
             or start the server with `--init-schema`"
        )
    } else {
        format!(
            "table {table} does not match schema.cql: the cluster rejected `{text}` ({message}); \
             compare the table with schema.cql (`resume-server schema apply` creates what is missing \
             and adds missing columns, but changes no existing one)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000;

    fn write(position_ms: u64, at: i64) -> PositionWrite {
        PositionWrite {
            user_id: "alice".into(),
            movie_id: "inception".into(),
            position_ms,
            written_at_micros: at,
            watched: WatchedChange::Unchanged,
        }
    }

    fn position(position_ms: u64, at: i64) -> Stored {
        Stored::Position(SavedPosition {
            movie_id: "inception".into(),
            position_ms,
            updated_at_micros: at,
            watched: WatchedState::default(),
        })
    }

    fn tombstone(at: i64) -> Stored {
        Stored::Deleted {
            movie_id: "inception".into(),
            deleted_at_micros: at,
            watched: WatchedState::default(),
        }
    }

    #[test]
    fn a_put_is_applied_only_when_the_row_is_exactly_the_write() {
        let ours = write(1_000, T0);
        let cases = [
            (Some(position(1_000, T0)), PutOutcome::Applied),
            (
                Some(position(1_000, T0 + 1)),
                PutOutcome::Superseded(position(1_000, T0 + 1)),
            ),
            (
                Some(tombstone(T0 + 1)),
                PutOutcome::Superseded(tombstone(T0 + 1)),
            ),
            // Ties: the tombstone and the larger position win.
            (Some(tombstone(T0)), PutOutcome::Superseded(tombstone(T0))),
            (
                Some(position(2_000, T0)),
                PutOutcome::Superseded(position(2_000, T0)),
            ),
            // A read that missed the write saw nothing newer.
            (None, PutOutcome::Applied),
            (Some(position(500, T0 - 1)), PutOutcome::Applied),
            (Some(tombstone(T0 - 1)), PutOutcome::Applied),
        ];
        for (stored, expected) in cases {
            assert_eq!(put_outcome(&ours, stored.clone()), expected, "{stored:?}");
        }
    }

    #[test]
    fn rows_are_positions_or_tombstones_by_their_deleted_cell() {
        let row = |position_ms, updated_at, deleted| {
            stored_row(
                "inception".into(),
                position_ms,
                updated_at,
                deleted,
                WatchedState::default(),
            )
        };
        assert_eq!(
            row(Some(1_000), Some(T0), Some(false)),
            Some(position(1_000, T0))
        );
        assert_eq!(
            row(Some(1_000), Some(T0), None),
            Some(position(1_000, T0)),
            "rows from before the column are positions"
        );
        assert_eq!(row(Some(0), Some(T0), Some(true)), Some(tombstone(T0)));
        assert_eq!(
            row(Some(1_000), Some(T0), Some(true)),
            Some(tombstone(T0)),
            "a tombstone whatever the position cell holds (a tie with a put)"
        );
        assert_eq!(row(None, None, Some(true)), None, "damaged");
        assert_eq!(row(Some(-1), Some(T0), Some(false)), None, "damaged");
        assert_eq!(row(None, Some(T0), None), None, "damaged");
    }

    #[test]
    fn a_null_watched_cell_is_not_watched() {
        assert_eq!(watched_state(None, None), WatchedState::default());
        assert_eq!(
            watched_state(Some(true), Some(T0)),
            WatchedState {
                watched: true,
                last_completed_at_micros: Some(T0)
            }
        );
        assert_eq!(
            watched_state(None, Some(T0)),
            WatchedState {
                watched: false,
                last_completed_at_micros: Some(T0)
            }
        );
    }
}
