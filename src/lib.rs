//! resume-server: remembers where every viewer stopped watching.
#![forbid(unsafe_code)]

pub mod config;
pub mod store;
