//! Room peaks in KV `sb-peaks`: the latest operation of each room (store its new peak, or forget it
//! because the room closed) waits in a map, and one task writes what the map holds, many rooms at
//! once, one batch after another.
//!
//! - Memory is bounded by the rooms, not by the rate of joins: a newer operation replaces an older one
//!   of the same room.
//! - A room is in at most one batch at a time, so an older operation can never land after a newer
//!   one: a pending peak of a room that then closes is replaced by the deletion ("closed" wins), and a
//!   deletion never races a peak write of the same room.
//! - A failed write stays in the map and is retried, unless a newer operation for its room came.
//! - A closed room's entry is removed from the bucket's stream (a subject purge), not covered by a
//!   KV delete or purge marker: markers stay in the stream forever, one per room ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::PurgeError;
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_proto::RoomKey;
use tokio::sync::{Notify, watch};
use tracing::warn;

use crate::service::metrics::RouterMetrics;

/// Peak writes in flight at once.
const PEAK_WRITES_IN_FLIGHT: usize = 64;
/// Pause before retrying peak writes that failed (storage down or slow).
const PEAK_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What to do with a room's stored peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeakOp {
    /// Store this peak.
    Put(usize),
    /// The room closed: remove its entry.
    Delete,
}

struct State {
    ops: HashMap<RoomKey, PeakOp>,
    /// Operations taken by the writer and not acknowledged yet.
    in_flight: usize,
}

/// Peak writes waiting for the writer task.
pub(super) struct PendingPeaks {
    state: Mutex<State>,
    wake: Notify,
    /// Operations waiting or in flight; mirrored in the `peaks` gauge.
    pending: watch::Sender<usize>,
    metrics: RouterMetrics,
}

impl PendingPeaks {
    pub(super) fn new(metrics: RouterMetrics) -> Self {
        PendingPeaks {
            state: Mutex::new(State {
                ops: HashMap::new(),
                in_flight: 0,
            }),
            wake: Notify::new(),
            pending: watch::Sender::new(0),
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces whatever waits for `room` by `op`.
    pub(super) fn set(&self, room: RoomKey, op: PeakOp) {
        {
            let mut state = self.lock();
            state.ops.insert(room, op);
            self.report(&state);
        }
        self.wake.notify_one();
    }

    /// Publishes what waits plus what is being written. Called with the lock held, so that reports
    /// happen in the order of the changes they describe.
    fn report(&self, state: &State) {
        let pending = state.ops.len() + state.in_flight;
        self.metrics
            .store_pending
            .with_label_values(&["peaks"])
            .set(pending as i64);
        self.pending.send_replace(pending);
    }

    /// Resolves once nothing waits and nothing is in flight.
    pub(super) async fn drained(&self) {
        let mut pending = self.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

/// Writes what `pending` holds, batch after batch, until the process ends.
pub(super) async fn write(store: kv::Store, pending: Arc<PendingPeaks>) {
    loop {
        pending.wake.notified().await;
        loop {
            let batch = {
                let mut state = pending.lock();
                let batch = std::mem::take(&mut state.ops);
                // In flight, the batch's rooms are no longer in the map but not stored yet either.
                state.in_flight = batch.len();
                pending.report(&state);
                batch
            };
            if batch.is_empty() {
                break;
            }
            let failed: Vec<(RoomKey, PeakOp)> = futures_util::stream::iter(batch)
                .map(|(room, op)| {
                    let store = &store;
                    async move { (room, op, apply(store, room, op).await) }
                })
                .buffer_unordered(PEAK_WRITES_IN_FLIGHT)
                .filter_map(|(room, op, result)| async move {
                    result.err().map(|e| {
                        warn!(error = %e, "will retry");
                        (room, op)
                    })
                })
                .collect()
                .await;
            let retry = !failed.is_empty();
            {
                let mut state = pending.lock();
                for (room, op) in failed {
                    pending
                        .metrics
                        .bus_errors
                        .with_label_values(&["peak"])
                        .inc();
                    // A newer operation for the room supersedes the failed one.
                    state.ops.entry(room).or_insert(op);
                }
                state.in_flight = 0;
                pending.report(&state);
            }
            if retry {
                tokio::time::sleep(PEAK_RETRY_PAUSE).await;
            }
        }
    }
}

/// Why a peak operation failed.
#[derive(Debug, thiserror::Error)]
enum PeakWriteError {
    #[error("cannot store a room peak: {0}")]
    Put(#[source] kv::PutError),
    #[error("cannot remove a closed room's peak: {0}")]
    Purge(#[source] PurgeError),
}

async fn apply(store: &kv::Store, room: RoomKey, op: PeakOp) -> Result<(), PeakWriteError> {
    let key = room.to_string();
    match op {
        PeakOp::Put(peak) => {
            store
                .put(key, Bytes::from(peak.to_string()))
                .await
                .map_err(PeakWriteError::Put)?;
        }
        PeakOp::Delete => {
            // Removes the key's messages from the stream, leaving nothing behind.
            store
                .stream
                .purge()
                .filter(format!("{}{key}", store.prefix))
                .await
                .map_err(PeakWriteError::Purge)?;
        }
    }
    Ok(())
}
