//! `schema.cql` and how it is applied to a cluster.
//!
//! The schema lives in one file at the repository root and is compiled into the
//! binary, so the statements the server applies are always the ones reviewed in
//! that file. Applying substitutes the configured keyspace name and replication
//! map, then runs the statements one by one; each is `IF NOT EXISTS`, so applying
//! twice is harmless. Since `IF NOT EXISTS` never changes a table that is
//! already there, a table created by an older `schema.cql` can lack columns the
//! server now needs: applying then reads the table's columns from
//! `system_schema.columns` and adds the missing ones with the `ALTER TABLE`s
//! [`missing_column_statements`] names (the start-up error names them too). A
//! column only ever gets added, never changed or dropped, so the upgrade is
//! as idempotent as the rest. This module owns only DDL; the data statements
//! live in `statements.rs`.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::Statement;

use super::statements::TABLE;
use super::{CassandraSettings, StoreError, open_session};

/// The schema exactly as reviewed, with `resume` as the keyspace name.
pub const SCHEMA_CQL: &str = include_str!("../../../schema.cql");

/// The keyspace name written in `schema.cql`, replaced when applied.
const SCHEMA_KEYSPACE: &str = "resume";

/// Statements of [`SCHEMA_CQL`] for `keyspace` with `replication`, comments
/// removed, in file order, without their trailing `;`.
///
/// `keyspace` and `replication` are expected to be validated already (see
/// `CassandraSettings::from_config`); they are spliced into the text.
pub fn schema_statements(keyspace: &str, replication: &str) -> Vec<String> {
    schema_statements_of(SCHEMA_CQL, keyspace, replication)
}

/// [`schema_statements`] of `cql`, a schema text of the same shape (an older
/// `schema.cql`, say).
pub fn schema_statements_of(cql: &str, keyspace: &str, replication: &str) -> Vec<String> {
    split_statements(cql)
        .into_iter()
        .map(|statement| substitute(&statement, keyspace, replication))
        .collect()
}

/// Applies `schema.cql` to the cluster of `settings`: creates the keyspace (with
/// `settings.replication`) and the table if they do not exist yet, and adds the
/// columns of `schema.cql` an existing table lacks. Idempotent.
///
/// Without a replication map it refuses before connecting: outside an explicit
/// development switch, a keyspace must not be created with one replica.
pub async fn apply_schema(settings: &CassandraSettings) -> Result<(), StoreError> {
    let replication = settings.replication.as_deref().ok_or_else(|| {
        StoreError::Backend(
            "creating the schema needs a replication map: set --cassandra-replication / \
             RESUME_CASSANDRA_REPLICATION, e.g. \"{'class': 'NetworkTopologyStrategy', 'dc1': 3}\", \
             or --cassandra-development for a one-node development cluster"
                .to_owned(),
        )
    })?;
    // The keyspace may not exist yet, so no schema metadata is asked for.
    let session = open_session(settings, None).await?;
    for statement in schema_statements(&settings.keyspace, replication) {
        run_ddl(&session, &statement, settings.schema_timeout).await?;
    }
    let existing = existing_columns(&session, &settings.keyspace).await?;
    for statement in missing_column_statements(&settings.keyspace, &existing).unwrap_or_default() {
        tracing::info!(%statement, "adding a column of schema.cql to an older table");
        run_ddl(&session, &statement, settings.schema_timeout).await?;
    }
    tracing::info!(keyspace = %settings.keyspace, "schema applied");
    Ok(())
}

async fn run_ddl(session: &Session, text: &str, timeout: Duration) -> Result<(), StoreError> {
    let mut statement = Statement::new(text);
    statement.set_request_timeout(Some(timeout));
    // The driver waits for schema agreement after each change, so the next
    // statement (the table after its keyspace) sees the previous one everywhere.
    session
        .query_unpaged(statement, ())
        .await
        .map(drop)
        .map_err(|e: ExecutionError| {
            let first_line = text.lines().next().unwrap_or_default();
            StoreError::Backend(format!("applying schema failed at `{first_line}`: {e}"))
        })
}

