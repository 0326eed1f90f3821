//! Bus subject names and storage names. Subjects carry edge ids, connection ids and slot numbers,
//! never room ids: anyone with access to the bus can see subject names.

use crate::{ConnId, EdgeId};

/// Prefix of every Switchboard subject.
pub const PREFIX: &str = "sb";

/// Peer messages for connection `id`, published by the sender's edge straight to the edge holding
/// `id` (whose id is part of the connection id).
pub fn conn(id: ConnId) -> String {
    format!("{PREFIX}.edge.{}.conn.{id}", id.edge())
}

/// Room events and refusals from routers for the connections of `edge`, one message per event and
/// edge (recipients listed inside).
pub fn edge_events(edge: EdgeId) -> String {
    format!("{PREFIX}.edge.{edge}.events")
}

/// Everything for `edge` (its connections' peer messages and its room events), as one subscription:
/// one subscription delivers in one order, so a peer message published before a room event on the
/// same server is not overtaken by it inside the edge.
pub fn edge_inbox(edge: EdgeId) -> String {
    format!("{PREFIX}.edge.{edge}.>")
}

/// Membership commands (requests) for rooms in `slot`; only the slot's owning router subscribes.
pub fn slot(slot: u32) -> String {
    format!("{PREFIX}.slot.{slot}")
}

/// Control API requests ([`crate::control::RoomRequest`]) for rooms in `slot`; only the slot's
/// owning router subscribes (the room is named by its key inside the request, never here).
pub fn rooms_slot(slot: u32) -> String {
    format!("{PREFIX}.rooms.slot.{slot}")
}

/// Heartbeats of edge `edge`.
pub fn edge_heartbeat(edge: EdgeId) -> String {
    format!("{PREFIX}.hb.edge.{edge}")
}

/// What routers subscribe to for every edge's heartbeats.
pub const EDGE_HEARTBEATS: &str = "sb.hb.edge.*";

/// Presence of router `router` (for balancing slots).
pub fn router_heartbeat(router: &str) -> String {
    format!("{PREFIX}.hb.router.{router}")
}

/// What routers subscribe to for each other's presence.
pub const ROUTER_HEARTBEATS: &str = "sb.hb.router.*";

/// Usage reports of edge `edge` (hosted mode): its connections per tenant, for the other edges'
/// connection quotas and message-rate shares.
pub fn edge_usage(edge: EdgeId) -> String {
    format!("{PREFIX}.usage.edge.{edge}")
}

/// What edges subscribe to for each other's usage reports.
pub const EDGE_USAGE: &str = "sb.usage.edge.*";

/// Usage reports of router process `owner` (hosted mode): its open rooms per tenant, for the
/// other routers' room quotas.
pub fn router_usage(owner: &str) -> String {
    format!("{PREFIX}.usage.router.{owner}")
}

/// What routers subscribe to for each other's usage reports.
pub const ROUTER_USAGE: &str = "sb.usage.router.*";

/// Requests from a router taking over a slot; every edge answers with its members in that slot.
pub const RESYNC: &str = "sb.resync";

/// Edges that lost room events ask the routers to reconcile their slots.
pub const RECONCILE: &str = "sb.reconcile";

/// JetStream key-value bucket holding one lease per slot (`slot.<n>` -> owning router).
pub const LEASES_BUCKET: &str = "sb-leases";

/// JetStream key-value bucket holding the peak member count of each open room (room key -> peak).
pub const PEAKS_BUCKET: &str = "sb-peaks";

/// JetStream key-value bucket holding the hourly statistics as aggregates: under
/// [`stats_key`]`(hour, instance)`, one router process's totals for one UTC hour.
pub const STATS_BUCKET: &str = "sb-stats";

/// JetStream key-value bucket holding the tenants created through the control API (tenant id ->
/// its record as JSON, keys and secrets included): written by the routers' API, followed by every
/// router and hosted edge.
pub const TENANTS_BUCKET: &str = "sb-tenants";

