//! The router service: connects to NATS, owns a share of the slots through leases, serves them, and
//! exposes metrics, health and statistics.
//!
//! # Layout
//! - [`config`]: flags and environment.
//! - [`lease`]: slot leases in JetStream KV, with fencing.
//! - [`liveness`]: edge heartbeats and router presence.
//! - [`slot`]: one task per served slot (resync, serve, hand over).
//! - [`store`]: room peaks and statistics in JetStream.
//! - [`admin`]: the admin HTTP port.
//! - [`api`]: the tenants this router knows (file and bucket), and the control API it serves.
//! - [`buckets`]: creating (and updating) the JetStream buckets and streams.
//! - [`balance`]: the slot balancing policy, a pure function of what the router knows.
//! - [`metrics`]: Prometheus metrics.
//! - [`room_service`]: the control API's room service over NATS (any slot's owner answers).
//! - [`usage`]: hosted mode: each tenant's rooms here and at the other routers (room quotas).
//! - [`webhooks`]: hosted mode: the tenants' webhook events, stored in JetStream by the slot's
//!   owner and delivered by a worker per served slot.
//!
//! Balancing (the policy is [`balance`]): every router aims at `ceil(slots / routers present)`
//! slots; a router silent for a lease lifetime is presumed gone, and its slots are taken over at its
//! lease's revision. SIGTERM hands every slot over.

pub mod admin;
pub mod api;
pub mod balance;
pub mod buckets;
pub mod config;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod room_service;
pub mod slot;
pub mod store;
pub mod usage;
pub mod webhooks;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream;
use rand::seq::SliceRandom;
use switchboard_proto::subject;
use switchboard_runtime::consul;
use switchboard_runtime::nats::Link;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

pub use config::Config;
use lease::Holder;
use lease::Leases;
use liveness::Liveness;
use metrics::RouterMetrics;
use slot::SlotEnd;
use store::Store;

/// How often the balancing manager looks at the slots.
const ROUND: Duration = Duration::from_millis(250);

/// What every task of the router shares.
pub struct Shared {
    /// Configuration.
    pub config: Config,
    /// This router's id (as configured, or random).
    pub router_id: String,
    /// This router process: its id and a random suffix, as written in its leases and presence, so a
    /// restarted router never mistakes its previous life's leases for its own.
    pub owner: String,
    /// The NATS connection.
    pub client: Client,
    /// Slot leases.
    pub leases: Leases,
    /// Peaks and statistics.
    pub store: Store,
    /// Live edges and routers.
    pub liveness: Liveness,
    /// Metrics.
    pub metrics: RouterMetrics,
    /// Set once the start-up observation period is over (readiness).
    pub started: watch::Sender<bool>,
    /// Slots currently served (not merely held: a paused slot is not listed).
    pub owned: Arc<std::sync::Mutex<BTreeSet<u32>>>,
    /// Hosted mode: each tenant's rooms here and at the other routers.
    pub tenants: usage::TenantBook,
    /// Hosted mode: the tenants' webhook events (stored and delivered per slot).
    pub webhooks: webhooks::ClusterWebhooks,
}

impl Shared {
    /// Records whether `slot` is being served now (`/slots`).
    pub fn set_serving(&self, slot: u32, serving: bool) {
        let mut owned = self
            .owned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if serving {
            owned.insert(slot);
        } else {
            owned.remove(&slot);
        }
    }
}

