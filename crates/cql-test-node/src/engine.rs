//! The test node's database: keyspaces, tables, rows and the system tables the
//! driver reads, with Cassandra's write semantics.
//!
//! * Every cell carries the write timestamp it was written with; a cell is
//!   replaced only by a newer timestamp, and on a tie by a tombstone, then by
//!   the larger value (Cassandra's reconciliation rules).
//! * `DELETE` of a row leaves a row tombstone at its timestamp, which hides every
//!   cell written at or before it, including cells that arrive later.
//! * Literals in statements (`'text'`, `42`, `true`) are typed against their
//!   column and rejected when they do not fit it, at PREPARE and at execution.
//! * `ALTER TABLE … ADD` adds regular columns; rows written before read them
//!   as null.
//! * Statements against a keyspace or table that does not exist fail with
//!   Cassandra's `Invalid` error ("unconfigured table …"), and statements naming
//!   a column the table lacks with "Undefined column name …".
//!
//! No I/O here: the connection layer hands in parsed statements and bound
//! values and turns [`Outcome`]s and [`CqlError`]s into frames.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::cql::{Filter, InValues, Relation, Statement, TableName, Term};
use super::types::{self, CqlType};

/// Release the node claims to be (what `check_health` reads).
pub const RELEASE_VERSION: &str = "4.1.0-resume-test-node";

/// Host id of the single node.
const HOST_ID: u128 = 0x5265_7375_6d65_4e6f_6465_0000_0000_0001;

/// A bound value: `None` is CQL null.
pub type Value = Option<Vec<u8>>;

/// Where a row lives: its partition key values, then its clustering values.
type RowKey = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// An error the node answers with.
#[derive(Debug, Clone)]
pub struct CqlError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum ErrorKind {
    Syntax,
    Invalid,
    AlreadyExists { keyspace: String, table: String },
}

impl CqlError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            message: message.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Syntax,
            message: message.into(),
        }
    }
}

/// What a statement produced.
#[derive(Debug)]
pub enum Outcome {
    Void,
    Rows {
        keyspace: String,
        table: String,
        columns: Vec<(String, CqlType)>,
        rows: Vec<Vec<Value>>,
    },
    SetKeyspace(String),
    SchemaChange(SchemaChange),
}

#[derive(Debug)]
pub enum SchemaChange {
    KeyspaceCreated(String),
    TableCreated(String, String),
    TableUpdated(String, String),
}

/// What a statement needs bound and returns: the PREPARED metadata.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `(keyspace, table)` the statement reads or writes, if any.
    pub table: Option<(String, String)>,
    /// Name and type of each bind marker, in marker order.
    pub variables: Vec<(String, CqlType)>,
    /// Markers holding the partition key, in partition-key order (token-aware routing).
    pub pk_indexes: Vec<i16>,
    /// Result columns of a `SELECT`; empty otherwise.
    pub result_columns: Vec<(String, CqlType)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ColumnKind {
    PartitionKey,
    Clustering,
    Regular,
}

#[derive(Debug, Clone)]
struct ColumnDef {
    name: String,
    ty: CqlType,
    kind: ColumnKind,
}

/// One cell: its value (`None` for a cell tombstone), write timestamp, and
/// when it expires (node time, µs) if it was written with a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cell {
    value: Value,
    timestamp: i64,
    expires_at: Option<i64>,
}

impl Cell {
    /// Cassandra's reconciliation: newer timestamp, then tombstone, then larger value.
    fn beats(&self, other: &Cell) -> bool {
        let rank = |c: &Cell| (c.timestamp, c.value.is_none(), c.value.clone());
        rank(self) > rank(other)
    }
}

#[derive(Debug, Clone, Default)]
struct Row {
    /// Timestamp of the row marker an INSERT writes (keeps a row alive without cells).
    marker: Option<i64>,
    /// When the marker expires (node time, µs), if its INSERT had a TTL.
    marker_expires_at: Option<i64>,
    /// Row tombstone: hides every cell and marker at or before it.
    deleted_at: Option<i64>,
    cells: HashMap<String, Cell>,
}

impl Row {
    fn hides(&self, timestamp: i64) -> bool {
        self.deleted_at.is_some_and(|deleted| timestamp <= deleted)
    }

    /// A cell with a value, not deleted and not expired at `now`. An expired
    /// cell still takes part in reconciliation with its timestamp, as Cassandra's
    /// expired cells do (they turn into tombstones, not into nothing).
    fn live_cell(&self, column: &str, now: i64) -> Option<&Cell> {
        self.cells.get(column).filter(|cell| {
            cell.value.is_some()
                && !self.hides(cell.timestamp)
                && cell.expires_at.is_none_or(|at| now < at)
        })
    }

    fn is_live(&self, now: i64) -> bool {
        let marker_live = self.marker.is_some_and(|m| !self.hides(m))
            && self.marker_expires_at.is_none_or(|at| now < at);
        marker_live || self.cells.keys().any(|c| self.live_cell(c, now).is_some())
    }

