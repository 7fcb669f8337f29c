//! Cassandra / ScyllaDB backend (not yet implemented).
