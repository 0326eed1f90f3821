//! Registering Prometheus metrics, and the metrics both binaries export under the same names: a
//! standalone edge and a cluster's routers both serve rooms, and both talk over a bus, so a dashboard
//! reads one set of names whichever it looks at.

use prometheus::{
    CounterVec, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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

    /// A histogram with `buckets` and labels (resolve the children once, not per observation).
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> Result<HistogramVec, prometheus::Error> {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets),
            labels,
        )?)
    }

    /// The registry, with the process's own metrics (memory, CPU, descriptors) added on Linux and
    /// `switchboard_trace_spans_dropped_total` ([`crate::trace`]). Call it once, after the last
    /// metric.
    pub fn finish(&self) -> Result<Registry, prometheus::Error> {
        if let Some(dropped) = crate::trace::spans_dropped_counter() {
            self.add(dropped)?;
        }
        #[cfg(target_os = "linux")]
        self.registry
            .register(Box::new(crate::process::ProcessCollector::for_self()?))?;
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
    /// Seconds spent in a room, observed at each leave (palava's `connection_time` counts the same
    /// leaves in whole minutes).
    pub connection_seconds: Histogram,
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
            connection_seconds: registrar.histogram(
                "switchboard_connection_seconds",
                "Seconds spent in a room, observed at each leave (palava's connection_time counts \
                 the same leaves in whole minutes).",
                CONNECTION_BUCKETS.to_vec(),
            )?,
        })
    }
}

/// Buckets of `switchboard_connection_seconds`: from a failed call set-up (seconds) to a working
/// day, with palava's minute marks (1, 2, 5, 10, 15, 30, 60, 120, 240, 480 minutes) among them.
pub const CONNECTION_BUCKETS: [f64; 14] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];

/// Buckets of the latency histograms of one bus round trip or less (publishes, joins, relays):
/// 50 µs to about 1.6 s, doubling.
pub fn latency_buckets() -> Vec<f64> {
    // exponential_buckets fails only for a count of 0 or a start or factor out of range.
    prometheus::exponential_buckets(0.000_05, 2.0, 16).unwrap_or_default()
}

/// `switchboard_build_info{version, commit, binary}` = 1. `commit` comes from `SWITCHBOARD_COMMIT`
/// at build time (CI sets it; no build script, no git needed) and is left out when it was not set.
pub fn build_info(
    registrar: &Registrar,
    binary: &str,
    version: &str,
    commit: Option<&str>,
) -> Result<IntGauge, prometheus::Error> {
    let mut opts = Opts::new(
        "switchboard_build_info",
        "Always 1; the labels say which build runs: version, commit (when known at build time), \
         binary (edge or router).",
    )
    .const_label("binary", binary)
    .const_label("version", version);
    if let Some(commit) = commit.filter(|c| !c.is_empty()) {
        opts = opts.const_label("commit", commit);
    }
    let gauge = registrar.add(IntGauge::with_opts(opts)?)?;
    gauge.set(1);
    Ok(gauge)
}

/// Registers a gauge in `registry` holding a configured limit, so a dashboard can show saturation
/// as a ratio (`switchboard_connections / switchboard_connections_limit`).
pub fn register_limit(
    registry: &Registry,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), prometheus::Error> {
    let gauge = Gauge::new(name, help)?;
    gauge.set(value);
    registry.register(Box::new(gauge))
}

/// `switchboard_bus_publish_seconds{kind}`: how long handing a message to NATS took (async-nats
/// queues it, so this grows when the connection's write buffer is full or the link is down), with
/// every `kind` pre-registered.
pub fn bus_publish_seconds(
    registrar: &Registrar,
    kinds: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    let histogram = registrar.histogram_vec(
        "switchboard_bus_publish_seconds",
        "Time to hand a message to NATS (publish, or a request until its reply), by kind.",
        &["kind"],
        latency_buckets(),
    )?;
    for kind in kinds {
        histogram.with_label_values(&[kind]);
    }
    Ok(histogram)
}

/// What in a Prometheus text exposition breaks the naming conventions this project keeps
/// (<https://prometheus.io/docs/practices/naming/>): a counter not ending in `_total`, a gauge or
/// histogram ending in it, a unit other than the base ones (`_minutes`, `_ms`, ...). Empty when
/// all is well; tests scrape live processes with it.
pub fn convention_violations(exposition: &str) -> Vec<String> {
    const NON_BASE_UNITS: [&str; 8] = [
        "_minutes",
        "_hours",
        "_ms",
        "_milliseconds",
        "_us",
        "_microseconds",
        "_kilobytes",
        "_megabytes",
    ];
    let mut problems = Vec::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            problems.push(format!("malformed TYPE line: {line}"));
            continue;
        };
        match kind {
            "counter" if !name.ends_with("_total") => {
                problems.push(format!("counter {name} does not end in _total"));
            }
            "gauge" | "histogram" | "summary" if name.ends_with("_total") => {
                problems.push(format!("{kind} {name} ends in _total"));
            }
            _ => {}
        }
        let base = name.strip_suffix("_total").unwrap_or(name);
        if let Some(unit) = NON_BASE_UNITS
            .iter()
            .find(|u| base.ends_with(*u) || base.contains(&format!("{u}_")))
        {
            problems.push(format!("{name} uses a non-base unit ({unit})"));
        }
    }
    problems
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
        assert!(convention_violations(&text).is_empty(), "{text}");
    }

    #[test]
    fn build_info_has_a_commit_only_when_known() {
        let registrar = Registrar::new();
        build_info(&registrar, "edge", "1.2.3", None).unwrap_or_else(|e| panic!("{e}"));
        let text = render(&registrar.finish().unwrap_or_else(|e| panic!("{e}")));
        assert!(
            text.contains("switchboard_build_info{binary=\"edge\",version=\"1.2.3\"} 1"),
            "{text}"
        );
        let registrar = Registrar::new();
        build_info(&registrar, "router", "1.2.3", Some("abc123")).unwrap_or_else(|e| panic!("{e}"));
        let text = render(&registrar.finish().unwrap_or_else(|e| panic!("{e}")));
        assert!(text.contains("commit=\"abc123\""), "{text}");
    }

    #[test]
    fn conventions_catch_counters_without_total_and_other_units() {
        let text = "# TYPE a_total counter\n# TYPE b counter\n# TYPE c_total gauge\n\
                    # TYPE d_minutes histogram\n# TYPE e_ms_total counter\n# TYPE f_seconds gauge\n";
        let problems = convention_violations(text);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("counter b "), "{problems:?}");
        assert!(problems[1].contains("c_total"), "{problems:?}");
        assert!(problems[2].contains("d_minutes"), "{problems:?}");
        assert!(problems[3].contains("e_ms_total"), "{problems:?}");
    }
}
