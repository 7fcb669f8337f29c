//! Every knob of the server: a command-line flag, a `RESUME_*` environment
//! variable and a default, validated once at start.
//!
//! Parsing lives here and nowhere else; the rest of the server receives typed,
//! already-checked values. A bad value stops the process with one line naming
//! the knob (see [`ConfigError`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Command line of the `resume-server` binary.
#[derive(Debug, Parser)]
#[command(
    name = "resume-server",
    version,
    about = "Remembers where every viewer stopped watching.",
    args_override_self = true
)]
pub struct Cli {
    /// What to do; without a subcommand the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings, shared by every subcommand.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a JWT for a user, signed with RESUME_JWT_SECRET (for operators and scripts).
    Token {
        /// The user id to put in the token's `sub`.
        #[arg(long)]
        sub: String,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Manage the Cassandra/ScyllaDB schema.
    Schema {
        /// The schema action.
        #[command(subcommand)]
        action: SchemaAction,
    },
}

/// Schema actions.
#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Apply schema.cql to the configured cluster (idempotent).
    Apply,
}

/// Which backend keeps positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// On-disk redb file under --data-dir; needs no database server.
    Embedded,
    /// A Cassandra or ScyllaDB cluster through the scylla driver.
    Cassandra,
}

/// Every setting of the server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RESUME_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Accept backlog of the listening socket (the kernel caps it at net.core.somaxconn).
    #[arg(long, env = "RESUME_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// Directory of the embedded store.
    #[arg(long, env = "RESUME_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// JSON catalog file (array of {movie_id,title,duration_seconds,stream_url}); default: the built-in demo catalog.
    #[arg(long, env = "RESUME_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Fraction of a title that counts as watched; from there on playback starts at 0.
    #[arg(long, env = "RESUME_COMPLETION_THRESHOLD", default_value_t = 0.95)]
    pub completion_threshold: f64,

    /// Titles watched for less than this are left out of continue-watching.
    #[arg(long, env = "RESUME_MIN_RESUME_SECONDS", default_value_t = 0.0)]
    pub min_resume_seconds: f64,

    /// How often a session writes its latest position (if it changed).
    #[arg(long, env = "RESUME_FLUSH_INTERVAL_MS", default_value_t = 4000)]
    pub flush_interval_ms: u64,

    /// A session position behind the resume point its hello offered is provisional
    /// (kept, not written or shown) until playback has run on from it this long, or
    /// the player reports `ended`; 0 writes such positions like any other.
    #[arg(long, env = "RESUME_PROVISIONAL_CONFIRM_MS", default_value_t = 10_000)]
    pub provisional_confirm_ms: u64,

    /// HS256 secret (at least 32 bytes). Without a secret or public key the server runs in demo mode.
    #[arg(long, env = "RESUME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RS256 or ES256) of the identity provider that signs tokens.
    #[arg(long, env = "RESUME_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` claim, checked when set.
    #[arg(long, env = "RESUME_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` claim, checked when set.
    #[arg(long, env = "RESUME_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Offer POST /api/v1/demo/token even when a key is configured.
    #[arg(long, env = "RESUME_DEMO_LOGIN")]
    pub demo_login: bool,

    /// Directory of the browser demo (index.html, media/).
    #[arg(long, env = "RESUME_STATIC_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/static"))]
    pub static_dir: PathBuf,

    /// Origins allowed to open sessions and call the API from a browser (comma-separated);
    /// empty means same-origin only. `*` allows any origin.
    #[arg(long, env = "RESUME_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Storage backend.
    #[arg(long, env = "RESUME_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,

    /// Embedded store: how long a commit waits for more writes to join it (0: commit at once).
    #[arg(long, env = "RESUME_STORE_COMMIT_DELAY_MS", default_value_t = 5)]
    pub store_commit_delay_ms: u64,

    /// Cassandra/ScyllaDB contact points, comma-separated host:port.
    #[arg(
        long,
        env = "RESUME_CASSANDRA_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:9042"
    )]
    pub cassandra_nodes: Vec<String>,

    /// Keyspace of the positions table.
    #[arg(long, env = "RESUME_CASSANDRA_KEYSPACE", default_value = "resume")]
    pub cassandra_keyspace: String,

    /// Consistency of reads and writes (one, local_one, quorum, local_quorum, all, …).
    #[arg(
        long,
        env = "RESUME_CASSANDRA_CONSISTENCY",
        default_value = "local_quorum"
    )]
    pub cassandra_consistency: String,

    /// Local datacenter for DC-aware load balancing.
    #[arg(long, env = "RESUME_CASSANDRA_LOCAL_DC")]
    pub cassandra_local_dc: Option<String>,

    /// Username for password authentication.
    #[arg(long, env = "RESUME_CASSANDRA_USER")]
    pub cassandra_user: Option<String>,

    /// Password for password authentication.
    #[arg(long, env = "RESUME_CASSANDRA_PASSWORD", hide_env_values = true)]
    pub cassandra_password: Option<String>,

    /// Per-request timeout against the cluster.
    #[arg(
        long,
        env = "RESUME_CASSANDRA_REQUEST_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub cassandra_request_timeout_ms: u64,

    /// Writes in flight to the cluster at most; more wait for a slot.
    #[arg(
        long,
        env = "RESUME_CASSANDRA_MAX_WRITES_IN_FLIGHT",
        default_value_t = 1024
    )]
    pub cassandra_max_writes_in_flight: usize,

    /// Replication map used when the keyspace is created (schema apply / --init-schema).
    #[arg(
        long,
        env = "RESUME_CASSANDRA_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub cassandra_replication: String,

    /// Apply schema.cql at start (idempotent).
    #[arg(long, env = "RESUME_INIT_SCHEMA")]
    pub init_schema: bool,

    /// Live sessions this process accepts at most; more get 503.
    #[arg(long, env = "RESUME_MAX_SESSIONS", default_value_t = 19_000)]
    pub max_sessions: usize,

    /// Live sessions one user may hold at most; more get 429.
    #[arg(long, env = "RESUME_MAX_SESSIONS_PER_USER", default_value_t = 16)]
    pub max_sessions_per_user: usize,

    /// Sustained tick rate a session may send (messages per second).
    #[arg(long, env = "RESUME_TICK_RATE", default_value_t = 10.0)]
    pub tick_rate: f64,

    /// Server ping interval on sessions.
    #[arg(long, env = "RESUME_PING_INTERVAL_MS", default_value_t = 20_000)]
    pub ping_interval_ms: u64,

    /// A session with no traffic for this long ends (and flushes).
    #[arg(long, env = "RESUME_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Largest WebSocket frame or message accepted; a larger one closes the session with 1009.
    #[arg(long, env = "RESUME_MAX_FRAME_BYTES", default_value_t = 4096)]
    pub max_frame_bytes: usize,

    /// Initial WebSocket read buffer per session.
    #[arg(long, env = "RESUME_WS_READ_BUFFER_BYTES", default_value_t = 1024)]
    pub ws_read_buffer_bytes: usize,

    /// WebSocket write buffer per session (frames are flushed beyond it).
    #[arg(long, env = "RESUME_WS_WRITE_BUFFER_BYTES", default_value_t = 0)]
    pub ws_write_buffer_bytes: usize,

    /// How long shutdown waits for sessions to flush before exiting.
    #[arg(long, env = "RESUME_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,

    /// HTTP connections served at once (WebSocket sessions are counted separately).
    #[arg(long, env = "RESUME_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Time a client has to send complete request headers; also closes idle keep-alive connections.
    #[arg(long, env = "RESUME_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// Largest HTTP request body accepted (413 beyond).
    #[arg(long, env = "RESUME_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,
}

