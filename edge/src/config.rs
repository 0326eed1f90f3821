//! The edge's configuration: every setting is a flag and a `SWITCHBOARD_*` environment variable,
//! validated before any port is bound (the binary exits with code 64 on invalid configuration).
//! docs/operations.md lists them all; Helm values map onto them one to one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use switchboard_proto::StatusRules;
use switchboard_proto::limits::{
    DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_ROOM_SIZE,
    DEFAULT_MAX_STATUS_BYTES, DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, MAX_JSON_DEPTH,
    MIN_JSON_DEPTH,
};
pub use switchboard_runtime::cli::{LogFormat, Logging};
use switchboard_runtime::config_sources::Sources;
use switchboard_runtime::consul::ConsulArgs;
use switchboard_runtime::nats::NatsArgs;
pub use switchboard_runtime::trace::TracingArgs;
use switchboard_tenants::TurnSettings;
use switchboard_tenants::turn::{self, TurnSettingsError};

use crate::ice::IceServer;
pub use hosted::{AuthMode, HostedArgs};

pub mod hosted;

/// Switchboard edge: a palava-compatible WebRTC signaling server.
///
/// Without --nats (the default) it runs standalone: one process, rooms kept in memory.
///
/// Parsed through [`switchboard_runtime::config_sources`], so that messages about bad values name
/// the environment variables they came from.
#[derive(Debug, Clone, clap::Args)]
#[command(
    version,
    about,
    long_about = None,
    override_usage = "switchboard-edge [OPTIONS]\n       \
                      switchboard-edge token --tenants-file FILE --key KEY_ID [OPTIONS]",
    after_help = "Commands:\n  token  Print a join token for hosted mode (--auth tokens), signed \
                  with a key of the tenants file: `switchboard-edge token --help`, docs/hosting.md"
)]
pub struct Config {
    /// NATS connection: with --nats the edge is a stateless node of a cluster.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Consul: registration with the local agent, and NATS servers found through it.
    #[command(flatten)]
    pub consul: ConsulArgs,

    /// Number of slots rooms hash into (cluster). Every edge and router of a cluster must agree.
    #[arg(long, env = "SWITCHBOARD_SLOTS", default_value_t = switchboard_proto::bus::DEFAULT_SLOTS)]
    pub slots: u32,

    /// How often the edge tells the routers it is alive (cluster). Keep it well under the routers'
    /// --edge-timeout.
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// How long a membership command is retried while its room's slot has no serving router
    /// (cluster failover) before the client gets `service unavailable`.
    #[arg(long, env = "SWITCHBOARD_FAILOVER_RETRY", default_value = "5s", value_parser = parse_duration)]
    pub failover_retry: Duration,

    /// Address for client WebSockets (any path) and /healthz, /readyz.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:4233")]
    pub listen: SocketAddr,

