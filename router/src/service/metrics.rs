//! The router's Prometheus metrics (its own registry, exported at `/metrics`).

use switchboard_api::webhooks::WebhookMetrics;

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use switchboard_runtime::consul::ConsulMetrics;
use switchboard_runtime::metrics::{
    Registrar, RoomMetrics, TenantRoomMetrics, build_info, bus_errors, bus_publish_seconds,
    latency_buckets, register_limit, render,
};

use super::config::Config;

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
    /// `lost_events`, `edge_appeared`, `retry`, `periodic`).
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
    /// Seconds spent in a room, observed at each leave.
    pub connection_seconds: Histogram,
    /// Seconds to publish a room event to an edge on NATS.
    pub bus_publish_event: Histogram,
    /// Seconds to publish a command reply on NATS.
    pub bus_publish_reply: Histogram,
    /// Seconds to publish this router's presence on NATS (what keeps its leases: see `lease`).
    pub bus_publish_presence: Histogram,
    /// `switchboard_router_lease_seconds{op="acquire"}`: lease store round trips taking a slot.
    /// Leases are held by presence, not rewritten, so these and the `check` and `probe` ones are
    /// the store's side of keeping them.
    pub lease_acquire_seconds: Histogram,
    /// `{op="check"}`: asking the store whether a lease is still ours.
    pub lease_check_seconds: Histogram,
    /// `{op="probe"}`: asking whether the store takes writes.
    pub lease_probe_seconds: Histogram,
    /// What is not stored in JetStream yet, by kind (`peaks`: rooms whose latest peak, or the removal
    /// of a closed room's entry, is not written yet; `stats`: statistics events counted since the last
    /// acknowledged write of their hour). What a crash of this router would lose.
    pub store_pending: IntGaugeVec,
    /// Hosted mode: each tenant's rooms in the slots this router serves, and the rooms it opened.
    pub tenant_rooms: TenantRoomMetrics,
    /// Hosted mode: each tenant's open rooms cluster-wide as this router sees them (its own and the
    /// other routers' last reports): what its room quota is checked against.
    pub tenant_cluster_rooms: IntGaugeVec,
    /// Webhooks: storing (`dropped_total{reason="store_unavailable"}`) and delivering the tenants'
    /// events (docs/webhooks.md, "Metrics"), over every served slot.
    pub webhooks: WebhookMetrics,
    /// Consul registration and discovery (`--consul-addr`).
    pub consul: ConsulMetrics,
}

