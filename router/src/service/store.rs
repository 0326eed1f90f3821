//! What routers keep in JetStream so that losing a router loses none of it: each open room's peak
//! member count (key-value bucket) and palava's statistics events (a stream every router reads back
//! into the same hourly totals).
//!
//! A slot task never waits for storage:
//! - peaks: the latest operation of each room waits in a map (a newer one replaces an older one, so
//!   memory is bounded by the rooms, not by the rate of joins) and one task writes what the map holds,
//!   many rooms at once, one batch after another. A room is in at most one batch at a time, so a
//!   later peak can never be overwritten by an earlier one. A failed write stays in the map and is
//!   retried, unless a newer operation for its room came meanwhile.
//! - statistics: events are published in order and their acknowledgements awaited concurrently (up
//!   to `STATS_IN_FLIGHT`), through a bounded queue; when storage is down, newer events are dropped
//!   (with a metric) rather than growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use switchboard_proto::bus::StatEvent;
use switchboard_proto::{RoomKey, subject};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use super::metrics::RouterMetrics;
use crate::HourlyStats;

/// Bound of the statistics queue.
const STATS_QUEUE: usize = 16 * 1024;
/// Statistics events published and not yet acknowledged, at most.
const STATS_IN_FLIGHT: usize = 256;
/// Peak writes in flight at once.
const PEAK_WRITES_IN_FLIGHT: usize = 64;
/// Pause before retrying peak writes that failed (storage down or slow).
const PEAK_RETRY_PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeakOp {
    Put(usize),
    Delete,
}

/// Peak writes waiting for the writer task.
struct PendingPeaks {
    ops: Mutex<HashMap<RoomKey, PeakOp>>,
    /// Operations taken by the writer and not acknowledged yet.
    in_flight: AtomicUsize,
    wake: Notify,
}

impl PendingPeaks {
    fn lock(&self) -> MutexGuard<'_, HashMap<RoomKey, PeakOp>> {
        self.ops.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, room: RoomKey, op: PeakOp, metrics: &RouterMetrics) {
        let waiting = {
            let mut ops = self.lock();
            ops.insert(room, op);
            ops.len()
        };
        self.report(waiting, metrics);
        self.wake.notify_one();
    }

    /// Sets the `peaks` gauge: what waits in the map plus what is being written.
    fn report(&self, waiting: usize, metrics: &RouterMetrics) {
        let pending = waiting + self.in_flight.load(Ordering::Relaxed);
        metrics
            .store_pending
            .with_label_values(&["peaks"])
            .set(pending as i64);
    }
}

/// Stores room peaks and statistics events; cheap to clone.
#[derive(Clone)]
pub struct Store {
    peaks_pending: Arc<PendingPeaks>,
    stats_tx: mpsc::Sender<StatEvent>,
    peaks: kv::Store,
    hourly: Arc<Mutex<HourlyStats>>,
    metrics: RouterMetrics,
}

impl Store {
    /// Starts the writer tasks and the statistics reader.
    pub fn start(
        js: jetstream::Context,
        peaks: kv::Store,
        stats_stream: jetstream::stream::Stream,
        router_id: &str,
        retention_hours: u64,
        metrics: RouterMetrics,
    ) -> Store {
        let peaks_pending = Arc::new(PendingPeaks {
            ops: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
        });
        let (stats_tx, stats_rx) = mpsc::channel::<StatEvent>(STATS_QUEUE);
        let hourly = Arc::new(Mutex::new(HourlyStats::new(retention_hours)));

        tokio::spawn(write_peaks(
            peaks.clone(),
            peaks_pending.clone(),
            metrics.clone(),
        ));
        tokio::spawn(write_stats(
            js,
            subject::stats(router_id),
            stats_rx,
            metrics.clone(),
        ));
        let reader_hourly = hourly.clone();
        tokio::spawn(read_stats(stats_stream, reader_hourly));

        Store {
            peaks_pending,
            stats_tx,
            peaks,
            hourly,
            metrics,
        }
    }

    /// Records a room's new peak.
    pub fn peak(&self, room: RoomKey, peak: usize) {
        self.peaks_pending
            .set(room, PeakOp::Put(peak), &self.metrics);
    }

    /// Forgets a closed room's peak.
    pub fn room_closed(&self, room: RoomKey) {
        self.peaks_pending.set(room, PeakOp::Delete, &self.metrics);
    }

    /// Appends a statistics event.
    pub fn stat(&self, event: StatEvent) {
        if self.stats_tx.try_send(event).is_err() {
            self.metrics.bus_errors.with_label_values(&["stats"]).inc();
        }
    }

