//! Integration tests: one binary, real servers on port 0.

mod auth;
mod browser_lockdown;
mod cassandra_layout;
mod cassandra_tls;
mod cli;
mod cluster;
mod continue_watching;
mod faulty_store;
mod hostile;
mod http_api;
mod openapi_contract;
mod outages;
mod positions;
mod series;
mod session_contract;
mod session_tickets;
mod sessions;
mod signals;
mod store_cassandra;
mod store_cassandra_resilience;
mod store_embedded;
mod store_suite;
mod support;