/// Why the router could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Metrics could not be registered.
    #[error("cannot register the metrics")]
    Metrics(#[from] prometheus::Error),
    /// The admin listener could not be used.
    #[error("cannot use the admin listener")]
    Listener(#[from] std::io::Error),
    /// The NATS connection could not be set up.
    #[error("cannot set up the NATS connection")]
    Nats(#[from] switchboard_runtime::nats::ConnectError),
    /// The NATS connection went away for good before start-up was over.
    #[error("the NATS connection closed during start-up")]
    Stopped,
    /// The slot manager ended by itself (a bug: it runs until shutdown).
    #[error("the slot manager ended unexpectedly")]
    ManagerEnded,
    /// The slot manager panicked.
    #[error("the slot manager failed")]
    ManagerFailed(#[from] tokio::task::JoinError),
    /// The tenants or the control API could not be set up.
    #[error("cannot set up the tenants")]
    Tenants(#[from] api::TenantsError),
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

/// The JetStream buckets and streams a router works with.
struct Storage {
    leases: jetstream::kv::Store,
    peaks: jetstream::kv::Store,
    stats: jetstream::kv::Store,
    tenants: jetstream::kv::Store,
}

impl Storage {
    /// Creates what is missing and brings the rest up to date; one attempt (see
    /// [`buckets::until_set_up`]), so the buckets found or made before a failure are looked up
    /// again by the next one.
    async fn set_up(
        js: &jetstream::Context,
        stats_retention_hours: u64,
        webhooks: buckets::WebhookStreamLimits,
        replicas: usize,
    ) -> Result<Storage, buckets::BucketError> {
        // Leases never expire by age: a held lease is only ever taken over from a router presumed
        // gone (see `lease`). Buckets made by older versions (with a max age) are updated.
        let leases =
            buckets::key_value(js, subject::LEASES_BUCKET, Duration::ZERO, replicas).await?;
        let peaks = buckets::key_value(js, subject::PEAKS_BUCKET, Duration::ZERO, replicas).await?;
        let stats = store::stats_bucket(js, stats_retention_hours, replicas).await?;
        let tenants =
            buckets::key_value(js, subject::TENANTS_BUCKET, Duration::ZERO, replicas).await?;
        buckets::webhooks_stream(js, webhooks, replicas).await?;
        Ok(Storage {
            leases,
            peaks,
            stats,
            tenants,
        })
    }
}

/// Runs the router until `shutdown` resolves, then hands its slots over. `api`: the control API's
/// listener (`--api-listen`).
pub async fn run(
    config: Config,
    admin: std::net::TcpListener,
    api: Option<std::net::TcpListener>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let mut config = config;
    let router_id = config.router_id();
    let owner = format!("{router_id}-{:08x}", rand::random::<u32>());
    let metrics = RouterMetrics::new()?;
    metrics.export_limits(&config)?;
    let admin = TcpListener::from_std(admin)?;
    let admin_addr = admin.local_addr()?;
    info!(router.id = %router_id, admin_listen = %admin_addr, "switchboard-router starting");
    let consul = config.consul_settings().map_err(RunError::Consul)?;
    // Before connecting: --nats-consul-service finds the NATS servers.
    consul::discovery::fill_nats_urls(&mut config.nats, consul.as_ref(), &metrics.consul).await?;

    let (client, link, slow_consumers) = config.nats.connect_watching(&router_id).await?;
    // The admin port answers from the start (liveness, and readiness 503 until NATS and the slots
    // are there), also while JetStream cannot be reached yet.
    let (started, started_rx) = watch::channel(false);
    let (health, health_rx) = watch::channel(admin::Health::default());
    let owned: Arc<std::sync::Mutex<BTreeSet<u32>>> = Arc::default();
    let store_cell: Arc<std::sync::OnceLock<Store>> = Arc::default();
    let stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin,
        Arc::new(admin::Admin {
            router_id: router_id.clone(),
            metrics: metrics.clone(),
            link: link.clone(),
            started: started_rx,
            health: health_rx,
            owned: owned.clone(),
            store: store_cell.clone(),
        }),
        stop.clone(),
    ));
    // Once the admin port serves (Consul's check asks its /readyz); never waited for. The router
    // is handed out at its admin port.
    let registration = consul.as_ref().map(|settings| {
        let service = consul::Service::new(
            settings,
            &router_id,
            admin_addr.port(),
            admin_addr,
            env!("CARGO_PKG_VERSION"),
        );
        consul::Registration::start(settings, service, metrics.consul.clone())
    });

    // The replica count needs the server's INFO, which arrives with the first connection.
    let mut link_up = link.clone();
    link_up
        .wait_for(|l| *l == Link::Up)
        .await
        .map_err(|_| RunError::Stopped)?;
    let js = jetstream::new(client.clone());
    let replicas = config.replicas.unwrap_or_else(|| {
        // Every server of a cluster advertises its client URL to clients; a lone server none.
        client.server_info().connect_urls.len().clamp(1, 3)
    });
    info!(
        replicas,
        "JetStream buckets and streams are replicated this many times"
    );
    let webhook_config = config.webhook_config()?;
    switchboard_api::webhooks::WebhookMetrics::export_limits(
        metrics.registry(),
        &webhook_config.engine,
    )?;
    let webhook_limits = config.webhook_stream_limits(&webhook_config);
    let storage = buckets::until_set_up(|| {
        Storage::set_up(&js, config.stats_retention_hours, webhook_limits, replicas)
    })
    .await;
    let store = Store::start(
        storage.peaks,
        storage.stats,
        &router_id,
        config.stats_retention_hours,
        metrics.clone(),
    );
    let _ = store_cell.set(store.clone());
    // Every router follows the tenants (their webhooks are sent by the slots' owners); those with
    // --api-listen also serve the control API.
    let tenants_stop = CancellationToken::new();
    let mut tenancy = api::Tenancy::start(&config, js.clone(), storage.tenants, &tenants_stop)?;
    if let Some(listener) = api {
        let rooms = config.room_keyer().map(|keyer| {
            room_service::ClusterRoomService::shared(client.clone(), keyer, config.slots)
        });
        tenancy.serve(&config, listener, store.clone(), rooms, &tenants_stop)?;
    }
    // The tenants whose webhooks the slots' owners store and deliver.
    let directory = tenancy.directory.clone();
    let webhooks = webhooks::ClusterWebhooks::new(
        js.clone(),
        move |tenant: &switchboard_proto::TenantId| {
            directory
                .snapshot()
                .tenant(tenant)
                .and_then(|t| t.webhook.as_deref().cloned())
        },
        metrics.webhooks.clone(),
        webhook_config,
    );
    let liveness = Liveness::new(&owner);
    let ttl = config.lease_ttl;
    let shared = Arc::new(Shared {
        leases: Leases::new(storage.leases, js.clone(), &owner),
        config,
        router_id,
        owner,
        client: client.clone(),
        store,
        liveness: liveness.clone(),
        metrics: metrics.clone(),
        started,
        owned,
        tenants: usage::TenantBook::new(),
        webhooks,
    });

    let liveness_stop = CancellationToken::new();
    tokio::spawn(reconcile_after_loss(
        shared.liveness.clone(),
        slow_consumers,
        link.clone(),
        shared.metrics.clone(),
    ));
    let health_task = tokio::spawn(watch_health(shared.clone(), health, liveness_stop.clone()));
    let usage_task = tokio::spawn({
        let run = usage::run(
            shared.tenants.clone(),
            client.clone(),
            shared.owner.clone(),
            shared.config.usage_interval,
            shared.metrics.clone(),
            liveness_stop.clone(),
        );
        async move {
            if let Err(e) = run.await {
                // Room quotas then count this router's rooms only: say so at once.
                warn!(error = %e, "cannot follow the other routers' usage reports");
            }
        }
    });
    let liveness_task = tokio::spawn(liveness.run(
        client.clone(),
        shared.config.edge_timeout,
        ttl,
        metrics,
        liveness_stop.clone(),
    ));

    // `manage` runs as its own task: on shutdown it must go on to release every slot, which it does
    // once `stop` fires (dropping it instead would leave its slot tasks serving and renewing).
    let mut manager = tokio::spawn(manage(shared.clone(), stop.clone()));
    tokio::select! {
        result = &mut manager => {
            result?;
            return Err(RunError::ManagerEnded);
        }
        () = shutdown => info!("shutting down: handing slots over"),
    }
    // First, so that Consul stops handing this router out; bounded, awaited before exiting.
    let deregistered = registration.map(|r| tokio::spawn(r.deregister()));
    stop.cancel();
    if tokio::time::timeout(shared.config.shutdown_grace, manager)
        .await
        .is_err()
    {
        warn!("slots not handed over within the shutdown grace; their leases will expire");
    }
    shared.store.finish().await;
    tenants_stop.cancel();
    tenancy.finish().await;
    liveness_stop.cancel();
    let _ = liveness_task.await;
    let _ = health_task.await;
    let _ = usage_task.await;
    let _ = admin_task.await;
    let _ = client.flush().await;
    if let Some(task) = deregistered {
        let _ = task.await;
    }
    info!("switchboard-router stopped");
    Ok(())
}

/// Reconciles every slot after events may have been lost: when NATS dropped messages for this
/// router (slow consumer: edges retry commands, but heartbeats and resync replies are gone), and
/// when its connection comes back (room events it published while the link was down, and an
/// edge's request to reconcile, may never have arrived).
async fn reconcile_after_loss(
    liveness: Liveness,
    mut slow_consumers: watch::Receiver<u64>,
    mut link: watch::Receiver<Link>,
    metrics: RouterMetrics,
) {
    let mut was_up = *link.borrow_and_update() == Link::Up;
    loop {
        let cause = tokio::select! {
            changed = slow_consumers.changed() => match changed {
                Ok(()) => "slow_consumer",
                Err(_) => return,
            },
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                let up = *link.borrow_and_update() == Link::Up;
                let back = up && !was_up;
                was_up = up;
                if !back {
                    continue;
                }
                "reconnect"
            }
        };
        metrics.lost_events.with_label_values(&[cause]).inc();
        liveness.reconcile_all();
    }
}

/// Probes the lease store and follows whether this router hears itself, for `/readyz` and metrics.
async fn watch_health(
    shared: Arc<Shared>,
    health: watch::Sender<admin::Health>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut store_was_up = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let asked = Instant::now();
        let store_up = matches!(
            tokio::time::timeout(Duration::from_secs(1), shared.leases.probe()).await,
            Ok(Ok(()))
        );
        shared
            .metrics
            .lease_probe_seconds
            .observe(asked.elapsed().as_secs_f64());
        if store_up != store_was_up {
            if store_up {
                info!("lease store (JetStream) answers again");
            } else {
                warn!(
                    "lease store (JetStream) does not answer: held slots are still served, takeovers wait"
                );
            }
            store_was_up = store_up;
        }
        shared.metrics.lease_store_up.set(i64::from(store_up));
        health.send_replace(admin::Health {
            store_up,
            hears_itself: shared.liveness.hears_itself(),
        });
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<SlotEnd>,
}

/// The balancing loop: acquires, serves and hands over slots until `stop`, then releases all.
async fn manage(shared: Arc<Shared>, stop: CancellationToken) {
    let slots = shared.config.slots;
    let ttl = shared.config.lease_ttl;
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut balancer = balance::Balancer::new(ttl);

    // Listen to heartbeats and presence for a whole lease lifetime before taking slots: a router
    // not heard from by then is gone, so resync knows every edge and balancing every router and
    // every claim.
    let observe = shared.config.edge_timeout.max(ttl);
    tokio::select! {
        () = tokio::time::sleep(observe) => {}
        () = stop.cancelled() => return,
    }
    shared.started.send_replace(true);

    let mut round = tokio::time::interval(ROUND);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = round.tick() => {}
        }
        running.retain(|slot, r| {
            let done = r.task.is_finished();
            if done {
                info!(slot, "slot task ended");
            }
            !done
        });
        let held: BTreeSet<u32> = running.keys().copied().collect();
        let claimed: HashSet<u32> = shared.liveness.claimed_by_others().into_iter().collect();
        let facts = balance::Facts {
            slots,
            routers: shared.liveness.routers(),
            held: &held,
            claimed: &claimed,
            hears_itself: shared.liveness.hears_itself(),
        };
        let (mut candidates, wanted) = match balancer.plan(&facts, Instant::now()) {
            balance::Action::Wait => continue,
            balance::Action::HandOver(slot) => {
                if let Some(r) = running.get(&slot) {
                    r.stop.cancel();
                }
                continue;
            }
            balance::Action::Take { candidates, wanted } => (candidates, wanted),
        };
        candidates.shuffle(&mut rand::rng());
        for slot in candidates.into_iter().take(wanted) {
            match take(&shared, slot).await {
                Ok(Some(lease)) => {
                    balancer.not_free(slot);
                    let stop = CancellationToken::new();
                    let task = tokio::spawn(slot::serve(shared.clone(), lease, stop.clone()));
                    running.insert(slot, Running { stop, task });
                }
                Ok(None) => balancer.not_free(slot),
                Err(e) => {
                    // Takeovers wait for the lease store; held slots are served meanwhile.
                    debug!(slot, error = %switchboard_runtime::describe(&e), "cannot take a slot now");
                    break;
                }
            }
        }
    }

    for r in running.values() {
        r.stop.cancel();
    }
    for (_, r) in running.drain() {
        let _ = r.task.await;
    }
}