/// A setting that cannot work; the message names the knob.
#[derive(Debug, thiserror::Error)]
#[error("invalid {knob}: {reason}")]
pub struct ConfigError {
    /// The flag / environment variable at fault.
    pub knob: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A config error for `knob`.
    pub fn new(knob: &'static str, reason: impl Into<String>) -> Self {
        Self {
            knob,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Parses the server settings from `args` (the first is the program name) and
    /// the `RESUME_*` environment, ignoring any subcommand; for tests and tools.
    pub fn from_env_and_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Cli::try_parse_from(args).map(|cli| cli.config)
    }

    /// Checks every value that clap's types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.completion_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(ConfigError::new(
                "--completion-threshold / RESUME_COMPLETION_THRESHOLD",
                format!("{t} is not in (0, 1]"),
            ));
        }
        if !(self.min_resume_seconds >= 0.0 && self.min_resume_seconds.is_finite()) {
            return Err(ConfigError::new(
                "--min-resume-seconds / RESUME_MIN_RESUME_SECONDS",
                "must be a finite number ≥ 0",
            ));
        }
        positive(
            "--flush-interval-ms / RESUME_FLUSH_INTERVAL_MS",
            self.flush_interval_ms,
        )?;
        positive(
            "--ping-interval-ms / RESUME_PING_INTERVAL_MS",
            self.ping_interval_ms,
        )?;
        positive(
            "--idle-timeout-ms / RESUME_IDLE_TIMEOUT_MS",
            self.idle_timeout_ms,
        )?;
        positive(
            "--cassandra-request-timeout-ms / RESUME_CASSANDRA_REQUEST_TIMEOUT_MS",
            self.cassandra_request_timeout_ms,
        )?;
        positive(
            "--cassandra-max-writes-in-flight / RESUME_CASSANDRA_MAX_WRITES_IN_FLIGHT",
            self.cassandra_max_writes_in_flight as u64,
        )?;
        positive(
            "--max-sessions / RESUME_MAX_SESSIONS",
            self.max_sessions as u64,
        )?;
        positive(
            "--max-sessions-per-user / RESUME_MAX_SESSIONS_PER_USER",
            self.max_sessions_per_user as u64,
        )?;
        positive(
            "--max-frame-bytes / RESUME_MAX_FRAME_BYTES",
            self.max_frame_bytes as u64,
        )?;
        positive(
            "--max-body-bytes / RESUME_MAX_BODY_BYTES",
            self.max_body_bytes as u64,
        )?;
        positive(
            "--max-connections / RESUME_MAX_CONNECTIONS",
            self.max_connections as u64,
        )?;
        positive(
            "--listen-backlog / RESUME_LISTEN_BACKLOG",
            u64::from(self.listen_backlog),
        )?;
        positive(
            "--header-read-timeout-ms / RESUME_HEADER_READ_TIMEOUT_MS",
            self.header_read_timeout_ms,
        )?;
        if !(self.tick_rate.is_finite() && self.tick_rate > 0.0) {
            return Err(ConfigError::new(
                "--tick-rate / RESUME_TICK_RATE",
                "must be a number > 0",
            ));
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 32 {
                return Err(ConfigError::new(
                    "RESUME_JWT_SECRET",
                    "must be at least 32 bytes",
                ));
            }
            if self.jwt_public_key.is_some() {
                return Err(ConfigError::new(
                    "RESUME_JWT_SECRET",
                    "set either a secret or --jwt-public-key / RESUME_JWT_PUBLIC_KEY, not both",
                ));
            }
        }
        if self.demo_login && self.jwt_public_key.is_some() {
            return Err(ConfigError::new(
                "--demo-login / RESUME_DEMO_LOGIN",
                "needs RESUME_JWT_SECRET: the server cannot sign tokens with a public key",
            ));
        }
        if self.store == StoreKind::Cassandra
            && self.cassandra_nodes.iter().all(|n| n.trim().is_empty())
        {
            return Err(ConfigError::new(
                "--cassandra-nodes / RESUME_CASSANDRA_NODES",
                "no node given",
            ));
        }
        Ok(())
    }

    /// The flush interval as a duration.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms)
    }
}

fn positive(knob: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(knob, "must be greater than 0"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["resume-server"];
        all.extend_from_slice(args);
        Config::from_env_and_args(all).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        let config = parse(&[]);
        config.validate().expect("defaults validate");
        assert_eq!(config.flush_interval_ms, 4000);
        assert_eq!(config.completion_threshold, 0.95);
    }

    #[test]
    fn errors_name_the_knob() {
        let err = parse(&["--completion-threshold", "1.5"])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("--completion-threshold"), "{err}");
        let err = parse(&["--jwt-secret", "short"]).validate().unwrap_err();
        assert!(err.to_string().contains("RESUME_JWT_SECRET"), "{err}");
        let err = parse(&["--flush-interval-ms", "0"]).validate().unwrap_err();
        assert!(err.to_string().contains("--flush-interval-ms"), "{err}");
    }
}
