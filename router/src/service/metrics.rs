//! The router's Prometheus metrics (its own registry, exported at `/metrics`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Metrics of one router process.
#[derive(Clone)]
pub struct RouterMetrics {
    registry: Registry,
    /// Slots this router serves.
    pub slots_owned: IntGauge,
    /// 1 while the lease store (JetStream) answers; takeovers need it, serving held slots does not.
    pub lease_store_up: IntGauge,
    /// 1 while this router hears its own presence on NATS (it may serve only then).
    pub hears_itself: IntGauge,
    /// Slots whose lease is held but which are not served at the moment (cut off from NATS).
    pub slots_paused: IntGauge,
    /// Slots lost: another router took them over (this one was deposed or presumed gone).
    pub lease_losses: IntCounter,
    /// Reconciliations of a slot with the edges, by reason (`takeover`, `resume`, `lag`,
    /// `lost_events`, `periodic`).
    pub reconciles: IntCounterVec,
    /// Corrections announced by reconciliations, by kind (`peer_left`, `new_peer`, `removed`).
    pub reconcile_corrections: IntCounterVec,
    /// Events this router may have missed: NATS slow-consumer drops and lagging internal notices.
    pub lost_events: IntCounterVec,
    /// Slots taken over (acquired and served), including at start-up.
    pub slot_takeovers: IntCounter,
    /// Slots handed over on purpose (rebalancing, shutdown).
    pub slot_releases: IntCounter,
    /// Seconds from acquiring a slot's lease to serving it (resync from the edges).
    pub resync_seconds: Histogram,
    /// Commands handled, by command.
    pub commands: IntCounterVec,
    /// Seconds to apply a command and publish its effects.
    pub command_seconds: Histogram,
    /// Messages that could not be published on the bus, by kind.
    pub bus_errors: IntCounterVec,
    /// Edges currently sending heartbeats.
    pub edges_alive: IntGauge,
    /// Edges declared dead (heartbeats stopped); their members were removed.
    pub edges_lost: IntCounter,
    /// Routers currently present (this one included).
    pub routers_alive: IntGauge,
    /// Open rooms in the slots this router serves.
    pub rooms: IntGauge,
    /// Members of those rooms.
    pub members: IntGauge,
    /// Peak member counts of rooms when they closed.
    pub room_peak_members: Histogram,
    /// Minutes spent in a room, observed at each leave.
    pub connection_minutes: Histogram,
    /// What is not stored in JetStream yet, by kind (`peaks`: rooms whose latest peak, or the removal
    /// of a closed room's entry, is not written yet; `stats`: statistics events counted since the last
    /// acknowledged write of their hour). What a crash of this router would lose.
    pub store_pending: IntGaugeVec,
}

impl RouterMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let metric = $metric;
                registry.register(Box::new(metric.clone()))?;
                metric
            }};
        }
        let metrics = RouterMetrics {
            slots_owned: register!(IntGauge::new(
                "switchboard_router_slots_owned",
                "Slots this router serves."
            )?),
            lease_store_up: register!(IntGauge::new(
                "switchboard_router_lease_store_up",
                "1 while the lease store (JetStream KV) answers; takeovers wait for it."
            )?),
            hears_itself: register!(IntGauge::new(
                "switchboard_router_hears_itself",
                "1 while this router hears its own presence on NATS (it serves only then)."
            )?),
            slots_paused: register!(IntGauge::new(
                "switchboard_router_slots_paused",
                "Slots held but not served at the moment (this router is cut off from NATS)."
            )?),
            lease_losses: register!(IntCounter::new(
                "switchboard_router_lease_losses_total",
                "Slots lost to another router (this one was deposed or presumed gone)."
            )?),
            reconciles: register!(IntCounterVec::new(
                Opts::new(
                    "switchboard_router_reconciles_total",
                    "Reconciliations of a slot with the edges, by reason."
                ),
                &["reason"]
            )?),
            reconcile_corrections: register!(IntCounterVec::new(
                Opts::new(
                    "switchboard_router_reconcile_corrections_total",
                    "Corrections found by reconciliations, by kind (peer_left, new_peer, removed)."
                ),
                &["kind"]
            )?),
            lost_events: register!(IntCounterVec::new(
                Opts::new(
                    "switchboard_router_lost_events_total",
                    "Times this router may have missed events (NATS slow consumer, lagging notices); \
                     each triggers a reconciliation."
                ),
                &["cause"]
            )?),
            slot_takeovers: register!(IntCounter::new(
                "switchboard_router_slot_takeovers_total",
                "Slots acquired and served (failovers, rebalancing, start-up)."
            )?),
            slot_releases: register!(IntCounter::new(
                "switchboard_router_slot_releases_total",
                "Slots handed over on purpose (rebalancing, shutdown)."
            )?),
            resync_seconds: register!(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_router_resync_seconds",
                    "From acquiring a slot to serving it: rebuilding membership from the edges."
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?)
            )?),
            commands: register!(IntCounterVec::new(
                Opts::new("switchboard_router_commands_total", "Membership commands handled."),
                &["command"]
            )?),
            command_seconds: register!(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_router_command_seconds",
                    "Time to apply a command and publish its effects."
                )
                .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 16)?)
            )?),
            bus_errors: register!(IntCounterVec::new(
                Opts::new(
                    "switchboard_bus_publish_errors_total",
                    "Bus messages that could not be published, by kind."
                ),
                &["kind"]
            )?),
            edges_alive: register!(IntGauge::new(
                "switchboard_router_edges_alive",
                "Edges currently sending heartbeats."
            )?),
            edges_lost: register!(IntCounter::new(
                "switchboard_router_edges_lost_total",
                "Edges declared dead after their heartbeats stopped."
            )?),
            routers_alive: register!(IntGauge::new(
                "switchboard_router_routers_alive",
                "Routers currently present, this one included."
            )?),
            rooms: register!(IntGauge::new(
                "switchboard_rooms",
                "Open rooms in the slots this router serves."
            )?),
            members: register!(IntGauge::new(
                "switchboard_room_members",
                "Members of the rooms this router serves."
            )?),
            room_peak_members: register!(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_room_peak_members",
                    "Peak member count of each room, observed when it closes (palava's room_peaks)."
                )
                .buckets(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0])
            )?),
            connection_minutes: register!(Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_connection_minutes",
                    "Whole minutes spent in a room, observed at each leave (palava's connection_time)."
                )
                .buckets(vec![0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0])
            )?),
            store_pending: register!(IntGaugeVec::new(
                Opts::new(
                    "switchboard_router_store_pending",
                    "What is not stored in JetStream yet, by kind (peaks: rooms whose latest peak \
                     or removal is not written yet; stats: statistics events counted since their \
                     hour was last stored)."
                ),
                &["kind"]
            )?),
            registry,
        };
        for reason in ["takeover", "resume", "lag", "lost_events", "periodic"] {
            metrics.reconciles.with_label_values(&[reason]);
        }
        for kind in ["peer_left", "new_peer", "removed"] {
            metrics.reconcile_corrections.with_label_values(&[kind]);
        }
        for cause in ["slow_consumer", "notices_lagged"] {
            metrics.lost_events.with_label_values(&[cause]);
        }
        for kind in ["event", "reply", "stats", "peak"] {
            metrics.bus_errors.with_label_values(&[kind]);
        }
        for kind in ["peaks", "stats"] {
            metrics.store_pending.with_label_values(&[kind]);
        }
        #[cfg(target_os = "linux")]
        metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(metrics)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}
