//! The Consul metrics, the same in both binaries.

use prometheus::{IntCounterVec, IntGauge};

use crate::metrics::Registrar;

/// The `op` labels of `switchboard_consul_errors_total`.
pub const OPS: [&str; 4] = ["register", "sync", "deregister", "discover"];

/// `switchboard_consul_errors_total{op}` and `switchboard_consul_registered`.
#[derive(Debug, Clone)]
pub struct ConsulMetrics {
    /// Failed requests to the Consul agent, by operation: `register`, `sync` (the periodic look-up
    /// of the registration), `deregister`, `discover` (finding NATS).
    pub errors: IntCounterVec,
    /// 1 while the agent is known to hold this process's registration.
    pub registered: IntGauge,
}

impl ConsulMetrics {
    /// Registers the Consul metrics (every `op` pre-registered at 0).
    pub fn register(registrar: &Registrar) -> Result<ConsulMetrics, prometheus::Error> {
        let errors = registrar.counter_vec(
            "switchboard_consul_errors_total",
            "Failed requests to the local Consul agent, by operation (register, sync, deregister, \
             discover).",
            &["op"],
        )?;
        for op in OPS {
            errors.with_label_values(&[op]);
        }
        let registered = registrar.gauge(
            "switchboard_consul_registered",
            "1 while the local Consul agent is known to hold this process's registration (0 with \
             Consul off).",
        )?;
        Ok(ConsulMetrics { errors, registered })
    }

    /// Counts a failed `op`.
    pub fn failed(&self, op: &str) {
        self.errors.with_label_values(&[op]).inc();
    }
}
