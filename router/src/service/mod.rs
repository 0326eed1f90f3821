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
//! - [`metrics`]: Prometheus metrics.
//!
//! Balancing: every router aims at `ceil(slots / routers present)` slots. Below that it takes free
//! slots at once; at or above it, it takes a slot only after it has been free for a while (someone
//! below target had first pick), which also covers failover: a dead router's leases run out and its
//! slots are free. Above target it hands slots over, one per round. SIGTERM hands every slot over.

pub mod admin;
pub mod config;
pub mod lease;
pub mod liveness;
pub mod metrics;
pub mod slot;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, kv, stream};
use rand::seq::SliceRandom;
use switchboard_proto::bus::EdgeEvent;
use switchboard_proto::subject;
use tokio::net::TcpListener;
use tokio::sync::{broadcast::error::RecvError, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::Config;
use lease::Leases;
use liveness::{EdgeNotice, Liveness};
use metrics::RouterMetrics;
use slot::SlotEnd;
use store::Store;

/// How often the balancing manager looks at the slots.
const ROUND: Duration = Duration::from_millis(250);

/// What every task of the router shares.
pub struct Shared {
    /// Configuration.
    pub config: Config,
    /// This router's id.
    pub router_id: String,
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
    /// Slots currently served.
    pub owned: Arc<std::sync::Mutex<Vec<u32>>>,
}

/// Runs the router until `shutdown` resolves, then hands its slots over.
pub async fn run(
    config: Config,
    admin: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let router_id = config.router_id();
    let metrics = RouterMetrics::new()?;
    let admin = TcpListener::from_std(admin)?;
    info!(router.id = %router_id, admin_listen = %admin.local_addr()?, "switchboard-router starting");

    let (client, link) = config.nats.connect(&router_id).await?;
    // The admin port answers from the start (liveness, and readiness 503 until NATS and the slots
    // are there), also while JetStream cannot be reached yet.
    let (started, started_rx) = watch::channel(false);
    let owned: Arc<std::sync::Mutex<Vec<u32>>> = Arc::default();
    let store_cell: Arc<std::sync::OnceLock<Store>> = Arc::default();
    let stop = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        admin,
        Arc::new(admin::Admin {
            router_id: router_id.clone(),
            metrics: metrics.clone(),
            link,
            started: started_rx,
            owned: owned.clone(),
            store: store_cell.clone(),
        }),
        stop.clone(),
    ));

    let js = jetstream::new(client.clone());
    let replicas = config.replicas.unwrap_or_else(|| {
        // Every server of the cluster advertises its client URL; a single server advertises none.
        client.server_info().connect_urls.len().clamp(1, 3)
    });
    let leases_kv = key_value(&js, subject::LEASES_BUCKET, config.lease_ttl, replicas).await?;
    // The bucket's max age is the lease lifetime for everyone, whatever this router was told.
    let ttl = leases_kv.status().await?.max_age();
    if ttl != config.lease_ttl {
        warn!(bucket_ttl = ?ttl, configured = ?config.lease_ttl, "using the lease bucket's lifetime");
    }
    let peaks_kv = key_value(&js, subject::PEAKS_BUCKET, Duration::ZERO, replicas).await?;
    let stats_stream = js
        .get_or_create_stream(stream::Config {
            name: subject::STATS_STREAM.to_string(),
            subjects: vec![subject::STATS_SUBJECTS.to_string()],
            max_age: Duration::from_secs(3600 * config.stats_retention_hours),
            num_replicas: replicas,
            ..Default::default()
        })
        .await?;
    let store = Store::start(
        js,
        peaks_kv,
        stats_stream,
        &router_id,
        config.stats_retention_hours,
        metrics.clone(),
    );
    let _ = store_cell.set(store.clone());
    let liveness = Liveness::new(&router_id);
    let shared = Arc::new(Shared {
        leases: Leases::new(leases_kv, &router_id, ttl),
        config,
        router_id,
        client: client.clone(),
        store,
        liveness: liveness.clone(),
        metrics: metrics.clone(),
        started,
        owned,
    });

    let liveness_stop = CancellationToken::new();
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
        result = &mut manager => return result?.and_then(|()| Err(anyhow::anyhow!("slot manager ended"))),
        () = shutdown => info!("shutting down: handing slots over"),
    }
    stop.cancel();
    if tokio::time::timeout(shared.config.shutdown_grace, manager)
        .await
        .is_err()
    {
        warn!("slots not handed over within the shutdown grace; their leases will expire");
    }
    liveness_stop.cancel();
    let _ = liveness_task.await;
    let _ = admin_task.await;
    let _ = client.flush().await;
    info!("switchboard-router stopped");
    Ok(())
}

