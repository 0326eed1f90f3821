//! Where an edge's per-tenant usage goes: standalone, into the in-process router's hourly
//! statistics (so `--stats-file` keeps it and `/stats` shows it); in a cluster, into the KV bucket
//! `sb-stats`, as this edge process's totals of each hour under its own key, exactly as routers
//! store theirs (`switchboard_rooms::stats::aggregate`). Routers follow the bucket and add every
//! record up, so a router's `/stats` shows the edges' usage with the routers' room counts.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use switchboard_proto::{TenantId, subject};
use switchboard_rooms::TenantUsage;
use switchboard_rooms::stats::aggregate::LocalTally;
use tracing::{debug, warn};

use crate::bus::Bus;
use crate::metrics::Metrics;

/// How often a clustered edge stores the hours that changed: what its crash can lose at most.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Bound on one store operation, so that a JetStream outage never holds up a round.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The usage of the current round, by hour and tenant.
pub(super) type Batch = BTreeMap<(u64, TenantId), TenantUsage>;

/// Where usage goes.
pub(super) enum Sink {
    /// Standalone: the in-process router.
    Local(Bus),
    /// Cluster: this process's record in `sb-stats`.
    Store(Box<Store>),
}

/// A clustered edge's tally and the bucket it stores it in.
pub(super) struct Store {
    js: jetstream::Context,
    /// Opened once the routers have created it.
    bucket: Option<kv::Store>,
    tally: LocalTally,
    /// This process's name in the bucket's keys.
    instance: String,
    metrics: Metrics,
}

impl Sink {
    /// A clustered edge's sink, storing as `instance`, keeping `retention_hours`.
    pub(super) fn store(
        client: async_nats::Client,
        instance: String,
        retention_hours: u64,
        metrics: Metrics,
    ) -> Sink {
        Sink::Store(Box::new(Store {
            js: jetstream::new(client),
            bucket: None,
            tally: LocalTally::new(retention_hours),
            instance,
            metrics,
        }))
    }

    /// Takes one round's usage.
    pub(super) async fn add(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        match self {
            // Standalone the router is in this process, and one message a round is cheap.
            Sink::Local(bus) => {
                if bus.usage(batch).await.is_err() {
                    debug!("the room service is gone: usage not counted");
                }
            }
            Sink::Store(store) => {
                for ((hour, tenant), usage) in batch {
                    store.tally.tenant_usage(hour, &tenant, &usage);
                }
            }
        }
    }

    /// Stores the hours that changed (cluster); a write that fails is retried at the next flush
    /// with the newer totals.
    pub(super) async fn flush(&mut self) {
        let Sink::Store(store) = self else {
            return;
        };
        let writes = store.tally.writes();
        if writes.is_empty() {
            return;
        }
        let bucket = match &store.bucket {
            Some(bucket) => bucket.clone(),
            None => {
                let opened = tokio::time::timeout(
                    STORE_TIMEOUT,
                    store.js.get_key_value(subject::STATS_BUCKET),
                )
                .await;
                match opened {
                    Ok(Ok(bucket)) => {
                        store.bucket = Some(bucket.clone());
                        bucket
                    }
                    // The routers create it; until one has, the usage waits in the tally.
                    _ => {
                        debug!("the statistics bucket is not there yet; usage kept for later");
                        return;
                    }
                }
            }
        };
        for write in writes {
            let Ok(value) = serde_json::to_vec(&write.totals) else {
                continue;
            };
            let key = subject::stats_key(write.hour, &store.instance);
            match tokio::time::timeout(STORE_TIMEOUT, bucket.put(&key, value.into())).await {
                Ok(Ok(_)) => store.tally.stored(&write),
                Ok(Err(e)) => {
                    store.metrics.bus_errors.with_label_values(&["usage"]).inc();
                    warn!(%key, error = %e, "cannot store usage; will retry");
                }
                Err(_) => {
                    store.metrics.bus_errors.with_label_values(&["usage"]).inc();
                    warn!(%key, "storing usage timed out; will retry");
                }
            }
        }
    }
}
