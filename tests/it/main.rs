//! Integration tests: one binary, real servers on port 0.

mod http_api;
mod store_embedded;
mod store_suite;
mod support;