/// One column of the table as `schema.cql` defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// The column name.
    pub name: String,
    /// Its CQL type as written in the file (`bigint`, `boolean`, …).
    pub cql_type: String,
    /// Whether it is part of the primary key, which no `ALTER TABLE` can add.
    pub in_primary_key: bool,
}

/// The columns of the table in `schema.cql`, in file order.
pub fn table_columns() -> Vec<TableColumn> {
    let statements = split_statements(SCHEMA_CQL);
    let Some(create) = statements
        .iter()
        .find(|s| s.starts_with("CREATE TABLE") && s.contains(&format!(".{TABLE} (")))
    else {
        return Vec::new();
    };
    let Some(open) = create.find('(') else {
        return Vec::new();
    };
    // The column definitions: the body's top-level comma-separated parts.
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    for c in create[open + 1..].chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' if depth > 0 => depth -= 1,
            ')' => break,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    let mut columns = Vec::new();
    let mut key_names = Vec::new();
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let upper = part.to_ascii_uppercase();
        if upper.starts_with("PRIMARY KEY") {
            key_names.extend(
                part["PRIMARY KEY".len()..]
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        let Some((name, rest)) = part.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim();
        let (cql_type, inline_key) = match rest.to_ascii_uppercase().find("PRIMARY KEY") {
            Some(at) => (rest[..at].trim(), true),
            None => (rest, false),
        };
        if inline_key {
            key_names.push(name.to_owned());
        }
        columns.push(TableColumn {
            name: name.to_owned(),
            cql_type: cql_type.to_owned(),
            in_primary_key: false,
        });
    }
    for column in &mut columns {
        column.in_primary_key = key_names.contains(&column.name);
    }
    columns
}

/// The `ALTER TABLE` statements that give an existing table, whose columns are
/// `existing`, the columns of `schema.cql` it lacks; `None` when it lacks none,
/// or lacks a primary-key column (then no `ALTER` can fix it).
pub fn missing_column_statements(keyspace: &str, existing: &[String]) -> Option<Vec<String>> {
    let missing: Vec<TableColumn> = table_columns()
        .into_iter()
        .filter(|column| !existing.contains(&column.name))
        .collect();
    if missing.is_empty() || missing.iter().any(|column| column.in_primary_key) {
        return None;
    }
    Some(
        missing
            .iter()
            .map(|column| {
                format!(
                    "ALTER TABLE {keyspace}.{TABLE} ADD {} {}",
                    column.name, column.cql_type
                )
            })
            .collect(),
    )
}

/// The column names the cluster has for the table in `keyspace`; empty when
/// the table does not exist.
pub(crate) async fn existing_columns(
    session: &Session,
    keyspace: &str,
) -> Result<Vec<String>, StoreError> {
    let query = "SELECT column_name FROM system_schema.columns \
                 WHERE keyspace_name = ? AND table_name = ?";
    let describe = |e: &dyn std::fmt::Display| {
        StoreError::Backend(format!("reading the columns of {keyspace}.{TABLE}: {e}"))
    };
    let rows = session
        .query_unpaged(query, (keyspace, TABLE))
        .await
        .map_err(|e| describe(&e))?
        .into_rows_result()
        .map_err(|e| describe(&e))?;
    rows.rows::<(String,)>()
        .map_err(|e| describe(&e))?
        .map(|row| row.map(|(name,)| name).map_err(|e| describe(&e)))
        .collect()
}

/// Splits CQL text into statements, dropping `--` and `//` line comments and
/// blank statements. Quotes are respected, so a `;` inside a string literal
/// does not split.
fn split_statements(cql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in cql.lines() {
        let mut in_quote = false;
        for (i, c) in line.char_indices() {
            match c {
                '\'' => {
                    in_quote = !in_quote;
                    current.push(c);
                }
                '-' | '/' if !in_quote && line[i + 1..].starts_with(c) => break,
                ';' if !in_quote => {
                    push_statement(&mut statements, &mut current);
                }
                _ => current.push(c),
            }
        }
        current.push('\n');
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let trimmed: Vec<&str> = current
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if !trimmed.is_empty() {
        statements.push(trimmed.join("\n"));
    }
    current.clear();
}

/// Puts the configured keyspace and replication into one statement of the file.
fn substitute(statement: &str, keyspace: &str, replication: &str) -> String {
    let qualified = statement.replace(&format!("{SCHEMA_KEYSPACE}."), &format!("{keyspace}."));
    let keyspace_clause = format!("KEYSPACE IF NOT EXISTS {SCHEMA_KEYSPACE}");
    if !qualified.contains(&keyspace_clause) {
        return qualified;
    }
    let named = qualified.replace(
        &keyspace_clause,
        &format!("KEYSPACE IF NOT EXISTS {keyspace}"),
    );
    match (named.find('{'), named.rfind('}')) {
        (Some(open), Some(close)) if open < close => {
            format!("{}{replication}{}", &named[..open], &named[close + 1..])
        }
        _ => named,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_a_keyspace_then_the_table() {
        let statements = schema_statements(
            "resume",
            "{'class': 'SimpleStrategy', 'replication_factor': 1}",
        );
        assert_eq!(statements.len(), 2, "{statements:#?}");
        assert!(statements[0].starts_with("CREATE KEYSPACE IF NOT EXISTS resume"));
        assert!(statements[1].starts_with("CREATE TABLE IF NOT EXISTS resume.playback_position"));
        assert!(
            statements
                .iter()
                .all(|s| !s.contains("--") && !s.contains(';'))
        );
    }

    #[test]
    fn keyspace_and_replication_are_substituted() {
        let statements =
            schema_statements("prod_ks", "{'class': 'NetworkTopologyStrategy', 'dc1': 3}");
        assert_eq!(
            statements[0],
            "CREATE KEYSPACE IF NOT EXISTS prod_ks\n    WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}"
        );
        assert!(
            statements[1].starts_with("CREATE TABLE IF NOT EXISTS prod_ks.playback_position (")
        );
        assert!(!statements.join("\n").contains("resume"));
    }

    #[test]
    fn the_table_columns_are_read_from_the_file() {
        let columns = table_columns();
        let described: Vec<(&str, &str, bool)> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.cql_type.as_str(), c.in_primary_key))
            .collect();
        assert_eq!(
            described,
            [
                ("user_id", "text", true),
                ("movie_id", "text", true),
                ("position_ms", "bigint", false),
                ("updated_at_us", "bigint", false),
                ("deleted", "boolean", false),
                ("watched", "boolean", false),
                ("last_completed_at_us", "bigint", false),
            ]
        );
    }

    #[test]
    fn a_table_without_a_newer_column_gets_the_alter_that_adds_it() {
        let existing = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let old = existing(&["user_id", "movie_id", "position_ms", "updated_at_us"]);
        assert_eq!(
            missing_column_statements("prod_ks", &old),
            Some(vec![
                "ALTER TABLE prod_ks.playback_position ADD deleted boolean".to_owned(),
                "ALTER TABLE prod_ks.playback_position ADD watched boolean".to_owned(),
                "ALTER TABLE prod_ks.playback_position ADD last_completed_at_us bigint".to_owned(),
            ])
        );
        let before_watched = existing(&[
            "user_id",
            "movie_id",
            "position_ms",
            "updated_at_us",
            "deleted",
        ]);
        assert_eq!(
            missing_column_statements("prod_ks", &before_watched),
            Some(vec![
                "ALTER TABLE prod_ks.playback_position ADD watched boolean".to_owned(),
                "ALTER TABLE prod_ks.playback_position ADD last_completed_at_us bigint".to_owned(),
            ])
        );
        let current = existing(&[
            "user_id",
            "movie_id",
            "position_ms",
            "updated_at_us",
            "deleted",
            "watched",
            "last_completed_at_us",
        ]);
        assert_eq!(missing_column_statements("prod_ks", &current), None);
        let other_key = existing(&["user_id", "title", "position_ms", "updated_at_us"]);
        assert_eq!(
            missing_column_statements("prod_ks", &other_key),
            None,
            "a missing key column cannot be added"
        );
    }

    #[test]
    fn splitting_keeps_quoted_semicolons_and_drops_comments() {
        let split = split_statements("-- a\nCREATE X 'a;b'; // c\n\nSELECT 1;\n-- end");
        assert_eq!(split, ["CREATE X 'a;b'", "SELECT 1"]);
    }
}
