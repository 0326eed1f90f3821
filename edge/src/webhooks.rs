//! Standalone: the tenants' webhooks (docs/webhooks.md). The in-process router turns the room state
//! machine's member effects into events, in the room's order; the engine delivers them, reading each
//! tenant's endpoint and secret from the directory at every attempt.

use std::time::Duration;

use switchboard_api::webhooks::{EngineConfig, Tls, WebhookMetrics, Webhooks, events_of};
use switchboard_rooms::{Effect, UnixMillis};
use switchboard_tenants::Directory;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;

/// Longest time a stopping edge waits for pending events to be delivered, after its clients are
/// gone and the router has emitted their leaves: long enough for a live receiver to take the last
/// `participant_left` and `room_finished`, short enough not to hold up a rollout behind a dead one.
pub const FLUSH: Duration = Duration::from_secs(5);

/// How often the flush looks whether the outbox is empty.
const FLUSH_POLL: Duration = Duration::from_millis(50);

/// The running engine of a standalone edge.
pub struct EdgeWebhooks {
    engine: Webhooks,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl EdgeWebhooks {
    /// Starts the engine over `directory`'s tenants, its metrics in the edge's registry, trusting
    /// `tls` for `https://` receivers (the system's roots and --webhook-ca-file).
    pub fn start(
        directory: Directory,
        metrics: &Metrics,
        tls: Tls,
    ) -> Result<Self, prometheus::Error> {
        let webhook_metrics = WebhookMetrics::new()?;
        webhook_metrics.register(metrics.registry())?;
        let config = EngineConfig {
            tls,
            ..EngineConfig::default()
        };
        WebhookMetrics::export_limits(metrics.registry(), &config)?;
        let engine = Webhooks::new(
            config,
            move |tenant: &switchboard_proto::TenantId| {
                directory
                    .snapshot()
                    .tenant(tenant)
                    .and_then(|t| t.webhook.as_deref().cloned())
            },
            webhook_metrics,
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (engine, stop) = (engine.clone(), stop.clone());
            async move { engine.run(stop).await }
        });
        Ok(EdgeWebhooks { engine, stop, task })
    }

    /// The handle the router emits into.
    pub fn engine(&self) -> &Webhooks {
        &self.engine
    }

    /// Gives pending events up to [`FLUSH`], then stops the engine. Call it after the router has
    /// ended, so the leaves of the last clients are among them.
    pub async fn finish(self) {
        let flushed = tokio::time::timeout(FLUSH, async {
            while self.engine.pending() > 0 {
                tokio::time::sleep(FLUSH_POLL).await;
            }
        })
        .await;
        if flushed.is_err() {
            info!(
                events = self.engine.pending(),
                "stopping with webhook events undelivered (switchboard_webhooks_pending)"
            );
        }
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Hands a member effect of the room state machine to the engine, as its webhook events
/// ([`events_of`]: the same events a cluster's routers store). Other effects are not events.
pub fn emit(webhooks: &Webhooks, effect: &Effect, now: UnixMillis) {
    for event in events_of(effect, now) {
        // A refusal (a full queue) is counted and logged by the engine; signaling goes on.
        let _ = webhooks.emit(event);
    }
}
