//! Integration tests: one binary, real servers on port 0.

mod cql_node;
mod store_cassandra;
mod store_embedded;
mod store_suite;
