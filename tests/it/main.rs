//! Integration tests: one binary, real servers on port 0.

mod auth;
mod cli;
mod continue_watching;
mod faulty_store;
mod hostile;
mod http_api;
mod outages;
mod positions;
mod sessions;
mod signals;
mod store_cassandra;
mod store_embedded;
mod store_suite;
mod support;
