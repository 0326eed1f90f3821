//! What every connection task shares: settings, the registry, the bus, metrics, and the lifecycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use switchboard_proto::{ConnId, EdgeId, RoomKeyer, StatusRules};
use switchboard_tenants::TurnSettings;
use switchboard_tenants::token::Session;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::bus::Bus;
use crate::descriptors::Plan;
use crate::hosted::Access;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::turn::TurnGrant;
use crate::usage::Usage;
use crate::web::Site;

/// Per-connection limits, copied out of [`Config`] once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Token bucket refill rate, messages per second.
    pub rate_limit: u32,
    /// Token bucket size.
    pub rate_burst: u32,
    /// Rate-limited messages within 10 s that close the connection.
    pub rate_limit_close_after: u32,
    /// Deepest nesting of a client message.
    pub max_json_depth: usize,
    /// Outbound queue bounds (messages and bytes).
    pub outbound_queue: crate::queue::Limits,
    /// Interval between server pings.
    pub ping_interval: Duration,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
    /// Bound on the HTTP request and on each write.
    pub io_timeout: Duration,
    /// How long a relay waits for room in a full target queue before the target is closed.
    pub slow_client_timeout: Duration,
    /// Most public-port HTTP connections not (yet) upgraded (see `descriptors`).
    pub pending_http: usize,
    /// tungstenite settings (frame size limit, buffers).
    pub websocket: WebSocketConfig,
}

impl Limits {
    /// The limits of `config`, within the descriptors of `plan`.
    pub fn from_config(config: &Config, plan: Plan) -> Self {
        Limits {
            rate_limit: config.rate_limit,
            rate_burst: config.rate_burst,
            rate_limit_close_after: config.rate_limit_close_after,
            max_json_depth: config.max_json_depth,
            outbound_queue: crate::queue::Limits {
                messages: config.outbound_queue,
                bytes: config.outbound_queue_bytes,
            },
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            io_timeout: config.io_timeout,
            slow_client_timeout: config.slow_client_timeout,
            pending_http: plan.pending_http,
            websocket: WebSocketConfig::default()
                .max_frame_size(Some(config.max_frame_bytes))
                .max_message_size(Some(config.max_frame_bytes))
                .read_buffer_size(config.ws_read_buffer)
                // Writes are batched and flushed by the connection task; this only caps how much
                // is gathered before tungstenite writes to the socket on its own.
                .write_buffer_size(16 * 1024),
        }
    }
}

/// The phases of a graceful stop, shared by every task of one edge.
#[derive(Debug)]
pub struct Lifecycle {
    /// Cancelled when the edge stops taking clients (the drain begins): upgrades get 503 from then.
    pub stop_accepting: CancellationToken,
    /// `Some(seconds)` once a shutdown has been announced.
    pub announce: watch::Sender<Option<u64>>,
    /// Cancelled when the grace is over: every connection closes with 4200.
    pub close_all: CancellationToken,
    /// Cancelled last, to close both listeners and end idle HTTP connections.
    pub stopped: CancellationToken,
    /// WebSocket connection tasks (waited for during shutdown).
    pub connections: TaskTracker,
    ready: AtomicBool,
}

impl Lifecycle {
    fn new() -> Self {
        Lifecycle {
            stop_accepting: CancellationToken::new(),
            announce: watch::Sender::new(None),
            close_all: CancellationToken::new(),
            stopped: CancellationToken::new(),
            connections: TaskTracker::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether a shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.stop_accepting.is_cancelled()
    }
}

/// The places for client connections under `--max-connections` (lowered if descriptors are short).
/// Not to be confused with `--slots`, the hash slots rooms map to in a cluster.
///
/// A counter rather than a `tokio::sync::Semaphore`: each connection's task holds its permit for its
/// whole life, and an owned semaphore permit is twice the size of this one (docs/benchmarks.md counts
/// the bytes of an idle connection).
#[derive(Debug)]
pub struct ConnectionPermits {
    used: Arc<AtomicUsize>,
    max: usize,
}

/// One connection's place under `--max-connections`, given back on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    used: Arc<AtomicUsize>,
}

