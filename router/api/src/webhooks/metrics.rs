//! The engine's Prometheus metrics. The process that runs the engine registers them in its registry
//! ([`WebhookMetrics::register`]), beside its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Delivery metrics (docs/webhooks.md, "Metrics").
#[derive(Clone)]
pub struct WebhookMetrics {
    /// Events acknowledged with a 2xx.
    pub sent: IntCounter,
    /// Failed attempts, by `reason`: `status` (an answer other than 2xx), `connect`, `timeout`, `io`.
    pub failed: IntCounterVec,
    /// Events given up on, by `reason`: `expired` (retried for the whole retry time), `queue_full`
    /// (refused at once: a bound was reached), `no_endpoint` (the tenant's webhook was removed or
    /// became invalid while events were pending).
    pub dropped: IntCounterVec,
    /// Rooms whose next event has failed at least once and waits for a retry.
    pub retrying: IntGauge,
    /// Events pending (queued or in flight).
    pub pending: IntGauge,
    /// Age of the oldest pending event, in seconds (0 when none).
    pub oldest_pending_age: Gauge,
    /// Each running engine's oldest age (a cluster's router runs one engine per served slot, all
    /// counting into the same metrics): the gauge shows the largest.
    oldest: Arc<Mutex<HashMap<u64, f64>>>,
}

impl WebhookMetrics {
    /// New, unregistered metrics.
    pub fn new() -> Result<Self, prometheus::Error> {
        Ok(WebhookMetrics {
            sent: IntCounter::new(
                "switchboard_webhooks_sent_total",
                "Webhook events acknowledged by the receiver with a 2xx.",
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "switchboard_webhooks_failed_total",
                    "Failed webhook attempts (each is retried), by reason.",
                ),
                &["reason"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "switchboard_webhooks_dropped_total",
                    "Webhook events given up on, by reason.",
                ),
                &["reason"],
            )?,
            retrying: IntGauge::new(
                "switchboard_webhooks_retrying",
                "Rooms whose next webhook event waits for a retry.",
            )?,
            pending: IntGauge::new(
                "switchboard_webhooks_pending",
                "Webhook events queued or in flight.",
            )?,
            oldest_pending_age: Gauge::new(
                "switchboard_webhooks_oldest_pending_age_seconds",
                "Age of the oldest pending webhook event.",
            )?,
            oldest: Arc::default(),
        })
    }

    /// Sets engine `engine`'s oldest pending age (`None`: it stopped), and the gauge to the
    /// largest over the running engines.
    pub(crate) fn set_oldest(&self, engine: u64, age: Option<f64>) {
        // A panic elsewhere while holding it leaves a plain map: nothing to stop for.
        let mut ages = self.oldest.lock().unwrap_or_else(|e| e.into_inner());
        match age {
            Some(age) => ages.insert(engine, age),
            None => ages.remove(&engine),
        };
        let oldest = ages.values().copied().fold(0.0, f64::max);
        self.oldest_pending_age.set(oldest);
    }

    /// Exports the engine's bounds in `registry` as gauges (`switchboard_webhooks_*_limit`), beside
    /// `switchboard_webhooks_pending`. A router runs one engine per served slot, each with these
    /// bounds, while `pending` counts over all of them.
    pub fn export_limits(
        registry: &Registry,
        config: &super::EngineConfig,
    ) -> Result<(), prometheus::Error> {
        let limits = [
            (
                "switchboard_webhooks_pending_limit",
                "Most webhook events pending in one engine (a router: per served slot); more are \
                 dropped as queue_full.",
                config.limits.global,
            ),
            (
                "switchboard_webhooks_tenant_pending_limit",
                "Most webhook events of one tenant pending in one engine.",
                config.limits.per_tenant,
            ),
            (
                "switchboard_webhooks_in_flight_limit",
                "Most webhook attempts in flight at once in one engine.",
                config.max_in_flight,
            ),
        ];
        for (name, help, value) in limits {
            switchboard_runtime::metrics::register_limit(registry, name, help, value as f64)?;
        }
        Ok(())
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.sent.clone()))?;
        registry.register(Box::new(self.failed.clone()))?;
        registry.register(Box::new(self.dropped.clone()))?;
        registry.register(Box::new(self.retrying.clone()))?;
        registry.register(Box::new(self.pending.clone()))?;
        registry.register(Box::new(self.oldest_pending_age.clone()))?;
        for reason in ["expired", "queue_full", "no_endpoint"] {
            self.dropped.with_label_values(&[reason]);
        }
        Ok(())
    }
}
