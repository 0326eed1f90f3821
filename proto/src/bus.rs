//! What travels between edges and routers: membership [`Command`]s (edge to the router owning the
//! room's slot), [`EdgeEvent`]s (router to edge), and the messages of resync, presence and
//! heartbeats. Standalone, commands and events pass in memory; in a cluster they are JSON on NATS
//! (subjects in [`crate::subject`]).

use serde::{Deserialize, Serialize};

use crate::{
    ConnId, EdgeId, ProtocolError, RoomKey, ServerMessage, Status, StoredStatus, TenantId,
};

/// Default number of slots rooms hash into (`RoomKey::slot`). Every process of a cluster must use
/// the same number: it decides which router owns a room.
pub const DEFAULT_SLOTS: u32 = 64;

/// The most levels of nesting a bus message adds above the client message its content came from. A
/// client's status sits one level below the top of its message (`{"event":…,"status":{…}}`) and
/// four below the top of the deepest bus message that carries it,
/// `{"Deliver":{"message":{"NewPeer":{"status":{…}}}}}`: three more. `Command::Join` and
/// `Command::UpdateStatus` add one. proto/tests/bus_depth.rs proves the bound, and that it is tight.
pub const ENVELOPE_DEPTH: usize = 3;

/// A membership change, as the edge holding `conn` asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Add `conn` (held by `edge`) to `room` with a validated status.
    Join {
        /// The joining connection.
        conn: ConnId,
        /// The edge holding it.
        edge: EdgeId,
        /// The room.
        room: RoomKey,
        /// Its validated status.
        status: Status,
        /// Hosted mode: the joiner's tenant and the limits the router enforces for it. Absent in
        /// open mode (and then not on the wire, which stays as it was).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tenant: Option<TenantScope>,
    },
    /// Remove `conn` from `room` (an explicit `leave_room` or a closed socket). Ignored if `conn` is
    /// not in `room`.
    Leave {
        /// The leaving connection.
        conn: ConnId,
        /// The edge holding it.
        edge: EdgeId,
        /// The room it leaves.
        room: RoomKey,
    },
    /// Replace the status of `conn`, a member of `room`.
    UpdateStatus {
        /// The connection.
        conn: ConnId,
        /// The edge holding it.
        edge: EdgeId,
        /// Its room.
        room: RoomKey,
        /// The validated new status.
        status: Status,
    },
    /// `conn` is a member of `room` as far as its edge knows (the edge is the ground truth): add it if
    /// the router lost it, telling the other members with `new_peer`; nothing if it is there already.
    /// Edges send this after their bus connection came back, or when a router asks them to.
    Rejoin {
        /// The member.
        member: MemberRecord,
    },
    /// Every connection held by `edge` is gone (the edge died or lost the bus): remove them all.
    EdgeLost {
        /// The edge.
        edge: EdgeId,
    },
}

impl Command {
    /// The room this command is about, if it names one (routing uses it to pick the owning router).
    pub fn room(&self) -> Option<RoomKey> {
        match self {
            Command::Join { room, .. }
            | Command::Leave { room, .. }
            | Command::UpdateStatus { room, .. } => Some(*room),
            Command::Rejoin { member } => Some(member.room),
            Command::EdgeLost { .. } => None,
        }
    }

    /// The command's name, for metrics labels and spans.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::UpdateStatus { .. } => "update_status",
            Command::Rejoin { .. } => "rejoin",
            Command::EdgeLost { .. } => "edge_lost",
        }
    }
}

/// A joiner's tenant, with the limits the router that owns the room enforces (the edge reads them
/// from the tenant directory; routers need no copy of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantScope {
    /// The tenant.
    pub id: TenantId,
    /// Most open rooms of the tenant, cluster-wide; 0: unlimited.
    #[serde(default)]
    pub max_rooms: u32,
    /// Most members in one of its rooms; 0: unlimited (the router's own limit still applies).
    #[serde(default)]
    pub max_room_size: u32,
    /// The room's name (its `room_id` as the client sent it), so that the control API can list a
    /// tenant's rooms by name. Only ever returned to the room's owner; never in subjects or logs.
    /// Absent from edges of older versions (their rooms are then not listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
}