impl ConnectionPermits {
    /// `max` places, all free.
    pub fn new(max: usize) -> Self {
        ConnectionPermits {
            used: Arc::default(),
            max,
        }
    }

    /// Takes a place if one is free.
    pub fn try_acquire(&self) -> Option<ConnectionPermit> {
        let max = self.max;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionPermit {
                used: self.used.clone(),
            })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything a connection task needs; one per edge, behind an `Arc`.
#[derive(Debug)]
pub struct Context {
    /// This edge's id.
    pub edge: EdgeId,
    /// Per-connection limits.
    pub limits: Limits,
    /// Status validation rules.
    pub status_rules: StatusRules,
    /// Turns room ids into room keys.
    pub keyer: RoomKeyer,
    /// Local connections and room views.
    pub registry: Registry,
    /// The way to the routers.
    pub bus: Bus,
    /// Metrics.
    pub metrics: Metrics,
    /// Shutdown phases and readiness.
    pub lifecycle: Lifecycle,
    /// Places for client connections (`--max-connections`).
    pub connection_permits: ConnectionPermits,
    /// Places for public-port HTTP connections that are not WebSockets (yet).
    pub pending_http: Arc<Semaphore>,
    /// The demo page and the JS client.
    pub site: Site,
    /// Who may connect (open mode, or hosted mode's tokens).
    pub access: Access,
    /// The global TURN settings (`--turn-url` and friends), if any.
    pub turn: Option<Arc<TurnSettings>>,
    /// Hosted mode: each tenant's connections, message rate and usage.
    pub usage: Usage,
    /// Hours of statistics kept (`--stats-retention-hours`), for the usage a clustered edge stores.
    pub stats_retention_hours: u64,
}

impl Context {
    /// Builds the shared context.
    #[allow(clippy::too_many_arguments)] // Each part is built by `run` from different settings.
    pub fn new(
        config: &Config,
        edge: EdgeId,
        keyer: RoomKeyer,
        registry: Registry,
        bus: Bus,
        metrics: Metrics,
        plan: Plan,
        access: Access,
        turn: Option<Arc<TurnSettings>>,
    ) -> Arc<Self> {
        let directory = match &access {
            Access::Tokens { directory, .. } => Some(directory.clone()),
            Access::Open(_) => None,
        };
        let usage = Usage::new(
            config.hosted.usage_settings(plan.pending_http),
            directory,
            config.nats.enabled(),
            metrics.clone(),
        );
        Arc::new(Context {
            edge,
            usage,
            stats_retention_hours: config.stats_retention_hours,
            pending_http: Arc::new(Semaphore::new(plan.pending_http)),
            limits: Limits::from_config(config, plan),
            status_rules: config.status_rules(),
            keyer,
            registry,
            bus,
            metrics,
            lifecycle: Lifecycle::new(),
            connection_permits: ConnectionPermits::new(plan.connections),
            site: Site::new(config.demo_enabled(), &config.ice_servers),
            access,
            turn,
        })
    }

    /// The TURN credentials connection `conn` gets at its joins; `None` when TURN is not
    /// configured for it. Settings: its tenant's own (hosted mode), else the global ones. TURN user:
    /// the token's subject, which coturn then logs and counts its quotas by, if coturn would take
    /// it as a user name; else the connection id.
    pub fn turn_grant(&self, conn: ConnId, session: Option<&Session>) -> Option<TurnGrant> {
        let settings = session
            .and_then(|session| session.tenant.turn.clone())
            .or_else(|| self.turn.clone())?;
        let user = session
            .and_then(|session| session.subject.as_deref())
            .filter(|subject| switchboard_tenants::turn::check_user(subject).is_ok())
            .map_or_else(|| conn.to_string(), str::to_owned);
        Some(TurnGrant::new(settings, user))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
