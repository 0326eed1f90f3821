//! The router's configuration: flags and `SWITCHBOARD_*` variables, validated before anything is
//! bound or connected (exit code 64 on invalid configuration).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use switchboard_runtime::cli::{LogFormat, Logging};
use switchboard_runtime::config_sources::Sources;
use switchboard_runtime::consul::ConsulArgs;
use switchboard_runtime::nats::NatsArgs;
pub use switchboard_runtime::trace::TracingArgs;

pub use switchboard_runtime::config::ConfigError;
use switchboard_runtime::config::parse_duration;

/// Switchboard router: owns room slots in a cluster (leases in NATS JetStream), orders each room's
/// membership events and fans them out to the edges.
///
/// Parsed through [`switchboard_runtime::config_sources`], so that messages about bad values name
/// the environment variables they came from.
#[derive(Debug, Clone, clap::Args)]
#[command(version, about, long_about = None)]
pub struct Config {
    /// NATS connection.
    #[command(flatten)]
    pub nats: NatsArgs,

    /// Consul: registration with the local agent, and NATS servers found through it.
    #[command(flatten)]
    pub consul: ConsulArgs,

    /// Address for /metrics, /healthz, /readyz, /stats and /slots.
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_LISTEN",
        default_value = "127.0.0.1:9234"
    )]
    pub admin_listen: SocketAddr,

    /// Write the bound admin address as JSON to this file once listening (written atomically).
    #[arg(long, env = "SWITCHBOARD_READY_FILE")]
    pub ready_file: Option<PathBuf>,

    /// Logging.
    #[command(flatten)]
    pub logging: Logging,

    /// Tracing export (OpenTelemetry, OTLP): off unless an endpoint is given.
    #[command(flatten)]
    pub tracing: TracingArgs,

    /// This router's name in leases and logs (letters, digits, '-' and '_'); random when unset.
    #[arg(long, env = "SWITCHBOARD_ROUTER_ID")]
    pub router_id: Option<String>,

    /// Number of slots rooms hash into. Every edge and router of a cluster must agree.
    #[arg(long, env = "SWITCHBOARD_SLOTS", default_value_t = switchboard_proto::bus::DEFAULT_SLOTS)]
    pub slots: u32,

    /// Lease lifetime: a router not heard on NATS for this long is presumed gone and its slots are
    /// taken over; a router that cannot hear its own presence stops serving after half of it. Bounds
    /// failover time. Every router of a cluster must agree.
    #[arg(long, env = "SWITCHBOARD_LEASE_TTL", default_value = "2s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// An edge silent for this long is considered dead: its members are removed (peer_left).
    #[arg(long, env = "SWITCHBOARD_EDGE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub edge_timeout: Duration,

    /// How long a router taking over a slot waits for the edges' membership reports.
    #[arg(long, env = "SWITCHBOARD_RESYNC_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub resync_timeout: Duration,

    /// How often each served slot is reconciled with the edges even when nothing went wrong (views
    /// that diverged for any reason converge within this); 0 turns it off.
    #[arg(long, env = "SWITCHBOARD_RECONCILE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub reconcile_interval: Duration,

    /// Most members per room; 0 means unlimited. (Edges do not need it: routers enforce it.)
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_SIZE", default_value_t = 0)]
    pub max_room_size: usize,

    /// Hosted mode: how often this router tells the others its open rooms per tenant, and the
    /// length of a room-quota round (docs/quotas.md).
    #[arg(long, env = "SWITCHBOARD_USAGE_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub usage_interval: Duration,

    /// Hosted mode: most rooms of one tenant this router opens per round while other routers run;
    /// a join beyond that waits for the next round (the edge asks again). Bounds the overshoot of
    /// a tenant's room limit to (routers - 1) x 2 x this (docs/quotas.md).
    #[arg(long, env = "SWITCHBOARD_QUOTA_ADMIT_BURST", default_value_t = 32)]
    pub quota_admit_burst: u64,

    /// Hours of room_peaks / connection_time statistics to keep (also the statistics stream's age).
    #[arg(long, env = "SWITCHBOARD_STATS_RETENTION_HOURS", default_value_t = 168)]
    pub stats_retention_hours: u64,

    /// Replicas of the JetStream lease bucket, peak bucket and statistics stream. Default: as many
    /// as the NATS cluster has servers, at most 3.
    #[arg(long = "nats-replicas", env = "SWITCHBOARD_NATS_REPLICAS")]
    pub replicas: Option<usize>,

    /// Grace for handing slots over on SIGTERM before exiting anyway.
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// The edges' `--room-key-secret` (at least 16 bytes): the control API names rooms by their
    /// names and finds them by the same keyed hash the edges use. Without it this router serves
    /// rooms but not the control API's room routes.
    #[arg(long, env = "SWITCHBOARD_ROOM_KEY_SECRET", hide_env_values = true)]
    pub room_key_secret: Option<String>,

    /// The control API (docs/api.md), served by every router given --api-listen.
    #[command(flatten)]
    pub api: switchboard_api::config::ApiArgs,

    /// The tenants file (the same as the edges'): its tenants' webhooks are sent by the routers,
    /// and the control API shows them and authenticates their admin tokens. Tenants created
    /// through the API need no file: they are kept in the tenants bucket.
    #[command(flatten)]
    pub tenants: switchboard_api::config::TenantArgs,

    /// Webhooks: extra CAs that `https://` receivers may chain to (as the edges').
    #[command(flatten)]
    pub webhooks: switchboard_api::config::WebhookArgs,

    /// Webhooks (hosted mode): most bytes the JetStream stream of webhook events (`SB_WEBHOOKS`)
    /// holds, per replica. Events beyond it are not stored: counted as
    /// `switchboard_webhooks_dropped_total{reason="store_unavailable"}` (docs/webhooks.md).
    #[arg(long, env = "SWITCHBOARD_WEBHOOKS_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub webhooks_max_bytes: u64,

    /// Webhooks: most events the webhook stream holds (as `--webhooks-max-bytes`).
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_MSGS",
        default_value_t = 1_000_000
    )]
    pub webhooks_max_msgs: u64,

    /// Webhooks: most undelivered events a served slot's worker holds in memory (its consumer's
    /// max_ack_pending); the rest wait in the stream. Bounds the memory: about this x 1 KiB x the
    /// slots served.
    #[arg(
        long,
        env = "SWITCHBOARD_WEBHOOKS_MAX_ACK_PENDING",
        default_value_t = 1_000
    )]
    pub webhooks_max_ack_pending: usize,

    /// Which settings came from environment variables (not a flag).
    #[arg(skip)]
    pub sources: Sources,
}