    /// Address for /metrics, /healthz, /readyz and /stats.
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_LISTEN",
        default_value = "127.0.0.1:9233"
    )]
    pub admin_listen: SocketAddr,

    /// Serve the demo page at `/` and `/r/ROOM` (true/false, 1/0, yes/no, on/off; `--demo` alone is
    /// true). Default: on standalone, off with --nats.
    #[arg(
        long,
        env = "SWITCHBOARD_DEMO",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub demo: Option<bool>,

    /// A STUN or TURN server for the demo page, repeatable (or `;`-separated):
    /// `URL[,URL…][ username=NAME credential=SECRET]`, e.g. `stun:stun.example.org:3478` or
    /// `turn:turn.example.org:3478?transport=udp username=alice credential=s3cret`.
    #[arg(
        long = "ice-server",
        env = "SWITCHBOARD_ICE_SERVERS",
        value_name = "ICE_SERVER",
        value_delimiter = ';'
    )]
    pub ice_servers: Vec<IceServer>,

    /// TURN server URLs (`turn:`, `turns:`; `stun:` too), repeatable or comma-separated. With
    /// --turn-secret-file, every `joined_room` carries credentials for them, minted for the
    /// connection at that moment (coturn's `use-auth-secret`).
    #[arg(
        long = "turn-url",
        env = "SWITCHBOARD_TURN_URLS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub turn_urls: Vec<String>,

    /// File with the TURN servers' shared secrets (coturn's `static-auth-secret`), one per line,
    /// `#` comments and blank lines ignored. The first mints; list the others (still accepted by
    /// coturn) for rotation. Read at start; secrets are never taken on the command line.
    #[arg(long, env = "SWITCHBOARD_TURN_SECRET_FILE", value_name = "PATH")]
    pub turn_secret_file: Option<PathBuf>,

    /// How long minted TURN credentials are good for (1s to 7 days). A client starts relays with
    /// the credentials of its join, for every peer that comes later, so they must outlive a long
    /// stay in a room.
    #[arg(long, env = "SWITCHBOARD_TURN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub turn_ttl: Duration,

    /// Write the bound addresses as JSON to this file once listening (written atomically).
    #[arg(long, env = "SWITCHBOARD_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Logging.
    #[command(flatten)]
    pub logging: Logging,

    /// Tracing export (OpenTelemetry, OTLP): off unless an endpoint is given.
    #[command(flatten)]
    pub tracing: TracingArgs,

    /// Hosted mode: authentication, tenants, tokens, origins.
    #[command(flatten)]
    pub hosted: HostedArgs,

    /// The control API (docs/api.md): tenants and keys at runtime, usage.
    #[command(flatten)]
    pub api: switchboard_api::config::ApiArgs,

    /// Webhooks (hosted, standalone): extra CAs that `https://` receivers may chain to.
    #[command(flatten)]
    pub webhooks: switchboard_api::config::WebhookArgs,

    /// Largest WebSocket frame or message a client may send, in bytes; larger closes with 1009.
    #[arg(long, env = "SWITCHBOARD_MAX_FRAME_BYTES", default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Deepest nesting of objects and arrays in a client message, the message itself counting as one;
    /// deeper is refused with `invalid message: nested too deeply`. At most 124, so that every bus
    /// message built from a client message stays decodable.
    #[arg(long, env = "SWITCHBOARD_MAX_JSON_DEPTH", default_value_t = DEFAULT_MAX_JSON_DEPTH)]
    pub max_json_depth: usize,

    /// Sustained messages per second a connection may send (token bucket refill rate).
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT", default_value_t = DEFAULT_RATE_PER_SECOND)]
    pub rate_limit: u32,

    /// Messages a connection may send in a burst (token bucket size).
    #[arg(long, env = "SWITCHBOARD_RATE_BURST", default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: u32,

    /// Close a connection with 1008 after this many rate-limited messages within 10 seconds.
    #[arg(
        long,
        env = "SWITCHBOARD_RATE_LIMIT_CLOSE_AFTER",
        default_value_t = 100
    )]
    pub rate_limit_close_after: u32,

    /// Most members per room; 0 means unlimited.
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_SIZE", default_value_t = DEFAULT_MAX_ROOM_SIZE)]
    pub max_room_size: usize,

    /// Most concurrent client connections; further upgrades get HTTP 503.
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,

    /// File descriptors kept for everything but client connections: the admin port, NATS, listeners,
    /// the runtime, files, and public HTTP requests still being answered (web files, 503s). If the
    /// descriptor limit (raised to the hard limit at start) cannot cover --max-connections plus this,
    /// the edge serves fewer clients and logs a warning.
    #[arg(long, env = "SWITCHBOARD_FD_RESERVE", default_value_t = DEFAULT_FD_RESERVE)]
    pub fd_reserve: usize,

    /// Largest status, in bytes of serialized JSON.
    #[arg(long, env = "SWITCHBOARD_MAX_STATUS_BYTES", default_value_t = DEFAULT_MAX_STATUS_BYTES)]
    pub max_status_bytes: usize,

    /// Allowed `user_agent` values in a status (comma-separated).
    #[arg(
        long,
        env = "SWITCHBOARD_USER_AGENTS",
        value_delimiter = ',',
        default_values_t = switchboard_proto::limits::DEFAULT_USER_AGENTS.iter().map(|ua| ua.to_string())
    )]
    pub user_agents: Vec<String>,

    /// Messages queued for one client. A room event that finds it full closes the client (1008, slow
    /// consumer); a peer message waits up to --slow-client-timeout for room.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE", default_value_t = 256)]
    pub outbound_queue: usize,

    /// Bytes queued for one client, whatever the number of messages: the most memory a client that
    /// does not read can hold (an empty queue still takes one message of any size). Full queues are
    /// treated as with --outbound-queue. At least --max-frame-bytes.
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES", default_value_t = DEFAULT_OUTBOUND_QUEUE_BYTES)]
    pub outbound_queue_bytes: usize,

    /// How long a peer message may wait for room in a full queue before its target is closed as a
    /// slow consumer (1008). Meanwhile only the sender's own input waits.
    #[arg(long, env = "SWITCHBOARD_SLOW_CLIENT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub slow_client_timeout: Duration,

    /// Per-connection WebSocket read buffer, in bytes (allocated and zeroed up front for every
    /// connection; the most read from the socket at once). Larger frames still arrive whole, in
    /// several reads.
    #[arg(long, env = "SWITCHBOARD_WS_READ_BUFFER", default_value_t = 2048)]
    pub ws_read_buffer: usize,

    /// How often the server sends WebSocket pings.
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// Close a connection that sent nothing (not even a pong) for this long.
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time allowed for the HTTP request of a new connection and for writing to a client.
    #[arg(long, env = "SWITCHBOARD_IO_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub io_timeout: Duration,

    /// Grace announced in `shutdown` and waited on SIGTERM before closing with 4200 (SIGINT: 0).
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Secret for the keyed hash (HMAC) that replaces room ids past the edge, at least 16 bytes: it
    /// is all that keeps room ids from being guessed back from their hashes, and every edge of a
    /// cluster shares it. Random per process when unset (fine standalone; a cluster must share one).
    #[arg(long, env = "SWITCHBOARD_ROOM_KEY_SECRET", hide_env_values = true)]
    pub room_key_secret: Option<String>,

    /// Hours of room_peaks / connection_time statistics to keep.
    #[arg(long, env = "SWITCHBOARD_STATS_RETENTION_HOURS", default_value_t = 168)]
    pub stats_retention_hours: u64,

    /// Keep the hourly statistics in this file across restarts (saved every few seconds while they
    /// change, and at shutdown). Without it they live in memory only.
    #[arg(long, env = "SWITCHBOARD_STATS_FILE")]
    pub stats_file: Option<PathBuf>,

    /// Which settings came from environment variables (not a flag).
    #[arg(skip)]
    pub sources: Sources,
}

