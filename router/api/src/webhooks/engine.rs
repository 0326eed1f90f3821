//! The delivery engine: a handle producers feed ([`Webhooks::emit`], synchronous, never waits) and
//! one task ([`Webhooks::run`]) that delivers from the in-memory [`Outbox`].
//!
//! Standalone the engine numbers and identifies events itself ([`Webhooks::emit`]). In a cluster a
//! JetStream consumer feeds it events that already have their id and `seq`, each with a token (the
//! message to acknowledge), through [`Webhooks::push`]; the engine hands every token back through
//! the `done` callback of [`Webhooks::with_done`] once its event is delivered or given up on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use switchboard_proto::TenantId;

use super::backoff::Backoff;
use super::event::{RoomEvent, new_event_id};
use super::http::{AttemptError, post};
use super::metrics::WebhookMetrics;
use super::outbox::{Attempt, Limits, Outbox, Queued, Refused, RoomKey};
use super::settings::WebhookDirectory;
use super::signature::signature_header;
use super::tls::Tls;

/// How the engine delivers (docs/webhooks.md, "Delivery").
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The retry schedule of a failing event.
    pub backoff: Backoff,
    /// How long after it was emitted an event is still attempted; then it is dropped (counted) and
    /// its room's next event goes.
    pub max_retry_time: Duration,
    /// Queue bounds.
    pub limits: Limits,
    /// The longest one attempt may take, connection included.
    pub request_timeout: Duration,
    /// Most attempts in flight at once (over all rooms; a room has at most one).
    pub max_in_flight: usize,
    /// Whom `https://` receivers are trusted through (the system's roots, plus `--webhook-ca-file`).
    pub tls: Tls,
}

impl Default for EngineConfig {
    /// Retries for an hour, 10 s per attempt, 64 attempts at once, the system's roots trusted.
    fn default() -> Self {
        EngineConfig {
            backoff: Backoff::default(),
            max_retry_time: Duration::from_secs(3600),
            limits: Limits::default(),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 64,
            tls: Tls::system(),
        }
    }
}

/// Why an event was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// A queue bound was reached: the event is dropped (and counted as `queue_full`).
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// The engine's handle: cheap to clone, shared by every producer and the delivery task. `T` is the
/// token each event carries (nothing standalone).
pub struct Webhooks<T = ()> {
    shared: Arc<Shared<T>>,
}

