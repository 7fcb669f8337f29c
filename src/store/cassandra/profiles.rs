//! How each kind of request runs against the cluster: its consistency level,
//! its client-side timeout, speculative execution and wire compression — the
//! knobs, checked once, and the driver's execution profiles built from them.
//!
//! Why these shapes:
//! * **The server speaks first.** A Cassandra coordinator gives up on a write
//!   after `write_request_timeout` (2 s by default) and on a read after
//!   `read_request_timeout` (5 s) and *says so*: a `WriteTimeout` or
//!   `ReadTimeout` naming how many replicas answered. A client timeout shorter
//!   than that cuts the coordinator off and leaves a bare client timeout that
//!   cannot be told from a dead node, so the defaults sit just above the
//!   server's: 3 s for writes, 6 s for reads ([`DEFAULT_WRITE_TIMEOUT`],
//!   [`DEFAULT_READ_TIMEOUT`]).
//! * **Reads and writes have their own consistency**, both defaulting to
//!   `--cassandra-consistency`. `ANY` is a write-only level (Cassandra refuses
//!   reads at `ANY`), so a read level of `ANY` is rejected here, before start.
//! * **The stream-start read may race.** `get` answers a viewer who pressed
//!   Play; it is idempotent and latency-critical, so after
//!   `--cassandra-speculative-delay-ms` without an answer the driver also sends
//!   it to the next node of the plan and takes the first answer
//!   ([`STREAM_START_SPECULATIVE_EXECUTIONS`] extra at most). Only `get`: a
//!   `list` is larger and not on the Play path, and writes would double the
//!   write load of a struggling cluster.
//! * **LZ4 on the wire** by default: positions are small, but `list` results
//!   and the driver's metadata compress well. A cluster that does not offer LZ4
//!   gets uncompressed frames (the driver falls back and logs it).
//!
//! Retries stay with the driver's default policy (next node on overload,
//! server errors and broken connections of idempotent statements); what it
//! leaves, the store retries ([`super::retry`]). No I/O here.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::Compression;
use scylla::client::execution_profile::{ExecutionProfile, ExecutionProfileHandle};
use scylla::policies::load_balancing::LoadBalancingPolicy;
use scylla::policies::speculative_execution::SimpleSpeculativeExecutionPolicy;
use scylla::statement::Consistency;

use super::settings::parse_consistency;
use crate::config::{CassandraCompression, Config, ConfigError};

/// Client-side limit on one write attempt when no knob sets it: above
/// Cassandra's default `write_request_timeout` (2 s).
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Client-side limit on one read when no knob sets it: above Cassandra's
/// default `read_request_timeout` (5 s).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(6);

/// Extra copies of the stream-start read the driver may send: one is enough to
/// step around one slow coordinator without multiplying the read load.
pub const STREAM_START_SPECULATIVE_EXECUTIONS: usize = 1;

const READ_CONSISTENCY_KNOB: &str =
    "--cassandra-read-consistency / RESUME_CASSANDRA_READ_CONSISTENCY";
const WRITE_CONSISTENCY_KNOB: &str =
    "--cassandra-write-consistency / RESUME_CASSANDRA_WRITE_CONSISTENCY";
const CONSISTENCY_KNOB: &str = "--cassandra-consistency / RESUME_CASSANDRA_CONSISTENCY";

/// How requests run, as the knobs say (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSettings {
    /// Consistency of `get`, `list` and a put's read-back; never `ANY`.
    pub read_consistency: Consistency,
    /// Consistency of puts and deletes.
    pub write_consistency: Consistency,
    /// Client-side limit on each read (and on the health probe's query, with
    /// the write timeout, whichever is shorter).
    pub read_timeout: Duration,
    /// Client-side limit on each write attempt.
    pub write_timeout: Duration,
    /// Delay before the stream-start read is also sent to another node;
    /// `None`: no speculative execution.
    pub speculative_delay: Option<Duration>,
    /// Compression asked of every connection; `None`: uncompressed frames.
    pub compression: Option<Compression>,
    /// Longest a write waits for a write slot before it fails as unavailable.
    pub write_slot_timeout: Duration,
}