impl RouterMetrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let r = Registrar::new();
        let room = RoomMetrics::register(&r)?;
        let tenant_rooms = TenantRoomMetrics::register(&r)?;
        build_info(
            &r,
            "router",
            env!("CARGO_PKG_VERSION"),
            option_env!("SWITCHBOARD_COMMIT"),
        )?;
        let bus_publish = bus_publish_seconds(&r, &["event", "reply", "presence"])?;
        let lease_seconds = r.histogram_vec(
            "switchboard_router_lease_seconds",
            "Lease store (JetStream KV) round trips, by operation: acquire, check, probe.",
            &["op"],
            latency_buckets(),
        )?;
        let metrics = RouterMetrics {
            bus_publish_event: bus_publish.with_label_values(&["event"]),
            bus_publish_reply: bus_publish.with_label_values(&["reply"]),
            bus_publish_presence: bus_publish.with_label_values(&["presence"]),
            lease_acquire_seconds: lease_seconds.with_label_values(&["acquire"]),
            lease_check_seconds: lease_seconds.with_label_values(&["check"]),
            lease_probe_seconds: lease_seconds.with_label_values(&["probe"]),
            tenant_rooms,
            consul: ConsulMetrics::register(&r)?,
            tenant_cluster_rooms: r.gauge_vec(
                "switchboard_tenant_cluster_rooms",
                "Open rooms of each tenant cluster-wide as this router sees them: its own and the \
                 other routers' last reports, updated every usage interval (hosted mode).",
                &["tenant"],
            )?,
            slots_owned: r.gauge(
                "switchboard_router_slots_owned",
                "Slots this router serves.",
            )?,
            lease_store_up: r.gauge(
                "switchboard_router_lease_store_up",
                "1 while the lease store (JetStream KV) answers; takeovers wait for it.",
            )?,
            hears_itself: r.gauge(
                "switchboard_router_hears_itself",
                "1 while this router hears its own presence on NATS (it serves only then).",
            )?,
            slots_paused: r.gauge(
                "switchboard_router_slots_paused",
                "Slots held but not served at the moment (this router is cut off from NATS).",
            )?,
            lease_losses: r.counter(
                "switchboard_router_lease_losses_total",
                "Slots lost to another router (this one was deposed or presumed gone).",
            )?,
            reconciles: r.counter_vec(
                "switchboard_router_reconciles_total",
                "Reconciliations of a slot with the edges, by reason.",
                &["reason"],
            )?,
            reconcile_corrections: r.counter_vec(
                "switchboard_router_reconcile_corrections_total",
                "Corrections found by reconciliations, by kind (peer_left, new_peer, removed).",
                &["kind"],
            )?,
            lost_events: r.counter_vec(
                "switchboard_router_lost_events_total",
                "Times this router may have missed events (NATS slow consumer, lagging notices); \
                     each triggers a reconciliation.",
                &["cause"],
            )?,
            slot_takeovers: r.counter(
                "switchboard_router_slot_takeovers_total",
                "Slots acquired and served (failovers, rebalancing, start-up).",
            )?,
            slot_releases: r.counter(
                "switchboard_router_slot_releases_total",
                "Slots handed over on purpose (rebalancing, shutdown).",
            )?,
            resync_seconds: r.histogram(
                "switchboard_router_resync_seconds",
                "From acquiring a slot to serving it: rebuilding membership from the edges.",
                prometheus::exponential_buckets(0.001, 2.0, 14)?,
            )?,
            commands: r.counter_vec(
                "switchboard_router_commands_total",
                "Membership commands handled.",
                &["command"],
            )?,
            command_seconds: r.histogram(
                "switchboard_router_command_seconds",
                "Time to apply a command and publish its effects.",
                prometheus::exponential_buckets(0.000_01, 2.0, 16)?,
            )?,
            bus_errors: bus_errors(&r, &["event", "reply", "stats", "peak", "usage"])?,
            edges_alive: r.gauge(
                "switchboard_router_edges_alive",
                "Edges currently sending heartbeats.",
            )?,
            edges_lost: r.counter(
                "switchboard_router_edges_lost_total",
                "Edges declared dead after their heartbeats stopped.",
            )?,
            routers_alive: r.gauge(
                "switchboard_router_routers_alive",
                "Routers currently present, this one included.",
            )?,
            rooms: room.rooms,
            members: room.members,
            room_peak_members: room.room_peak_members,
            connection_seconds: room.connection_seconds,
            store_pending: r.gauge_vec(
                "switchboard_router_store_pending",
                "What is not stored in JetStream yet, by kind (peaks: rooms whose latest peak \
                     or removal is not written yet; stats: statistics events counted since their \
                     hour was last stored).",
                &["kind"],
            )?,
            registry: r.finish()?,
            webhooks: WebhookMetrics::new()?,
        };
        metrics.webhooks.register(&metrics.registry)?;
        for reason in [
            crate::service::webhooks::STORE_UNAVAILABLE,
            crate::service::webhooks::MALFORMED,
        ] {
            metrics.webhooks.dropped.with_label_values(&[reason]);
        }
        for reason in [
            "takeover",
            "resume",
            "lag",
            "lost_events",
            "edge_appeared",
            "retry",
            "periodic",
        ] {
            metrics.reconciles.with_label_values(&[reason]);
        }
        for kind in ["peer_left", "new_peer", "removed"] {
            metrics.reconcile_corrections.with_label_values(&[kind]);
        }
        for cause in ["slow_consumer", "notices_lagged", "reconnect"] {
            metrics.lost_events.with_label_values(&[cause]);
        }
        for kind in ["peaks", "stats"] {
            metrics.store_pending.with_label_values(&[kind]);
        }
        Ok(metrics)
    }

    /// Exports the configured limits as gauges (`switchboard_*_limit`), so that a dashboard shows
    /// saturation as a ratio.
    pub fn export_limits(&self, config: &Config) -> Result<(), prometheus::Error> {
        let limits: [(&str, &str, f64); 4] = [
            (
                "switchboard_room_members_limit",
                "Most members per room (--max-room-size; 0: unlimited).",
                config.max_room_size as f64,
            ),
            (
                "switchboard_webhooks_stream_bytes_limit",
                "Most bytes the webhook event stream holds, per replica (--webhooks-max-bytes).",
                config.webhooks_max_bytes as f64,
            ),
            (
                "switchboard_webhooks_stream_messages_limit",
                "Most events the webhook event stream holds (--webhooks-max-msgs).",
                config.webhooks_max_msgs as f64,
            ),
            (
                "switchboard_webhooks_ack_pending_limit",
                "Most undelivered webhook events one served slot's worker holds in memory \
                 (--webhooks-max-ack-pending).",
                config.webhooks_max_ack_pending as f64,
            ),
        ];
        for (name, help, value) in limits {
            register_limit(&self.registry, name, help, value)?;
        }
        Ok(())
    }

    /// The registry, for metrics registered after start-up (the webhook engine's bounds).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
