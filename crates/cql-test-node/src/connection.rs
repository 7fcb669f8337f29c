//! One client connection: reads request frames, answers each on its stream id.
//!
//! Every request is handled in its own task, so a slow answer (see
//! [`NodeMode::Slow`]) does not hold back the others on the connection, as on a
//! real node. Answers go through one bounded queue to the writer task. The
//! connection ends when the client closes it or the node is dropped.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cassandra_protocol::compression::Compression;
use cassandra_protocol::consistency::Consistency;
use cassandra_protocol::frame::events::{
    SchemaChange as SchemaChangeEvent, SchemaChangeOptions, SchemaChangeTarget, SchemaChangeType,
};
use cassandra_protocol::frame::message_error::{
    AlreadyExistsError, ErrorBody, ErrorType, UnavailableError, UnpreparedError, WriteTimeoutError,
    WriteType,
};
use cassandra_protocol::frame::message_request::RequestBody;
use cassandra_protocol::frame::message_result::{
    BodyResResultPrepared, BodyResResultRows, BodyResResultSetKeyspace, ColSpec, PreparedMetadata,
    ResResultBody, RowsMetadata, RowsMetadataFlags, TableSpec,
};
use cassandra_protocol::frame::message_supported::BodyResSupported;
use cassandra_protocol::frame::{Direction, Envelope, Flags, Opcode, Serialize, StreamId, Version};
use cassandra_protocol::query::QueryValues;
use cassandra_protocol::query::query_params::QueryParams;
use cassandra_protocol::types::value::Value as WireValue;
use cassandra_protocol::types::{CBytes, CBytesShort};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::compression;
use super::cql::{self, Statement};
use super::engine::{CqlError, ErrorKind, Outcome, Plan, SchemaChange, Value};
use super::{NodeMode, PreparedEntry, Shared, lock};

/// Largest request frame accepted (Cassandra's default native frame limit).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Answers waiting for the writer at most; request tasks wait beyond it.
const RESPONSE_QUEUE: usize = 256;

/// Header bytes of a v4 frame.
const HEADER_BYTES: usize = 9;

