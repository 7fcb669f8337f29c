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

use crate::secret::{Secret, SecretSource};

/// Command line of the `resume-server` binary.
#[derive(Debug, Parser)]
#[command(
    name = "resume-server",
    version,
    about = "Remembers where every viewer stopped watching.",
    after_help = "Secrets never go on the command line, where `ps` shows them: set RESUME_JWT_SECRET and \
                  RESUME_CASSANDRA_PASSWORD in the environment, or name files holding them with \
                  --jwt-secret-file and --cassandra-password-file.",
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
    /// Print a JWT for a user, signed with RESUME_JWT_SECRET or --jwt-secret-file (for operators and scripts).
    Token {
        /// The user id to put in the token's `sub`.
        #[arg(long)]
        sub: String,
        /// Lifetime of the token in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the HTTP API's OpenAPI document (as served at /api/v1/openapi.json, demo login included).
    Openapi,
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

/// Compression of the CQL connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CassandraCompression {
    /// LZ4 frames (a cluster that does not offer LZ4 gets uncompressed ones).
    Lz4,
    /// Uncompressed frames.
    None,
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

    /// File holding the HS256 secret (at least 32 bytes; one final line break is dropped).
    /// Or set the secret itself in RESUME_JWT_SECRET; never as a flag, which `ps` shows.
    /// Without a secret or public key the server runs in demo mode.
    #[arg(long, env = "RESUME_JWT_SECRET_FILE", value_name = "PATH")]
    pub jwt_secret_file: Option<PathBuf>,

    /// The HS256 secret, from RESUME_JWT_SECRET or --jwt-secret-file (see
    /// [`Config::read_secrets`]).
    #[arg(skip)]
    pub jwt_secret: Option<Secret>,

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

    /// Demo logins one client address may make at once; more wait for the refill (429).
    #[arg(long, env = "RESUME_DEMO_LOGIN_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub demo_login_burst: u32,

    /// Demo logins per minute a client address gets back after its burst.
    #[arg(long, env = "RESUME_DEMO_LOGIN_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub demo_login_per_minute: u32,

    /// Client addresses the demo login limit tracks at most; beyond, new addresses share one bucket.
    #[arg(long, env = "RESUME_DEMO_LOGIN_MAX_CLIENTS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub demo_login_max_clients: u32,

    /// Seconds a session ticket (POST /api/v1/stream/session-ticket) may be redeemed.
    #[arg(long, env = "RESUME_SESSION_TICKET_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub session_ticket_ttl_secs: u64,

    /// Unused session tickets one user may hold; more get 429.
    #[arg(long, env = "RESUME_MAX_SESSION_TICKETS_PER_USER", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_session_tickets_per_user: u32,

    /// Unused session tickets this process holds at most; more get 503.
    #[arg(long, env = "RESUME_MAX_SESSION_TICKETS", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_session_tickets: u32,

    /// Accept a token in the session URL (`?access_token=`), deprecated: tokens in URLs end
    /// up in logs and history. Browsers should use a session ticket or the `bearer.` subprotocol.
    #[arg(long, env = "RESUME_ALLOW_QUERY_TOKEN", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_query_token: bool,

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
    #[arg(long, env = "RESUME_STORE_COMMIT_DELAY_MS", default_value_t = crate::store::embedded::DEFAULT_COMMIT_DELAY_MS)]
    pub store_commit_delay_ms: u64,

    /// Cassandra: rows per page when a viewer's titles are read (continue watching).
    #[arg(long, env = "RESUME_CASSANDRA_PAGE_SIZE", default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub cassandra_page_size: i32,

    /// Days a title's position is kept after its last write (every write renews it; 0 keeps it forever).
    #[arg(long, env = "RESUME_POSITION_TTL_DAYS", default_value_t = 365, value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub position_ttl_days: u32,

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

    /// Local datacenter for DC-aware load balancing (required when the cluster has several).
    #[arg(long, env = "RESUME_CASSANDRA_LOCAL_DC")]
    pub cassandra_local_dc: Option<String>,

    /// Rack within the local datacenter whose replicas are preferred.
    #[arg(long, env = "RESUME_CASSANDRA_LOCAL_RACK")]
    pub cassandra_local_rack: Option<String>,

    /// Username for password authentication.
    #[arg(long, env = "RESUME_CASSANDRA_USER")]
    pub cassandra_user: Option<String>,

    /// File holding the password for --cassandra-user (one final line break is dropped).
    /// Or set the password itself in RESUME_CASSANDRA_PASSWORD; never as a flag, which `ps` shows.
    #[arg(long, env = "RESUME_CASSANDRA_PASSWORD_FILE", value_name = "PATH")]
    pub cassandra_password_file: Option<PathBuf>,

    /// The password, from RESUME_CASSANDRA_PASSWORD or --cassandra-password-file (see
    /// [`Config::read_secrets`]).
    #[arg(skip)]
    pub cassandra_password: Option<Secret>,

    /// Connect to the cluster over TLS, verifying its certificates (see --cassandra-tls-ca).
    #[arg(long, env = "RESUME_CASSANDRA_TLS")]
    pub cassandra_tls: bool,

    /// PEM file of the CA certificate(s) the cluster's certificates chain to; without it,
    /// the platform's trust store (SSL_CERT_FILE / SSL_CERT_DIR are honoured).
    #[arg(long, env = "RESUME_CASSANDRA_TLS_CA", value_name = "PATH")]
    pub cassandra_tls_ca: Option<PathBuf>,

    /// PEM client certificate (chain) shown to nodes that ask for one; needs --cassandra-tls-key.
    #[arg(long, env = "RESUME_CASSANDRA_TLS_CERT", value_name = "PATH")]
    pub cassandra_tls_cert: Option<PathBuf>,

    /// PEM private key of --cassandra-tls-cert.
    #[arg(long, env = "RESUME_CASSANDRA_TLS_KEY", value_name = "PATH")]
    pub cassandra_tls_key: Option<PathBuf>,

    /// Name every node's certificate must be valid for; default: the host of a contact
    /// point or the address connected to. For IP contact points with certificates for names.
    #[arg(long, env = "RESUME_CASSANDRA_TLS_SERVER_NAME", value_name = "NAME")]
    pub cassandra_tls_server_name: Option<String>,

    /// Client-side limit on every Cassandra request, reads and writes alike;
    /// --cassandra-read-timeout-ms and --cassandra-write-timeout-ms override it (unset: 6000 / 3000).
    #[arg(long, env = "RESUME_CASSANDRA_REQUEST_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_request_timeout_ms: Option<u64>,

    /// Client-side limit on each write attempt [default: 3000, above Cassandra's 2 s
    /// write_request_timeout, or --cassandra-request-timeout-ms].
    #[arg(long, env = "RESUME_CASSANDRA_WRITE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_write_timeout_ms: Option<u64>,

    /// Client-side limit on each read [default: 6000, above Cassandra's 5 s
    /// read_request_timeout, or --cassandra-request-timeout-ms].
    #[arg(long, env = "RESUME_CASSANDRA_READ_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_read_timeout_ms: Option<u64>,

    /// Consistency of reads [default: --cassandra-consistency]; `any` is refused (writes only).
    #[arg(long, env = "RESUME_CASSANDRA_READ_CONSISTENCY")]
    pub cassandra_read_consistency: Option<String>,

    /// Consistency of writes [default: --cassandra-consistency].
    #[arg(long, env = "RESUME_CASSANDRA_WRITE_CONSISTENCY")]
    pub cassandra_write_consistency: Option<String>,

    /// Delay after which the stream-start read is also sent to another node; 0 turns speculative execution off.
    #[arg(
        long,
        env = "RESUME_CASSANDRA_SPECULATIVE_DELAY_MS",
        default_value_t = 100
    )]
    pub cassandra_speculative_delay_ms: u64,

    /// Compression of the CQL connections.
    #[arg(long, env = "RESUME_CASSANDRA_COMPRESSION", value_enum, default_value_t = CassandraCompression::Lz4)]
    pub cassandra_compression: CassandraCompression,

    /// Longest a write waits for a write slot before failing as unavailable (its session
    /// retries it later) [default: the write timeout].
    #[arg(long, env = "RESUME_CASSANDRA_WRITE_SLOT_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_write_slot_timeout_ms: Option<u64>,

    /// Writes in flight to the cluster at most; more wait for a slot (see --cassandra-write-slot-timeout-ms).
    #[arg(
        long,
        env = "RESUME_CASSANDRA_MAX_WRITES_IN_FLIGHT",
        default_value_t = 1024
    )]
    pub cassandra_max_writes_in_flight: usize,

    /// Longest the store may take to reach the cluster and prepare its statements, at start and
    /// when it renews its driver session.
    #[arg(long, env = "RESUME_CASSANDRA_CONNECT_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_connect_timeout_ms: u64,

    /// Replace the driver's session with a fresh one when no usable node has been connected for
    /// this long (0: never); a safety net for a pool that stopped reconnecting by itself.
    #[arg(
        long,
        env = "RESUME_CASSANDRA_RENEW_SESSION_AFTER_MS",
        default_value_t = 30_000
    )]
    pub cassandra_renew_session_after_ms: u64,

    /// Replication map used when the keyspace is created (schema apply / --init-schema), e.g. {'class': 'NetworkTopologyStrategy', 'dc1': 3}; required unless --cassandra-development.
    #[arg(long, env = "RESUME_CASSANDRA_REPLICATION")]
    pub cassandra_replication: Option<String>,

    /// A development cluster: schema apply may create the keyspace with SimpleStrategy and one replica when no replication map is given.
    #[arg(long, env = "RESUME_CASSANDRA_DEVELOPMENT")]
    pub cassandra_development: bool,

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

    /// A session the server has sent nothing to for this long gets a ping.
    #[arg(long, env = "RESUME_PING_INTERVAL_MS", default_value_t = 20_000)]
    pub ping_interval_ms: u64,

    /// A session with no traffic for this long ends (and flushes).
    #[arg(long, env = "RESUME_IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Largest WebSocket frame or message accepted; a larger one closes the session with 1009.
    #[arg(long, env = "RESUME_MAX_FRAME_BYTES", default_value_t = 4096)]
    pub max_frame_bytes: usize,

    /// Initial WebSocket read buffer per session; a larger frame grows it while it is read.
    #[arg(long, env = "RESUME_WS_READ_BUFFER_BYTES", default_value_t = 256)]
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

    /// How often the store is probed for /readyz; a probe that takes longer failed.
    #[arg(long, env = "RESUME_READINESS_PROBE_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub readiness_probe_interval_ms: u64,

    /// Consecutive failed probes before /readyz answers 503; one passing probe makes it 200 again.
    #[arg(long, env = "RESUME_READINESS_FAILURE_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub readiness_failure_threshold: u32,
}