    fn write_cell(&mut self, column: &str, cell: Cell) {
        match self.cells.get(column) {
            Some(current) if !cell.beats(current) => {}
            _ => {
                self.cells.insert(column.to_owned(), cell);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Table {
    columns: Vec<ColumnDef>,
    /// `(partition key values, clustering values)` → row; clustering order is
    /// byte order, which is right for `text`.
    rows: BTreeMap<RowKey, Row>,
}

impl Table {
    fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn key_columns(&self, kind: ColumnKind) -> Vec<&ColumnDef> {
        self.columns.iter().filter(|c| c.kind == kind).collect()
    }
}

/// Keyspaces, tables and rows of the node.
#[derive(Debug)]
pub struct Engine {
    /// Keyspace → replication map.
    keyspaces: BTreeMap<String, Vec<(String, String)>>,
    tables: BTreeMap<(String, String), Table>,
    /// Bumped on every schema change; reported as `schema_version`.
    schema_version: u128,
    /// The address the node reports as its own (`rpc_address`).
    address: IpAddr,
    /// Added to the wall clock for TTL expiry, so tests can move time on.
    clock_offset_micros: i64,
    /// Other nodes the node claims in `system.peers` (nothing answers there):
    /// address, datacenter, rack.
    peers: Vec<(IpAddr, String, String)>,
}

/// A statement resolved against the schema.
enum Target {
    User(String, String),
    System(String, String),
}

impl Engine {
    pub fn new(address: IpAddr) -> Self {
        Self {
            keyspaces: BTreeMap::new(),
            tables: BTreeMap::new(),
            schema_version: 1,
            address,
            clock_offset_micros: 0,
            peers: Vec::new(),
        }
    }

    /// Lists a peer in `system.peers`, so the driver sees another node (in
    /// `datacenter`, `rack`); nothing needs to listen at `address`.
    pub fn add_peer(&mut self, address: IpAddr, datacenter: &str, rack: &str) {
        self.peers
            .push((address, datacenter.to_owned(), rack.to_owned()));
    }

    /// The node's time for TTL expiry (µs since the epoch).
    fn now(&self) -> i64 {
        now_micros().saturating_add(self.clock_offset_micros)
    }

    /// Moves the node's expiry clock forward (tests of TTLs).
    pub fn advance_clock(&mut self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.clock_offset_micros = self.clock_offset_micros.saturating_add(micros);
    }

    /// The latest live value and write timestamp of `column` in the row
    /// `(partition, clustering)` of any keyspace's `table`.
    pub fn cell(
        &self,
        table: &str,
        partition: &[Vec<u8>],
        clustering: &[Vec<u8>],
        column: &str,
    ) -> Option<(Vec<u8>, i64)> {
        let key = (partition.to_vec(), clustering.to_vec());
        self.tables
            .iter()
            .filter(|((_, name), _)| name == table)
            .find_map(|(_, t)| t.rows.get(&key))
            .and_then(|row| row.live_cell(column, self.now()))
            .and_then(|cell| Some((cell.value.clone()?, cell.timestamp)))
    }

    /// Whether `keyspace.table` exists.
    pub fn has_table(&self, keyspace: &str, table: &str) -> bool {
        self.tables
            .contains_key(&(keyspace.to_owned(), table.to_owned()))
    }

    fn resolve(
        &self,
        table: &TableName,
        default_keyspace: Option<&str>,
    ) -> Result<Target, CqlError> {
        let keyspace = table
            .keyspace
            .as_deref()
            .or(default_keyspace)
            .ok_or_else(|| CqlError::invalid("No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename"))?;
        if keyspace == "system" || keyspace == "system_schema" {
            if system_columns(keyspace, &table.name).is_some() {
                return Ok(Target::System(keyspace.to_owned(), table.name.clone()));
            }
            return Err(CqlError::invalid(format!(
                "unconfigured table {}",
                table.name
            )));
        }
        if !self.keyspaces.contains_key(keyspace) {
            return Err(CqlError::invalid(format!(
                "Keyspace '{keyspace}' does not exist"
            )));
        }
        if !self.has_table(keyspace, &table.name) {
            return Err(CqlError::invalid(format!(
                "unconfigured table {}",
                table.name
            )));
        }
        Ok(Target::User(keyspace.to_owned(), table.name.clone()))
    }

    fn columns_of(&self, target: &Target) -> Vec<ColumnDef> {
        match target {
            Target::User(ks, t) => self.tables[&(ks.clone(), t.clone())].columns.clone(),
            Target::System(ks, t) => system_columns(ks, t).unwrap_or_default(),
        }
    }

    /// Checks `statement` against the schema and describes its markers and
    /// result columns, as PREPARE does.
    pub fn plan(
        &self,
        statement: &Statement,
        default_keyspace: Option<&str>,
    ) -> Result<Plan, CqlError> {
        match statement {
            Statement::Select {
                table,
                columns,
                filters,
            } => {
                let target = self.resolve(table, default_keyspace)?;
                let defs = self.columns_of(&target);
                let result_columns = match columns {
                    None => defs
                        .iter()
                        .map(|c| (c.name.clone(), c.ty.clone()))
                        .collect(),
                    Some(names) => names
                        .iter()
                        .map(|n| column(&defs, n).map(|c| (c.name.clone(), c.ty.clone())))
                        .collect::<Result<_, _>>()?,
                };
                let mut variables = Vec::new();
                filter_variables(&defs, filters, &mut variables)?;
                let pk_indexes = pk_indexes(&defs, filters.iter().filter_map(eq_marker));
                Ok(Plan {
                    table: Some(target_names(&target)),
                    variables: ordered(variables),
                    pk_indexes,
                    result_columns,
                })
            }
            Statement::Insert {
                table,
                columns,
                values,
                timestamp,
                ttl,
            } => {
                let target = self.user_target(table, default_keyspace)?;
                let defs = self.columns_of(&target);
                let mut variables = Vec::new();
                for (name, value) in columns.iter().zip(values) {
                    let def = column(&defs, name)?;
                    match value {
                        Term::Marker(i) => {
                            variables.push((*i, (def.name.clone(), def.ty.clone())));
                        }
                        literal => {
                            term_value(literal, &def.name, &def.ty, &[])?;
                        }
                    }
                }
                timestamp_variable(timestamp, &mut variables);
                if let Some(Term::Marker(i)) = ttl {
                    variables.push((*i, ("[ttl]".to_owned(), CqlType::Int)));
                }
                for key in defs.iter().filter(|c| c.kind != ColumnKind::Regular) {
                    if !columns.contains(&key.name) {
                        return Err(CqlError::invalid(format!(
                            "Some primary key parts are missing: {}",
                            key.name
                        )));
                    }
                }
                let pk_indexes = pk_indexes(
                    &defs,
                    columns.iter().zip(values).filter_map(|(c, v)| match v {
                        Term::Marker(i) => Some((c.as_str(), *i)),
                        _ => None,
                    }),
                );
                Ok(Plan {
                    table: Some(target_names(&target)),
                    variables: ordered(variables),
                    pk_indexes,
                    result_columns: Vec::new(),
                })
            }
            Statement::Delete {
                table,
                timestamp,
                filters,
            } => {
                let target = self.user_target(table, default_keyspace)?;
                let defs = self.columns_of(&target);
                let mut variables = Vec::new();
                timestamp_variable(timestamp, &mut variables);
                filter_variables(&defs, filters, &mut variables)?;
                for key in defs.iter().filter(|c| c.kind != ColumnKind::Regular) {
                    let restricted = filters
                        .iter()
                        .any(|f| f.column == key.name && matches!(f.relation, Relation::Eq(_)));
                    if !restricted {
                        return Err(CqlError::invalid(format!(
                            "the test node deletes single rows only; restrict {} with =",
                            key.name
                        )));
                    }
                }
                let pk_indexes = pk_indexes(&defs, filters.iter().filter_map(eq_marker));
                Ok(Plan {
                    table: Some(target_names(&target)),
                    variables: ordered(variables),
                    pk_indexes,
                    result_columns: Vec::new(),
                })
            }
            Statement::CreateKeyspace { .. }
            | Statement::CreateTable { .. }
            | Statement::AlterTableAdd { .. }
            | Statement::Use(_) => Ok(Plan {
                table: None,
                variables: Vec::new(),
                pk_indexes: Vec::new(),
                result_columns: Vec::new(),
            }),
        }
    }

    fn user_target(
        &self,
        table: &TableName,
        default_keyspace: Option<&str>,
    ) -> Result<Target, CqlError> {
        match self.resolve(table, default_keyspace)? {
            Target::System(ks, _) => Err(CqlError {
                kind: ErrorKind::Invalid,
                message: format!("{ks} keyspace is not user-modifiable"),
            }),
            user => Ok(user),
        }
    }

    /// Runs `statement` with `values` bound to its markers. `client_timestamp`
    /// is the request's default timestamp, used when the statement has no
    /// `USING TIMESTAMP`.
    pub fn execute(
        &mut self,
        statement: &Statement,
        values: &[Value],
        default_keyspace: Option<&str>,
        client_timestamp: Option<i64>,
    ) -> Result<Outcome, CqlError> {
        let plan = self.plan(statement, default_keyspace)?;
        if values.len() != plan.variables.len() {
            return Err(CqlError::invalid(format!(
                "There were {} markers(?) in CQL but {} bound variables",
                plan.variables.len(),
                values.len()
            )));
        }
        for ((name, ty), value) in plan.variables.iter().zip(values) {
            if let Some(bytes) = value {
                ty.validate(bytes)
                    .map_err(|e| CqlError::invalid(format!("Invalid value for {name}: {e}")))?;
            }
        }
        match statement {
            Statement::Select { table, filters, .. } => {
                let target = self.resolve(table, default_keyspace)?;
                let defs = self.columns_of(&target);
                let all_rows = match &target {
                    Target::User(ks, t) => {
                        let table = &self.tables[&(ks.clone(), t.clone())];
                        let partition = pinned_partition(table, filters, values)?;
                        live_rows(table, self.now(), partition)
                    }
                    Target::System(ks, t) => self.system_rows(ks, t),
                };
                let mut rows = Vec::new();
                for row in all_rows {
                    if row_matches(&defs, &row, filters, values)? {
                        rows.push(
                            plan.result_columns
                                .iter()
                                .map(|(name, _)| row[index_of(&defs, name)].clone())
                                .collect(),
                        );
                    }
                }
                let (keyspace, table) = target_names(&target);
                Ok(Outcome::Rows {
                    keyspace,
                    table,
                    columns: plan.result_columns,
                    rows,
                })
            }
            Statement::Insert {
                columns,
                values: terms,
                timestamp,
                ttl,
                ..
            } => {
                let (ks, name) = plan.table.clone().unwrap_or_default();
                let timestamp = write_timestamp(timestamp.as_ref(), values, client_timestamp)?;
                let expires_at = write_ttl(ttl.as_ref(), values)?
                    .map(|seconds| self.now().saturating_add(seconds * 1_000_000));
                let table = self
                    .tables
                    .get_mut(&(ks, name))
                    .ok_or_else(|| CqlError::invalid("table vanished"))?;
                let mut assigned = HashMap::new();
                for (column, term) in columns.iter().zip(terms) {
                    let ty = &table
                        .column(column)
                        .map(|c| c.ty.clone())
                        .unwrap_or(CqlType::Blob);
                    if let Some(value) = term_value(term, column, ty, values)? {
                        assigned.insert(column.clone(), value);
                    }
                }
                let key = row_key(table, |c| assigned.get(c).cloned().flatten())?;
                let regular: Vec<String> = table
                    .key_columns(ColumnKind::Regular)
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                let row = table.rows.entry(key).or_default();
                if row.marker.is_none_or(|m| timestamp >= m) {
                    row.marker = Some(timestamp);
                    row.marker_expires_at = expires_at;
                }
                for column in regular {
                    if let Some(value) = assigned.remove(&column) {
                        let cell = Cell {
                            value,
                            timestamp,
                            expires_at,
                        };
                        row.write_cell(&column, cell);
                    }
                }
                Ok(Outcome::Void)
            }
            Statement::Delete {
                timestamp, filters, ..
            } => {
                let (ks, name) = plan.table.clone().unwrap_or_default();
                let timestamp = write_timestamp(timestamp.as_ref(), values, client_timestamp)?;
                let table = self
                    .tables
                    .get_mut(&(ks, name))
                    .ok_or_else(|| CqlError::invalid("table vanished"))?;
                let mut restricted = HashMap::new();
                for filter in filters {
                    if let Relation::Eq(term) = &filter.relation {
                        let ty = table
                            .column(&filter.column)
                            .map(|c| c.ty.clone())
                            .unwrap_or(CqlType::Blob);
                        restricted.insert(
                            filter.column.clone(),
                            term_value(term, &filter.column, &ty, values)?.flatten(),
                        );
                    }
                }
                let key = row_key(table, |c| restricted.get(c).cloned().flatten())?;
                let row = table.rows.entry(key).or_default();
                row.deleted_at = row.deleted_at.max(Some(timestamp));
                Ok(Outcome::Void)
            }
            Statement::CreateKeyspace {
                name,
                if_not_exists,
                replication,
            } => {
                if self.keyspaces.contains_key(name) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError {
                        kind: ErrorKind::AlreadyExists {
                            keyspace: name.clone(),
                            table: String::new(),
                        },
                        message: format!("Keyspace {name} already exists"),
                    });
                }
                if !replication.iter().any(|(k, _)| k == "class") {
                    return Err(CqlError {
                        kind: ErrorKind::Invalid,
                        message: "Missing mandatory replication strategy class".into(),
                    });
                }
                self.keyspaces.insert(name.clone(), replication.clone());
                self.schema_version += 1;
                Ok(Outcome::SchemaChange(SchemaChange::KeyspaceCreated(
                    name.clone(),
                )))
            }
            Statement::CreateTable {
                table,
                if_not_exists,
                columns,
                partition_key,
                clustering_key,
            } => {
                let keyspace = table
                    .keyspace
                    .clone()
                    .or_else(|| default_keyspace.map(str::to_owned))
                    .ok_or_else(|| CqlError::invalid("No keyspace has been specified"))?;
                if !self.keyspaces.contains_key(&keyspace) {
                    return Err(CqlError::invalid(format!(
                        "Keyspace '{keyspace}' does not exist"
                    )));
                }
                if self.has_table(&keyspace, &table.name) {
                    if *if_not_exists {
                        return Ok(Outcome::Void);
                    }
                    return Err(CqlError {
                        kind: ErrorKind::AlreadyExists {
                            keyspace: keyspace.clone(),
                            table: table.name.clone(),
                        },
                        message: format!("Table {keyspace}.{} already exists", table.name),
                    });
                }
                let mut defs = Vec::new();
                for (name, ty) in columns {
                    let kind = if partition_key.contains(name) {
                        ColumnKind::PartitionKey
                    } else if clustering_key.contains(name) {
                        ColumnKind::Clustering
                    } else {
                        ColumnKind::Regular
                    };
                    defs.push(ColumnDef {
                        name: name.clone(),
                        ty: ty.clone(),
                        kind,
                    });
                }
                // Keys first, in key order, like Cassandra's column order.
                let key_rank = |c: &ColumnDef| {
                    partition_key
                        .iter()
                        .position(|k| *k == c.name)
                        .or_else(|| {
                            clustering_key
                                .iter()
                                .position(|k| *k == c.name)
                                .map(|p| 1000 + p)
                        })
                        .unwrap_or(usize::MAX)
                };
                defs.sort_by_key(key_rank);
                for key in partition_key.iter().chain(clustering_key) {
                    if !columns.iter().any(|(n, _)| n == key) {
                        return Err(CqlError::invalid(format!(
                            "Unknown definition {key} referenced in PRIMARY KEY"
                        )));
                    }
                }
                self.tables.insert(
                    (keyspace.clone(), table.name.clone()),
                    Table {
                        columns: defs,
                        rows: BTreeMap::new(),
                    },
                );
                self.schema_version += 1;
                Ok(Outcome::SchemaChange(SchemaChange::TableCreated(
                    keyspace,
                    table.name.clone(),
                )))
            }
            Statement::AlterTableAdd { table, columns } => {
                let Target::User(keyspace, name) = self.user_target(table, default_keyspace)?
                else {
                    return Err(CqlError::invalid("system tables cannot be altered"));
                };
                let table = self
                    .tables
                    .get_mut(&(keyspace.clone(), name.clone()))
                    .ok_or_else(|| CqlError::invalid("table vanished"))?;
                for (column, _) in columns {
                    if table.column(column).is_some() {
                        return Err(CqlError::invalid(format!(
                            "Column with name '{column}' already exists"
                        )));
                    }
                }
                table
                    .columns
                    .extend(columns.iter().map(|(column, ty)| ColumnDef {
                        name: column.clone(),
                        ty: ty.clone(),
                        kind: ColumnKind::Regular,
                    }));
                self.schema_version += 1;
                Ok(Outcome::SchemaChange(SchemaChange::TableUpdated(
                    keyspace, name,
                )))
            }
            Statement::Use(keyspace) => {
                if !self.keyspaces.contains_key(keyspace)
                    && keyspace != "system"
                    && keyspace != "system_schema"
                {
                    return Err(CqlError::invalid(format!(
                        "Keyspace '{keyspace}' does not exist"
                    )));
                }
                Ok(Outcome::SetKeyspace(keyspace.clone()))
            }
        }
    }

    /// Rows of a system table, in the column order of [`system_columns`].
    fn system_rows(&self, keyspace: &str, table: &str) -> Vec<Vec<Value>> {
        let schema_version = Some(types::uuid(self.schema_version));
        let token = || Some(types::collection(&[types::text("0")]));
        match (keyspace, table) {
            ("system", "local") => vec![vec![
                Some(types::text("local")),
                Some(types::text("COMPLETED")),
                Some(types::inet(self.address)),
                Some(types::text("resume-test-cluster")),
                Some(types::text("3.4.5")),
                Some(types::text("datacenter1")),
                Some(types::uuid(HOST_ID)),
                Some(types::inet(self.address)),
                Some(types::text("4")),
                Some(types::text("org.apache.cassandra.dht.Murmur3Partitioner")),
                Some(types::text("rack1")),
                Some(types::text(RELEASE_VERSION)),
                Some(types::inet(self.address)),
                schema_version,
                token(),
            ]],
            ("system_schema", "keyspaces") => self
                .keyspaces
                .iter()
                .map(|(name, replication)| {
                    let entries: Vec<_> = replication
                        .iter()
                        .map(|(k, v)| (types::text(k), types::text(&qualified_strategy(k, v))))
                        .collect();
                    vec![
                        Some(types::text(name)),
                        Some(types::boolean(true)),
                        Some(types::map(&entries)),
                    ]
                })
                .collect(),
            ("system_schema", "tables") => self
                .tables
                .keys()
                .map(|(ks, t)| {
                    vec![
                        Some(types::text(ks)),
                        Some(types::text(t)),
                        Some(types::text("")),
                    ]
                })
                .collect(),
            ("system_schema", "columns") => self
                .tables
                .iter()
                .flat_map(|((ks, t), table)| {
                    let mut positions: HashMap<ColumnKind, i32> = HashMap::new();
                    table
                        .columns
                        .iter()
                        .map(|c| {
                            let (kind, position) = match c.kind {
                                ColumnKind::PartitionKey => (
                                    "partition_key",
                                    next(&mut positions, ColumnKind::PartitionKey),
                                ),
                                ColumnKind::Clustering => {
                                    ("clustering", next(&mut positions, ColumnKind::Clustering))
                                }
                                ColumnKind::Regular => ("regular", -1),
                            };
                            let order = if c.kind == ColumnKind::Clustering {
                                "asc"
                            } else {
                                "none"
                            };
                            vec![
                                Some(types::text(ks)),
                                Some(types::text(t)),
                                Some(types::text(&c.name)),
                                Some(types::text(order)),
                                Some(types::text(kind)),
                                Some(types::int(position)),
                                Some(types::text(&c.ty.cql_name())),
                            ]
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
            ("system", "peers") => self
                .peers
                .iter()
                .enumerate()
                .map(|(i, (address, datacenter, rack))| {
                    let token = format!("{}", (i as i64 + 1) * (i64::MAX / 16));
                    vec![
                        Some(types::inet(*address)),
                        Some(types::text(datacenter)),
                        Some(types::uuid(HOST_ID + 1 + i as u128)),
                        Some(types::inet(*address)),
                        Some(types::text(rack)),
                        Some(types::text(RELEASE_VERSION)),
                        Some(types::inet(*address)),
                        schema_version.clone(),
                        Some(types::collection(&[types::text(&token)])),
                    ]
                })
                .collect(),
            // No views or user types: plain tables.
            _ => Vec::new(),
        }
    }
}

fn next(positions: &mut HashMap<ColumnKind, i32>, kind: ColumnKind) -> i32 {
    let slot = positions.entry(kind).or_insert(0);
    *slot += 1;
    *slot - 1
}

/// Cassandra stores the strategy class fully qualified.
fn qualified_strategy(key: &str, value: &str) -> String {
    if key == "class" && !value.contains('.') {
        format!("org.apache.cassandra.locator.{value}")
    } else {
        value.to_owned()
    }
}

/// Columns of the system tables the driver (and the store's health check)
/// read. `None` for a table Cassandra does not have (such as ScyllaDB's
/// `system_schema.scylla_tables`), which the driver expects to fail.
fn system_columns(keyspace: &str, table: &str) -> Option<Vec<ColumnDef>> {
    use CqlType::*;
    let text_set = || Set(Box::new(Text));
    let text_list = || List(Box::new(Text));
    let spec: Vec<(&str, CqlType, ColumnKind)> = match (keyspace, table) {
        ("system", "local") => vec![
            ("key", Text, ColumnKind::PartitionKey),
            ("bootstrapped", Text, ColumnKind::Regular),
            ("broadcast_address", Inet, ColumnKind::Regular),
            ("cluster_name", Text, ColumnKind::Regular),
            ("cql_version", Text, ColumnKind::Regular),
            ("data_center", Text, ColumnKind::Regular),
            ("host_id", Uuid, ColumnKind::Regular),
            ("listen_address", Inet, ColumnKind::Regular),
            ("native_protocol_version", Text, ColumnKind::Regular),
            ("partitioner", Text, ColumnKind::Regular),
            ("rack", Text, ColumnKind::Regular),
            ("release_version", Text, ColumnKind::Regular),
            ("rpc_address", Inet, ColumnKind::Regular),
            ("schema_version", Uuid, ColumnKind::Regular),
            ("tokens", text_set(), ColumnKind::Regular),
        ],
        ("system", "peers") => vec![
            ("peer", Inet, ColumnKind::PartitionKey),
            ("data_center", Text, ColumnKind::Regular),
            ("host_id", Uuid, ColumnKind::Regular),
            ("preferred_ip", Inet, ColumnKind::Regular),
            ("rack", Text, ColumnKind::Regular),
            ("release_version", Text, ColumnKind::Regular),
            ("rpc_address", Inet, ColumnKind::Regular),
            ("schema_version", Uuid, ColumnKind::Regular),
            ("tokens", text_set(), ColumnKind::Regular),
        ],
        ("system", "peers_v2") => vec![
            ("peer", Inet, ColumnKind::PartitionKey),
            ("peer_port", Int, ColumnKind::Clustering),
            ("data_center", Text, ColumnKind::Regular),
            ("host_id", Uuid, ColumnKind::Regular),
            ("native_address", Inet, ColumnKind::Regular),
            ("native_port", Int, ColumnKind::Regular),
            ("rack", Text, ColumnKind::Regular),
            ("release_version", Text, ColumnKind::Regular),
            ("schema_version", Uuid, ColumnKind::Regular),
            ("tokens", text_set(), ColumnKind::Regular),
        ],
        ("system_schema", "keyspaces") => vec![
            ("keyspace_name", Text, ColumnKind::PartitionKey),
            ("durable_writes", Boolean, ColumnKind::Regular),
            (
                "replication",
                Map(Box::new(Text), Box::new(Text)),
                ColumnKind::Regular,
            ),
        ],
        ("system_schema", "tables") => vec![
            ("keyspace_name", Text, ColumnKind::PartitionKey),
            ("table_name", Text, ColumnKind::Clustering),
            ("comment", Text, ColumnKind::Regular),
        ],
        ("system_schema", "columns") => vec![
            ("keyspace_name", Text, ColumnKind::PartitionKey),
            ("table_name", Text, ColumnKind::Clustering),
            ("column_name", Text, ColumnKind::Clustering),
            ("clustering_order", Text, ColumnKind::Regular),
            ("kind", Text, ColumnKind::Regular),
            ("position", Int, ColumnKind::Regular),
            ("type", Text, ColumnKind::Regular),
        ],
        ("system_schema", "views") => vec![
            ("keyspace_name", Text, ColumnKind::PartitionKey),
            ("view_name", Text, ColumnKind::Clustering),
            ("base_table_name", Text, ColumnKind::Regular),
        ],
        ("system_schema", "types") => vec![
            ("keyspace_name", Text, ColumnKind::PartitionKey),
            ("type_name", Text, ColumnKind::Clustering),
            ("field_names", text_list(), ColumnKind::Regular),
            ("field_types", text_list(), ColumnKind::Regular),
        ],
        _ => return None,
    };
    Some(
        spec.into_iter()
            .map(|(name, ty, kind)| ColumnDef {
                name: name.to_owned(),
                ty,
                kind,
            })
            .collect(),
    )
}

fn target_names(target: &Target) -> (String, String) {
    match target {
        Target::User(ks, t) | Target::System(ks, t) => (ks.clone(), t.clone()),
    }
}

fn column<'a>(defs: &'a [ColumnDef], name: &str) -> Result<&'a ColumnDef, CqlError> {
    defs.iter()
        .find(|c| c.name == name)
        .ok_or_else(|| CqlError::invalid(format!("Undefined column name {name}")))
}

fn index_of(defs: &[ColumnDef], name: &str) -> usize {
    defs.iter().position(|c| c.name == name).unwrap_or(0)
}

fn ordered(mut variables: Vec<(usize, (String, CqlType))>) -> Vec<(String, CqlType)> {
    variables.sort_by_key(|(i, _)| *i);
    variables.into_iter().map(|(_, v)| v).collect()
}

fn timestamp_variable(timestamp: &Option<Term>, variables: &mut Vec<(usize, (String, CqlType))>) {
    if let Some(Term::Marker(i)) = timestamp {
        variables.push((*i, ("[timestamp]".to_owned(), CqlType::Bigint)));
    }
}

fn filter_variables(
    defs: &[ColumnDef],
    filters: &[Filter],
    variables: &mut Vec<(usize, (String, CqlType))>,
) -> Result<(), CqlError> {
    for filter in filters {
        let def = column(defs, &filter.column)?;
        match &filter.relation {
            Relation::Eq(Term::Marker(i)) => {
                variables.push((*i, (def.name.clone(), def.ty.clone())))
            }
            Relation::In(InValues::Marker(i)) => {
                variables.push((
                    *i,
                    (
                        format!("in({})", def.name),
                        CqlType::List(Box::new(def.ty.clone())),
                    ),
                ));
            }
            Relation::In(InValues::Terms(terms)) => {
                for term in terms {
                    if let Term::Marker(i) = term {
                        variables.push((*i, (def.name.clone(), def.ty.clone())));
                    }
                }
            }
            Relation::Eq(_) => {}
        }
    }
    Ok(())
}

fn eq_marker(filter: &Filter) -> Option<(&str, usize)> {
    match filter.relation {
        Relation::Eq(Term::Marker(i)) => Some((filter.column.as_str(), i)),
        _ => None,
    }
}

/// Marker positions of the partition key columns, when every one is bound by a
/// marker (otherwise the driver cannot compute the token and gets none).
/// Positions are among the statement's markers, which are numbered in order.
fn pk_indexes<'a>(defs: &[ColumnDef], bound: impl Iterator<Item = (&'a str, usize)>) -> Vec<i16> {
    let bound: HashMap<&str, usize> = bound.collect();
    let mut indexes = Vec::new();
    for key in defs.iter().filter(|c| c.kind == ColumnKind::PartitionKey) {
        match bound.get(key.name.as_str()) {
            Some(&i) => indexes.push(i as i16),
            None => return Vec::new(),
        }
    }
    indexes
}

/// The bytes of `term` for column `column` of type `ty`: `Ok(None)` when the
/// bound value is "unset" (the column is left alone), `Ok(Some(None))` for
/// null. A literal that does not fit the type is rejected with Cassandra's
/// message.
fn term_value(
    term: &Term,
    column: &str,
    ty: &CqlType,
    values: &[Value],
) -> Result<Option<Value>, CqlError> {
    let misfit = |kind: &str, literal: &str| {
        CqlError::invalid(format!(
            "Invalid {kind} constant ({literal}) for \"{column}\" of type {}",
            ty.cql_name()
        ))
    };
    Ok(Some(match (term, ty) {
        (Term::Marker(i), _) => values
            .get(*i)
            .cloned()
            .ok_or_else(|| CqlError::invalid("missing bound value"))?,
        (Term::Str(s), CqlType::Text) => Some(types::text(s)),
        (Term::Str(s), _) => return Err(misfit("STRING", s)),
        (Term::Bool(b), CqlType::Boolean) => Some(types::boolean(*b)),
        (Term::Bool(b), _) => return Err(misfit("BOOLEAN", &b.to_string())),
        (Term::Number(n), CqlType::Int) => Some(types::int(
            n.parse().map_err(|_| misfit(number_kind(n), n))?,
        )),
        (Term::Number(n), CqlType::Bigint) => Some(types::bigint(
            n.parse().map_err(|_| misfit(number_kind(n), n))?,
        )),
        (Term::Number(n), _) => return Err(misfit(number_kind(n), n)),
    }))
}

/// How Cassandra names a number literal in its errors.
fn number_kind(literal: &str) -> &'static str {
    if literal.contains('.') {
        "FLOAT"
    } else {
        "INTEGER"
    }
}

fn write_timestamp(
    term: Option<&Term>,
    values: &[Value],
    client_timestamp: Option<i64>,
) -> Result<i64, CqlError> {
    match term {
        Some(term) => match term_value(term, "[timestamp]", &CqlType::Bigint, values)?.flatten() {
            Some(bytes) => {
                let array: [u8; 8] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| CqlError::invalid("timestamp must be a bigint"))?;
                Ok(i64::from_be_bytes(array))
            }
            None => Err(CqlError::invalid("Invalid null value of timestamp")),
        },
        None => Ok(client_timestamp.unwrap_or_else(now_micros)),
    }
}