/// One member as its edge knows it: what a router needs to rebuild membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The connection.
    pub conn: ConnId,
    /// The edge holding it.
    pub edge: EdgeId,
    /// Its room.
    pub room: RoomKey,
    /// Its stored status.
    pub status: StoredStatus,
    /// When it joined, in milliseconds since the Unix epoch (for `connection_time`).
    pub joined_at_ms: u64,
    /// Hosted mode: its tenant (a router rebuilding a room learns whose room it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// Hosted mode: its room's name (see [`TenantScope::room_name`]), so that a router rebuilding
    /// a room knows what the control API calls it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
}

/// A router's answer to a [`Command`] request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandReply {
    /// Applied (its effects are published before this reply) by the owner of the slot's lease at
    /// `epoch`; an edge that has seen a newer epoch of the slot treats it like [`Self::NotServing`].
    Applied {
        /// The lease epoch of the router that applied it.
        epoch: u64,
    },
    /// This router does not serve the slot (any more); ask again, the owner may be changing.
    NotServing,
    /// Applied nothing: the join would open a room of a tenant for which this router has used its
    /// admissions of the current quota round while the tenant still has headroom (hosted mode,
    /// docs/quotas.md). Ask again; the next round comes within a usage interval. Edges of older
    /// versions cannot parse it and ask again as for [`Self::NotServing`].
    Busy,
}

/// A message from a router to one edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EdgeEvent {
    /// Deliver `message`, about `room`, to the edge's connections `to`.
    Deliver {
        /// The lease epoch of the router that sent it: an edge drops events of an epoch older than
        /// the newest it has seen for the room's slot (a deposed owner cannot act any more).
        epoch: u64,
        /// The room.
        room: RoomKey,
        /// Recipients, all held by this edge, in join order.
        to: Vec<ConnId>,
        /// The message.
        message: ServerMessage,
    },
    /// A command of `conn` was refused; tell it why.
    Refuse {
        /// The lease epoch of the router that sent it (as for `Deliver`).
        epoch: u64,
        /// The connection.
        conn: ConnId,
        /// The room the command named.
        room: RoomKey,
        /// Why.
        error: ProtocolError,
    },
    /// The control API removed `to` from `room` (the router already did): tell each the documented
    /// `error` and close its connection with [`crate::limits::close_code::REMOVED`].
    Remove {
        /// The lease epoch of the router that sent it (as for `Deliver`).
        epoch: u64,
        /// The room.
        room: RoomKey,
        /// The removed connections, all held by this edge.
        to: Vec<ConnId>,
    },
}

impl EdgeEvent {
    /// What the event does, for spans: the delivered message's event name (`new_peer`, …), or
    /// `refuse` or `remove`.
    pub fn kind(&self) -> &'static str {
        match self {
            EdgeEvent::Deliver { message, .. } => message.event(),
            EdgeEvent::Refuse { .. } => "refuse",
            EdgeEvent::Remove { .. } => "remove",
        }
    }
}

/// A router taking over `slot` asks every edge for its members there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncRequest {
    /// The slot being taken over (or reconciled by its owner).
    pub slot: u32,
    /// Total number of slots (for `RoomKey::slot`).
    pub slots: u32,
    /// The asking router's lease epoch for the slot. The edge records it before answering, so from
    /// then on it drops whatever an older owner of the slot still sends.
    pub epoch: u64,
}

/// An edge's answer to a [`ResyncRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResyncReply {
    /// The answering edge.
    pub edge: EdgeId,
    /// Its members in the slot (joined).
    pub members: Vec<MemberRecord>,
    /// For each room of the slot with members here, the peers this edge has announced to them: what
    /// its clients believe the room holds. The router compares it with the truth and announces the
    /// difference (`peer_left` for ghosts, `new_peer` for the unannounced).
    #[serde(default)]
    pub views: Vec<RoomView>,
    /// Its connections whose join of a room in the slot is on its way (sent, `joined_room` not
    /// delivered yet): a router that already applied the join must not take them for gone.
    #[serde(default)]
    pub joining: Vec<ConnId>,
}

