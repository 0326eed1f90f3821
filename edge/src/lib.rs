//! Switchboard edge: terminates client WebSockets, validates and relays signaling messages, and serves
//! health, readiness and metrics. Standalone (the default) it embeds the router over an in-process bus.
//!
//! The binary is thin: it parses [`Config`], sets up logging, binds [`Listeners`] and calls [`run`];
//! tests call the same `run` on port 0.
//!
//! # Layout
//! - [`config`]: flags and `SWITCHBOARD_*` variables, validated before binding.
//! - [`http`]: both HTTP ports (health, readiness, metrics, stats, the WebSocket upgrade).
//! - [`web`]: the demo page and the JS client, embedded; [`ice`]: the `--ice-server` entries it
//!   hands to the page.
//! - [`conn`]: one task per client connection: limits, pings, queue, shutdown.
//! - [`registry`]: local connections and the edge's view of their rooms; peer relays.
//! - [`turn`]: TURN credentials minted per connection for `joined_room`.
//! - [`bus`]: the way to the router; [`local_router`] is the in-process router, [`cluster`] the
//!   edge's side of a cluster (NATS subscriptions, heartbeats, resync).
//! - [`room_service`]: the control API's room service, standalone (over [`local_router`]).
//! - [`context`]: what connection tasks share, and the shutdown phases.
//! - [`metrics`]: Prometheus metrics. [`ratelimit`]: token buckets. [`queue`]: a client's bounded
//!   outbound queue.
//! - [`descriptors`]: the descriptor limit, and how many clients fit in it.
//! - [`hosted`]: who may connect: open mode's origins, or hosted mode's join tokens.
//! - [`usage`]: hosted mode's per-tenant quotas (connections, message rate) and usage.
//! - [`api`]: the control API standalone (docs/api.md), over the in-process room service.
//! - [`shutdown`]: the signal handling of the binary.
//! - [`token_command`]: `switchboard-edge token`, which prints a join token for hosted mode.
//! - [`webhooks`]: standalone, the tenants' webhooks: room and member events from the in-process
//!   router to the delivery engine.

pub mod api;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod context;
pub mod descriptors;
pub mod hosted;
pub mod http;
pub mod ice;
pub mod local_router;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
pub mod registry;
pub mod room_service;
pub mod shutdown;
pub mod token_command;
pub mod turn;
pub mod usage;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::{EdgeId, RoomKeyer};
use switchboard_rooms::RoomsConfig;
use switchboard_runtime::consul;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use config::Config;
pub use metrics::Metrics;
pub use shutdown::Shutdown;

use crate::bus::{Bus, NatsBus};
use crate::config::AuthMode;
use crate::context::Context;
use crate::hosted::Access;
use crate::registry::Registry;
use crate::webhooks::EdgeWebhooks;
use switchboard_tenants::Directory;
use switchboard_tenants::watch::{FileSource, LoadError, Reload};

