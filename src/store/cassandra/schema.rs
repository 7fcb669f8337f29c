//! `schema.cql` and how it is applied to a cluster.
//!
//! The schema lives in one file at the repository root and is compiled into the
//! binary, so the statements the server applies are always the ones reviewed in
//! that file. Applying substitutes the configured keyspace name and replication
//! map, then runs the statements one by one; each is `IF NOT EXISTS`, so applying
//! twice is harmless. This module owns only DDL; the data statements live in
//! `statements.rs`.

use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::Statement;

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
    split_statements(SCHEMA_CQL)
        .into_iter()
        .map(|statement| substitute(&statement, keyspace, replication))
        .collect()
}

/// Applies `schema.cql` to the cluster of `settings`: creates the keyspace (with
/// `settings.replication`) and the table if they do not exist yet. Idempotent.
pub async fn apply_schema(settings: &CassandraSettings) -> Result<(), StoreError> {
    // The keyspace may not exist yet, so no schema metadata is asked for.
    let session = open_session(settings, None).await?;
    for statement in schema_statements(&settings.keyspace, &settings.replication) {
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
    fn splitting_keeps_quoted_semicolons_and_drops_comments() {
        let split = split_statements("-- a\nCREATE X 'a;b'; // c\n\nSELECT 1;\n-- end");
        assert_eq!(split, ["CREATE X 'a;b'", "SELECT 1"]);
    }
}