/// What an edge's clients in one room have been told the room holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    /// The room.
    pub room: RoomKey,
    /// The members announced there (joined_room peers and later events), local ones included.
    pub members: Vec<ConnId>,
}

/// A router's presence, published on `sb.hb.router.<id>` every quarter of the lease lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RouterPresence {
    /// The slot leases this router holds, with their epochs. A router that holds a slot at an older
    /// epoch than another's claim has been deposed and stops serving it at once.
    pub claims: Vec<SlotClaim>,
    /// Numbers the router's presence messages, so it can tell when it sent the one it hears back.
    #[serde(default)]
    pub seq: u64,
    /// Set in the last message of a router stopping on purpose: the others take its slots at once.
    #[serde(default)]
    pub leaving: bool,
}

/// One held slot lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotClaim {
    /// The slot.
    pub slot: u32,
    /// The lease's epoch: the revision of the lease key when this router took it.
    pub epoch: u64,
}

/// An edge asks the routers to reconcile its view of their slots (it lost room events: a slow
/// consumer on its NATS subscription). Published on `sb.reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// The edge.
    pub edge: EdgeId,
}

/// A process's counts per tenant (hosted mode), published every usage interval on
/// `sb.usage.edge.<id>` by an edge (its connections) or `sb.usage.router.<id>` by a router (its open
/// rooms). Receivers add up the latest report of each process and forget a process that has not
/// reported for [`USAGE_EXPIRY_INTERVALS`] of its intervals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// How often the sender reports, in milliseconds.
    pub interval_ms: u64,
    /// Its counts; tenants with nothing are left out.
    #[serde(default)]
    pub tenants: Vec<TenantCount>,
}

/// Reports missed, in the sender's intervals, after which its counts are forgotten: long enough
/// that a report lost on the way (or a NATS reconnect) does not make a live process's connections
/// vanish from the others' views, short enough that a dead edge's stop counting soon after the
/// routers' edge timeout.
pub const USAGE_EXPIRY_INTERVALS: u32 = 8;

/// One tenant's count in a [`UsageReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCount {
    /// The tenant.
    pub tenant: TenantId,
    /// Connections (from an edge) or open rooms (from a router).
    pub count: u64,
}

/// An edge's periodic sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The edge.
    pub edge: EdgeId,
    /// Its open client connections.
    pub connections: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_round_trip_as_json() {
        let edge = EdgeId(9);
        let conn = ConnId::for_edge(edge, [1; 16]);
        let room = RoomKey::from_bytes([2; 16]);
        let status =
            Status::validate(Some(json!({"name": "x", "k": 1.5})), &Default::default()).unwrap();
        let commands = [
            Command::Join {
                conn,
                edge,
                room,
                status: status.clone(),
                tenant: None,
            },
            Command::Rejoin {
                member: MemberRecord {
                    conn,
                    edge,
                    room,
                    status: status.stored(),
                    joined_at_ms: 5,
                    tenant: None,
                    room_name: None,
                },
            },
            Command::EdgeLost { edge },
        ];
        for command in commands {
            let text = serde_json::to_string(&command).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&text).unwrap(), command);
        }
        let event = EdgeEvent::Deliver {
            epoch: 3,
            room,
            to: vec![conn],
            message: ServerMessage::NewPeer {
                peer_id: conn,
                status: status.into_map(),
            },
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<EdgeEvent>(&text).unwrap(), event);
        let refuse = EdgeEvent::Refuse {
            epoch: 3,
            conn,
            room,
            error: ProtocolError::RoomFull,
        };
        let text = serde_json::to_string(&refuse).unwrap();
        assert_eq!(serde_json::from_str::<EdgeEvent>(&text).unwrap(), refuse);
        let report = UsageReport {
            interval_ms: 250,
            tenants: vec![TenantCount {
                tenant: TenantId::parse("acme").unwrap(),
                count: 3,
            }],
        };
        let text = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<UsageReport>(&text).unwrap(), report);
        for reply in [
            CommandReply::Applied { epoch: 1 },
            CommandReply::NotServing,
            CommandReply::Busy,
        ] {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<CommandReply>(&text).unwrap(), reply);
        }
    }
}