/// The two bound ports of an edge.
#[derive(Debug)]
pub struct Listeners {
    /// Client WebSockets.
    pub public: std::net::TcpListener,
    /// Metrics, health, readiness, statistics.
    pub admin: std::net::TcpListener,
    /// The control API, with `--api-listen`.
    pub api: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds both addresses of `config`.
    pub fn bind(config: &Config) -> io::Result<Listeners> {
        let bind = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listener.set_nonblocking(true)?;
            Ok::<_, io::Error>(listener)
        };
        Ok(Listeners {
            public: bind(config.listen)?,
            admin: bind(config.admin_listen)?,
            api: config.api.api_listen.map(bind).transpose()?,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn addresses(&self) -> io::Result<BoundAddresses> {
        Ok(BoundAddresses {
            listen: self.public.local_addr()?,
            admin_listen: self.admin.local_addr()?,
            api_listen: self
                .api
                .as_ref()
                .map(std::net::TcpListener::local_addr)
                .transpose()?,
        })
    }
}

/// Where an edge listens; also the content of `--ready-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoundAddresses {
    /// The public (WebSocket) address.
    pub listen: SocketAddr,
    /// The admin address.
    pub admin_listen: SocketAddr,
    /// The control API's address, with `--api-listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_listen: Option<SocketAddr>,
}

/// Why [`run`] could not serve.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be handed to tokio.
    #[error("cannot use a listener")]
    Listener(#[from] io::Error),
    /// Metrics could not be registered.
    #[error("cannot register the metrics")]
    Metrics(#[from] prometheus::Error),
    /// The NATS connection could not be set up.
    #[error("cannot set up the NATS connection")]
    Nats(#[from] switchboard_runtime::nats::ConnectError),
    /// The edge's NATS subscriptions could not be made.
    #[error("cannot subscribe on NATS")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The descriptor limit leaves no room for clients.
    #[error("descriptors: {0}")]
    Descriptors(String),
    /// The tenants file could not be loaded (hosted mode).
    #[error("tenants file")]
    Tenants(#[from] LoadError),
    /// The TURN settings could not be read (the secret file changed after validation).
    #[error("TURN settings")]
    Turn(#[source] config::ConfigError),
    /// The control API could not start (its token or state file changed after validation, or its
    /// tenants clash with the tenants file's).
    #[error("control API: {0}")]
    Api(String),
    /// A `--webhook-ca-file` could not be read (it changed after validation).
    #[error("webhook CA files")]
    WebhookCa(#[from] switchboard_api::webhooks::CaFileError),
    /// The Consul settings could not be read (the token file changed after validation).
    #[error("Consul settings")]
    Consul(#[source] config::ConfigError),
    /// `--nats-consul-service` found no NATS server.
    #[error("cannot find the NATS servers in Consul")]
    Discovery(#[from] consul::DiscoveryError),
}

/// Hosted mode: loads the tenants file into `directory`, and returns it to be followed.
fn load_tenants(config: &Config, directory: &Directory) -> Result<Option<FileSource>, RunError> {
    let (AuthMode::Tokens, Some(path)) = (config.hosted.auth, &config.hosted.tenants.tenants_file)
    else {
        return Ok(None);
    };
    let (source, count) = FileSource::load(path.clone(), directory.clone())?;
    info!(path = %path.display(), tenants = count, "hosted mode: tenants loaded");
    Ok(Some(source))
}

/// Longest a hosted edge of a cluster waits for the tenants bucket before it is ready.
const TENANTS_BUCKET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Follows the cluster's tenants bucket (the routers' control API writes it) into `directory` as
/// its source "api", until `stop`.
fn follow_tenants_bucket(
    client: async_nats::Client,
    directory: Directory,
    stop: tokio_util::sync::CancellationToken,
) -> (
    switchboard_api::cluster::Bucket,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let bucket = switchboard_api::cluster::Bucket::new(async_nats::jetstream::new(client));
    let follow = tokio::spawn(bucket.clone().follow(stop.clone()));
    let apply = tokio::spawn({
        let bucket = bucket.clone();
        async move {
            bucket
                .apply_changes(stop, |records| {
                    switchboard_api::tenants::put_in_force(&directory, &records)
                })
                .await
        }
    });
    (bucket, vec![follow, apply])
}

/// Keeps `switchboard_tenants` at the number of tenants in force (the tenants file's and the
/// control API's) until `stop`.
async fn count_tenants(
    directory: Directory,
    metrics: Metrics,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut snapshots = directory.subscribe();
    loop {
        let count = snapshots.borrow_and_update().len();
        metrics.tenants.set(count as i64);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
    }
}

/// Logs and counts a change of the tenants file.
fn report_reload(reload: &Reload, metrics: &Metrics) {
    match reload {
        Reload::Loaded(count) => {
            metrics.tenants_reloads.with_label_values(&["loaded"]).inc();
            info!(tenants = count, "tenants file reloaded");
        }
        Reload::Refused(error) => {
            metrics
                .tenants_reloads
                .with_label_values(&["refused"])
                .inc();
            warn!(error = %error, "tenants file changed but not reloaded: the previous tenants stay in force");
        }
    }
}

/// Serves until `shutdown` resolves, then runs the graceful stop: refuse new clients, fail readiness,
/// send `shutdown` to every client, wait for the grace (or until every client has left), close the
/// rest with 4200.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = Shutdown>,
) -> Result<(), RunError> {
    run_exposing(config, listeners, shutdown, |_| {}).await
}

/// [`run`], handing the standalone edge's room service (for the control API) to `expose` once it
/// exists. A clustered edge has none (the routers serve the rooms), and never calls `expose`.
pub async fn run_exposing(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = Shutdown>,
    expose: impl FnOnce(Arc<dyn switchboard_api::service::RoomService>),
) -> Result<(), RunError> {
    let mut config = config;
    let metrics = if config.nats.enabled() {
        Metrics::new()?.without_router_rooms()
    } else {
        Metrics::new()?
    };
    let consul = config.consul_settings().map_err(RunError::Consul)?;
    // Before anything uses the NATS servers: --nats-consul-service finds them.
    consul::discovery::fill_nats_urls(&mut config.nats, consul.as_ref(), &metrics.consul).await?;
    let fd_limit = descriptors::soft_limit();
    let plan = descriptors::plan(config.max_connections, fd_limit, config.fd_reserve)
        .map_err(RunError::Descriptors)?;
    if plan.lowered {
        warn!(
            fd_limit = fd_limit.unwrap_or_default(),
            max_connections = config.max_connections,
            fd_reserve = config.fd_reserve,
            connections = plan.connections,
            "the descriptor limit cannot cover --max-connections plus --fd-reserve: serving fewer \
             clients; raise the limit (ulimit -n, LimitNOFILE=, the container's nofile) or lower \
             --max-connections"
        );
    }
    metrics.export_limits(&config, plan.connections)?;
    let turn = config
        .turn_settings()
        .map_err(RunError::Turn)?
        .map(Arc::new);
    if let Some(turn) = &turn {
        info!(
            urls = %turn.urls.join(","),
            secrets = turn.secrets.len(),
            ttl = %humantime::format_duration(turn.ttl),
            "minting TURN credentials for every joined_room"
        );
    }
    let edge = EdgeId(rand::random());
    let directory = Directory::new();
    let registry = Registry::new(edge, metrics.clone());
    let keyer = match &config.room_key_secret {
        Some(secret) => RoomKeyer::new(secret.as_bytes()),
        None => RoomKeyer::new(&rand::random::<[u8; 32]>()),
    };
    let clustered = config.nats.enabled();
    // Standalone only: in a cluster the routers hold the rooms, and the control API's room
    // routes answer 503 here.
    let mut room_service = None;
    let (bus, router) = if clustered {
        let (client, link, slow_consumers) = config
            .nats
            .connect_watching(&format!("switchboard-edge-{edge}"))
            .await?;
        let bus = NatsBus {
            client,
            link,
            slots: config.slots,
            retry_window: config.failover_retry,
            epochs: Default::default(),
            slow_consumers,
            metrics: metrics.clone(),
        };
        (Bus::nats(bus), None)
    } else {
        let (router_tx, router_rx) = mpsc::channel(local_router::QUEUE);
        // Events exist for tenants' rooms only, so open mode runs no engine.
        let webhooks = match config.hosted.auth {
            AuthMode::Tokens => Some(EdgeWebhooks::start(
                directory.clone(),
                &metrics,
                config.webhooks.tls()?,
            )?),
            AuthMode::None => None,
        };
        let router = tokio::spawn(local_router::run(
            RoomsConfig {
                max_room_size: config.max_room_size,
                stats_retention_hours: config.stats_retention_hours,
            },
            router_rx,
            registry.clone(),
            metrics.clone(),
            config.stats_file.clone(),
            webhooks.as_ref().map(|w| w.engine().clone()),
        ));
        metrics.bus_connected.set(1);
        let service = room_service::LocalRoomService::shared(&router_tx, keyer.clone());
        room_service = Some(service.clone());
        expose(service);
        (Bus::local(router_tx), Some((router, webhooks)))
    };
    let nats_bus = bus.as_nats().cloned();
    let access = Access::new(&config.hosted, directory.clone());
    let tenants_file = load_tenants(&config, &directory)?;
    let ctx = Context::new(
        &config, edge, keyer, registry, bus, metrics, plan, access, turn,
    );
    let tenants_task = tenants_file.map(|source| {
        let metrics = ctx.metrics.clone();
        tokio::spawn(source.follow(
            config.hosted.tenants.tenants_reload_interval,
            ctx.lifecycle.stopped.clone(),
            move |reload| report_reload(reload, &metrics),
        ))
    });
    let tenants_gauge = tokio::spawn(count_tenants(
        directory.clone(),
        ctx.metrics.clone(),
        ctx.lifecycle.stopped.clone(),
    ));
    // A hosted edge of a cluster follows the tenants created through the routers' control API.
    let tenants_bucket = match (&nats_bus, config.hosted.auth) {
        (Some(nats), AuthMode::Tokens) => Some(follow_tenants_bucket(
            nats.client.clone(),
            directory.clone(),
            ctx.lifecycle.stopped.clone(),
        )),
        _ => None,
    };
    // Hosted mode: the rounds of the quotas and the usage (reports to the other edges in a
    // cluster). Open mode has no tenants and runs nothing of it.
    let usage_task = ctx
        .usage
        .hosted()
        .then(|| tokio::spawn(usage::round::run(ctx.clone(), nats_bus.clone())));
    let cluster_tasks = match nats_bus {
        Some(nats) => cluster::start(ctx.clone(), nats, config.heartbeat_interval).await?,
        None => Vec::new(),
    };

    let public = TcpListener::from_std(listeners.public)?;
    let admin = TcpListener::from_std(listeners.admin)?;
    info!(
        listen = %public.local_addr()?,
        admin_listen = %admin.local_addr()?,
        edge.id = %ctx.edge,
        mode = if clustered { "cluster" } else { "standalone" },
        demo = ctx.site.demo(),
        "switchboard-edge serving"
    );
    let admin_addr = admin.local_addr()?;
    let public_port = public.local_addr()?.port();
    let api_task = match listeners.api {
        Some(listener) => {
            Some(api::start(&config, listener, directory.clone(), room_service, &ctx).await?)
        }
        None => None,
    };
    let public_task = tokio::spawn(http::serve(public, ctx.clone(), http::Port::Public));
    let admin_task = tokio::spawn(http::serve(admin, ctx.clone(), http::Port::Admin));
    // Once the admin port serves (Consul's check asks its /readyz); never waited for.
    let registration = consul.as_ref().map(|settings| {
        let service = consul::Service::new(
            settings,
            &ctx.edge.to_string(),
            public_port,
            admin_addr,
            env!("CARGO_PKG_VERSION"),
        );
        consul::Registration::start(settings, service, ctx.metrics.consul.clone())
    });
    if let Some((bucket, _)) = &tenants_bucket {
        // Ready once the cluster's tenants are known, so that a load balancer sends no client whose
        // token this edge would still call an unknown key; bounded, since the tenants file's
        // tenants are served meanwhile and JetStream may be down for a while.
        if tokio::time::timeout(TENANTS_BUCKET_WAIT, bucket.caught_up())
            .await
            .is_err()
        {
            warn!(
                "the cluster's tenants bucket was not read within {TENANTS_BUCKET_WAIT:?}: ready \
                 without the control API's tenants, which apply as soon as it answers"
            );
        }
    }
    ctx.lifecycle.set_ready(true);

    let Shutdown { grace } = shutdown.await;
    // First, so that Consul stops handing this edge out while it drains; bounded, and awaited
    // before exiting.
    let deregistered = registration.map(|r| tokio::spawn(r.deregister()));
    drain(&ctx, grace).await;

    ctx.lifecycle.stopped.cancel();
    let _ = public_task.await;
    let _ = admin_task.await;
    if let Some(task) = api_task {
        let _ = task.await;
    }
    for task in cluster_tasks {
        let _ = task.await;
    }
    if let Some(task) = tenants_task {
        let _ = task.await;
    }
    if let Some((_, tasks)) = tenants_bucket {
        for task in tasks {
            let _ = task.await;
        }
    }
    let _ = tenants_gauge.await;
    // Before the router ends: standalone, the last usage goes to its statistics.
    if let Some(task) = usage_task {
        let _ = task.await;
    }
    if let Some(nats) = ctx.bus.as_nats() {
        let _ = nats.client.flush().await;
    }
    // Every holder of the bus is gone once the context is; the router then ends on its own.
    drop(ctx);
    if let Some((router, webhooks)) = router {
        let _ = router.await;
        // After the router: the leaves of the last clients are queued by then.
        if let Some(webhooks) = webhooks {
            webhooks.finish().await;
        }
    }
    if let Some(task) = deregistered {
        let _ = task.await;
    }
    info!("switchboard-edge stopped");
    Ok(())
}

/// The shutdown sequence of docs/protocol.md ("Lifecycle").
async fn drain(ctx: &Context, grace: Duration) {
    let lifecycle = &ctx.lifecycle;
    lifecycle.set_ready(false);
    ctx.metrics.draining.set(1);
    lifecycle.stop_accepting.cancel();
    let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    info!(
        grace_seconds = seconds,
        connections = ctx.registry.connection_count(),
        "shutting down: draining connections"
    );
    lifecycle.announce.send_replace(Some(seconds));
    lifecycle.connections.close();
    if tokio::time::timeout(grace, lifecycle.connections.wait())
        .await
        .is_err()
    {
        info!(
            connections = ctx.registry.connection_count(),
            "grace over: closing remaining connections with 4200"
        );
    }
    lifecycle.close_all.cancel();
    lifecycle.connections.wait().await;
}