switchboard_runtime::parse_with_sources!(Config, "switchboard-router");

/// The default `--consul-service-name`.
pub const CONSUL_SERVICE_NAME: &str = "switchboard-router";

/// Shortest `--room-key-secret`, in bytes (as the edges require).
pub const MIN_ROOM_KEY_SECRET_BYTES: usize = 16;

impl Config {
    /// Checks settings against each other; run before connecting or binding. The message names the
    /// environment variable of a setting that came from one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check()
            .map_err(|ConfigError(message)| ConfigError(self.sources.annotate(&message)))
    }

    fn check(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if !self.nats.enabled() {
            return fail(
                "--nats is required (comma-separated NATS URLs), or --nats-consul-service with \
                 --consul-addr"
                    .into(),
            );
        }
        self.nats.validate().map_err(ConfigError)?;
        self.consul_settings()?;
        self.tracing.validate().map_err(ConfigError)?;
        // Checked here, not only when logging starts, so that the message names its variable.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.logging.log) {
            return fail(format!("--log {:?}: {e}", self.logging.log));
        }
        if let Some(id) = &self.router_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return fail(format!(
                "--router-id {id:?}: use 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        if self.slots == 0 || self.slots > 4096 {
            return fail(format!(
                "--slots must be between 1 and 4096 (got {})",
                self.slots
            ));
        }
        if self.lease_ttl < Duration::from_millis(500) {
            return fail("--lease-ttl must be at least 500ms".into());
        }
        if self.edge_timeout < Duration::from_millis(300) {
            return fail("--edge-timeout must be at least 300ms".into());
        }
        if self.resync_timeout.is_zero() {
            return fail("--resync-timeout must be positive".into());
        }
        if self.usage_interval < Duration::from_millis(10) {
            return fail("--usage-interval must be at least 10ms".into());
        }
        if self.quota_admit_burst == 0 {
            return fail("--quota-admit-burst must be at least 1".into());
        }
        if self.stats_retention_hours == 0 {
            return fail("--stats-retention-hours must be at least 1".into());
        }
        if let Some(secret) = &self.room_key_secret
            && secret.len() < MIN_ROOM_KEY_SECRET_BYTES
        {
            return fail(format!(
                "--room-key-secret must be at least {MIN_ROOM_KEY_SECRET_BYTES} bytes (got {}), \
                 and the same as the edges'",
                secret.len()
            ));
        }
        if self.webhooks_max_bytes < 1024 * 1024 || self.webhooks_max_bytes > i64::MAX as u64 {
            return fail("--webhooks-max-bytes must be at least 1 MiB".into());
        }
        if self.webhooks_max_msgs == 0 || self.webhooks_max_msgs > i64::MAX as u64 {
            return fail("--webhooks-max-msgs must be at least 1".into());
        }
        if self.webhooks_max_ack_pending == 0 || self.webhooks_max_ack_pending > 1_000_000 {
            return fail("--webhooks-max-ack-pending must be between 1 and 1000000".into());
        }
        if let Some(r) = self.replicas
            && !(1..=5).contains(&r)
        {
            return fail("--nats-replicas must be between 1 and 5".into());
        }
        if self.api.api_state_file.is_some() {
            return fail(
                "--api-state-file is for a standalone edge: in a cluster the control API's tenants \
                 are kept in the replicated JetStream KV bucket sb-tenants"
                    .into(),
            );
        }
        self.api.check().map_err(ConfigError)?;
        self.tenants.check().map_err(ConfigError)?;
        self.webhooks.check().map_err(ConfigError)?;
        Ok(())
    }

    /// The Consul settings: `None` without --consul-addr. Reads the token file.
    pub fn consul_settings(
        &self,
    ) -> Result<Option<switchboard_runtime::consul::Settings>, ConfigError> {
        self.consul
            .settings(&self.nats, CONSUL_SERVICE_NAME, self.admin_listen)
    }

    /// The room keyer of `--room-key-secret`, if set (for the control API's room service).
    pub fn room_keyer(&self) -> Option<switchboard_proto::RoomKeyer> {
        self.room_key_secret
            .as_deref()
            .map(|secret| switchboard_proto::RoomKeyer::new(secret.as_bytes()))
    }

    /// The webhook stream's bounds (the engine's retry time, of `webhooks`, is its max age).
    pub fn webhook_stream_limits(
        &self,
        webhooks: &super::webhooks::WebhookConfig,
    ) -> super::buckets::WebhookStreamLimits {
        super::buckets::WebhookStreamLimits {
            max_age: webhooks.engine.max_retry_time,
            max_bytes: i64::try_from(self.webhooks_max_bytes).unwrap_or(i64::MAX),
            max_msgs: i64::try_from(self.webhooks_max_msgs).unwrap_or(i64::MAX),
        }
    }

    /// How the slots' workers deliver (the engine's defaults, as a standalone edge's, trusting
    /// --webhook-ca-file). Reads the CA files: an error means they changed since validation.
    pub fn webhook_config(
        &self,
    ) -> Result<super::webhooks::WebhookConfig, switchboard_api::webhooks::CaFileError> {
        let mut config = super::webhooks::WebhookConfig {
            max_ack_pending: self.webhooks_max_ack_pending,
            ..Default::default()
        };
        config.engine.tls = self.webhooks.tls()?;
        Ok(config)
    }

    /// The router id: the configured one, or a random one.
    pub fn router_id(&self) -> String {
        self.router_id
            .clone()
            .unwrap_or_else(|| format!("router-{:08x}", rand::random::<u32>()))
    }
}