/// Takes `slot` if nobody present holds it: `None` if someone does (or won the race).
async fn take(shared: &Shared, slot: u32) -> Result<Option<lease::Lease>, lease::LeaseError> {
    let limit = Duration::from_secs(1);
    let unreachable = |_| lease::LeaseError::Store("timed out".into());
    let holder = tokio::time::timeout(limit, shared.leases.holder(slot))
        .await
        .map_err(unreachable)??;
    if let Holder::Held { owner, .. } = &holder
        && owner != shared.leases.owner()
        && shared.liveness.is_present(owner)
    {
        // Its owner is alive (taking it right now, or not claiming it yet).
        return Ok(None);
    }
    if let Holder::Held { owner, .. } = &holder {
        info!(slot, previous = %owner, "taking over a slot from a router presumed gone");
    }
    let span = switchboard_runtime::trace_root!(
        "lease.acquire",
        otel.status_code = tracing::field::Empty,
        sb.slot = slot,
        sb.takeover = matches!(holder, Holder::Held { .. }),
        sb.outcome = tracing::field::Empty,
        sb.epoch = tracing::field::Empty,
    );
    let asked = Instant::now();
    let acquired = tokio::time::timeout(limit, shared.leases.acquire(slot, &holder))
        .instrument(span.clone())
        .await;
    shared
        .metrics
        .lease_acquire_seconds
        .observe(asked.elapsed().as_secs_f64());
    let result = match acquired.map_err(unreachable)? {
        Ok(lease) => Ok(Some(lease)),
        Err(lease::LeaseError::Taken) => Ok(None),
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(Some(lease)) => {
            span.record("sb.epoch", lease.epoch);
            "acquired"
        }
        Ok(None) => "taken",
        Err(_) => {
            span.record("otel.status_code", "error");
            "unreachable"
        }
    };
    span.record("sb.outcome", outcome);
    result
}
