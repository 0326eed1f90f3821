//! Registering Prometheus metrics, and the metrics both binaries export under the same names: a
//! standalone edge and a cluster's routers both serve rooms, and both talk over a bus, so a dashboard
//! reads one set of names whichever it looks at.

use prometheus::{
    CounterVec, Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use switchboard_proto::TenantId;

/// Builds a process's registry: each method creates a metric and registers it.
pub struct Registrar {
    registry: Registry,
}

impl Default for Registrar {
    fn default() -> Self {
        Self::new()
    }
}

impl Registrar {
    /// An empty registry.
    pub fn new() -> Self {
        Registrar {
            registry: Registry::new(),
        }
    }

    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: M,
    ) -> Result<M, prometheus::Error> {
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A counter.
    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.add(IntCounter::new(name, help)?)
    }

    /// A counter with labels.
    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    /// A counter of fractional amounts (seconds), with labels.
    pub fn float_counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<CounterVec, prometheus::Error> {
        self.add(CounterVec::new(Opts::new(name, help), labels)?)
    }

    /// A gauge.
    pub fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.add(IntGauge::new(name, help)?)
    }

    /// A gauge with labels.
    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    /// A histogram with `buckets`.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<Histogram, prometheus::Error> {
        self.add(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }

    /// The registry, with the process's own metrics (memory, CPU, descriptors) added on Linux. Call
    /// it once, after the last metric.
    pub fn finish(&self) -> Result<Registry, prometheus::Error> {
        #[cfg(target_os = "linux")]
        self.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(self.registry.clone())
    }
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families; an error would leave a
    // partial body, which Prometheus reports as a scrape error: visible, not silent.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The rooms a process serves (the standalone edge: all; a router: those of its slots).
#[derive(Debug, Clone)]
pub struct RoomMetrics {
    /// Open rooms.
    pub rooms: IntGauge,
    /// Connections in a room.
    pub members: IntGauge,
    /// Peak member count of each room, observed when it closes (palava's `room_peaks`).
    pub room_peak_members: Histogram,
    /// Whole minutes spent in a room, observed at each leave (palava's `connection_time`).
    pub connection_minutes: Histogram,
}

impl RoomMetrics {
    /// Registers the room metrics.
    pub fn register(registrar: &Registrar) -> Result<Self, prometheus::Error> {
        Ok(RoomMetrics {
            rooms: registrar.gauge("switchboard_rooms", "Open rooms.")?,
            members: registrar.gauge(
                "switchboard_room_members",
                "Connections that are in a room.",
            )?,
            room_peak_members: registrar.histogram(
                "switchboard_room_peak_members",
                "Peak member count of each room, observed when it closes (palava's room_peaks).",
                vec![
                    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0,
                ],
            )?,
            connection_minutes: registrar.histogram(
                "switchboard_connection_minutes",
                "Whole minutes spent in a room, observed at each leave (palava's connection_time).",
                vec![
                    0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0,
                ],
            )?,
        })
    }
}

/// Hosted mode: each tenant's rooms in the rooms a process serves (the standalone edge, a
/// router). The gauge's series of a tenant exists while it has rooms here; the counter's stays (a
/// counter that vanished and came back would lose increments), until [`TenantRoomMetrics::forget`].
#[derive(Debug, Clone)]
pub struct TenantRoomMetrics {
    /// `switchboard_tenant_rooms{tenant}`: open rooms.
    pub rooms: IntGaugeVec,
    /// `switchboard_tenant_rooms_opened_total{tenant}`: rooms opened (a join into an empty room).
    pub rooms_opened: IntCounterVec,
}

impl TenantRoomMetrics {
    /// Registers the tenant room metrics.
    pub fn register(registrar: &Registrar) -> Result<Self, prometheus::Error> {
        Ok(TenantRoomMetrics {
            rooms: registrar.gauge_vec(
                "switchboard_tenant_rooms",
                "Open rooms of each tenant that this process serves (hosted mode).",
                &["tenant"],
            )?,
            rooms_opened: registrar.counter_vec(
                "switchboard_tenant_rooms_opened_total",
                "Rooms each tenant opened here (hosted mode).",
                &["tenant"],
            )?,
        })
    }

    /// Sets `tenant`'s open rooms here; at zero its gauge series goes.
    pub fn set_rooms(&self, tenant: &TenantId, rooms: usize) {
        if rooms == 0 {
            let _ = self.rooms.remove_label_values(&[tenant.as_str()]);
        } else {
            self.rooms
                .with_label_values(&[tenant.as_str()])
                .set(rooms as i64);
        }
    }

    /// Counts a room `tenant` opened.
    pub fn opened(&self, tenant: &TenantId) {
        self.rooms_opened
            .with_label_values(&[tenant.as_str()])
            .inc();
    }

    /// Drops every series of `tenant` (it left the tenants file and has no rooms here).
    pub fn forget(&self, tenant: &TenantId) {
        let _ = self.rooms.remove_label_values(&[tenant.as_str()]);
        let _ = self.rooms_opened.remove_label_values(&[tenant.as_str()]);
    }
}

/// `switchboard_bus_errors_total{kind}`: bus operations that failed, with every `kind` this process
/// may report pre-registered (so a dashboard sees zeros, not gaps).
pub fn bus_errors(
    registrar: &Registrar,
    kinds: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let errors = registrar.counter_vec(
        "switchboard_bus_errors_total",
        "Bus operations that failed, by kind.",
        &["kind"],
    )?;
    for kind in kinds {
        errors.with_label_values(&[kind]);
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_binaries_share_names_and_a_name_registers_once() {
        let registrar = Registrar::new();
        let rooms = RoomMetrics::register(&registrar).unwrap_or_else(|e| panic!("{e}"));
        let errors = bus_errors(&registrar, &["relay"]).unwrap_or_else(|e| panic!("{e}"));
        rooms.rooms.set(3);
        errors.with_label_values(&["relay"]).inc();
        assert!(registrar.gauge("switchboard_rooms", "again").is_err());
        let text = render(&registrar.finish().unwrap_or_else(|e| panic!("{e}")));
        assert!(text.contains("switchboard_rooms 3"), "{text}");
        assert!(
            text.contains("switchboard_bus_errors_total{kind=\"relay\"} 1"),
            "{text}"
        );
    }
}