/// The key in [`STATS_BUCKET`] of the totals that router process `instance` counted during UTC hour
/// `hour` (hours since the epoch). `instance` names one process (router id and a random part), so a
/// restarted router never overwrites what its previous incarnation stored.
pub fn stats_key(hour: u64, instance: &str) -> String {
    format!("hour.{hour}.{instance}")
}

/// The hour and instance of a [`stats_key`]; `None` for any other key.
pub fn parse_stats_key(key: &str) -> Option<(u64, &str)> {
    let rest = key.strip_prefix("hour.")?;
    let (hour, instance) = rest.split_once('.')?;
    if instance.is_empty() || hour.is_empty() || !hour.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((hour.parse().ok()?, instance))
}

/// JetStream stream of a cluster's webhook events (docs/webhooks.md): work-queue retention, one
/// subject per slot ([`webhooks`]), consumed by the slot's owner.
pub const WEBHOOKS_STREAM: &str = "SB_WEBHOOKS";

/// What [`WEBHOOKS_STREAM`] holds: every slot's webhook subject.
pub const WEBHOOKS_SUBJECTS: &str = "sb.wh.*";

/// The webhook events of rooms in `slot` (no room names in the subject).
pub fn webhooks(slot: u32) -> String {
    format!("{PREFIX}.wh.{slot}")
}

/// The durable consumer of `slot`'s webhook events in [`WEBHOOKS_STREAM`].
pub fn webhooks_consumer(slot: u32) -> String {
    format!("wh-{slot}")
}

/// The JetStream stream in which versions before [`STATS_BUCKET`] journaled every statistics event.
/// No longer written or read; routers only mention it in their log when they find it.
pub const LEGACY_STATS_STREAM: &str = "SB_STATS";

/// NATS header of a peer message naming the room (key) it was sent in.
pub const HEADER_ROOM: &str = "Sb-Room";

/// NATS header of a peer message naming its event (`offer`, …), for the receiving edge's metrics.
pub const HEADER_EVENT: &str = "Sb-Event";

/// The lease key of `slot` in [`LEASES_BUCKET`].
pub fn lease_key(slot: u32) -> String {
    format!("slot.{slot}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_keyed_by_ids_and_wildcards_match() {
        let edge = EdgeId(0x0102_0304);
        let id = ConnId::for_edge(edge, [5; 16]);
        assert_eq!(conn(id), format!("sb.edge.01020304.conn.{id}"));
        assert_eq!(edge_events(edge), "sb.edge.01020304.events");
        assert_eq!(edge_inbox(edge), "sb.edge.01020304.>");
        assert_eq!(slot(7), "sb.slot.7");
        assert_eq!(rooms_slot(7), "sb.rooms.slot.7");
        assert!(edge_heartbeat(edge).starts_with(EDGE_HEARTBEATS.trim_end_matches('*')));
        assert!(router_heartbeat("r1").starts_with(ROUTER_HEARTBEATS.trim_end_matches('*')));
        assert_eq!(edge_usage(edge), "sb.usage.edge.01020304");
        assert!(edge_usage(edge).starts_with(EDGE_USAGE.trim_end_matches('*')));
        assert!(router_usage("r1-ab").starts_with(ROUTER_USAGE.trim_end_matches('*')));
        assert_eq!(webhooks(7), "sb.wh.7");
        assert!(webhooks(7).starts_with(WEBHOOKS_SUBJECTS.trim_end_matches('*')));
        assert_eq!(webhooks_consumer(7), "wh-7");
    }

    #[test]
    fn stats_keys_round_trip() {
        let key = stats_key(494_000, "router-1-0a1b2c3d");
        assert_eq!(key, "hour.494000.router-1-0a1b2c3d");
        assert_eq!(parse_stats_key(&key), Some((494_000, "router-1-0a1b2c3d")));
        for other in [
            "slot.3",
            "hour.x.r1",
            "hour.12.",
            "hour..r1",
            "hour.12",
            "hour.+1.r1",
        ] {
            assert_eq!(parse_stats_key(other), None, "{other}");
        }
    }
}