switchboard_runtime::parse_with_sources!(Config, "switchboard-edge");

/// The default `--consul-service-name`.
pub const CONSUL_SERVICE_NAME: &str = "switchboard-edge";

/// Shortest `--room-key-secret`, in bytes: 128 bits, so that room ids cannot be recovered from their
/// hashes by guessing the key.
pub const MIN_ROOM_KEY_SECRET_BYTES: usize = 16;

/// Default of --outbound-queue-bytes: 16 frames of the default maximum size, so a reading client
/// takes a burst of large messages; a sender's whole burst (--rate-burst, 200) of 20 KiB messages,
/// several times a large SDP offer; the latest 4 KiB status of a thousand members. 8 clients that
/// never read pin 32 MiB, not the 512 MiB that 256 messages of 256 KiB each allowed.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Default of --fd-reserve: the edge itself needs about 16 descriptors (standard streams, listeners,
/// the runtime's event loop, NATS, the statistics file); half the reserve is for public HTTP requests
/// that are not WebSockets, the rest leaves room for admin scrapes and probes.
pub const DEFAULT_FD_RESERVE: usize = 128;

pub use switchboard_runtime::config::ConfigError;
use switchboard_runtime::config::parse_duration;

impl Default for Config {
    /// The documented defaults, ignoring `SWITCHBOARD_*` variables (tests must not depend on the
    /// environment they run in).
    fn default() -> Self {
        let command =
            <Config as clap::CommandFactory>::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.get_matches_from(["switchboard-edge"]);
        match <Config as clap::FromArgMatches>::from_arg_matches(&matches) {
            Ok(config) => config,
            // Every argument has a default, so this cannot happen; a unit test proves it.
            Err(e) => panic!("switchboard-edge defaults do not parse: {e}"),
        }
    }
}