/// Where the HS256 secret may come from.
const JWT_SECRET: SecretSource = SecretSource {
    env: "RESUME_JWT_SECRET",
    file_knob: "--jwt-secret-file / RESUME_JWT_SECRET_FILE",
};

/// Where the Cassandra password may come from.
const CASSANDRA_PASSWORD: SecretSource = SecretSource {
    env: "RESUME_CASSANDRA_PASSWORD",
    file_knob: "--cassandra-password-file / RESUME_CASSANDRA_PASSWORD_FILE",
};

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
    /// the `RESUME_*` environment, ignoring any subcommand, and reads the secrets
    /// ([`read_secrets`](Self::read_secrets)); for tests and tools.
    pub fn from_env_and_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut config = Cli::try_parse_from(args)?.config;
        config.read_secrets().map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n"))
        })?;
        Ok(config)
    }

    /// Fills in the secrets, which clap never sees: each from its environment
    /// variable or from the file its flag names (see [`crate::secret`]).
    pub fn read_secrets(&mut self) -> Result<(), ConfigError> {
        self.jwt_secret = JWT_SECRET.read(self.jwt_secret_file.as_deref())?;
        self.cassandra_password =
            CASSANDRA_PASSWORD.read(self.cassandra_password_file.as_deref())?;
        Ok(())
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
            if secret.expose().len() < 32 {
                return Err(ConfigError::new(
                    "RESUME_JWT_SECRET / --jwt-secret-file",
                    "must be at least 32 bytes",
                ));
            }
            if self.jwt_public_key.is_some() {
                return Err(ConfigError::new(
                    "RESUME_JWT_SECRET / --jwt-secret-file",
                    "set either a secret or --jwt-public-key / RESUME_JWT_PUBLIC_KEY, not both",
                ));
            }
        }
        if self.demo_login && self.jwt_public_key.is_some() {
            return Err(ConfigError::new(
                "--demo-login / RESUME_DEMO_LOGIN",
                "needs RESUME_JWT_SECRET or --jwt-secret-file: the server cannot sign tokens with a public key",
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

    /// How long a position lives after its last write; `None` keeps it forever.
    pub fn position_ttl(&self) -> Option<Duration> {
        (self.position_ttl_days > 0)
            .then(|| Duration::from_secs(u64::from(self.position_ttl_days) * 24 * 3600))
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
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "short\n").unwrap();
        let err = parse(&["--jwt-secret-file", short.to_str().unwrap()])
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("RESUME_JWT_SECRET"), "{err}");
        let err = parse(&["--flush-interval-ms", "0"]).validate().unwrap_err();
        assert!(err.to_string().contains("--flush-interval-ms"), "{err}");
    }

    #[test]
    fn query_tokens_stay_allowed_unless_turned_off() {
        assert!(parse(&[]).allow_query_token);
        for off in ["false", "0", "no"] {
            assert!(
                !parse(&["--allow-query-token", off]).allow_query_token,
                "{off}"
            );
        }
        assert!(parse(&["--allow-query-token", "true"]).allow_query_token);
    }

    #[test]
    fn session_ticket_and_login_limits_are_checked_by_the_parser() {
        let config = parse(&[]);
        assert_eq!(config.session_ticket_ttl_secs, 30);
        assert_eq!(config.max_session_tickets_per_user, 16);
        assert_eq!(config.max_session_tickets, 100_000);
        for knob in [
            "--session-ticket-ttl-secs",
            "--max-session-tickets-per-user",
            "--max-session-tickets",
            "--demo-login-burst",
            "--demo-login-per-minute",
            "--demo-login-max-clients",
        ] {
            let refused = Config::from_env_and_args(["resume-server", knob, "0"]);
            assert!(refused.is_err(), "{knob} 0 is accepted");
        }
        assert!(
            Config::from_env_and_args(["resume-server", "--session-ticket-ttl-secs", "3601"])
                .is_err()
        );
    }

    #[test]
    fn secrets_come_from_files_never_flags_and_are_never_printed() {
        for flag in ["--jwt-secret", "--cassandra-password"] {
            let parsed = Config::from_env_and_args(["resume-server", flag, "hunter2"]);
            assert!(parsed.is_err(), "{flag} is accepted");
        }
        let dir = tempfile::tempdir().unwrap();
        let (jwt, password) = (dir.path().join("jwt"), dir.path().join("password"));
        std::fs::write(&jwt, "jwt-secret-jwt-secret-jwt-secret-0123\n").unwrap();
        std::fs::write(&password, "cassandra-hunter2").unwrap();
        let config = parse(&[
            "--jwt-secret-file",
            jwt.to_str().unwrap(),
            "--cassandra-password-file",
            password.to_str().unwrap(),
        ]);
        let jwt_secret = config.jwt_secret.as_ref().map(Secret::expose);
        assert_eq!(jwt_secret, Some("jwt-secret-jwt-secret-jwt-secret-0123"));
        let cassandra_password = config.cassandra_password.as_ref().map(Secret::expose);
        assert_eq!(cassandra_password, Some("cassandra-hunter2"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("jwt-secret-jwt"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");

        let err = Config::from_env_and_args([
            "resume-server",
            "--cassandra-password-file",
            "/no/such/password",
        ])
        .unwrap_err();
        assert!(
            err.to_string().contains("--cassandra-password-file"),
            "{err}"
        );
    }
}
