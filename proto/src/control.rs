//! What the control API asks of the rooms (docs/api.md, "Rooms and members"), and what they answer:
//! standalone in memory, in a cluster as JSON requests on [`crate::subject::rooms_slot`] to the
//! owner of a slot. Every request names its tenant; a room is named by its key
//! ([`crate::RoomKeyer::key_in`] of the tenant and the room's name), never by its name, so that no
//! name travels towards a router. Names come back only in answers to their tenant.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ConnId, EdgeId, RoomKey, StoredStatus, TenantId};

/// A request of the control API about rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RoomRequest {
    /// The tenant's open rooms (in a slot, in a cluster).
    Rooms {
        /// The tenant.
        tenant: TenantId,
    },
    /// The members of one room of the tenant, in join order.
    Members {
        /// The tenant.
        tenant: TenantId,
        /// The room.
        room: RoomKey,
    },
    /// Remove one member: it is told `removed by the service` and closed, the others get
    /// `peer_left`.
    Remove {
        /// The tenant.
        tenant: TenantId,
        /// The room.
        room: RoomKey,
        /// The member.
        peer: ConnId,
    },
    /// Remove every member of the room, as [`RoomRequest::Remove`] does.
    Close {
        /// The tenant.
        tenant: TenantId,
        /// The room.
        room: RoomKey,
    },
    /// Send a `server_message` with `data` to one member (`to`) or every member of the room.
    Send {
        /// The tenant.
        tenant: TenantId,
        /// The room.
        room: RoomKey,
        /// One member, or `None` for every member.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<ConnId>,
        /// The message's `data`.
        data: Map<String, Value>,
    },
}

impl RoomRequest {
    /// The room the request is about; `None` for a listing (which every slot answers).
    pub fn room(&self) -> Option<RoomKey> {
        match self {
            RoomRequest::Rooms { .. } => None,
            RoomRequest::Members { room, .. }
            | RoomRequest::Remove { room, .. }
            | RoomRequest::Close { room, .. }
            | RoomRequest::Send { room, .. } => Some(*room),
        }
    }
}

/// The answer to a [`RoomRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomReply {
    /// The tenant's open rooms that have a name (rooms opened by edges of older versions have
    /// none and are not listed).
    Rooms(Vec<RoomEntry>),
    /// The room's members, in join order.
    Members(Vec<MemberEntry>),
    /// Done (its effects are on their way to the edges).
    Done,
    /// The tenant has no such room, or the room no such member.
    NotFound,
    /// This router does not serve the slot (any more): ask again, its owner may be changing.
    NotServing,
}

/// One open room, as [`RoomReply::Rooms`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// Its name, as its clients sent it.
    pub name: String,
    /// Members now.
    pub members: u64,
    /// Most members at once since it opened.
    pub peak: u64,
    /// When it opened, in milliseconds since the Unix epoch (after a router failover: when the
    /// earliest present member joined).
    pub opened_at_ms: u64,
}

/// One member, as [`RoomReply::Members`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// Its peer id.
    pub peer_id: ConnId,
    /// Its stored status.
    pub status: StoredStatus,
    /// The edge holding it.
    pub edge: EdgeId,
    /// When it joined, in milliseconds since the Unix epoch.
    pub joined_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_and_replies_round_trip_as_json() {
        let tenant = TenantId::parse("acme").unwrap();
        let room = RoomKey::from_bytes([4; 16]);
        let peer = ConnId::for_edge(EdgeId(3), [1; 16]);
        let data = json!({"a": 1}).as_object().cloned().unwrap();
        for request in [
            RoomRequest::Rooms {
                tenant: tenant.clone(),
            },
            RoomRequest::Members {
                tenant: tenant.clone(),
                room,
            },
            RoomRequest::Remove {
                tenant: tenant.clone(),
                room,
                peer,
            },
            RoomRequest::Close {
                tenant: tenant.clone(),
                room,
            },
            RoomRequest::Send {
                tenant,
                room,
                to: Some(peer),
                data,
            },
        ] {
            let text = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<RoomRequest>(&text).unwrap(), request);
        }
        let reply = RoomReply::Members(vec![MemberEntry {
            peer_id: peer,
            status: StoredStatus::default(),
            edge: EdgeId(3),
            joined_at_ms: 9,
        }]);
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<RoomReply>(&text).unwrap(), reply);
    }
}