async fn key_value(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> anyhow::Result<kv::Store> {
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(store),
        Err(_) => {
            let created = js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    history: 1,
                    max_age,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(store) => Ok(store),
                // Another router created it meanwhile.
                Err(_) => Ok(js.get_key_value(bucket).await?),
            }
        }
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<SlotEnd>,
}

/// The balancing loop: acquires, serves and hands over slots until `stop`, then releases all.
async fn manage(shared: Arc<Shared>, stop: CancellationToken) -> anyhow::Result<()> {
    let slots = shared.config.slots;
    let mut running: HashMap<u32, Running> = HashMap::new();
    // Free slots and when they were first seen free.
    let mut free_since: HashMap<u32, Instant> = HashMap::new();
    let mut notices = shared.liveness.subscribe();

    // Watch heartbeats and presence for a moment before taking slots, so resync knows every edge
    // and balancing knows every router.
    let observe = shared.config.edge_timeout.max(shared.leases.ttl()) / 2;
    tokio::select! {
        () = tokio::time::sleep(observe) => {}
        () = stop.cancelled() => return Ok(()),
    }
    shared.started.send_replace(true);

    let mut round = tokio::time::interval(ROUND);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            notice = notices.recv() => {
                match notice {
                    Ok(EdgeNotice::Appeared(edge)) => ask_to_rejoin(&shared, edge, &running).await,
                    Ok(EdgeNotice::Lost(_)) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
                continue;
            }
            _ = round.tick() => {}
        }
        running.retain(|slot, r| {
            let done = r.task.is_finished();
            if done {
                info!(slot, "slot task ended");
            }
            !done
        });

        let routers = shared.liveness.routers().max(1);
        let target = (slots as usize).div_ceil(routers);
        let held: HashSet<u32> = match shared.leases.held().await {
            Ok(held) => held.into_iter().collect(),
            Err(e) => {
                warn!(error = %e, "cannot list slot leases");
                publish_owned(&shared, &running);
                continue;
            }
        };
        let now = Instant::now();
        free_since.retain(|slot, _| !held.contains(slot));
        for slot in (0..slots).filter(|s| !held.contains(s)) {
            free_since.entry(slot).or_insert(now);
        }

        if running.len() > target {
            // Hand one over per round, so the others take them up gradually.
            if let Some(&slot) = running.keys().max()
                && let Some(r) = running.get(&slot)
            {
                r.stop.cancel();
            }
        } else {
            let mut candidates: Vec<u32> = free_since
                .iter()
                .filter(|(_, since)| {
                    running.len() < target || now.duration_since(**since) >= shared.leases.ttl()
                })
                .map(|(slot, _)| *slot)
                .collect();
            candidates.shuffle(&mut rand::rng());
            let wanted = if running.len() < target {
                target - running.len()
            } else {
                candidates.len()
            };
            for slot in candidates.into_iter().take(wanted) {
                match shared.leases.acquire(slot).await {
                    Ok(lease) => {
                        free_since.remove(&slot);
                        let stop = CancellationToken::new();
                        let task = tokio::spawn(slot::serve(shared.clone(), lease, stop.clone()));
                        running.insert(slot, Running { stop, task });
                    }
                    Err(lease::LeaseError::Taken) => {
                        free_since.remove(&slot);
                    }
                    Err(e) => warn!(slot, error = %e, "cannot acquire a slot lease"),
                }
            }
        }
        publish_owned(&shared, &running);
    }

    for r in running.values() {
        r.stop.cancel();
    }
    for (_, r) in running.drain() {
        let _ = r.task.await;
    }
    publish_owned(&shared, &running);
    Ok(())
}

fn publish_owned(shared: &Shared, running: &HashMap<u32, Running>) {
    let mut owned: Vec<u32> = running.keys().copied().collect();
    owned.sort_unstable();
    *shared
        .owned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = owned;
}

/// An edge this router did not know: ask it to re-announce its members in our slots (it may have
/// been cut off and declared lost, or we may have taken slots over while it was unreachable).
async fn ask_to_rejoin(
    shared: &Shared,
    edge: switchboard_proto::EdgeId,
    running: &HashMap<u32, Running>,
) {
    if running.is_empty() {
        return;
    }
    let mut owned: Vec<u32> = running.keys().copied().collect();
    owned.sort_unstable();
    let event = EdgeEvent::Resync {
        slots: shared.config.slots,
        owned,
    };
    if let Ok(payload) = serde_json::to_vec(&event)
        && let Err(e) = shared
            .client
            .publish(subject::edge_events(edge), payload.into())
            .await
    {
        warn!(edge = %edge, error = %e, "cannot ask an edge to rejoin");
    }
}
