//! A cluster's webhooks (docs/webhooks.md, "Cluster"): the slot's owner stores each webhook event of
//! its rooms in the JetStream stream `SB_WEBHOOKS` (subject `sb.wh.<slot>`) before anyone sees the
//! membership change, and a worker per served slot delivers them from the slot's durable consumer,
//! acknowledging each after its 2xx or when it is given up on. Events survive the router that
//! produced them: the slot's next owner redelivers whatever was not acknowledged.
//!
//! # Layout
//! - this file: the settings, the handle the slot tasks share, and the producer ([`ClusterWebhooks::store`]).
//! - [`worker`]: the per-slot consumer feeding the delivery engine.

pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream;
use bytes::Bytes;
use switchboard_api::webhooks::effects::has_events;
use switchboard_api::webhooks::{
    EngineConfig, StoredEvent, WebhookDirectory, WebhookMetrics, events_of, new_event_id,
};
use switchboard_proto::{TenantId, subject};
use switchboard_rooms::{Effect, UnixMillis};
use tracing::warn;

pub use worker::Worker;

/// How long the producer waits for JetStream to acknowledge one stored event, per attempt (two
/// attempts, with the same message id, so a stored-but-unacknowledged first try is not duplicated).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The `reason` of `switchboard_webhooks_dropped_total` for an event the stream did not take.
pub const STORE_UNAVAILABLE: &str = "store_unavailable";

/// The `reason` of `switchboard_webhooks_dropped_total` for a stored message that is no event (not
/// expected: only routers write the stream).
pub const MALFORMED: &str = "malformed";

/// How the cluster stores and delivers webhook events.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The delivery engine's knobs (also the stream's max age: its retry time).
    pub engine: EngineConfig,
    /// Most unacknowledged events a slot's worker holds (its consumer's `max_ack_pending`), which
    /// bounds its memory.
    pub max_ack_pending: usize,
    /// How long the server waits for an acknowledgement before redelivering; the worker sends
    /// progress acknowledgements for the events it holds longer.
    pub ack_wait: Duration,
}

impl Default for WebhookConfig {
    /// The engine's defaults, 1,000 events held per slot, 30 s ack wait.
    fn default() -> Self {
        WebhookConfig {
            engine: EngineConfig::default(),
            max_ack_pending: 1_000,
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// The handle the slot tasks share: producing into the stream and starting workers.
#[derive(Clone)]
pub struct ClusterWebhooks {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    directory: Arc<dyn WebhookDirectory>,
    metrics: WebhookMetrics,
    config: WebhookConfig,
}

impl ClusterWebhooks {
    /// Webhooks over `js` (where the stream is, see `buckets::webhooks_stream`), for the tenants of
    /// `directory`, counted into `metrics`.
    pub fn new(
        js: jetstream::Context,
        directory: impl WebhookDirectory,
        metrics: WebhookMetrics,
        config: WebhookConfig,
    ) -> Self {
        ClusterWebhooks {
            inner: Arc::new(Inner {
                js,
                directory: Arc::new(directory),
                metrics,
                config,
            }),
        }
    }

    /// The metrics (registered by the caller).
    pub fn metrics(&self) -> &WebhookMetrics {
        &self.inner.metrics
    }

    /// Stores the webhook events of `effects` (in their order) for the tenants that have a valid
    /// webhook, each acknowledged by JetStream before this returns, so that an event is stored
    /// before its membership change is published. An event that cannot be stored is counted
    /// (`dropped_total{reason="store_unavailable"}`) and logged; signaling goes on.
    pub async fn store(&self, slot: u32, effects: &[Effect], now: UnixMillis) {
        if !effects.iter().any(has_events) {
            return;
        }
        for effect in effects {
            for event in events_of(effect, now) {
                if !self.configured(&event.tenant) {
                    continue;
                }
                let stored = StoredEvent {
                    id: new_event_id(),
                    event,
                };
                self.publish(slot, &stored).await;
            }
        }
    }

    fn configured(&self, tenant: &TenantId) -> bool {
        self.inner
            .directory
            .webhook(tenant)
            .is_some_and(|s| s.validate().is_ok())
    }

    async fn publish(&self, slot: u32, stored: &StoredEvent) {
        let tenant = &stored.event.tenant;
        let payload = match serde_json::to_vec(stored) {
            Ok(payload) => Bytes::from(payload),
            Err(e) => {
                // Not expected: every field is plain JSON.
                self.dropped(slot, tenant, &e);
                return;
            }
        };
        let mut error = None;
        // Twice at most, with the same id: the server's duplicate window drops the second copy
        // if the first was stored but its acknowledgement was lost, and a second try after a
        // timeout still comes before this room's later events.
        for _ in 0..2 {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, stored.id.as_str());
            let attempt = async {
                let ack = self
                    .inner
                    .js
                    .publish_with_headers(subject::webhooks(slot), headers, payload.clone())
                    .await?;
                ack.await
            };
            match tokio::time::timeout(STORE_TIMEOUT, attempt).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => error = Some(e.to_string()),
                Err(_) => error = Some("no acknowledgement in time".into()),
            }
        }
        self.dropped(slot, tenant, &error.unwrap_or_default());
    }

    fn dropped(&self, slot: u32, tenant: &TenantId, error: &dyn std::fmt::Display) {
        self.inner
            .metrics
            .dropped
            .with_label_values(&[STORE_UNAVAILABLE])
            .inc();
        // Never the room's name, the member's status or the body.
        warn!(slot, tenant = %tenant, error = %error, "webhook event not stored in JetStream: it is lost");
    }

    /// Starts delivering `slot`'s stored events; stop it when the slot is no longer served.
    pub fn start_worker(&self, slot: u32) -> Worker {
        Worker::start(self.clone(), slot)
    }
}
