//! Messages the server sends, and their JSON encoding.
//!
//! Global events (`joined_room`, `new_peer`, `error`, `shutdown`, `pong`, `info`) never carry a
//! `sender_id`; per-peer events (`peer_left`, `peer_updated_status`, forwarded payloads) always do.
//! Each message is encoded once, then shared by every recipient.

use serde_json::{Map, Value, json};

use crate::limits::PROTOCOL_VERSION;
use crate::{ConnId, ProtocolError, StoredStatus};

/// One entry of `joined_room.peers`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerEntry {
    /// The member's connection id.
    pub peer_id: ConnId,
    /// Its stored status.
    pub status: StoredStatus,
}

/// A message to a client. Its serde form is the internal one used on the bus between routers and
/// edges; clients only ever see [`ServerMessage::encode`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ServerMessage {
    /// To a joiner, always its first room message: its own id and the other members.
    JoinedRoom {
        /// The joiner's connection id.
        own_id: ConnId,
        /// The other members, with their stored statuses.
        peers: Vec<PeerEntry>,
    },
    /// To every other member when someone joins; `status` as the joiner sent it.
    NewPeer {
        /// The joiner.
        peer_id: ConnId,
        /// The joiner's status as sent (`{}` if none).
        status: Map<String, Value>,
    },
    /// To the remaining members when someone leaves, closes its socket or is lost with its edge.
    PeerLeft {
        /// The member that left.
        sender_id: ConnId,
    },
    /// To every member, the sender included, when someone updates its status.
    PeerUpdatedStatus {
        /// The member whose status changed.
        sender_id: ConnId,
        /// The new status as sent.
        status: Map<String, Value>,
    },
    /// A `send_to_peer` payload, delivered to its target.
    Forward {
        /// The sender; overwrites any `sender_id` the sender put in `data`.
        sender_id: ConnId,
        /// The payload (its `event` is one of the forwardable events).
        data: Map<String, Value>,
    },
    /// An error caused by the client's last message.
    Error(ProtocolError),
    /// The server is stopping; it will close the socket after `seconds`.
    Shutdown {
        /// Seconds of grace before the socket is closed with code 4200.
        seconds: u64,
    },
    /// Extension (hosted mode): a message from the tenant's backend through the control API, to
    /// one member or every member of a room: `{"event":"server_message","data":{…}}`.
    ServerMessage {
        /// What the backend sent, as it sent it.
        data: Map<String, Value>,
    },
    /// The reply to `ping`.
    Pong,
    /// The reply to `info`.
    Info,
}

