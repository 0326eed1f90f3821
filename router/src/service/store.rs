//! What routers keep in JetStream so that losing a router loses none of it: each open room's peak
//! member count (key-value bucket) and palava's statistics events (a stream every router reads back
//! into the same hourly totals).
//!
//! Writes go through one queue per kind, written in order by one task, so a slot task never waits
//! for storage and a later peak can never be overwritten by an earlier one.

use std::sync::{Arc, Mutex, PoisonError};

use async_nats::jetstream::{self, consumer, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_proto::bus::StatEvent;
use switchboard_proto::{RoomKey, subject};
use tokio::sync::mpsc;
use tracing::warn;

use super::metrics::RouterMetrics;
use crate::HourlyStats;

/// Bound of each write queue; when storage is down, the oldest updates are kept and newer ones
/// dropped (with a metric), rather than growing memory.
const QUEUE: usize = 16 * 1024;

enum PeakOp {
    Put(RoomKey, usize),
    Delete(RoomKey),
}

/// Stores room peaks and statistics events; cheap to clone.
#[derive(Clone)]
pub struct Store {
    peaks_tx: mpsc::Sender<PeakOp>,
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
        let (peaks_tx, mut peaks_rx) = mpsc::channel::<PeakOp>(QUEUE);
        let (stats_tx, mut stats_rx) = mpsc::channel::<StatEvent>(QUEUE);
        let hourly = Arc::new(Mutex::new(HourlyStats::new(retention_hours)));

        let kv_writer = peaks.clone();
        let peak_metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(op) = peaks_rx.recv().await {
                let result = match op {
                    PeakOp::Put(room, peak) => kv_writer
                        .put(room.to_string(), Bytes::from(peak.to_string()))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    PeakOp::Delete(room) => kv_writer
                        .purge(room.to_string())
                        .await
                        .map_err(|e| e.to_string()),
                };
                if let Err(e) = result {
                    peak_metrics.bus_errors.with_label_values(&["peak"]).inc();
                    warn!(error = %e, "cannot store a room peak");
                }
            }
        });

        let stats_subject = subject::stats(router_id);
        let stats_metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(event) = stats_rx.recv().await {
                let Ok(payload) = serde_json::to_vec(&event) else {
                    continue;
                };
                let acked = match js.publish(stats_subject.clone(), payload.into()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = acked {
                    stats_metrics.bus_errors.with_label_values(&["stats"]).inc();
                    warn!(error = %e, "cannot store a statistics event");
                }
            }
        });

        let reader_hourly = hourly.clone();
        tokio::spawn(read_stats(stats_stream, reader_hourly));

        Store {
            peaks_tx,
            stats_tx,
            peaks,
            hourly,
            metrics,
        }
    }

    /// Records a room's new peak.
    pub fn peak(&self, room: RoomKey, peak: usize) {
        if self.peaks_tx.try_send(PeakOp::Put(room, peak)).is_err() {
            self.metrics.bus_errors.with_label_values(&["peak"]).inc();
        }
    }

    /// Forgets a closed room's peak.
    pub fn room_closed(&self, room: RoomKey) {
        if self.peaks_tx.try_send(PeakOp::Delete(room)).is_err() {
            self.metrics.bus_errors.with_label_values(&["peak"]).inc();
        }
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
