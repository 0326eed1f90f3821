//! Prometheus metrics of one edge. Each [`crate::run`] owns its own registry (tests run several edges
//! in one process), exported on the admin port at `/metrics`.
//!
//! Label values are fixed, small sets (event names, error reasons, disconnect reasons); room ids and
//! connection ids never become labels.

use std::sync::Arc;

use prometheus::{
    CounterVec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use switchboard_proto::ProtocolError;
use switchboard_runtime::consul::ConsulMetrics;
use switchboard_runtime::metrics::{
    Registrar, RoomMetrics, TenantRoomMetrics, build_info, bus_errors, bus_publish_seconds,
    latency_buckets, register_limit, render,
};

use crate::config::Config;

use crate::queue::QueueMetrics;

/// Why a connection ended; the `reason` label of `switchboard_disconnects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the socket or the TCP connection.
    ClientClosed,
    /// The client did not read its messages fast enough.
    SlowConsumer,
    /// Nothing received for longer than the idle timeout.
    IdleTimeout,
    /// Sustained rate-limit abuse.
    RateLimitAbuse,
    /// A frame or message over the size limit.
    FrameTooLarge,
    /// A WebSocket protocol violation.
    ProtocolViolation,
    /// A socket error or a write that timed out.
    IoError,
    /// Closed with 4200 at the end of a graceful shutdown.
    Shutdown,
    /// Closed with 4403: the control API removed it from its room.
    Removed,
    /// Hosted mode: closed with 4401, its tenant was deleted.
    TenantDeleted,
}

impl DisconnectReason {
    /// Every reason, to pre-register label values (so dashboards show zeros, not gaps).
    pub const ALL: [DisconnectReason; 10] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::SlowConsumer,
        DisconnectReason::IdleTimeout,
        DisconnectReason::RateLimitAbuse,
        DisconnectReason::FrameTooLarge,
        DisconnectReason::ProtocolViolation,
        DisconnectReason::IoError,
        DisconnectReason::Shutdown,
        DisconnectReason::Removed,
        DisconnectReason::TenantDeleted,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::IdleTimeout => "idle_timeout",
            DisconnectReason::RateLimitAbuse => "rate_limit_abuse",
            DisconnectReason::FrameTooLarge => "frame_too_large",
            DisconnectReason::ProtocolViolation => "protocol_violation",
            DisconnectReason::IoError => "io_error",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::Removed => "removed",
            DisconnectReason::TenantDeleted => "tenant_deleted",
        }
    }
}

/// Label of incoming frames that are not a valid client message (counted `direction="in"` beside
/// the client events).
pub const INVALID: &str = "invalid";

/// The `quota` label values of `switchboard_tenant_quota_refusals_total`.
pub const QUOTAS: [&str; 4] = ["connections", "rooms", "room_size", "messages"];

/// Server events counted in `switchboard_messages_total{direction="out"}`.
const OUT_EVENTS: &[&str] = &[
    "joined_room",
    "new_peer",
    "peer_left",
    "peer_updated_status",
    "offer",
    "answer",
    "ice_candidate",
    "message",
    "error",
    "shutdown",
    "pong",
    "info",
];