/// The seconds of a `USING TTL`; `None` without one or for 0 (no expiry).
fn write_ttl(term: Option<&Term>, values: &[Value]) -> Result<Option<i64>, CqlError> {
    let Some(term) = term else { return Ok(None) };
    let seconds = match term_value(term, "[ttl]", &CqlType::Int, values)?.flatten() {
        Some(bytes) => {
            let array: [u8; 4] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| CqlError::invalid("ttl must be an int"))?;
            i32::from_be_bytes(array)
        }
        None => return Ok(None),
    };
    if !(0..=630_720_000).contains(&seconds) {
        return Err(CqlError::invalid(format!(
            "ttl is out of range (0 to 630720000 seconds): {seconds}"
        )));
    }
    Ok((seconds > 0).then_some(i64::from(seconds)))
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn row_key(table: &Table, value_of: impl Fn(&str) -> Value) -> Result<RowKey, CqlError> {
    let parts = |kind| {
        table
            .key_columns(kind)
            .iter()
            .map(|c| {
                value_of(&c.name).ok_or_else(|| {
                    CqlError::invalid(format!(
                        "Invalid null value for primary key column {}",
                        c.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let partition = parts(ColumnKind::PartitionKey)?;
    let clustering = parts(ColumnKind::Clustering)?;
    Ok((partition, clustering))
}

/// The partition that `filters` pin down with `=` on every partition key
/// column, if they do and none of those values is null: a select that names
/// its partition reads only that partition, as a real node does, instead of
/// the whole table (the filters are still applied to what it reads).
fn pinned_partition(
    table: &Table,
    filters: &[Filter],
    values: &[Value],
) -> Result<Option<Vec<Vec<u8>>>, CqlError> {
    let mut partition = Vec::new();
    for key in table.key_columns(ColumnKind::PartitionKey) {
        let term = filters.iter().find_map(|filter| match &filter.relation {
            Relation::Eq(term) if filter.column == key.name => Some(term),
            _ => None,
        });
        let Some(term) = term else {
            return Ok(None);
        };
        match term_value(term, &key.name, &key.ty, values)?.flatten() {
            Some(value) => partition.push(value),
            None => return Ok(None),
        }
    }
    Ok(Some(partition))
}

/// Every live row of a user table, or of one of its partitions, full width,
/// in storage order.
fn live_rows(table: &Table, now: i64, partition: Option<Vec<Vec<u8>>>) -> Vec<Vec<Value>> {
    let rows: Box<dyn Iterator<Item = (&RowKey, &Row)>> = match partition {
        // Keys sort by partition first, and an empty clustering key before
        // every other: the partition's rows are one range.
        Some(partition) => Box::new(
            table
                .rows
                .range((partition.clone(), Vec::new())..)
                .take_while(move |((key, _), _)| *key == partition),
        ),
        None => Box::new(table.rows.iter()),
    };
    rows.filter(|(_, row)| row.is_live(now))
        .map(|((partition, clustering), row)| {
            let mut partition = partition.iter();
            let mut clustering = clustering.iter();
            table
                .columns
                .iter()
                .map(|c| match c.kind {
                    ColumnKind::PartitionKey => partition.next().cloned(),
                    ColumnKind::Clustering => clustering.next().cloned(),
                    ColumnKind::Regular => row
                        .live_cell(&c.name, now)
                        .and_then(|cell| cell.value.clone()),
                })
                .collect()
        })
        .collect()
}

fn row_matches(
    defs: &[ColumnDef],
    row: &[Value],
    filters: &[Filter],
    values: &[Value],
) -> Result<bool, CqlError> {
    for filter in filters {
        let def = column(defs, &filter.column)?;
        let actual = &row[index_of(defs, &filter.column)];
        let matched = match &filter.relation {
            Relation::Eq(term) => {
                term_value(term, &def.name, &def.ty, values)?.flatten() == *actual
            }
            Relation::In(InValues::Terms(terms)) => {
                let mut any = false;
                for term in terms {
                    any |= term_value(term, &def.name, &def.ty, values)?.flatten() == *actual;
                }
                any
            }
            Relation::In(InValues::Marker(i)) => {
                let list = values.get(*i).cloned().flatten().unwrap_or_default();
                let items = types::decode_collection(&list).map_err(CqlError::invalid)?;
                items.into_iter().any(|item| Some(item) == *actual)
            }
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cql::parse;

    fn engine_with_schema() -> Engine {
        let mut engine = Engine::new("127.0.0.1".parse().unwrap());
        for ddl in [
            "CREATE KEYSPACE IF NOT EXISTS ks WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
            "CREATE TABLE IF NOT EXISTS ks.p (user_id text, movie_id text, position_ms bigint, updated_at_us bigint, \
             PRIMARY KEY ((user_id), movie_id))",
        ] {
            engine
                .execute(&parse(ddl).unwrap(), &[], None, None)
                .unwrap();
        }
        engine
    }

    fn put(engine: &mut Engine, position: i64, at: i64) {
        let insert = parse("INSERT INTO ks.p (user_id, movie_id, position_ms, updated_at_us) VALUES (?, ?, ?, ?) USING TIMESTAMP ?").unwrap();
        let values = [
            types::text("u"),
            types::text("m"),
            types::bigint(position),
            types::bigint(at),
            types::bigint(at),
        ];
        engine
            .execute(&insert, &values.map(Some), None, None)
            .unwrap();
    }

    fn delete(engine: &mut Engine, at: i64) {
        let delete =
            parse("DELETE FROM ks.p USING TIMESTAMP ? WHERE user_id = ? AND movie_id = ?").unwrap();
        let values = [types::bigint(at), types::text("u"), types::text("m")];
        engine
            .execute(&delete, &values.map(Some), None, None)
            .unwrap();
    }

    fn position(engine: &Engine) -> Option<(Vec<u8>, i64)> {
        engine.cell("p", &[types::text("u")], &[types::text("m")], "position_ms")
    }

    #[test]
    fn last_write_wins_by_timestamp_with_cassandra_tie_breaks() {
        let mut engine = engine_with_schema();
        put(&mut engine, 5, 10);
        put(&mut engine, 9, 5);
        assert_eq!(position(&engine), Some((types::bigint(5), 10)));
        put(&mut engine, 7, 10);
        assert_eq!(
            position(&engine),
            Some((types::bigint(7), 10)),
            "larger value wins a tie"
        );
        delete(&mut engine, 10);
        assert_eq!(position(&engine), None, "tombstone wins a tie");
        put(&mut engine, 8, 9);
        assert_eq!(position(&engine), None, "older write stays hidden");
        put(&mut engine, 3, 11);
        assert_eq!(position(&engine), Some((types::bigint(3), 11)));
    }

    /// The store's two writes, as `statements.rs` has them, on a table with
    /// the `deleted` column.
    fn soft_tombstone_engine() -> Engine {
        let mut engine = engine_with_schema();
        let alter = parse("ALTER TABLE ks.p ADD deleted boolean").unwrap();
        engine.execute(&alter, &[], None, None).unwrap();
        engine
    }

    fn put_live(engine: &mut Engine, position: i64, at: i64) {
        let insert = parse(
            "INSERT INTO ks.p (user_id, movie_id, position_ms, updated_at_us, deleted) \
             VALUES (?, ?, ?, ?, false) USING TIMESTAMP ?",
        )
        .unwrap();
        let values = [
            types::text("u"),
            types::text("m"),
            types::bigint(position),
            types::bigint(at),
            types::bigint(at),
        ];
        engine
            .execute(&insert, &values.map(Some), None, None)
            .unwrap();
    }

    fn put_tombstone(engine: &mut Engine, at: i64) {
        let insert = parse(
            "INSERT INTO ks.p (user_id, movie_id, position_ms, updated_at_us, deleted) \
             VALUES (?, ?, 0, ?, true) USING TIMESTAMP ?",
        )
        .unwrap();
        let values = [
            types::text("u"),
            types::text("m"),
            types::bigint(at),
            types::bigint(at),
        ];
        engine
            .execute(&insert, &values.map(Some), None, None)
            .unwrap();
    }

    fn deleted_cell(engine: &Engine) -> Option<(Vec<u8>, i64)> {
        engine.cell("p", &[types::text("u")], &[types::text("m")], "deleted")
    }

    #[test]
    fn soft_tombstones_follow_cell_timestamps_and_win_a_tie() {
        let mut engine = soft_tombstone_engine();
        put_live(&mut engine, 5, 10);
        put_tombstone(&mut engine, 10);
        assert_eq!(
            deleted_cell(&engine),
            Some((types::boolean(true), 10)),
            "true beats false on a tie"
        );
        assert_eq!(
            position(&engine),
            Some((types::bigint(5), 10)),
            "the larger position cell stays"
        );
        put_live(&mut engine, 8, 9);
        assert_eq!(deleted_cell(&engine), Some((types::boolean(true), 10)));
        put_live(&mut engine, 3, 11);
        assert_eq!(deleted_cell(&engine), Some((types::boolean(false), 11)));
        assert_eq!(position(&engine), Some((types::bigint(3), 11)));
    }

    #[test]
    fn literals_must_fit_their_column() {
        let engine = soft_tombstone_engine();
        for (text, expected) in [
            (
                "INSERT INTO ks.p (user_id, movie_id, position_ms) VALUES (?, ?, true)",
                "Invalid BOOLEAN constant (true) for \"position_ms\" of type bigint",
            ),
            (
                "INSERT INTO ks.p (user_id, movie_id, deleted) VALUES (?, ?, 0)",
                "Invalid INTEGER constant (0) for \"deleted\" of type boolean",
            ),
            (
                "INSERT INTO ks.p (user_id, movie_id, deleted) VALUES (?, ?, 'true')",
                "Invalid STRING constant (true) for \"deleted\" of type boolean",
            ),
            (
                "INSERT INTO ks.p (user_id, movie_id, position_ms) VALUES (?, ?, 1.5)",
                "Invalid FLOAT constant (1.5) for \"position_ms\" of type bigint",
            ),
        ] {
            let err = engine.plan(&parse(text).unwrap(), None).unwrap_err();
            assert_eq!(err.message, expected, "{text}");
        }
    }

    #[test]
    fn added_columns_are_null_in_older_rows() {
        let mut engine = engine_with_schema();
        put(&mut engine, 5, 10);
        let tombstone_insert = parse(
            "INSERT INTO ks.p (user_id, movie_id, position_ms, updated_at_us, deleted) \
             VALUES (?, ?, 0, ?, true) USING TIMESTAMP ?",
        )
        .unwrap();
        let err = engine.plan(&tombstone_insert, None).unwrap_err();
        assert!(
            err.message.contains("Undefined column name deleted"),
            "{}",
            err.message
        );
        let alter = parse("ALTER TABLE ks.p ADD deleted boolean").unwrap();
        assert!(matches!(
            engine.execute(&alter, &[], None, None),
            Ok(Outcome::SchemaChange(SchemaChange::TableUpdated(..)))
        ));
        let again = engine.execute(&alter, &[], None, None).unwrap_err();
        assert!(
            again.message.contains("already exists"),
            "{}",
            again.message
        );
        assert_eq!(deleted_cell(&engine), None);
        let select = parse("SELECT position_ms, deleted FROM ks.p WHERE user_id = 'u'").unwrap();
        let Ok(Outcome::Rows { rows, .. }) = engine.execute(&select, &[], None, None) else {
            panic!("select")
        };
        assert_eq!(rows, [vec![Some(types::bigint(5)), None]]);
        assert!(engine.plan(&tombstone_insert, None).is_ok());
    }

    #[test]
    fn missing_tables_and_columns_fail_like_cassandra() {
        let mut engine = Engine::new("127.0.0.1".parse().unwrap());
        let select = parse("SELECT a FROM ks.p WHERE user_id = ?").unwrap();
        let err = engine.plan(&select, None).unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
        engine = engine_with_schema();
        let err = engine
            .plan(&parse("SELECT nope FROM ks.p").unwrap(), None)
            .unwrap_err();
        assert!(err.message.contains("Undefined column name nope"));
        let err = engine
            .plan(&parse("SELECT a FROM ks.other").unwrap(), None)
            .unwrap_err();
        assert!(err.message.contains("unconfigured table other"));
        let err = engine
            .execute(
                &parse("SELECT a FROM system_schema.scylla_tables").unwrap(),
                &[],
                None,
                None,
            )
            .unwrap_err();
        assert!(err.message.contains("unconfigured table"));
    }

    #[test]
    fn plans_describe_markers_and_partition_key() {
        let engine = engine_with_schema();
        let plan = engine
            .plan(
                &parse("DELETE FROM ks.p USING TIMESTAMP ? WHERE user_id = ? AND movie_id = ?")
                    .unwrap(),
                None,
            )
            .unwrap();
        let names: Vec<_> = plan.variables.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["[timestamp]", "user_id", "movie_id"]);
        assert_eq!(plan.pk_indexes, [1]);
    }

    #[test]
    fn a_select_by_partition_reads_that_partition_only() {
        let mut engine = engine_with_schema();
        let insert = parse(
            "INSERT INTO ks.p (user_id, movie_id, position_ms, updated_at_us) VALUES (?, ?, ?, 1)",
        )
        .unwrap();
        // Neighbours in key order: "a" is a prefix of "ab", and "" sorts first.
        for (user, movie, position) in [
            ("", "m", 0),
            ("a", "m1", 1),
            ("a", "m2", 2),
            ("ab", "m1", 3),
            ("b", "m1", 4),
        ] {
            let values = [
                types::text(user),
                types::text(movie),
                types::bigint(position),
            ];
            engine
                .execute(&insert, &values.map(Some), None, None)
                .unwrap();
        }
        let positions = |engine: &mut Engine, cql: &str, values: &[Vec<u8>]| {
            let values: Vec<Value> = values.iter().cloned().map(Some).collect();
            let Ok(Outcome::Rows { rows, .. }) =
                engine.execute(&parse(cql).unwrap(), &values, None, None)
            else {
                panic!("{cql}")
            };
            rows.into_iter()
                .map(|row| row[0].clone().expect("position"))
                .collect::<Vec<_>>()
        };
        let by_user = "SELECT position_ms FROM ks.p WHERE user_id = ?";
        for (user, expected) in [
            ("a", vec![1, 2]),
            ("ab", vec![3]),
            ("", vec![0]),
            ("c", vec![]),
        ] {
            assert_eq!(
                positions(&mut engine, by_user, &[types::text(user)]),
                expected.into_iter().map(types::bigint).collect::<Vec<_>>(),
                "user {user:?}"
            );
        }
        assert_eq!(
            positions(
                &mut engine,
                "SELECT position_ms FROM ks.p WHERE user_id = ? AND movie_id = ?",
                &[types::text("a"), types::text("m2")]
            ),
            [types::bigint(2)]
        );
        // Without the partition key the whole table is read.
        assert_eq!(
            positions(&mut engine, "SELECT position_ms FROM ks.p", &[]).len(),
            5
        );
    }
}
