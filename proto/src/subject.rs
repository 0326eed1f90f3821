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

/// Requests from a router taking over a slot; every edge answers with its members in that slot.
pub const RESYNC: &str = "sb.resync";

/// Edges that lost room events ask the routers to reconcile their slots.
pub const RECONCILE: &str = "sb.reconcile";

/// Statistics events published by router `router` into the statistics stream.
pub fn stats(router: &str) -> String {
    format!("{PREFIX}.stats.{router}")
}

/// Subjects of the statistics stream.
pub const STATS_SUBJECTS: &str = "sb.stats.>";

/// JetStream key-value bucket holding one lease per slot (`slot.<n>` -> owning router).
pub const LEASES_BUCKET: &str = "sb-leases";

/// JetStream key-value bucket holding the peak member count of each open room (room key -> peak).
pub const PEAKS_BUCKET: &str = "sb-peaks";

/// JetStream stream of statistics events (room closed with a peak, member left after some minutes).
pub const STATS_STREAM: &str = "SB_STATS";

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
        assert!(edge_heartbeat(edge).starts_with(EDGE_HEARTBEATS.trim_end_matches('*')));
        assert!(router_heartbeat("r1").starts_with(ROUTER_HEARTBEATS.trim_end_matches('*')));
        assert!(stats("r1").starts_with(STATS_SUBJECTS.trim_end_matches('>')));
    }
}