/// The edge's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open client WebSocket connections.
    pub connections: IntGauge,
    /// Client WebSocket connections accepted since start.
    pub connections_accepted: IntCounter,
    /// Upgrades refused because the edge was at --max-connections or shutting down.
    pub connections_refused: IntCounterVec,
    /// Ended connections by reason.
    pub disconnects: IntCounterVec,
    /// Messages by event and direction (`in` from clients, `out` to clients).
    pub messages: IntCounterVec,
    /// Errors sent to clients by reason.
    pub errors: IntCounterVec,
    /// Successful joins (the joiner got `joined_room`).
    pub joins: IntCounter,
    /// Standalone: open rooms (those the embedded router holds). Not exported by a clustered edge
    /// (the routers hold the rooms; see [`Metrics::without_router_rooms`]).
    pub rooms: IntGauge,
    /// Standalone: members of all rooms the embedded router holds.
    pub members: IntGauge,
    /// Standalone: peak member counts of rooms when they closed.
    pub room_peak_members: Histogram,
    /// Standalone: seconds spent in a room, observed at each leave.
    pub connection_seconds: Histogram,
    /// Rooms with at least one member connected to this edge (both modes; set at each scrape).
    pub edge_rooms: IntGauge,
    /// Connections on this edge that are in a room (both modes; set at each scrape).
    pub edge_room_members: IntGauge,
    /// Seconds from sending a join to the router to handing the joiner its `joined_room`.
    pub join_seconds: Histogram,
    /// Seconds to publish a cross-edge peer message on NATS (cluster).
    pub bus_publish_relay: Histogram,
    /// Seconds to publish a heartbeat on NATS (cluster).
    pub bus_publish_heartbeat: Histogram,
    /// Seconds from a `send_to_peer` being read to its forward being queued for the target.
    pub relay_seconds: Histogram,
    /// 1 while the edge is draining (after SIGTERM/SIGINT).
    pub draining: IntGauge,
    /// Seconds from sending a membership command over the bus to its being applied (cluster).
    pub bus_command_seconds: Histogram,
    /// Command attempts repeated because the slot had no serving router (cluster failover).
    pub bus_command_retries: IntCounter,
    /// Bus operations that failed, by kind (`command`, `relay`, `heartbeat`, `resync`).
    pub bus_errors: IntCounterVec,
    /// Heartbeats published (cluster).
    pub heartbeats: IntCounter,
    /// 1 while connected to NATS (cluster), always 1 standalone.
    pub bus_connected: IntGauge,
    /// Members re-announced to routers (after a reconnect, or on a router's request).
    pub rejoins: IntCounter,
    /// Router events and replies dropped because they came from a deposed router (an older lease
    /// epoch of their slot than one already seen).
    pub stale_epochs: IntCounter,
    /// Times this edge lost messages on its NATS subscriptions (slow consumer); each asks the routers
    /// to reconcile.
    pub bus_slow_consumers: IntCounter,
    /// The connection limit in force: `--max-connections`, or fewer if descriptors are short.
    pub connections_limit: IntGauge,
    /// `accept` calls that failed, by port (out of descriptors, mostly).
    pub accept_errors: IntCounterVec,
    /// What the outbound queues report: bytes waiting, refusals by bound, coalesced updates.
    pub queue: Arc<QueueMetrics>,
    /// Hosted mode: tenants in force.
    pub tenants: IntGauge,
    /// Hosted mode: reloads of the tenants file, by result (`loaded`, `refused`).
    pub tenants_reloads: IntCounterVec,
    /// Hosted mode: each tenant's connections on this edge.
    pub tenant_connections: IntGaugeVec,
    /// Hosted mode: each tenant's connections cluster-wide as this edge sees them (its own and the
    /// other edges' last reports): what its connection quota is checked against.
    pub tenant_cluster_connections: IntGaugeVec,
    /// Hosted mode: seconds each tenant's connections on this edge were open.
    pub tenant_connection_seconds: CounterVec,
    /// Hosted mode: peer messages each tenant's connections sent that this edge forwarded.
    pub tenant_messages_relayed: IntCounterVec,
    /// Hosted mode: what each tenant was refused by quota (`connections`, `rooms`, `room_size`,
    /// `messages`).
    pub tenant_quota_refusals: IntCounterVec,
    /// Hosted mode, standalone: each tenant's rooms.
    pub tenant_rooms: TenantRoomMetrics,
    /// Consul registration and discovery (`--consul-addr`).
    pub consul: ConsulMetrics,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let r = Registrar::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| r.counter_vec(name, help, labels);
        let gauge = |name: &str, help: &str| r.gauge(name, help);
        let counter = |name: &str, help: &str| r.counter(name, help);
        let histogram =
            |name: &str, help: &str, buckets: Vec<f64>| r.histogram(name, help, buckets);
        let room = RoomMetrics::register(&r)?;
        let tenant_rooms = TenantRoomMetrics::register(&r)?;
        build_info(
            &r,
            "edge",
            env!("CARGO_PKG_VERSION"),
            option_env!("SWITCHBOARD_COMMIT"),
        )?;
        let bus_publish = bus_publish_seconds(&r, &["relay", "heartbeat"])?;

        let queue_full = counter_vec(
            "switchboard_outbound_queue_full_total",
            "Messages that found a client's outbound queue full, by the bound it met (messages or \
             bytes). A room event or cross-edge relay then closes the client as a slow consumer; \
             a local peer message waits for room.",
            &["bound"],
        )?;
        let queue = Arc::new(QueueMetrics {
            queued_bytes: gauge(
                "switchboard_outbound_queued_bytes",
                "Bytes waiting in the outbound queues of all clients.",
            )?,
            full_messages: queue_full.with_label_values(&["messages"]),
            full_bytes: queue_full.with_label_values(&["bytes"]),
            coalesced: counter(
                "switchboard_status_updates_coalesced_total",
                "peer_updated_status messages that replaced an unsent older one of the same member.",
            )?,
        });
        let metrics = Metrics {
            queue,
            connections_limit: gauge(
                "switchboard_connections_limit",
                "Client connections allowed: --max-connections, or fewer if the descriptor limit \
                 cannot cover them plus --fd-reserve.",
            )?,
            accept_errors: counter_vec(
                "switchboard_accept_errors_total",
                "Failed accepts of TCP connections (e.g. out of descriptors), by port.",
                &["port"],
            )?,
            connections: gauge("switchboard_connections", "Open client connections.")?,
            connections_accepted: counter(
                "switchboard_connections_accepted_total",
                "Client WebSocket connections accepted.",
            )?,
            connections_refused: counter_vec(
                "switchboard_connections_refused_total",
                "WebSocket upgrades refused, by reason: capacity and draining (HTTP 503); hosted \
                 mode's token and origin reasons (401, 403; docs/hosting.md).",
                &["reason"],
            )?,
            disconnects: counter_vec(
                "switchboard_disconnects_total",
                "Client connections ended, by reason.",
                &["reason"],
            )?,
            messages: counter_vec(
                "switchboard_messages_total",
                "Signaling messages by event and direction (in: from clients, out: to clients).",
                &["event", "direction"],
            )?,
            errors: counter_vec(
                "switchboard_errors_total",
                "Error events sent to clients, by reason.",
                &["reason"],
            )?,
            joins: counter("switchboard_joins_total", "Successful room joins.")?,
            rooms: room.rooms,
            members: room.members,
            room_peak_members: room.room_peak_members,
            connection_seconds: room.connection_seconds,
            edge_rooms: gauge(
                "switchboard_edge_rooms",
                "Rooms with at least one member connected to this edge (standalone or cluster). A \
                 room spread over several edges counts on each: sum switchboard_rooms (routers, \
                 standalone edges) for the cluster's rooms.",
            )?,
            edge_room_members: gauge(
                "switchboard_edge_room_members",
                "Connections on this edge that are in a room (standalone or cluster); summed over \
                 the edges, the cluster's members.",
            )?,
            join_seconds: histogram(
                "switchboard_join_seconds",
                "Time from sending a join_room to the router (in-process or over NATS) to \
                 handing the joiner its joined_room.",
                latency_buckets(),
            )?,
            bus_publish_relay: bus_publish.with_label_values(&["relay"]),
            bus_publish_heartbeat: bus_publish.with_label_values(&["heartbeat"]),
            relay_seconds: histogram(
                "switchboard_relay_seconds",
                "Time from reading a send_to_peer to queueing its forward for the target (same \
                 edge) or publishing it on NATS (another edge).",
                prometheus::exponential_buckets(0.000_01, 2.0, 16)?,
            )?,
            draining: gauge(
                "switchboard_draining",
                "1 while the edge drains before stopping.",
            )?,
            bus_command_seconds: histogram(
                "switchboard_bus_command_seconds",
                "From sending a membership command over the bus to its being applied.",
                prometheus::exponential_buckets(0.000_05, 2.0, 18)?,
            )?,
            bus_command_retries: counter(
                "switchboard_bus_command_retries_total",
                "Command attempts repeated while a slot had no serving router.",
            )?,
            bus_errors: bus_errors(&r, &["command", "relay", "heartbeat", "resync", "usage"])?,
            heartbeats: counter(
                "switchboard_edge_heartbeats_total",
                "Heartbeats published to the routers.",
            )?,
            bus_connected: gauge(
                "switchboard_bus_connected",
                "1 while connected to the bus (always 1 standalone).",
            )?,
            rejoins: counter(
                "switchboard_rejoins_total",
                "Members re-announced to routers after a reconnect or on a router's request.",
            )?,
            stale_epochs: counter(
                "switchboard_bus_stale_epochs_total",
                "Router events and replies dropped because their router was deposed.",
            )?,
            bus_slow_consumers: counter(
                "switchboard_bus_slow_consumers_total",
                "Times NATS dropped messages for this edge (slow consumer); each triggers a reconciliation.",
            )?,
            tenants: gauge("switchboard_tenants", "Tenants in force (hosted mode).")?,
            tenants_reloads: counter_vec(
                "switchboard_tenants_reloads_total",
                "Changes of the tenants file, by result: loaded, or refused (the previous tenants \
                 stay in force; the log says why).",
                &["result"],
            )?,
            tenant_connections: r.gauge_vec(
                "switchboard_tenant_connections",
                "Open connections of each tenant on this edge (hosted mode).",
                &["tenant"],
            )?,
            tenant_cluster_connections: r.gauge_vec(
                "switchboard_tenant_cluster_connections",
                "Connections of each tenant cluster-wide as this edge sees them: its own and the \
                 other edges' last reports, updated every usage interval (hosted mode).",
                &["tenant"],
            )?,
            tenant_connection_seconds: r.float_counter_vec(
                "switchboard_tenant_connection_seconds_total",
                "Seconds each tenant's connections on this edge were open, in whole seconds \
                 counted every usage interval (hosted mode).",
                &["tenant"],
            )?,
            tenant_messages_relayed: counter_vec(
                "switchboard_tenant_messages_relayed_total",
                "Peer messages (send_to_peer) of each tenant's connections that this edge \
                 forwarded (hosted mode).",
                &["tenant"],
            )?,
            tenant_quota_refusals: counter_vec(
                "switchboard_tenant_quota_refusals_total",
                "What each tenant was refused by its quotas: connections (HTTP 429), rooms \
                 (room quota exceeded), room_size (room is full), messages (tenant rate limit \
                 exceeded) (hosted mode).",
                &["tenant", "quota"],
            )?,
            tenant_rooms,
            consul: ConsulMetrics::register(&r)?,
            registry: r.finish()?,
        };
        for reason in DisconnectReason::ALL {
            metrics.disconnects.with_label_values(&[reason.label()]);
        }
        for error in ProtocolError::ALL {
            metrics.errors.with_label_values(&[error.reason()]);
        }
        for event in switchboard_proto::client::EVENTS.iter().chain([&INVALID]) {
            metrics.messages.with_label_values(&[event, "in"]);
        }
        for event in OUT_EVENTS {
            metrics.messages.with_label_values(&[event, "out"]);
        }
        for port in ["public", "admin"] {
            metrics.accept_errors.with_label_values(&[port]);
        }
        for reason in ["capacity", "draining"] {
            metrics.connections_refused.with_label_values(&[reason]);
        }
        for result in ["loaded", "refused"] {
            metrics.tenants_reloads.with_label_values(&[result]);
        }
        Ok(metrics)
    }

    /// Counts a message from a client.
    pub fn message_in(&self, event: &str) {
        self.messages.with_label_values(&[event, "in"]).inc();
    }

    /// Counts `n` messages to clients.
    pub fn messages_out(&self, event: &str, n: u64) {
        self.messages.with_label_values(&[event, "out"]).inc_by(n);
    }

    /// Counts an error sent to a client.
    pub fn error(&self, error: ProtocolError) {
        self.errors.with_label_values(&[error.reason()]).inc();
        self.messages_out("error", 1);
    }

    /// Counts an ended connection.
    pub fn disconnect(&self, reason: DisconnectReason) {
        self.disconnects.with_label_values(&[reason.label()]).inc();
    }

    /// A clustered edge's metrics: without the room gauges and histograms of the embedded router
    /// (`switchboard_rooms`, `switchboard_room_members`, `switchboard_room_peak_members`,
    /// `switchboard_connection_seconds`), which the routers export; a clustered edge would only ever
    /// show them at 0. `switchboard_edge_rooms` and `switchboard_edge_room_members` stay.
    pub fn without_router_rooms(self) -> Self {
        let _ = self.registry.unregister(Box::new(self.rooms.clone()));
        let _ = self.registry.unregister(Box::new(self.members.clone()));
        let _ = self
            .registry
            .unregister(Box::new(self.room_peak_members.clone()));
        let _ = self
            .registry
            .unregister(Box::new(self.connection_seconds.clone()));
        self
    }

    /// Exports the configured limits as gauges (`switchboard_*_limit`), so that a dashboard shows
    /// saturation as a ratio. `connections` is the connection limit in force (the descriptor plan).
    pub fn export_limits(
        &self,
        config: &Config,
        connections: usize,
    ) -> Result<(), prometheus::Error> {
        self.connections_limit.set(connections as i64);
        let limits: [(&str, &str, usize); 7] = [
            (
                "switchboard_room_members_limit",
                "Most members per room (--max-room-size; 0: unlimited).",
                config.max_room_size,
            ),
            (
                "switchboard_client_message_rate_limit",
                "Messages per second one connection may send, sustained (--rate-limit).",
                config.rate_limit as usize,
            ),
            (
                "switchboard_client_message_burst_limit",
                "Messages one connection may send in a burst (--rate-burst).",
                config.rate_burst as usize,
            ),
            (
                "switchboard_outbound_queue_messages_limit",
                "Messages queued for one client before it counts as slow (--outbound-queue).",
                config.outbound_queue,
            ),
            (
                "switchboard_outbound_queue_bytes_limit",
                "Bytes queued for one client before it counts as slow (--outbound-queue-bytes); \
                 switchboard_outbound_queued_bytes is over all clients.",
                config.outbound_queue_bytes,
            ),
            (
                "switchboard_frame_bytes_limit",
                "Largest WebSocket frame or message a client may send (--max-frame-bytes).",
                config.max_frame_bytes,
            ),
            (
                "switchboard_status_bytes_limit",
                "Largest status, in bytes of JSON (--max-status-bytes).",
                config.max_status_bytes,
            ),
        ];
        for (name, help, value) in limits {
            register_limit(&self.registry, name, help, value as f64)?;
        }
        Ok(())
    }

    /// The registry, for metrics of other crates served with the edge's (the webhook engine's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
