//! The Cassandra knobs of [`Config`], checked and turned into driver types once.
//!
//! Everything that can be wrong with a Cassandra setting is caught here, before
//! any connection is opened, and reported as a [`ConfigError`] naming the flag
//! and environment variable. This module does no I/O of its own; the TLS files
//! are read here too, through [`super::tls`], so a bad one stops the start.

use std::time::Duration;

use scylla::statement::Consistency;

use super::profiles::RequestSettings;
use super::tls::CassandraTls;
use crate::config::{Config, ConfigError};
use crate::secret::Secret;

/// Attempts one write gets (the first try included) before `put`/`delete` fail,
/// counting only the failures the store retries: write timeouts and client-side
/// timeouts (see `retry::store_retries`).
///
/// The driver's default retry policy does not retry a plain write that timed
/// out, because it cannot know whether the write landed. Ours can: every write
/// carries `USING TIMESTAMP`, so replaying it is a no-op if it did land.
pub const DEFAULT_WRITE_ATTEMPTS: u32 = 4;

/// Wait before the second attempt; each further wait doubles, up to
/// [`DEFAULT_RETRY_MAX_DELAY`].
pub const DEFAULT_RETRY_BASE_DELAY: Duration = Duration::from_millis(50);

/// Longest wait between two attempts.
pub const DEFAULT_RETRY_MAX_DELAY: Duration = Duration::from_secs(1);

/// Client-side limit on the request of one schema statement of `apply_schema`:
/// DDL is much slower than a data request on a real cluster. The driver then
/// waits for schema agreement separately, bounded by its own schema agreement
/// timeout (60 s), before the next statement runs.
pub const DEFAULT_SCHEMA_TIMEOUT: Duration = Duration::from_secs(60);

/// The replication of a development keyspace: one replica, no topology.
pub const DEVELOPMENT_REPLICATION: &str = "{'class': 'SimpleStrategy', 'replication_factor': 1}";

/// Longest a keyspace name may be (Cassandra's own limit).
const MAX_KEYSPACE_LEN: usize = 48;

const KEYSPACE_KNOB: &str = "--cassandra-keyspace / RESUME_CASSANDRA_KEYSPACE";
const CONSISTENCY_KNOB: &str = "--cassandra-consistency / RESUME_CASSANDRA_CONSISTENCY";
const NODES_KNOB: &str = "--cassandra-nodes / RESUME_CASSANDRA_NODES";
const REPLICATION_KNOB: &str = "--cassandra-replication / RESUME_CASSANDRA_REPLICATION";
const USER_KNOB: &str = "--cassandra-user / RESUME_CASSANDRA_USER";
const IN_FLIGHT_KNOB: &str =
    "--cassandra-max-writes-in-flight / RESUME_CASSANDRA_MAX_WRITES_IN_FLIGHT";

/// How the Cassandra backend connects and behaves.
#[derive(Debug, Clone)]
pub struct CassandraSettings {
    /// Contact points (`host:port`); the driver discovers the rest of the cluster.
    pub nodes: Vec<String>,
    /// Keyspace holding `playback_position`; a plain lower-case CQL identifier.
    pub keyspace: String,
    /// Consistency levels, timeouts, speculative execution, compression and
    /// the write-slot wait ([`RequestSettings`], their own knobs).
    pub requests: RequestSettings,
    /// Datacenter whose nodes are preferred; `None` treats all nodes alike.
    pub local_dc: Option<String>,
    /// Rack within `local_dc` whose nodes are preferred.
    pub local_rack: Option<String>,
    /// User and password for password authentication, if the cluster wants it.
    pub credentials: Option<(String, Secret)>,
    /// TLS to every node (`--cassandra-tls`), its files already read; `None`: plain TCP.
    pub tls: Option<CassandraTls>,
    /// Writes (puts and deletes) in flight at most, a put's read-back included;
    /// further writers wait (at most `requests.write_slot_timeout`), so a slow
    /// cluster slows writers down instead of growing memory.
    pub max_writes_in_flight: usize,
    /// Replication map used when `apply_schema` creates the keyspace: the one
    /// configured, or [`DEVELOPMENT_REPLICATION`] on a development cluster;
    /// `None` makes `apply_schema` refuse.
    pub replication: Option<String>,
    /// Rows per page when a viewer's partition is read (`list`); at least 1.
    pub page_size: i32,
    /// `USING TTL` of every write in seconds (`--position-ttl-days`; 0: none).
    /// Every write renews it, so only titles nobody touches for that long expire.
    pub position_ttl_seconds: i32,
    /// Attempts per write, the first included, and as many for a put's
    /// read-back (see [`DEFAULT_WRITE_ATTEMPTS`]).
    pub write_attempts: u32,
    /// Wait before the first retry; doubles with each further one.
    pub retry_base_delay: Duration,
    /// Upper bound of the wait between attempts.
    pub retry_max_delay: Duration,
    /// Limit on opening a session and preparing statements (`--cassandra-connect-timeout-ms`),
    /// at start and at each renewal of the session.
    pub connect_timeout: Duration,
    /// Limit on each schema statement (see [`DEFAULT_SCHEMA_TIMEOUT`]).
    pub schema_timeout: Duration,
    /// How long no usable node may be connected before the driver session is
    /// replaced (see [`super::renewal`]); `None`: never.
    pub renew_session_after: Option<Duration>,
}