    /// The stored peak of `room`, if any.
    pub async fn stored_peak(&self, room: RoomKey) -> Option<usize> {
        let value = self.peaks.get(room.to_string()).await.ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    /// The cluster's hourly statistics, as read back from the stream.
    pub fn hourly(&self) -> HourlyStats {
        self.hourly
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Reads the statistics stream from its start (bounded by the stream's max age) into `hourly`,
/// following new events as they come. An ordered consumer recreates itself after failures.
async fn read_stats(stream: jetstream::stream::Stream, hourly: Arc<Mutex<HourlyStats>>) {
    loop {
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await;
        let messages = match consumer {
            Ok(consumer) => consumer.messages().await,
            Err(e) => {
                warn!(error = %e, "cannot read the statistics stream; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => {
                warn!(error = %e, "cannot read the statistics stream; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        // A fresh consumer replays everything: start the totals over to avoid counting twice.
        *hourly.lock().unwrap_or_else(PoisonError::into_inner) =
            HourlyStats::new(retention_of(&hourly));
        while let Some(message) = messages.next().await {
            let Ok(message) = message else {
                break;
            };
            if let Ok(event) = serde_json::from_slice::<StatEvent>(&message.payload) {
                let mut stats = hourly.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    StatEvent::RoomClosed { hour, peak } => stats.room_closed(hour, peak),
                    StatEvent::MemberLeft { hour, minutes } => stats.member_left(hour, minutes),
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn retention_of(hourly: &Arc<Mutex<HourlyStats>>) -> u64 {
    hourly
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retention_hours()
}

/// Writes what `pending` holds, batch after batch, until the process ends.
async fn write_peaks(store: kv::Store, pending: Arc<PendingPeaks>, metrics: RouterMetrics) {
    loop {
        pending.wake.notified().await;
        loop {
            let batch = std::mem::take(&mut *pending.lock());
            if batch.is_empty() {
                break;
            }
            // In flight, the batch's rooms are no longer in the map but not stored yet either.
            pending.in_flight.store(batch.len(), Ordering::Relaxed);
            pending.report(pending.lock().len(), &metrics);
            let failed: Vec<(RoomKey, PeakOp)> = futures_util::stream::iter(batch)
                .map(|(room, op)| {
                    let store = &store;
                    async move {
                        let key = room.to_string();
                        let result = match op {
                            PeakOp::Put(peak) => store
                                .put(key, Bytes::from(peak.to_string()))
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            PeakOp::Delete => store.purge(key).await.map_err(|e| e.to_string()),
                        };
                        (room, op, result)
                    }
                })
                .buffer_unordered(PEAK_WRITES_IN_FLIGHT)
                .filter_map(|(room, op, result)| async move {
                    result.err().map(|e| {
                        warn!(error = %e, "cannot store a room peak; will retry");
                        (room, op)
                    })
                })
                .collect()
                .await;
            let retry = !failed.is_empty();
            let waiting = {
                let mut ops = pending.lock();
                for (room, op) in failed {
                    metrics.bus_errors.with_label_values(&["peak"]).inc();
                    // A newer operation for the room supersedes the failed one.
                    ops.entry(room).or_insert(op);
                }
                pending.in_flight.store(0, Ordering::Relaxed);
                ops.len()
            };
            pending.report(waiting, &metrics);
            if retry {
                tokio::time::sleep(PEAK_RETRY_PAUSE).await;
            }
        }
    }
}

/// Publishes statistics events in order, awaiting up to `STATS_IN_FLIGHT` acknowledgements at once.
async fn write_stats(
    js: jetstream::Context,
    subject: String,
    mut events: mpsc::Receiver<StatEvent>,
    metrics: RouterMetrics,
) {
    let gauge = metrics.store_pending.with_label_values(&["stats"]);
    let mut acks = FuturesUnordered::new();
    let mut open = true;
    while open || !acks.is_empty() {
        tokio::select! {
            Some(acked) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = acked {
                    metrics.bus_errors.with_label_values(&["stats"]).inc();
                    warn!(error = %e, "cannot store a statistics event");
                }
            }
            event = events.recv(), if open && acks.len() < STATS_IN_FLIGHT => {
                let Some(event) = event else {
                    open = false;
                    continue;
                };
                let Ok(payload) = serde_json::to_vec(&event) else {
                    continue;
                };
                match js.publish(subject.clone(), payload.into()).await {
                    Ok(ack) => acks.push(async move { ack.await.map(|_| ()).map_err(|e| e.to_string()) }),
                    Err(e) => {
                        metrics.bus_errors.with_label_values(&["stats"]).inc();
                        warn!(error = %e, "cannot store a statistics event");
                    }
                }
            }
        }
        gauge.set((events.len() + acks.len()) as i64);
    }
}
