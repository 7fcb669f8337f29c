//! Cassandra / ScyllaDB backend (wired in by its own module; placeholder until then).

use crate::config::Config;
use crate::store::{SharedStore, StoreError};

/// Connects to the configured cluster.
pub async fn open(_config: &Config) -> Result<SharedStore, StoreError> {
    Err(StoreError::Unavailable(
        "the cassandra store is not built into this version".into(),
    ))
}

/// Applies schema.cql to the configured cluster.
pub async fn apply_schema_from_config(_config: &Config) -> Result<(), StoreError> {
    Err(StoreError::Unavailable(
        "the cassandra store is not built into this version".into(),
    ))
}