/// Serves one connection (plain TCP, or TLS after the handshake) until the
/// client closes it.
pub(super) async fn serve<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (answers, mut outbox) = mpsc::channel::<Vec<u8>>(RESPONSE_QUEUE);
    let mut tasks = JoinSet::new();
    // Set when the client's STARTUP asks for LZ4: answers from then on (the
    // READY included, as the protocol allows) go out compressed.
    let lz4 = Arc::new(AtomicBool::new(false));
    let compress = Arc::clone(&lz4);
    tasks.spawn(async move {
        while let Some(frame) = outbox.recv().await {
            let frame = if compress.load(Ordering::SeqCst) {
                compression::compress_frame(frame)
            } else {
                frame
            };
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    // The keyspace of `USE`, per connection as on a real node.
    let keyspace = Arc::new(Mutex::new(None::<String>));
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match next_envelope(&mut buffer) {
                Ok(Some(envelope)) => {
                    if envelope.flags.contains(Flags::COMPRESSION) {
                        shared.compressed_frames.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(RequestBody::Startup(startup)) = envelope.request_body()
                        && compression::wants_lz4(&startup.map)
                    {
                        lz4.store(true, Ordering::SeqCst);
                    }
                    let mode = *lock(&shared.mode);
                    if mode == NodeMode::Unresponsive {
                        if matches!(envelope.opcode, Opcode::Query | Opcode::Execute) {
                            shared.swallowed_requests.fetch_add(1, Ordering::SeqCst);
                        }
                        continue;
                    }
                    let (shared, keyspace, answers) =
                        (Arc::clone(&shared), Arc::clone(&keyspace), answers.clone());
                    tasks.spawn(async move {
                        let _in_flight = is_write_request(&shared, &envelope)
                            .then(|| WriteInFlight::enter(&shared));
                        if let NodeMode::Slow(delay) = mode {
                            tokio::time::sleep(delay).await;
                        }
                        let failing = Fault::of(mode).or_else(|| injected_once(&shared, &envelope));
                        if let Some(frame) = answer(&shared, &keyspace, envelope, failing) {
                            let _ = answers.send(frame).await;
                        }
                    });
                }
                Ok(None) => break,
                Err(()) => return,
            }
        }
        while tasks.try_join_next().is_some() {}
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An error the node answers a query with instead of running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// [`NodeMode::Failing`]: a write timeout for writes, "unavailable" for
    /// everything else.
    Failing,
    /// [`NodeMode::Overloaded`]: "overloaded" for every query.
    Overloaded,
}

impl Fault {
    /// The fault every query meets in `mode`.
    fn of(mode: NodeMode) -> Option<Fault> {
        match mode {
            NodeMode::Failing => Some(Fault::Failing),
            NodeMode::Overloaded => Some(Fault::Overloaded),
            NodeMode::Normal | NodeMode::Unresponsive | NodeMode::Slow(_) => None,
        }
    }
}

/// [`Fault::Failing`] for a QUERY or EXECUTE while failures injected with
/// `CqlTestNode::fail_next_queries` remain (taking one).
fn injected_once(shared: &Shared, envelope: &Envelope) -> Option<Fault> {
    if !matches!(envelope.opcode, Opcode::Query | Opcode::Execute) {
        return None;
    }
    shared
        .queries_to_fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .ok()
        .map(|_| Fault::Failing)
}

/// Whether a request is an INSERT or DELETE (by its text or prepared id).
fn is_write_request(shared: &Shared, envelope: &Envelope) -> bool {
    match envelope.request_body() {
        Ok(RequestBody::Query(query)) => cql::parse(&query.query).is_ok_and(|s| s.is_write()),
        Ok(RequestBody::Execute(execute)) => lock(&shared.prepared)
            .get(&execute.id.clone().into_bytes().unwrap_or_default())
            .is_some_and(|entry| entry.statement.is_write()),
        _ => false,
    }
}

/// Counts a write as in flight on the node until dropped, keeping the peak.
struct WriteInFlight<'a> {
    shared: &'a Shared,
}

impl<'a> WriteInFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.writes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared
            .peak_writes_in_flight
            .fetch_max(now, Ordering::SeqCst);
        Self { shared }
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.shared.writes_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Takes one complete request frame off the front of `buffer`; `Err` means the
/// stream is not CQL (or is over the size limit) and the connection must close.
fn next_envelope(buffer: &mut Vec<u8>) -> Result<Option<Envelope>, ()> {
    if buffer.len() < HEADER_BYTES {
        return Ok(None);
    }
    let body_len = i32::from_be_bytes([buffer[5], buffer[6], buffer[7], buffer[8]]);
    let body_len = usize::try_from(body_len).map_err(drop)?;
    if body_len > MAX_FRAME_BYTES || buffer[0] & 0x80 != 0 {
        return Err(());
    }
    if buffer.len() < HEADER_BYTES + body_len {
        return Ok(None);
    }
    // Decompresses only frames flagged compressed (after an LZ4 STARTUP).
    let parsed = Envelope::from_buffer(buffer, Compression::Lz4).map_err(drop)?;
    buffer.drain(..parsed.envelope_len);
    Ok(Some(parsed.envelope))
}

/// The answer to one request, or `None` when none is due.
fn answer(
    shared: &Shared,
    keyspace: &Mutex<Option<String>>,
    envelope: Envelope,
    failing: Option<Fault>,
) -> Option<Vec<u8>> {
    let stream = envelope.stream_id;
    if envelope.version != Version::V4 {
        return Some(error_frame(
            stream,
            ErrorType::Protocol,
            "the test node speaks protocol v4 only",
        ));
    }
    let body = match envelope.request_body() {
        Ok(body) => body,
        Err(e) => {
            return Some(error_frame(
                stream,
                ErrorType::Protocol,
                &format!("malformed request: {e}"),
            ));
        }
    };
    let current_keyspace = lock(keyspace).clone();
    let frame = match body {
        RequestBody::Options(_) => {
            let mut data = HashMap::new();
            data.insert("CQL_VERSION".to_owned(), vec!["3.4.5".to_owned()]);
            data.insert(
                "COMPRESSION".to_owned(),
                vec![cassandra_protocol::compression::LZ4.to_owned()],
            );
            data.insert("PROTOCOL_VERSIONS".to_owned(), vec!["4/v4".to_owned()]);
            frame(
                stream,
                Opcode::Supported,
                BodyResSupported { data }.serialize_to_vec(Version::V4),
            )
        }
        RequestBody::Startup(_) | RequestBody::Register(_) => {
            frame(stream, Opcode::Ready, Vec::new())
        }
        RequestBody::Prepare(prepare) => {
            let keyspace = prepare.keyspace.or(current_keyspace);
            match prepare_statement(shared, &prepare.query, keyspace) {
                Ok((id, plan)) => {
                    result_frame(stream, ResResultBody::Prepared(prepared_body(id, &plan)))
                }
                Err(e) => cql_error_frame(stream, e),
            }
        }
        RequestBody::Query(query) => match cql::parse(&query.query) {
            Ok(statement) => {
                let keyspace = query.query_params.keyspace.clone().or(current_keyspace);
                run(
                    shared,
                    stream,
                    &statement,
                    &query.query_params,
                    keyspace,
                    failing,
                )
            }
            Err(e) => cql_error_frame(stream, CqlError::syntax(e)),
        },
        RequestBody::Execute(execute) => {
            let entry = lock(&shared.prepared)
                .get(&execute.id.clone().into_bytes().unwrap_or_default())
                .cloned();
            match entry {
                Some(entry) => run(
                    shared,
                    stream,
                    &entry.statement,
                    &execute.query_parameters,
                    entry.keyspace.clone(),
                    failing,
                ),
                None => error_frame(
                    stream,
                    ErrorType::Unprepared(UnpreparedError {
                        id: execute.id.clone(),
                    }),
                    "Prepared query with ID not found",
                ),
            }
        }
        RequestBody::Batch(_) => error_frame(
            stream,
            ErrorType::Invalid,
            "BATCH is not supported by the test node",
        ),
        _ => error_frame(stream, ErrorType::Protocol, "unexpected request"),
    };
    Some(frame)
}

fn prepare_statement(
    shared: &Shared,
    text: &str,
    keyspace: Option<String>,
) -> Result<(Vec<u8>, Plan), CqlError> {
    let statement = cql::parse(text).map_err(CqlError::syntax)?;
    let plan = lock(&shared.engine).plan(&statement, keyspace.as_deref())?;
    let id = statement_id(text, keyspace.as_deref());
    lock(&shared.prepared).insert(
        id.clone(),
        Arc::new(PreparedEntry {
            statement,
            keyspace,
        }),
    );
    let mut texts = lock(&shared.prepared_texts);
    if !texts.iter().any(|t| t == text) {
        texts.push(text.to_owned());
    }
    Ok((id, plan))
}

/// A 16-byte id derived from the text (real nodes use an MD5 of it), so that
/// preparing the same text again gives the same id.
fn statement_id(text: &str, keyspace: Option<&str>) -> Vec<u8> {
    let mut id = Vec::with_capacity(16);
    for salt in [0u8, 1] {
        let mut hasher = DefaultHasher::new();
        (salt, text, keyspace).hash(&mut hasher);
        id.extend_from_slice(&hasher.finish().to_be_bytes());
    }
    id
}

/// Executes a statement with the request's values, or fails it as the mode says.
fn run(
    shared: &Shared,
    stream: StreamId,
    statement: &Statement,
    params: &QueryParams,
    keyspace: Option<String>,
    failing: Option<Fault>,
) -> Vec<u8> {
    if statement.is_write() {
        shared.write_requests.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(fault) = failing {
        return injected_failure(stream, statement, params.consistency, fault);
    }
    let values: Vec<Value> = match &params.values {
        None => Vec::new(),
        Some(QueryValues::SimpleValues(values)) => values
            .iter()
            .map(|v| match v {
                WireValue::Some(bytes) => Some(bytes.clone()),
                // The store never sends "unset"; treating it as null is close enough.
                WireValue::Null | WireValue::NotSet => None,
            })
            .collect(),
        Some(QueryValues::NamedValues(_)) => {
            return error_frame(
                stream,
                ErrorType::Invalid,
                "named values are not supported by the test node",
            );
        }
    };
    let outcome =
        lock(&shared.engine).execute(statement, &values, keyspace.as_deref(), params.timestamp);
    match outcome {
        Ok(Outcome::Void) => result_frame(stream, ResResultBody::Void),
        Ok(Outcome::Rows {
            keyspace,
            table,
            columns,
            rows,
        }) => {
            let mut metadata = rows_metadata(&keyspace, &table, &columns);
            let rows = match page_of(rows, params) {
                Ok((page, next)) => {
                    shared.pages_served.fetch_add(1, Ordering::SeqCst);
                    if let Some(next) = next {
                        metadata.flags |= RowsMetadataFlags::HAS_MORE_PAGES;
                        metadata.paging_state = Some(CBytes::new(next.to_be_bytes().to_vec()));
                    }
                    page
                }
                Err(message) => return error_frame(stream, ErrorType::Protocol, &message),
            };
            let rows_content: Vec<Vec<CBytes>> = rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|v| v.map_or_else(CBytes::new_null, CBytes::new))
                        .collect()
                })
                .collect();
            result_frame(
                stream,
                ResResultBody::Rows(BodyResResultRows {
                    metadata,
                    rows_count: rows_content.len() as i32,
                    rows_content,
                    protocol_version: Version::V4,
                }),
            )
        }
        Ok(Outcome::SetKeyspace(name)) => result_frame(
            stream,
            ResResultBody::SetKeyspace(BodyResResultSetKeyspace { body: name }),
        ),
        Ok(Outcome::SchemaChange(change)) => {
            let (change_type, target, options) = match change {
                SchemaChange::KeyspaceCreated(ks) => (
                    SchemaChangeType::Created,
                    SchemaChangeTarget::Keyspace,
                    SchemaChangeOptions::Keyspace(ks),
                ),
                SchemaChange::TableCreated(ks, t) => (
                    SchemaChangeType::Created,
                    SchemaChangeTarget::Table,
                    SchemaChangeOptions::TableType(ks, t),
                ),
                SchemaChange::TableUpdated(ks, t) => (
                    SchemaChangeType::Updated,
                    SchemaChangeTarget::Table,
                    SchemaChangeOptions::TableType(ks, t),
                ),
            };
            result_frame(
                stream,
                ResResultBody::SchemaChange(SchemaChangeEvent {
                    change_type,
                    target,
                    options,
                }),
            )
        }
        Err(e) => cql_error_frame(stream, e),
    }
}

