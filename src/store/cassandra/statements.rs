//! The CQL text of every data statement the store prepares.
//!
//! Kept apart from the driver calls so the text can be checked against
//! `schema.cql` (the integration tests compare the columns) and read in one
//! place. Every statement names its keyspace, so no `USE` is needed and the
//! driver can route each one by its partition key (`user_id`).

/// The table, as created by `schema.cql`.
pub const TABLE: &str = "playback_position";

/// The data statements of one keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statements {
    /// Upsert of one position; binds user_id, movie_id, position_ms,
    /// updated_at_us, then the write timestamp.
    pub insert: String,
    /// Row tombstone; binds the write timestamp, user_id, movie_id.
    pub delete: String,
    /// One title of one viewer; binds user_id, movie_id.
    pub select_one: String,
    /// A viewer's whole partition; binds user_id.
    pub select_user: String,
    /// The health probe: answered by the coordinator alone, touches no data.
    pub health: String,
}

impl Statements {
    /// The statements against `keyspace`.
    pub fn for_keyspace(keyspace: &str) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {keyspace}.{TABLE} (user_id, movie_id, position_ms, updated_at_us) \
                 VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
            ),
            delete: format!(
                "DELETE FROM {keyspace}.{TABLE} USING TIMESTAMP ? WHERE user_id = ? AND movie_id = ?"
            ),
            select_one: format!(
                "SELECT position_ms, updated_at_us FROM {keyspace}.{TABLE} WHERE user_id = ? AND movie_id = ?"
            ),
            select_user: format!(
                "SELECT movie_id, position_ms, updated_at_us FROM {keyspace}.{TABLE} WHERE user_id = ?"
            ),
            health: "SELECT release_version FROM system.local".to_owned(),
        }
    }

    /// Every data statement that touches the table.
    pub fn table_statements(&self) -> [&str; 4] {
        [
            &self.insert,
            &self.delete,
            &self.select_one,
            &self.select_user,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_statement_names_the_keyspace_and_binds_the_partition_key() {
        let statements = Statements::for_keyspace("ks1");
        for statement in statements.table_statements() {
            assert!(statement.contains("ks1.playback_position"), "{statement}");
            assert!(statement.contains("user_id"), "{statement}");
        }
        assert!(statements.insert.ends_with("USING TIMESTAMP ?"));
        assert!(statements.delete.contains("USING TIMESTAMP ?"));
    }
}