impl RequestSettings {
    /// Takes the request knobs from `config`, rejecting values that cannot work.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let (read_consistency, write_consistency) = consistencies(
            &config.cassandra_consistency,
            config.cassandra_read_consistency.as_deref(),
            config.cassandra_write_consistency.as_deref(),
        )?;
        let either = config.cassandra_request_timeout_ms;
        let write_timeout = config
            .cassandra_write_timeout_ms
            .or(either)
            .map_or(DEFAULT_WRITE_TIMEOUT, Duration::from_millis);
        let read_timeout = config
            .cassandra_read_timeout_ms
            .or(either)
            .map_or(DEFAULT_READ_TIMEOUT, Duration::from_millis);
        Ok(Self {
            read_consistency,
            write_consistency,
            read_timeout,
            write_timeout,
            speculative_delay: (config.cassandra_speculative_delay_ms > 0)
                .then(|| Duration::from_millis(config.cassandra_speculative_delay_ms)),
            compression: match config.cassandra_compression {
                CassandraCompression::Lz4 => Some(Compression::Lz4),
                CassandraCompression::None => None,
            },
            write_slot_timeout: config
                .cassandra_write_slot_timeout_ms
                .map_or(write_timeout, Duration::from_millis),
        })
    }

    /// The session's default profile: writes' consistency and timeout, and the
    /// load balancing every other profile shares. Statements without a profile
    /// of their own (schema statements, schema checks) run with it.
    pub fn session_default(
        &self,
        load_balancing: Arc<dyn LoadBalancingPolicy>,
    ) -> ExecutionProfile {
        ExecutionProfile::builder()
            .consistency(self.write_consistency)
            .request_timeout(Some(self.write_timeout))
            .load_balancing_policy(load_balancing)
            .build()
    }
}

/// The read level and the write level: each its own knob when set, else
/// `--cassandra-consistency`; a read level of `ANY` is refused, naming the
/// knob it came from.
fn consistencies(
    both: &str,
    read: Option<&str>,
    write: Option<&str>,
) -> Result<(Consistency, Consistency), ConfigError> {
    let parse = |name: &str, knob: &'static str| {
        parse_consistency(name).map_err(|e| ConfigError::new(knob, e.reason))
    };
    let read_level = match read {
        Some(name) => parse(name, READ_CONSISTENCY_KNOB)?,
        None => parse(both, CONSISTENCY_KNOB)?,
    };
    if read_level == Consistency::Any {
        let knob = if read.is_some() {
            READ_CONSISTENCY_KNOB
        } else {
            CONSISTENCY_KNOB
        };
        return Err(ConfigError::new(
            knob,
            "`any` is a write-only level (Cassandra refuses reads at ANY): choose a read level, \
             or keep `any` for writes only with --cassandra-write-consistency any and a \
             --cassandra-read-consistency",
        ));
    }
    let write_level = match write {
        Some(name) => parse(name, WRITE_CONSISTENCY_KNOB)?,
        None => parse(both, CONSISTENCY_KNOB)?,
    };
    Ok((read_level, write_level))
}

/// One execution profile per kind of request, derived from the session's
/// default (so they share its load balancing policy).
#[derive(Debug, Clone)]
pub struct Profiles {
    /// Puts and deletes.
    pub write: ExecutionProfileHandle,
    /// `list` and a put's read-back.
    pub read: ExecutionProfileHandle,
    /// `get`: a read with speculative execution (when configured).
    pub stream_start: ExecutionProfileHandle,
    /// The health probe: the shorter of the two timeouts, no speculation.
    pub health: ExecutionProfileHandle,
}