fn injected_failure(
    stream: StreamId,
    statement: &Statement,
    cl: Consistency,
    fault: Fault,
) -> Vec<u8> {
    if fault == Fault::Overloaded {
        error_frame(
            stream,
            ErrorType::Overloaded,
            "Too many in flight hints (injected by the test node)",
        )
    } else if statement.is_write() {
        error_frame(
            stream,
            ErrorType::WriteTimeout(WriteTimeoutError {
                cl,
                received: 0,
                block_for: 1,
                write_type: WriteType::Simple,
                contentions: None,
            }),
            "Operation timed out - received only 0 responses (injected by the test node)",
        )
    } else {
        error_frame(
            stream,
            ErrorType::Unavailable(UnavailableError {
                cl,
                required: 1,
                alive: 0,
            }),
            "Cannot achieve consistency level (injected by the test node)",
        )
    }
}

/// The page of `rows` a request asks for (its page size from its paging
/// state, an offset this node wrote), and the offset of the next page if any.
fn page_of(
    rows: Vec<Vec<Value>>,
    params: &QueryParams,
) -> Result<(Vec<Vec<Value>>, Option<u64>), String> {
    let Some(size) = params.page_size.filter(|s| *s > 0).map(|s| s as usize) else {
        return Ok((rows, None));
    };
    let offset = match params.paging_state.as_ref().and_then(CBytes::as_slice) {
        None | Some([]) => 0,
        Some(state) => <[u8; 8]>::try_from(state)
            .map(|bytes| u64::from_be_bytes(bytes) as usize)
            .map_err(|_| "invalid paging state".to_owned())?,
    };
    let end = offset.saturating_add(size).min(rows.len());
    let next = (end < rows.len()).then_some(end as u64);
    let page = rows
        .into_iter()
        .skip(offset)
        .take(end.saturating_sub(offset))
        .collect();
    Ok((page, next))
}