impl CassandraSettings {
    /// Takes the Cassandra knobs from `config`, rejecting values that cannot work.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let nodes: Vec<String> = config
            .cassandra_nodes
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        if nodes.is_empty() {
            return Err(ConfigError::new(NODES_KNOB, "no node given"));
        }
        let keyspace = validate_keyspace(&config.cassandra_keyspace)?;
        let requests = RequestSettings::from_config(config)?;
        let replication = match &config.cassandra_replication {
            Some(map) => Some(validate_replication(map)?),
            None if config.cassandra_development => Some(DEVELOPMENT_REPLICATION.to_owned()),
            None => None,
        };
        let local_rack = config
            .cassandra_local_rack
            .clone()
            .filter(|rack| !rack.trim().is_empty());
        if local_rack.is_some() && config.cassandra_local_dc.is_none() {
            return Err(ConfigError::new(
                "--cassandra-local-rack / RESUME_CASSANDRA_LOCAL_RACK",
                "a rack is preferred within the local datacenter: set --cassandra-local-dc too",
            ));
        }
        let credentials = match (&config.cassandra_user, &config.cassandra_password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    USER_KNOB,
                    "user and password (RESUME_CASSANDRA_PASSWORD or --cassandra-password-file) \
                     must be set together",
                ));
            }
        };
        if config.cassandra_max_writes_in_flight == 0 {
            return Err(ConfigError::new(IN_FLIGHT_KNOB, "must be greater than 0"));
        }
        let tls = CassandraTls::from_config(config, &nodes)?;
        Ok(Self {
            nodes,
            keyspace,
            requests,
            local_dc: config
                .cassandra_local_dc
                .clone()
                .filter(|dc| !dc.trim().is_empty()),
            local_rack,
            credentials,
            tls,
            max_writes_in_flight: config.cassandra_max_writes_in_flight,
            replication,
            page_size: config.cassandra_page_size,
            // At most 3650 days (config), well inside CQL's int and Cassandra's 20-year cap.
            position_ttl_seconds: config
                .position_ttl()
                .map_or(0, |ttl| i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX)),
            write_attempts: DEFAULT_WRITE_ATTEMPTS,
            retry_base_delay: DEFAULT_RETRY_BASE_DELAY,
            retry_max_delay: DEFAULT_RETRY_MAX_DELAY,
            connect_timeout: Duration::from_millis(config.cassandra_connect_timeout_ms),
            schema_timeout: DEFAULT_SCHEMA_TIMEOUT,
            renew_session_after: (config.cassandra_renew_session_after_ms > 0)
                .then(|| Duration::from_millis(config.cassandra_renew_session_after_ms)),
        })
    }
}

/// Parses a consistency level by its CQL name, in any case (`local_quorum`, `ONE`, …).
///
/// Serial levels are rejected: they only apply to lightweight transactions,
/// which this backend does not use.
pub fn parse_consistency(name: &str) -> Result<Consistency, ConfigError> {
    let consistency = match name.trim().to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        other => {
            return Err(ConfigError::new(
                CONSISTENCY_KNOB,
                format!(
                    "unknown consistency {other:?} (expected one of any, one, two, three, quorum, all, \
                     local_quorum, each_quorum, local_one)"
                ),
            ));
        }
    };
    Ok(consistency)
}

/// A keyspace name is spliced into CQL text, so only plain identifiers pass:
/// lower case (unquoted CQL folds case, and the driver's metadata would not
/// match otherwise), digits and `_`, starting with a letter.
fn validate_keyspace(name: &str) -> Result<String, ConfigError> {
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let valid_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_start || !valid_rest || name.len() > MAX_KEYSPACE_LEN {
        return Err(ConfigError::new(
            KEYSPACE_KNOB,
            format!(
                "{name:?} is not a keyspace name: use a lower-case letter followed by lower-case \
                 letters, digits or '_', at most {MAX_KEYSPACE_LEN} characters"
            ),
        ));
    }
    Ok(name.to_owned())
}

