//! What routers keep in JetStream so that losing a router loses (almost) none of it: each open room's
//! peak member count (KV `sb-peaks`) and palava's hourly statistics as per-process aggregates (KV
//! `sb-stats`), which every router reads back into the same cluster-wide totals.
//!
//! A slot task never waits for storage: it hands peaks to a batching writer (`peaks`) and counts
//! statistics in memory, stored every second (`hourly`).
//!
//! # Layout
//! - [`Store`]: the handle slot tasks and the admin port use.
//! - `peaks`: the peak writer (latest operation per room, batched; a closed room's entry removed).
//! - `hourly`: this process's statistics, flushed to the bucket; everyone's, followed from it.

mod hourly;
mod peaks;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use switchboard_proto::{RoomKey, TenantId, subject};
use tracing::{info, warn};

use super::buckets::{self, BucketError};
use super::metrics::RouterMetrics;
use hourly::Hourly;
use peaks::{PeakOp, PendingPeaks};
use switchboard_rooms::{HourlyStats, TenantUsage};

/// Bound on storing what is pending when the router stops.
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Stores room peaks and statistics; cheap to clone.
#[derive(Clone)]
pub struct Store {
    peaks_pending: Arc<PendingPeaks>,
    peaks: kv::Store,
    hourly: Arc<Hourly>,
}

impl Store {
    /// Starts the writer tasks and the statistics reader. `stats` is the bucket of
    /// [`stats_bucket`].
    pub fn start(
        peaks: kv::Store,
        stats: kv::Store,
        router_id: &str,
        retention_hours: u64,
        metrics: RouterMetrics,
    ) -> Store {
        let peaks_pending = Arc::new(PendingPeaks::new(metrics.clone()));
        // One name per process: a restarted router must not overwrite what it stored before.
        let instance = format!("{router_id}-{:016x}", rand::random::<u64>());
        let hourly = Arc::new(Hourly::new(instance, retention_hours, metrics));

        tokio::spawn(peaks::write(peaks.clone(), peaks_pending.clone()));
        tokio::spawn(hourly::flush(stats.clone(), hourly.clone()));
        tokio::spawn(hourly::follow(stats, hourly.clone()));

        Store {
            peaks_pending,
            peaks,
            hourly,
        }
    }

    /// Records a room's new peak.
    pub fn peak(&self, room: RoomKey, peak: usize) {
        self.peaks_pending.set(room, PeakOp::Put(peak));
    }

    /// Removes a closed room's peak (its peak was counted by [`Store::count_room_closed`] already).
    pub fn forget_peak(&self, room: RoomKey) {
        self.peaks_pending.set(room, PeakOp::Delete);
    }

    /// Counts a room that closed during `hour` with `peak` members (`room_peaks`).
    pub fn count_room_closed(&self, hour: u64, peak: u64) {
        self.hourly.room_closed(hour, peak);
    }

    /// Counts a member that left during `hour` after `minutes` whole minutes (`connection_time`).
    pub fn count_member_left(&self, hour: u64, minutes: u64) {
        self.hourly.member_left(hour, minutes);
    }

    /// Counts `usage` of `tenant` during `hour` (hosted mode: rooms opened, peak room members).
    pub fn count_tenant_usage(&self, hour: u64, tenant: &TenantId, usage: &TenantUsage) {
        self.hourly.tenant_usage(hour, tenant, usage);
    }

    /// The stored peak of `room`, if any.
    pub async fn stored_peak(&self, room: RoomKey) -> Option<usize> {
        let value = self.peaks.get(room.to_string()).await.ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    /// The cluster's hourly statistics: what every router process stored, with this one's own counts
    /// up to the moment.
    pub fn hourly(&self) -> HourlyStats {
        self.hourly.view(current_hour())
    }

    /// The name of this process in the statistics bucket's keys.
    pub fn instance(&self) -> &str {
        self.hourly.instance()
    }

    /// On a graceful stop, once no slot is served: stores the statistics counted since the last
    /// flush and waits for the pending peak writes, for at most a few seconds.
    pub async fn finish(&self) {
        let stored = async {
            self.hourly.finish().await;
            self.peaks_pending.drained().await;
        };
        if tokio::time::timeout(FINISH_TIMEOUT, stored).await.is_err() {
            warn!("statistics or peaks not stored within {FINISH_TIMEOUT:?}; they are lost");
        }
    }
}

/// The statistics bucket (created on first use): history 1 and max age the retention, so storage holds
/// one value per hour and router process for the hours kept. If `retention_hours` changed, the
/// bucket's max age follows it (`buckets::key_value`).
pub async fn stats_bucket(
    js: &jetstream::Context,
    retention_hours: u64,
    replicas: usize,
) -> Result<kv::Store, BucketError> {
    let max_age = Duration::from_secs(3600 * retention_hours);
    let bucket = buckets::key_value(js, subject::STATS_BUCKET, max_age, replicas).await?;
    if js.get_stream(subject::LEGACY_STATS_STREAM).await.is_ok() {
        info!(
            stream = subject::LEGACY_STATS_STREAM,
            "the statistics stream of an older version is no longer used; delete it once every \
             router is upgraded"
        );
    }
    Ok(bucket)
}

fn current_hour() -> u64 {
    switchboard_rooms::UnixMillis(switchboard_runtime::clock::unix_millis()).hour()
}