fn rows_metadata(
    keyspace: &str,
    table: &str,
    columns: &[(String, super::types::CqlType)],
) -> RowsMetadata {
    RowsMetadata {
        flags: RowsMetadataFlags::GLOBAL_TABLE_SPACE,
        columns_count: columns.len() as i32,
        paging_state: None,
        new_metadata_id: None,
        global_table_spec: Some(TableSpec {
            ks_name: keyspace.to_owned(),
            table_name: table.to_owned(),
        }),
        col_specs: col_specs(columns),
    }
}

fn col_specs(columns: &[(String, super::types::CqlType)]) -> Vec<ColSpec> {
    columns
        .iter()
        .map(|(name, ty)| ColSpec {
            table_spec: None,
            name: name.clone(),
            col_type: ty.option(),
        })
        .collect()
}

fn prepared_body(id: Vec<u8>, plan: &Plan) -> BodyResResultPrepared {
    let table_spec = plan.table.as_ref().map(|(ks, t)| TableSpec {
        ks_name: ks.clone(),
        table_name: t.clone(),
    });
    let result_metadata = match (&plan.table, plan.result_columns.is_empty()) {
        (Some((ks, t)), false) => rows_metadata(ks, t, &plan.result_columns),
        _ => RowsMetadata {
            flags: RowsMetadataFlags::NO_METADATA,
            columns_count: 0,
            paging_state: None,
            new_metadata_id: None,
            global_table_spec: None,
            col_specs: Vec::new(),
        },
    };
    BodyResResultPrepared {
        id: CBytesShort::new(id),
        result_metadata_id: None,
        metadata: PreparedMetadata {
            pk_indexes: plan.pk_indexes.clone(),
            global_table_spec: table_spec,
            col_specs: col_specs(&plan.variables),
        },
        result_metadata,
    }
}