impl Config {
    /// Checks settings against each other; run before binding anything. The message names the
    /// environment variable of a setting that came from one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|ConfigError(message)| ConfigError(self.sources.annotate(&message)))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        self.tracing.validate().map_err(ConfigError)?;
        if self.max_frame_bytes < 1024 {
            return fail(format!(
                "--max-frame-bytes must be at least 1024 (got {})",
                self.max_frame_bytes
            ));
        }
        if !(MIN_JSON_DEPTH..=MAX_JSON_DEPTH).contains(&self.max_json_depth) {
            // Deeper than the maximum, a status the edge accepted could not be decoded on the bus
            // (serde_json's recursion limit) and its joiner would hide in the room.
            return fail(format!(
                "--max-json-depth must be between {MIN_JSON_DEPTH} and {MAX_JSON_DEPTH} (got {}): \
                 the bus nests client messages {} levels deeper, within serde_json's limit of {}",
                self.max_json_depth,
                switchboard_proto::bus::ENVELOPE_DEPTH,
                switchboard_proto::limits::SERDE_JSON_MAX_DEPTH,
            ));
        }
        if self.rate_limit == 0 || self.rate_burst == 0 {
            return fail("--rate-limit and --rate-burst must be at least 1".into());
        }
        if self.rate_limit_close_after == 0 {
            return fail("--rate-limit-close-after must be at least 1".into());
        }
        if self.max_connections == 0 {
            return fail("--max-connections must be at least 1".into());
        }
        if self.fd_reserve < 32 {
            return fail(format!(
                "--fd-reserve must be at least 32 (got {}): the edge itself needs about 16 \
                 descriptors, and public HTTP requests and the admin port share the rest",
                self.fd_reserve
            ));
        }
        if self.outbound_queue == 0 {
            return fail("--outbound-queue must be at least 1".into());
        }
        if self.outbound_queue_bytes < self.max_frame_bytes {
            // A client must be able to receive at least one largest frame besides what is queued.
            return fail(format!(
                "--outbound-queue-bytes ({}) must be at least --max-frame-bytes ({})",
                self.outbound_queue_bytes, self.max_frame_bytes
            ));
        }
        if self.ws_read_buffer < 256 {
            return fail("--ws-read-buffer must be at least 256".into());
        }
        if self.max_status_bytes < 2 {
            return fail("--max-status-bytes must be at least 2 (the size of {})".into());
        }
        if self.user_agents.iter().any(|a| a.trim().is_empty()) {
            return fail("--user-agents must not contain empty entries".into());
        }
        if self.ping_interval.is_zero()
            || self.io_timeout.is_zero()
            || self.slow_client_timeout.is_zero()
        {
            return fail(
                "--ping-interval, --io-timeout and --slow-client-timeout must be positive".into(),
            );
        }
        if self.idle_timeout <= self.ping_interval {
            return fail(format!(
                "--idle-timeout ({}) must be longer than --ping-interval ({})",
                humantime::format_duration(self.idle_timeout),
                humantime::format_duration(self.ping_interval)
            ));
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return fail("--listen and --admin-listen must differ".into());
        }
        if self.stats_retention_hours == 0 {
            return fail("--stats-retention-hours must be at least 1".into());
        }
        // A hosted edge's tenants come from the tenants file, from its own control API
        // (standalone), or from the routers' control API (a cluster's tenants bucket).
        self.hosted
            .check(self.api.api_listen.is_some() || self.nats.enabled())?;
        self.api.check().map_err(ConfigError)?;
        self.webhooks.check().map_err(ConfigError)?;
        if self.api.api_listen.is_some() {
            if self.nats.enabled() {
                return fail(
                    "--api-listen is for a standalone edge; in a cluster the routers serve the \
                     control API"
                        .into(),
                );
            }
            if self.hosted.auth != AuthMode::Tokens {
                return fail(
                    "--api-listen needs --auth tokens: the control API manages hosted mode's \
                     tenants"
                        .into(),
                );
            }
        }
        // Checked here, not only when logging starts, so that the message names its variable.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.log) {
            return fail(format!("--log {:?}: {e}", self.logging.log));
        }
        if let Some(secret) = &self.room_key_secret
            && secret.len() < MIN_ROOM_KEY_SECRET_BYTES
        {
            // The HMAC key is all that hides room ids past the edge; a short one is guessed.
            return fail(format!(
                "--room-key-secret must be at least {MIN_ROOM_KEY_SECRET_BYTES} bytes (got {}): it \
                 keys the hash that hides room ids, and every edge of a cluster shares it; generate \
                 one with `openssl rand -hex 32`",
                secret.len()
            ));
        }
        if self.nats.enabled() {
            self.nats.validate().map_err(ConfigError)?;
            if self.room_key_secret.as_deref().is_none_or(str::is_empty) {
                return fail(
                    "--room-key-secret is required with --nats: every edge of a cluster must hash \
                     room ids with the same secret"
                        .into(),
                );
            }
            if self.slots == 0 || self.slots > 4096 {
                return fail(format!(
                    "--slots must be between 1 and 4096 (got {})",
                    self.slots
                ));
            }
            if self.heartbeat_interval < Duration::from_millis(50) {
                return fail("--heartbeat-interval must be at least 50ms".into());
            }
            if self.failover_retry.is_zero() {
                return fail("--failover-retry must be positive".into());
            }
        }
        self.consul_settings()?;
        self.turn_settings()?;
        if let Some(path) = &self.stats_file {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return fail(format!(
                    "--stats-file {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                ));
            }
        }
        Ok(())
    }

    /// The global TURN settings: `None` without --turn-url and --turn-secret-file. Reads the secret
    /// file; messages name the flags, never a secret.
    pub fn turn_settings(&self) -> Result<Option<TurnSettings>, ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if !(self.turn_ttl >= Duration::from_secs(1) && self.turn_ttl <= turn::MAX_TTL) {
            return fail(format!(
                "--turn-ttl must be between 1s and 7days (got {})",
                humantime::format_duration(self.turn_ttl)
            ));
        }
        let path = match (&self.turn_secret_file, self.turn_urls.is_empty()) {
            (None, true) => return Ok(None),
            (Some(path), false) => path,
            (None, false) => {
                return fail(
                    "--turn-url needs --turn-secret-file: the secrets shared with the TURN server \
                     (coturn's static-auth-secret)"
                        .into(),
                );
            }
            (Some(_), true) => {
                return fail("--turn-secret-file needs --turn-url: the TURN servers' URLs".into());
            }
        };
        let secrets = crate::turn::read_secret_file(path)
            .map_err(|e| ConfigError(format!("--turn-secret-file {}: {e}", path.display())))?;
        let settings = TurnSettings {
            urls: self.turn_urls.clone(),
            secrets,
            ttl: self.turn_ttl,
        };
        settings.validate().map_err(|e| {
            let flag = match e {
                TurnSettingsError::NoUrls
                | TurnSettingsError::Url(_)
                | TurnSettingsError::NoTurnUrl => "--turn-url".to_owned(),
                TurnSettingsError::TtlTooShort | TurnSettingsError::TtlTooLong(_) => {
                    "--turn-ttl".to_owned()
                }
                // Numbered as the file's secrets, comments and blank lines not counted.
                TurnSettingsError::NoSecrets
                | TurnSettingsError::EmptySecret(_)
                | TurnSettingsError::ControlCharacter(_) => {
                    format!("--turn-secret-file {}", path.display())
                }
            };
            ConfigError(format!("{flag}: {e}"))
        })?;
        Ok(Some(settings))
    }

    /// The Consul settings: `None` without --consul-addr. Reads the token file.
    pub fn consul_settings(
        &self,
    ) -> Result<Option<switchboard_runtime::consul::Settings>, ConfigError> {
        self.consul
            .settings(&self.nats, CONSUL_SERVICE_NAME, self.listen)
    }

    /// Whether the demo page is served: `--demo` if given, else only standalone (a cluster's edges
    /// are production endpoints, where a page for trying things out is opt-in).
    pub fn demo_enabled(&self) -> bool {
        self.demo.unwrap_or(!self.nats.enabled())
    }

    /// The status rules these settings imply.
    pub fn status_rules(&self) -> StatusRules {
        StatusRules {
            user_agents: self.user_agents.clone(),
            max_bytes: self.max_status_bytes,
        }
    }
}

#[cfg(test)]
mod tests;