impl Profiles {
    /// The profiles of `settings`, on top of the session's default profile.
    pub fn derive(session_default: &ExecutionProfileHandle, settings: &RequestSettings) -> Self {
        let base = || session_default.pointee_to_builder();
        let read = || {
            base()
                .consistency(settings.read_consistency)
                .request_timeout(Some(settings.read_timeout))
        };
        let speculation = settings.speculative_delay.map(|delay| {
            Arc::new(SimpleSpeculativeExecutionPolicy {
                max_retry_count: STREAM_START_SPECULATIVE_EXECUTIONS,
                retry_interval: delay,
            }) as _
        });
        Self {
            write: base()
                .consistency(settings.write_consistency)
                .request_timeout(Some(settings.write_timeout))
                .build()
                .into_handle_with_label("write".to_owned()),
            read: read().build().into_handle_with_label("read".to_owned()),
            stream_start: read()
                .speculative_execution_policy(speculation)
                .build()
                .into_handle_with_label("stream-start".to_owned()),
            health: read()
                .request_timeout(Some(settings.read_timeout.min(settings.write_timeout)))
                .build()
                .into_handle_with_label("health".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::policies::load_balancing::DefaultPolicy;

    fn settings(args: &[&str]) -> Result<RequestSettings, ConfigError> {
        let mut all = vec!["resume-server"];
        all.extend_from_slice(args);
        RequestSettings::from_config(&Config::from_env_and_args(all).expect("parses"))
    }

    #[test]
    fn defaults_let_the_server_time_out_first_and_compress() {
        let defaults = settings(&[]).expect("valid");
        assert_eq!(defaults.write_timeout, Duration::from_secs(3));
        assert_eq!(defaults.read_timeout, Duration::from_secs(6));
        assert_eq!(defaults.read_consistency, Consistency::LocalQuorum);
        assert_eq!(defaults.write_consistency, Consistency::LocalQuorum);
        assert_eq!(defaults.compression, Some(Compression::Lz4));
        assert!(defaults.speculative_delay.is_some());
        assert_eq!(defaults.write_slot_timeout, defaults.write_timeout);
    }

    #[test]
    fn the_single_timeout_knob_sets_both_and_the_specific_ones_win() {
        let both = settings(&["--cassandra-request-timeout-ms", "250"]).unwrap();
        assert_eq!(both.read_timeout, Duration::from_millis(250));
        assert_eq!(both.write_timeout, Duration::from_millis(250));
        let split = settings(&[
            "--cassandra-request-timeout-ms",
            "250",
            "--cassandra-read-timeout-ms",
            "900",
            "--cassandra-write-slot-timeout-ms",
            "40",
        ])
        .unwrap();
        assert_eq!(split.read_timeout, Duration::from_millis(900));
        assert_eq!(split.write_timeout, Duration::from_millis(250));
        assert_eq!(split.write_slot_timeout, Duration::from_millis(40));
        let off = settings(&[
            "--cassandra-speculative-delay-ms",
            "0",
            "--cassandra-compression",
            "none",
        ])
        .unwrap();
        assert_eq!(off.speculative_delay, None);
        assert_eq!(off.compression, None);
    }

    #[test]
    fn any_is_refused_for_reads_and_kept_for_writes() {
        let err = settings(&["--cassandra-consistency", "any"]).unwrap_err();
        assert!(err.to_string().contains("--cassandra-consistency"), "{err}");
        assert!(err.to_string().contains("write-only"), "{err}");
        let err = settings(&["--cassandra-read-consistency", "ANY"]).unwrap_err();
        assert!(
            err.to_string().contains("--cassandra-read-consistency"),
            "{err}"
        );
        let split = settings(&[
            "--cassandra-consistency",
            "any",
            "--cassandra-read-consistency",
            "one",
        ])
        .unwrap();
        assert_eq!(split.read_consistency, Consistency::One);
        assert_eq!(split.write_consistency, Consistency::Any);
        let err = settings(&["--cassandra-write-consistency", "most"]).unwrap_err();
        assert!(
            err.to_string().contains("--cassandra-write-consistency"),
            "{err}"
        );
        // The single knob keeps working for both.
        let single = settings(&["--cassandra-consistency", "one"]).unwrap();
        assert_eq!(single.read_consistency, Consistency::One);
        assert_eq!(single.write_consistency, Consistency::One);
    }

    #[test]
    fn only_the_stream_start_read_speculates() {
        let settings = settings(&[
            "--cassandra-read-consistency",
            "one",
            "--cassandra-write-consistency",
            "quorum",
        ])
        .unwrap();
        let default = settings
            .session_default(DefaultPolicy::builder().build())
            .into_handle();
        let profiles = Profiles::derive(&default, &settings);
        let write = profiles.write.to_profile();
        assert_eq!(write.get_consistency(), Consistency::Quorum);
        assert_eq!(write.get_request_timeout(), Some(DEFAULT_WRITE_TIMEOUT));
        assert!(write.get_speculative_execution_policy().is_none());
        let read = profiles.read.to_profile();
        assert_eq!(read.get_consistency(), Consistency::One);
        assert_eq!(read.get_request_timeout(), Some(DEFAULT_READ_TIMEOUT));
        assert!(read.get_speculative_execution_policy().is_none());
        let stream_start = profiles.stream_start.to_profile();
        assert_eq!(stream_start.get_consistency(), Consistency::One);
        assert!(stream_start.get_speculative_execution_policy().is_some());
        let health = profiles.health.to_profile();
        assert_eq!(health.get_request_timeout(), Some(DEFAULT_WRITE_TIMEOUT));
        assert!(health.get_speculative_execution_policy().is_none());
    }
}
