//! Integration tests: one binary, real servers on port 0.

mod store_suite;
mod store_embedded;
