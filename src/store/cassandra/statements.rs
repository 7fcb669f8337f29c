//! The CQL text of every data statement the store prepares.
//!
//! Kept apart from the driver calls so the text can be checked against
//! `schema.cql` (the integration tests compare the columns) and read in one
//! place. Every statement names its keyspace, so no `USE` is needed and the
//! driver can route each one by its partition key (`user_id`).
//!
//! Every write is an `INSERT` of every position column, so the position cells
//! of a row always come from one write (or, on a timestamp tie, Cassandra's
//! per-cell tie-break of two): a position writes `deleted = false`, a delete
//! writes a *soft tombstone* (`deleted = true`, position 0) that reads can see,
//! with its timestamp. The watched pair (`watched`, `last_completed_at_us`) is
//! written only by the writes that change it, in the same statement and under
//! the same timestamp: a completing position sets both, an unwatching one sets
//! `watched = false` and leaves the last completion. Ordinary positions and
//! deletes never name them, so they keep their own timestamps.

/// The table, as created by `schema.cql`.
pub const TABLE: &str = "playback_position";

/// The data statements of one keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statements {
    /// Upsert of one position (`deleted = false`); binds user_id, movie_id,
    /// position_ms, updated_at_us, then the write timestamp and the TTL in
    /// seconds (0: none).
    pub insert: String,
    /// [`Self::insert`] of a position that completes the title (`watched =
    /// true`); binds user_id, movie_id, position_ms, updated_at_us,
    /// last_completed_at_us, then the write timestamp and the TTL.
    pub insert_completed: String,
    /// [`Self::insert`] of a position that marks the title unwatched
    /// (`watched = false`); binds as `insert`.
    pub insert_unwatched: String,
    /// Upsert of a soft tombstone (`deleted = true`, position 0); binds user_id,
    /// movie_id, updated_at_us, then the write timestamp and the TTL.
    pub delete: String,
    /// One title of one viewer (what `get` and `put`'s read-back run); binds
    /// user_id, movie_id.
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
                "INSERT INTO {keyspace}.{TABLE} (user_id, movie_id, position_ms, updated_at_us, deleted) \
                 VALUES (?, ?, ?, ?, false) USING TIMESTAMP ? AND TTL ?"
            ),
            insert_completed: format!(
                "INSERT INTO {keyspace}.{TABLE} (user_id, movie_id, position_ms, updated_at_us, deleted, \
                 watched, last_completed_at_us) \
                 VALUES (?, ?, ?, ?, false, true, ?) USING TIMESTAMP ? AND TTL ?"
            ),
            insert_unwatched: format!(
                "INSERT INTO {keyspace}.{TABLE} (user_id, movie_id, position_ms, updated_at_us, deleted, \
                 watched) \
                 VALUES (?, ?, ?, ?, false, false) USING TIMESTAMP ? AND TTL ?"
            ),
            delete: format!(
                "INSERT INTO {keyspace}.{TABLE} (user_id, movie_id, position_ms, updated_at_us, deleted) \
                 VALUES (?, ?, 0, ?, true) USING TIMESTAMP ? AND TTL ?"
            ),
            select_one: format!(
                "SELECT position_ms, updated_at_us, deleted, watched, last_completed_at_us \
                 FROM {keyspace}.{TABLE} WHERE user_id = ? AND movie_id = ?"
            ),
            select_user: format!(
                "SELECT movie_id, position_ms, updated_at_us, deleted, watched, last_completed_at_us \
                 FROM {keyspace}.{TABLE} WHERE user_id = ?"
            ),
            health: "SELECT release_version FROM system.local".to_owned(),
        }
    }

    /// Every data statement that touches the table.
    pub fn table_statements(&self) -> [&str; 6] {
        [
            &self.insert,
            &self.insert_completed,
            &self.insert_unwatched,
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
        for write in [
            &statements.insert,
            &statements.insert_completed,
            &statements.insert_unwatched,
            &statements.delete,
        ] {
            assert!(write.ends_with("USING TIMESTAMP ? AND TTL ?"), "{write}");
        }
    }

    #[test]
    fn only_the_writes_that_change_the_watched_state_name_it() {
        let statements = Statements::for_keyspace("ks1");
        for ordinary in [&statements.insert, &statements.delete] {
            assert!(!ordinary.contains("watched"), "{ordinary}");
        }
        assert!(
            statements
                .insert_completed
                .contains("VALUES (?, ?, ?, ?, false, true, ?)")
        );
        assert!(
            statements
                .insert_unwatched
                .contains("VALUES (?, ?, ?, ?, false, false)")
        );
        assert!(!statements.insert_unwatched.contains("last_completed_at_us"));
        for read in [&statements.select_one, &statements.select_user] {
            assert!(read.contains("watched, last_completed_at_us"), "{read}");
        }
    }

    #[test]
    fn both_writes_say_whether_the_row_is_a_tombstone() {
        let statements = Statements::for_keyspace("ks1");
        assert!(statements.insert.contains("VALUES (?, ?, ?, ?, false)"));
        assert!(statements.delete.contains("VALUES (?, ?, 0, ?, true)"));
        for read in [&statements.select_one, &statements.select_user] {
            assert!(read.contains("deleted"), "{read}");
        }
    }
}
