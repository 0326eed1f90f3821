//! palava's hourly statistics in KV `sb-stats`, as aggregates (`switchboard_rooms::stats::aggregate` says why):
//! this process counts into its own tally and stores each changed hour's totals every
//! [`FLUSH_INTERVAL`] (and once more when it stops); every process follows the whole bucket and adds
//! the totals up for `/stats`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use switchboard_proto::{TenantId, subject};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::service::metrics::RouterMetrics;
use switchboard_rooms::HourStats;
use switchboard_rooms::stats::aggregate::{LocalTally, StoredStats};
use switchboard_rooms::{HourlyStats, TenantUsage};

/// How often changed hours are stored: what a crash of the router can lose at most.
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before watching the bucket again after the watch failed.
const WATCH_RETRY_PAUSE: Duration = Duration::from_secs(1);

struct State {
    /// What this process counted.
    tally: LocalTally,
    /// What every process stored, as last seen.
    stored: StoredStats,
}

/// This process's statistics and everyone's stored totals.
pub(super) struct Hourly {
    /// Names this process in its keys.
    instance: String,
    retention_hours: u64,
    state: Mutex<State>,
    metrics: RouterMetrics,
    /// Asks the flusher for a last flush.
    closing: CancellationToken,
    /// Set once the last flush is done.
    closed: watch::Sender<bool>,
}

impl Hourly {
    pub(super) fn new(instance: String, retention_hours: u64, metrics: RouterMetrics) -> Self {
        Hourly {
            instance,
            retention_hours,
            state: Mutex::new(State {
                tally: LocalTally::new(retention_hours),
                stored: StoredStats::new(),
            }),
            metrics,
            closing: CancellationToken::new(),
            closed: watch::Sender::new(false),
        }
    }

    pub(super) fn instance(&self) -> &str {
        &self.instance
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a room that closed during `hour` with `peak` members.
    pub(super) fn room_closed(&self, hour: u64, peak: u64) {
        let mut state = self.lock();
        state.tally.room_closed(hour, peak);
        self.report(&state);
    }

    /// Counts a member that left during `hour` after `minutes` in its room.
    pub(super) fn member_left(&self, hour: u64, minutes: u64) {
        let mut state = self.lock();
        state.tally.member_left(hour, minutes);
        self.report(&state);
    }

    /// Counts a tenant's usage during `hour`.
    pub(super) fn tenant_usage(&self, hour: u64, tenant: &TenantId, usage: &TenantUsage) {
        let mut state = self.lock();
        state.tally.tenant_usage(hour, tenant, usage);
        self.report(&state);
    }

    /// Sets the `stats` gauge: events counted and not stored yet. Called with the lock held.
    fn report(&self, state: &State) {
        self.metrics
            .store_pending
            .with_label_values(&["stats"])
            .set(state.tally.pending() as i64);
    }

    /// The cluster's statistics for the retention window ending at `now_hour`.
    pub(super) fn view(&self, now_hour: u64) -> HourlyStats {
        let mut state = self.lock();
        let oldest = now_hour.saturating_sub(self.retention_hours.max(1) - 1);
        state.stored.forget_before(oldest);
        state.stored.combined(
            &self.instance,
            state.tally.totals(),
            self.retention_hours,
            now_hour,
        )
    }

    /// Has the flusher store what is pending one last time, and waits for it.
    pub(super) async fn finish(&self) {
        self.closing.cancel();
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// A key of the bucket changed (or is replayed at the start of a watch).
    fn seen(&self, entry: &kv::Entry) {
        let Some((hour, instance)) = subject::parse_stats_key(&entry.key) else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<HourStats>(&entry.value) {
                Ok(totals) => self.lock().stored.put(hour, instance, totals),
                Err(e) => debug!(key = %entry.key, error = %e, "unreadable statistics entry"),
            },
            kv::Operation::Delete | kv::Operation::Purge => {
                self.lock().stored.remove(hour, instance)
            }
        }
    }
}

/// Stores the hours that changed every [`FLUSH_INTERVAL`], and once more when asked to finish.
pub(super) async fn flush(bucket: kv::Store, hourly: Arc<Hourly>) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            () = hourly.closing.cancelled() => true,
        };
        flush_once(&bucket, &hourly).await;
        if last {
            hourly.closed.send_replace(true);
            return;
        }
    }
}

/// One write per changed hour, in turn: a write never overtakes an older one of the same key.
async fn flush_once(bucket: &kv::Store, hourly: &Hourly) {
    let writes = hourly.lock().tally.writes();
    for write in writes {
        let Ok(value) = serde_json::to_vec(&write.totals) else {
            continue;
        };
        let key = subject::stats_key(write.hour, &hourly.instance);
        match bucket.put(&key, value.into()).await {
            Ok(_) => {
                let mut state = hourly.lock();
                state.tally.stored(&write);
                hourly.report(&state);
            }
            Err(e) => {
                hourly
                    .metrics
                    .bus_errors
                    .with_label_values(&["stats"])
                    .inc();
                warn!(%key, error = %e, "cannot store hourly statistics; will retry");
            }
        }
    }
}

/// Follows every key of the bucket (their latest values first, then changes) into `hourly`.
pub(super) async fn follow(bucket: kv::Store, hourly: Arc<Hourly>) {
    loop {
        match bucket.watch_with_history(">").await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    match entry {
                        Ok(entry) => hourly.seen(&entry),
                        Err(e) => {
                            warn!(error = %e, "watching the statistics bucket failed; watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot watch the statistics bucket; retrying"),
        }
        // Values are whole totals, so watching again from the start counts nothing twice.
        tokio::time::sleep(WATCH_RETRY_PAUSE).await;
    }
}