fn frame(stream: StreamId, opcode: Opcode, body: Vec<u8>) -> Vec<u8> {
    let envelope = Envelope::new(
        Version::V4,
        Direction::Response,
        Flags::empty(),
        opcode,
        stream,
        body,
        None,
        Vec::new(),
    );
    // Encoding only fails for tracing frames, which the node never sends.
    envelope.encode_with(Compression::None).unwrap_or_default()
}

fn result_frame(stream: StreamId, body: ResResultBody) -> Vec<u8> {
    frame(stream, Opcode::Result, body.serialize_to_vec(Version::V4))
}

fn error_frame(stream: StreamId, ty: ErrorType, message: &str) -> Vec<u8> {
    let body = ErrorBody {
        message: message.to_owned(),
        ty,
    };
    frame(stream, Opcode::Error, body.serialize_to_vec(Version::V4))
}

fn cql_error_frame(stream: StreamId, error: CqlError) -> Vec<u8> {
    let ty = match error.kind {
        ErrorKind::Syntax => ErrorType::Syntax,
        ErrorKind::Invalid => ErrorType::Invalid,
        ErrorKind::AlreadyExists { keyspace, table } => {
            ErrorType::AlreadyExists(AlreadyExistsError {
                ks: keyspace,
                table,
            })
        }
    };
    error_frame(stream, ty, &error.message)
}
