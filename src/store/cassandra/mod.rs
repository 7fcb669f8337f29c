//! The Cassandra / ScyllaDB backend of [`PositionStore`], through the `scylla` driver.
//!
//! Why it is shaped this way:
//! * **Last-write-wins is the database's.** Every write is
//!   `INSERT … USING TIMESTAMP <written_at_micros>` and every delete
//!   `DELETE … USING TIMESTAMP <written_at_micros>`, so the cluster itself keeps
//!   the newest value per cell, whatever order writes arrive in and whichever
//!   replica they reach. That also makes every write idempotent: a write is
//!   retried ([`retry`]) with the *same* timestamp after a timeout, which the
//!   driver's default policy refuses to do for plain writes.
//! * **Bounded writes in flight.** A semaphore
//!   (`--cassandra-max-writes-in-flight`) caps concurrent writes, retries
//!   included, so a slow cluster makes writers wait instead of piling up requests.
//! * **Prepared, token-aware statements only.** Each statement binds the partition
//!   key (`user_id`), so the driver sends it straight to a replica.
//! * **The schema is checked, not guessed.** `connect` prepares every statement;
//!   a missing table fails start-up with a message that says how to create it
//!   ([`apply_schema`] / `--init-schema`).
//!
//! This module knows nothing of HTTP or sessions; the schema text lives in
//! `schema.cql` ([`schema`]) and the statement text in [`statements`].

pub mod retry;
pub mod schema;
pub mod settings;
pub mod statements;

use std::time::Duration;

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, PrepareError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::Semaphore;

pub use schema::{SCHEMA_CQL, apply_schema, schema_statements};
pub use settings::CassandraSettings;
pub use statements::Statements;

use super::{PositionStore, PositionWrite, SavedPosition, StoreError};
use retry::{backoff_delay, is_transient, store_error};

/// The Cassandra-backed [`PositionStore`].
pub struct CassandraStore {
    /// The driver session: connection pools to every node, cluster metadata.
    session: Session,
    /// The prepared data statements (see [`Statements`]).
    prepared: PreparedStatements,
    /// One permit per write in flight (retries keep theirs).
    write_slots: Semaphore,
    /// Attempts per write, the first included.
    write_attempts: u32,
    /// Backoff before the first retry.
    retry_base_delay: Duration,
    /// Longest backoff between attempts.
    retry_max_delay: Duration,
}

/// The statements of [`Statements`], prepared once at connect; all idempotent.
struct PreparedStatements {
    /// `put`: timestamped upsert of one position.
    insert: PreparedStatement,
    /// `delete`: timestamped row tombstone.
    delete: PreparedStatement,
    /// `get`: one title of one viewer.
    select_one: PreparedStatement,
    /// `list`: a viewer's partition.
    select_user: PreparedStatement,
    /// `check_health`: a coordinator-local query.
    health: PreparedStatement,
}

impl CassandraStore {
    /// Connects to the cluster and prepares every statement.
    ///
    /// Fails with [`StoreError::Unavailable`] when no node answers in time, and
    /// with [`StoreError::Backend`] naming `resume-server schema apply` when the
    /// keyspace or table does not exist.
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
        let text = Statements::for_keyspace(&settings.keyspace);
        let prepared = PreparedStatements {
            insert: prepare(&session, &text.insert, settings).await?,
            delete: prepare(&session, &text.delete, settings).await?,
            select_one: prepare(&session, &text.select_one, settings).await?,
            select_user: prepare(&session, &text.select_user, settings).await?,
            health: prepare(&session, &text.health, settings).await?,
        };
        for statement in [
            &prepared.insert,
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
        tracing::info!(nodes = %settings.nodes.join(","), keyspace = %settings.keyspace, "connected to Cassandra");
        Ok(CassandraStore {
            session,
            prepared,
            write_slots: Semaphore::new(settings.max_writes_in_flight),
            write_attempts: settings.write_attempts.max(1),
            retry_base_delay: settings.retry_base_delay,
            retry_max_delay: settings.retry_max_delay,
        })
    }