/// The replication map is spliced into `CREATE KEYSPACE`; it must be one CQL
/// map literal and nothing more.
fn validate_replication(map: &str) -> Result<String, ConfigError> {
    let map = map.trim();
    let braced = map.starts_with('{') && map.ends_with('}');
    let single = map.matches('{').count() == 1 && map.matches('}').count() == 1;
    if !braced || !single || map.contains(';') || !map.contains("'class'") {
        return Err(ConfigError::new(
            REPLICATION_KNOB,
            format!(
                "{map:?} is not a replication map, e.g. {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}"
            ),
        ));
    }
    Ok(map.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["resume-server"];
        all.extend_from_slice(args);
        Config::from_env_and_args(all).expect("parses")
    }

    #[test]
    fn replication_is_required_outside_development() {
        let replication = |args: &[&str]| {
            CassandraSettings::from_config(&config(args))
                .expect("valid")
                .replication
        };
        assert_eq!(replication(&[]), None);
        assert_eq!(
            replication(&["--cassandra-development"]).as_deref(),
            Some(DEVELOPMENT_REPLICATION)
        );
        let nts = "{'class': 'NetworkTopologyStrategy', 'dc1': 3}";
        assert_eq!(
            replication(&["--cassandra-replication", nts, "--cassandra-development"]).as_deref(),
            Some(nts)
        );
    }

    #[test]
    fn defaults_give_working_settings() {
        let settings = CassandraSettings::from_config(&config(&[])).expect("valid");
        assert_eq!(settings.keyspace, "resume");
        assert_eq!(settings.requests.read_consistency, Consistency::LocalQuorum);
        assert_eq!(
            settings.requests.write_consistency,
            Consistency::LocalQuorum
        );
        assert_eq!(settings.nodes, ["127.0.0.1:9042"]);
        assert_eq!(settings.requests.write_timeout, Duration::from_millis(3000));
        assert_eq!(settings.requests.read_timeout, Duration::from_millis(6000));
        assert!(settings.credentials.is_none());
        assert!(settings.write_attempts >= 1);
    }

    #[test]
    fn session_renewal_is_on_by_default_and_zero_turns_it_off() {
        let settings =
            |args: &[&str]| CassandraSettings::from_config(&config(args)).expect("valid");
        let defaults = settings(&[]);
        assert_eq!(defaults.renew_session_after, Some(Duration::from_secs(30)));
        assert_eq!(defaults.connect_timeout, Duration::from_secs(15));
        let tuned = settings(&[
            "--cassandra-renew-session-after-ms",
            "0",
            "--cassandra-connect-timeout-ms",
            "2000",
        ]);
        assert_eq!(tuned.renew_session_after, None);
        assert_eq!(tuned.connect_timeout, Duration::from_secs(2));
    }

    #[test]
    fn consistency_names_parse_in_any_case() {
        assert_eq!(parse_consistency("ONE").unwrap(), Consistency::One);
        assert_eq!(
            parse_consistency(" local_one ").unwrap(),
            Consistency::LocalOne
        );
        assert_eq!(
            parse_consistency("Each_Quorum").unwrap(),
            Consistency::EachQuorum
        );
    }

    #[test]
    fn bad_values_name_their_knob() {
        let err = CassandraSettings::from_config(&config(&["--cassandra-consistency", "most"]))
            .unwrap_err();
        assert!(err.to_string().contains("--cassandra-consistency"), "{err}");
        assert!(err.to_string().contains("most"), "{err}");

        for keyspace in ["Resume", "1resume", "res-ume", "resume;drop", ""] {
            let err = CassandraSettings::from_config(&config(&["--cassandra-keyspace", keyspace]))
                .unwrap_err();
            assert!(
                err.to_string().contains("--cassandra-keyspace"),
                "{keyspace}: {err}"
            );
        }

        for map in [
            "SimpleStrategy",
            "{'class': 'SimpleStrategy'}; DROP KEYSPACE x",
            "{'a': 1}",
        ] {
            let err = CassandraSettings::from_config(&config(&["--cassandra-replication", map]))
                .unwrap_err();
            assert!(
                err.to_string().contains("--cassandra-replication"),
                "{map}: {err}"
            );
        }

        let err =
            CassandraSettings::from_config(&config(&["--cassandra-user", "alice"])).unwrap_err();
        assert!(err.to_string().contains("--cassandra-user"), "{err}");
    }

    #[test]
    fn credentials_and_local_dc_are_taken() {
        let mut config = config(&[
            "--cassandra-user",
            "alice",
            "--cassandra-local-dc",
            "dc1",
            "--cassandra-nodes",
            "10.0.0.1:9042, 10.0.0.2:9042",
        ]);
        config.cassandra_password = Some(Secret::new("hunter2"));
        let settings = CassandraSettings::from_config(&config).expect("valid");
        assert_eq!(
            settings.credentials,
            Some(("alice".into(), Secret::new("hunter2")))
        );
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("hunter2"),
            "the password is printed: {debug}"
        );
        assert_eq!(settings.local_dc.as_deref(), Some("dc1"));
        assert_eq!(settings.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
    }
}