impl ServerMessage {
    /// The event name, for metric labels (forwarded payloads are labelled `forward`).
    pub fn event(&self) -> &'static str {
        match self {
            ServerMessage::JoinedRoom { .. } => "joined_room",
            ServerMessage::NewPeer { .. } => "new_peer",
            ServerMessage::PeerLeft { .. } => "peer_left",
            ServerMessage::PeerUpdatedStatus { .. } => "peer_updated_status",
            ServerMessage::Forward { .. } => "forward",
            ServerMessage::Error(_) => "error",
            ServerMessage::Shutdown { .. } => "shutdown",
            ServerMessage::ServerMessage { .. } => "server_message",
            ServerMessage::Pong => "pong",
            ServerMessage::Info => "info",
        }
    }

    /// The JSON text of the message.
    pub fn encode(self) -> String {
        // `Value`'s Display is infallible JSON serialization.
        self.into_value().to_string()
    }

    /// The JSON text of the message with the fields of `extension` added to it: how the edge adds
    /// what only it knows to a message the router made (the `ice_servers`, `turn_user` and
    /// `turn_password` of a `joined_room`, minted per connection; docs/protocol.md). A field the
    /// protocol defines is never replaced. With an empty `extension` the text is [`Self::encode`]'s.
    pub fn encode_extended(self, extension: Map<String, Value>) -> String {
        let mut value = self.into_value();
        if let Value::Object(fields) = &mut value {
            for (name, field) in extension {
                fields.entry(name).or_insert(field);
            }
        }
        value.to_string()
    }

    fn into_value(self) -> Value {
        match self {
            ServerMessage::JoinedRoom { own_id, peers } => {
                let peers: Vec<Value> = peers
                    .into_iter()
                    .map(
                        |p| json!({"peer_id": p.peer_id.to_string(), "status": p.status.to_json()}),
                    )
                    .collect();
                json!({"event": "joined_room", "own_id": own_id.to_string(), "peers": peers})
            }
            ServerMessage::NewPeer { peer_id, status } => {
                json!({"event": "new_peer", "peer_id": peer_id.to_string(), "status": status})
            }
            ServerMessage::PeerLeft { sender_id } => {
                json!({"event": "peer_left", "sender_id": sender_id.to_string()})
            }
            ServerMessage::PeerUpdatedStatus { sender_id, status } => json!({
                "event": "peer_updated_status",
                "status": status,
                "sender_id": sender_id.to_string(),
            }),
            ServerMessage::Forward {
                sender_id,
                mut data,
            } => {
                data.insert("sender_id".into(), Value::String(sender_id.to_string()));
                Value::Object(data)
            }
            ServerMessage::Error(error) => {
                let text = error.to_string();
                json!({"event": "error", "message": text, "description": text})
            }
            ServerMessage::Shutdown { seconds } => json!({"event": "shutdown", "seconds": seconds}),
            ServerMessage::ServerMessage { data } => {
                json!({"event": "server_message", "data": data})
            }
            ServerMessage::Pong => json!({"event": "pong"}),
            ServerMessage::Info => json!({"event": "info", "protocol_version": PROTOCOL_VERSION}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(msg: ServerMessage) -> Value {
        serde_json::from_str(&msg.encode()).unwrap()
    }

    #[test]
    fn shapes_match_the_protocol() {
        let a = ConnId::from_random_bytes([1; 16]);
        let b = ConnId::from_random_bytes([2; 16]);
        let joined = encoded(ServerMessage::JoinedRoom {
            own_id: a,
            peers: vec![PeerEntry {
                peer_id: b,
                status: StoredStatus {
                    name: Some("Bo".into()),
                    user_agent: None,
                },
            }],
        });
        assert_eq!(
            joined,
            json!({"event": "joined_room", "own_id": a.to_string(),
                   "peers": [{"peer_id": b.to_string(), "status": {"name": "Bo"}}]})
        );
        assert_eq!(
            encoded(ServerMessage::NewPeer {
                peer_id: b,
                status: Map::new()
            }),
            json!({"event": "new_peer", "peer_id": b.to_string(), "status": {}})
        );
        assert_eq!(
            encoded(ServerMessage::PeerLeft { sender_id: b }),
            json!({"event": "peer_left", "sender_id": b.to_string()})
        );
        let status = json!({"name": "x", "extra": [1]})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            encoded(ServerMessage::PeerUpdatedStatus {
                sender_id: b,
                status: status.clone()
            }),
            json!({"event": "peer_updated_status", "sender_id": b.to_string(), "status": status})
        );
        assert_eq!(
            encoded(ServerMessage::Error(ProtocolError::UnknownPeer)),
            json!({"event": "error", "message": "unknown peer", "description": "unknown peer"})
        );
        assert_eq!(
            encoded(ServerMessage::Shutdown { seconds: 5 }),
            json!({"event": "shutdown", "seconds": 5})
        );
        assert_eq!(encoded(ServerMessage::Pong), json!({"event": "pong"}));
        assert_eq!(
            encoded(ServerMessage::ServerMessage {
                data: json!({"sender_id": "x", "n": 1})
                    .as_object()
                    .cloned()
                    .unwrap()
            }),
            json!({"event": "server_message", "data": {"sender_id": "x", "n": 1}})
        );
        assert_eq!(
            encoded(ServerMessage::Info),
            json!({"event": "info", "protocol_version": "1.0.0"})
        );
    }

    #[test]
    fn extensions_add_fields_and_never_replace_the_protocols() {
        let a = ConnId::from_random_bytes([1; 16]);
        let joined = || ServerMessage::JoinedRoom {
            own_id: a,
            peers: Vec::new(),
        };
        assert_eq!(joined().encode_extended(Map::new()), joined().encode());
        let extension =
            json!({"turn_user": "u", "ice_servers": [{"urls": ["turn:t"]}], "own_id": "forged"})
                .as_object()
                .cloned()
                .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&joined().encode_extended(extension)).unwrap(),
            json!({"event": "joined_room", "own_id": a.to_string(), "peers": [],
                   "turn_user": "u", "ice_servers": [{"urls": ["turn:t"]}]})
        );
    }

    #[test]
    fn forward_overwrites_a_forged_sender() {
        let real = ConnId::from_random_bytes([3; 16]);
        let data = json!({"event": "offer", "sdp": "v=0", "sender_id": "forged"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            encoded(ServerMessage::Forward {
                sender_id: real,
                data
            }),
            json!({"event": "offer", "sdp": "v=0", "sender_id": real.to_string()})
        );
    }
}