    /// Runs one idempotent write, retrying transient failures with backoff and
    /// the same values (hence the same `USING TIMESTAMP`).
    async fn write(
        &self,
        what: &str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<(), StoreError> {
        let _slot = self
            .write_slots
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let mut retry = 0;
        loop {
            match self.session.execute_unpaged(statement, &values).await {
                Ok(_) => return Ok(()),
                Err(error) if is_transient(&error) && retry + 1 < self.write_attempts => {
                    retry += 1;
                    let delay = backoff_delay(retry, self.retry_base_delay, self.retry_max_delay);
                    tracing::warn!(%error, retry, ?delay, "{what} failed; retrying with the same timestamp");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(store_error(what, &error)),
            }
        }
    }

    async fn read(
        &self,
        what: &str,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(|error| store_error(what, &error))
    }
}

#[async_trait]
impl PositionStore for CassandraStore {
    async fn put(&self, write: PositionWrite) -> Result<(), StoreError> {
        let position_ms = i64::try_from(write.position_ms).map_err(|_| {
            StoreError::Backend(format!(
                "position {} ms does not fit a bigint",
                write.position_ms
            ))
        })?;
        let at = write.written_at_micros;
        let values = (&write.user_id, &write.movie_id, position_ms, at, at);
        self.write("put", &self.prepared.insert, values).await
    }

    async fn delete(
        &self,
        user_id: &str,
        movie_id: &str,
        written_at_micros: i64,
    ) -> Result<(), StoreError> {
        self.write(
            "delete",
            &self.prepared.delete,
            (written_at_micros, user_id, movie_id),
        )
        .await
    }

    async fn get(
        &self,
        user_id: &str,
        movie_id: &str,
    ) -> Result<Option<SavedPosition>, StoreError> {
        let result = self
            .read("get", &self.prepared.select_one, (user_id, movie_id))
            .await?;
        let rows = result.into_rows_result().map_err(decode_error)?;
        let row = rows
            .maybe_first_row::<(Option<i64>, Option<i64>)>()
            .map_err(decode_error)?;
        Ok(row.and_then(|(position_ms, updated_at)| {
            saved_position(movie_id.to_owned(), position_ms, updated_at)
        }))
    }

    async fn list(&self, user_id: &str) -> Result<Vec<SavedPosition>, StoreError> {
        // Unpaged on purpose: a partition holds at most one row per catalog
        // title, so one response stays small.
        let result = self
            .read("list", &self.prepared.select_user, (user_id,))
            .await?;
        let rows = result.into_rows_result().map_err(decode_error)?;
        let mut positions = Vec::with_capacity(rows.rows_num());
        for row in rows
            .rows::<(String, Option<i64>, Option<i64>)>()
            .map_err(decode_error)?
        {
            let (movie_id, position_ms, updated_at) = row.map_err(decode_error)?;
            positions.extend(saved_position(movie_id, position_ms, updated_at));
        }
        Ok(positions)
    }

    async fn check_health(&self) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.prepared.health, ())
            .await
            .map(drop)
            .map_err(|error| StoreError::Unavailable(format!("health check: {error}")))
    }
}

/// A stored row as a position, or `None` (logged) when the row cannot be one:
/// a null or negative position is damaged data and must not reach a player.
fn saved_position(
    movie_id: String,
    position_ms: Option<i64>,
    updated_at: Option<i64>,
) -> Option<SavedPosition> {
    match (position_ms.map(u64::try_from), updated_at) {
        (Some(Ok(position_ms)), Some(updated_at_micros)) => Some(SavedPosition {
            movie_id,
            position_ms,
            updated_at_micros,
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
pub(crate) async fn open_session(
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
    if let Some(dc) = &settings.local_dc {
        policy = policy.prefer_datacenter(dc.clone());
    }
    let profile = ExecutionProfile::builder()
        .consistency(settings.consistency)
        .request_timeout(Some(settings.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.nodes)
        .default_execution_profile_handle(profile.into_handle())
        .fetch_schema_metadata(metadata_keyspace.is_some())
        .fetch_full_schema_metadata(false);
    if let Some(keyspace) = metadata_keyspace {
        builder = builder.keyspaces_to_fetch([keyspace]);
    }
    if let Some((user, password)) = &settings.credentials {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot connect to Cassandra at {}: {e}",
            settings.nodes.join(",")
        ))
    })
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
        }) => Err(StoreError::Backend(schema_mismatch_message(
            settings, text, &message,
        ))),
        // Anything else is the cluster not answering (pools down, timeouts).
        Err(e) => Err(StoreError::Unavailable(format!("preparing `{text}`: {e}"))),
    }
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
             compare the table with schema.cql (`resume-server schema apply` only creates what is missing)"
        )
    }
}