// Not derived: that would require `T: Clone`, and the tokens are never cloned.
impl<T> Clone for Webhooks<T> {
    fn clone(&self) -> Self {
        Webhooks {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Where the tokens of events that left the outbox for good go.
type Done<T> = Box<dyn Fn(T) + Send + Sync>;

struct Shared<T> {
    outbox: Mutex<Outbox<T>>,
    wake: Notify,
    directory: Arc<dyn WebhookDirectory>,
    metrics: WebhookMetrics,
    config: EngineConfig,
    done: Done<T>,
    /// This engine among those counting into the same metrics.
    id: u64,
    /// (pending, retrying) last added to the gauges: several engines may share them, so each
    /// adds its changes instead of setting them.
    reported: Mutex<(i64, i64)>,
}

enum Outcome {
    Delivered,
    Failed(AttemptError),
    NoEndpoint,
}

impl Webhooks<()> {
    /// An engine that looks tenants' settings up in `directory` and counts into `metrics`. Nothing
    /// is delivered until [`Webhooks::run`] runs.
    pub fn new(
        config: EngineConfig,
        directory: impl WebhookDirectory,
        metrics: WebhookMetrics,
    ) -> Self {
        Webhooks::with_done(config, Arc::new(directory), metrics, |()| {})
    }

    /// Queues `event` for its tenant's webhook, behind its room's earlier events. `Ok(None)` when
    /// the tenant has no webhook (nothing is queued). Call it in the order the room's events
    /// happened: that order is the delivery order.
    pub fn emit(&self, event: RoomEvent) -> Result<Option<Queued>, EmitError> {
        let configured = self
            .shared
            .directory
            .webhook(&event.tenant)
            .is_some_and(|s| s.validate().is_ok());
        if !configured {
            return Ok(None);
        }
        let tenant = event.tenant.clone();
        let result = self
            .shared
            .lock()
            .push(event, new_event_id(), Instant::now());
        match result {
            Ok(queued) => {
                self.shared.wake.notify_one();
                Ok(Some(queued))
            }
            Err(refused) => Err(self.shared.refused(&tenant, refused)),
        }
    }
}

impl<T: Send + 'static> Webhooks<T> {
    /// An engine whose events carry tokens: `done` gets each token back once its event was
    /// delivered or given up on (expired, endpoint removed), never while it is pending.
    pub fn with_done(
        config: EngineConfig,
        directory: Arc<dyn WebhookDirectory>,
        metrics: WebhookMetrics,
        done: impl Fn(T) + Send + Sync + 'static,
    ) -> Self {
        Webhooks {
            shared: Arc::new(Shared {
                outbox: Mutex::new(Outbox::new(
                    config.limits,
                    config.backoff,
                    config.max_retry_time,
                )),
                wake: Notify::new(),
                directory,
                metrics,
                config,
                done: Box::new(done),
                id: rand::random(),
                reported: Mutex::new((0, 0)),
            }),
        }
    }

    /// Queues an event that already has its `id` and its room's `seq`, behind its room's earlier
    /// events, with `token`; `age` is how long ago it happened (its retry time runs from then).
    /// Whether the tenant has a webhook is checked at each attempt, not here. A refused event's
    /// token comes back with the error.
    pub fn push(
        &self,
        event: RoomEvent,
        id: String,
        seq: u64,
        token: T,
        age: Duration,
    ) -> Result<Queued, (EmitError, T)> {
        let now = Instant::now();
        let created = now.checked_sub(age).unwrap_or(now);
        let tenant = event.tenant.clone();
        let result = self
            .shared
            .lock()
            .push_with(event, id, Some(seq), token, created);
        match result {
            Ok(queued) => {
                self.shared.wake.notify_one();
                Ok(queued)
            }
            Err((refused, token)) => Err((self.shared.refused(&tenant, refused), token)),
        }
    }

    /// Events queued or in flight (what `switchboard_webhooks_pending` shows), so a stopping process
    /// can give them a moment before it cancels [`Webhooks::run`].
    pub fn pending(&self) -> usize {
        self.shared.lock().pending()
    }

    /// Delivers until `shutdown`. Events still pending then are lost (the in-memory outbox is not
    /// persisted; docs/webhooks.md, "Durability"); their tokens are not handed back (in a
    /// cluster: their messages stay unacknowledged, for the slot's next worker).
    pub async fn run(&self, shutdown: CancellationToken) {
        let shared = &self.shared;
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut rooms: HashMap<tokio::task::Id, RoomKey> = HashMap::new();
        loop {
            let now = Instant::now();
            let capacity = shared.config.max_in_flight.saturating_sub(tasks.len());
            let (attempts, expired, next, pending) = {
                let mut outbox = shared.lock();
                let (attempts, expired) = outbox.due(now, capacity);
                (attempts, expired, outbox.next_due(), outbox.pending())
            };
            if !expired.is_empty() {
                shared
                    .metrics
                    .dropped
                    .with_label_values(&["expired"])
                    .inc_by(expired.len() as u64);
                tracing::warn!(
                    events = expired.len(),
                    "webhook events dropped after the retry time"
                );
                expired.into_iter().for_each(&shared.done);
            }
            for attempt in attempts {
                let room = attempt.room.clone();
                let handle = tasks.spawn(deliver(Arc::clone(shared), attempt));
                rooms.insert(handle.id(), room);
            }
            shared.update_gauges(now);
            // While events are pending the age gauge must keep moving, even when nothing else does.
            let mut wake_at = (pending > 0).then(|| now + Duration::from_secs(1));
            if tasks.len() < shared.config.max_in_flight {
                wake_at = match (wake_at, next) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = shared.wake.notified() => {}
                Some(joined) = tasks.join_next_with_id() => {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, outcome),
                        Err(e) => {
                            tracing::error!(error = %e, "webhook attempt task failed");
                            (e.id(), Outcome::Failed(AttemptError::Timeout))
                        }
                    };
                    if let Some(room) = rooms.remove(&id) {
                        shared.settle(&room, outcome);
                    }
                }
                () = sleep_until(wake_at) => {}
            }
        }
        tasks.shutdown().await;
        shared.clear_gauges();
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Outbox<T>> {
        // A panic while holding the lock leaves the outbox consistent (every method updates it
        // before returning), so the poison flag carries no information worth stopping for.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, room: &RoomKey, outcome: Outcome) {
        let now = Instant::now();
        match outcome {
            Outcome::Delivered => {
                self.metrics.sent.inc();
                let token = self.lock().succeeded(room, now);
                token.into_iter().for_each(&self.done);
            }
            Outcome::Failed(error) => {
                self.metrics
                    .failed
                    .with_label_values(&[error.reason()])
                    .inc();
                let wait = self.lock().failed(room, now, rand::random::<f64>());
                tracing::info!(
                    tenant = %room.0,
                    // The cause is what an operator acts on (which certificate check failed).
                    error = %switchboard_runtime::describe(&error),
                    retry_in_ms = wait.as_millis() as u64,
                    "webhook attempt failed"
                );
            }
            Outcome::NoEndpoint => {
                self.metrics
                    .dropped
                    .with_label_values(&["no_endpoint"])
                    .inc();
                let token = self.lock().abandoned(room, now);
                token.into_iter().for_each(&self.done);
            }
        }
    }

    /// Counts and logs a refused event.
    fn refused(&self, tenant: &TenantId, refused: Refused) -> EmitError {
        self.metrics
            .dropped
            .with_label_values(&["queue_full"])
            .inc();
        tracing::debug!(tenant = %tenant, error = %refused, "webhook event dropped");
        refused.into()
    }

    fn update_gauges(&self, now: Instant) {
        let (counts, oldest) = {
            let outbox = self.lock();
            let counts = (outbox.pending() as i64, outbox.retrying() as i64);
            (
                counts,
                outbox.oldest_age(now).map_or(0.0, |a| a.as_secs_f64()),
            )
        };
        self.report(counts, Some(oldest));
    }

    /// Takes this engine's share out of the gauges (it stopped).
    fn clear_gauges(&self) {
        self.report((0, 0), None);
    }

    fn report(&self, counts: (i64, i64), oldest: Option<f64>) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        self.metrics.pending.add(counts.0 - reported.0);
        self.metrics.retrying.add(counts.1 - reported.1);
        *reported = counts;
        self.metrics.set_oldest(self.id, oldest);
    }
}

async fn deliver<T>(shared: Arc<Shared<T>>, attempt: Attempt) -> Outcome {
    // Read at every attempt, so that a corrected URL or a rotated secret applies to queued events.
    let Some(settings) = shared.directory.webhook(&attempt.room.0) else {
        return Outcome::NoEndpoint;
    };
    let Ok(endpoint) = settings.validate() else {
        return Outcome::NoEndpoint;
    };
    // A clock before 1970 signs with 0; receivers then refuse it as stale, which is what they should.
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = signature_header(settings.secret.as_bytes(), timestamp, &attempt.body);
    match post(
        &endpoint,
        &shared.config.tls,
        &signature,
        &attempt.id,
        attempt.body,
        shared.config.request_timeout,
    )
    .await
    {
        Ok(()) => Outcome::Delivered,
        Err(error) => Outcome::Failed(error),
    }
}
