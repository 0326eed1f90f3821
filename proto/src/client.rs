//! Messages from clients, and [`decode`].
//!
//! Decoding performs every check that needs no state, in palava's order. Checks that depend on the
//! connection's state (already in a room, not in a room, unknown peer, room full) come between them in
//! the protocol's order, so decoding stops where state is needed and leaves the rest to helpers the
//! edge calls in sequence: `join_room` keeps its status unvalidated ([`Status::validate`] runs after
//! the "already joined" check), and `send_to_peer` keeps its payload event unchecked
//! ([`ForwardEvent::of`] runs after the membership checks).
//!
//! [`Status::validate`]: crate::Status::validate

use serde_json::{Map, Value};

use crate::depth::{self, ParseError};
use crate::limits::{DEFAULT_MAX_JSON_DEPTH, FORWARD_EVENTS};
use crate::{ConnId, ProtocolError, RoomId};

/// Every event a client may send.
pub const EVENTS: &[&str] = &[
    "info",
    "ping",
    "join_room",
    "leave_room",
    "update_status",
    "send_to_peer",
];

/// One decoded client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// `info`: asks for the protocol version.
    Info,
    /// `ping`: application keepalive, answered with `pong`.
    Ping,
    /// `join_room`.
    JoinRoom {
        /// The validated room id.
        room_id: RoomId,
        /// The status as sent, validated later (after the "already joined" check).
        status: Option<Value>,
    },
    /// `leave_room`.
    LeaveRoom,
    /// `update_status`, with the status as sent (validated after the "not in a room" check).
    UpdateStatus {
        /// The status as sent.
        status: Option<Value>,
    },
    /// `send_to_peer`.
    SendToPeer {
        /// The target, if `peer_id` is a connection id at all; `None` can only be an unknown peer.
        peer_id: Option<ConnId>,
        /// The payload to forward; the server sets its `sender_id`.
        data: Map<String, Value>,
    },
}

impl ClientMessage {
    /// The event name, for metric labels.
    pub fn event(&self) -> &'static str {
        match self {
            ClientMessage::Info => "info",
            ClientMessage::Ping => "ping",
            ClientMessage::JoinRoom { .. } => "join_room",
            ClientMessage::LeaveRoom => "leave_room",
            ClientMessage::UpdateStatus { .. } => "update_status",
            ClientMessage::SendToPeer { .. } => "send_to_peer",
        }
    }
}

/// Decodes one text frame, nested at most [`DEFAULT_MAX_JSON_DEPTH`] deep (see [`decode_with_depth`]).
pub fn decode(text: &str) -> Result<ClientMessage, ProtocolError> {
    decode_with_depth(text, DEFAULT_MAX_JSON_DEPTH)
}

/// Decodes one text frame whose objects and arrays nest at most `max_depth` deep, the message
/// itself counting as one (`{"event":"join_room","status":{}}` is 2 deep).
///
/// Errors, in order: not JSON -> `invalid message`, or, if the nesting passes `max_depth` before
/// the text stops being JSON (it is read left to right), `invalid message: nested too deeply`; not
/// an object -> `invalid message: not a hash`; `event` missing, `null` or `false` -> `no event
/// given`; any other unknown or non-string event -> `unknown event`; then per event: `join_room`
/// room id rules (`no room id given`, `room id too long`); `send_to_peer` with non-object `data` ->
/// `cannot send raw data`.
pub fn decode_with_depth(text: &str, max_depth: usize) -> Result<ClientMessage, ProtocolError> {
    let value = depth::parse(text, max_depth).map_err(|e| match e {
        ParseError::Syntax => ProtocolError::InvalidMessage,
        ParseError::TooDeep => ProtocolError::NestedTooDeeply,
    })?;
    let Value::Object(mut map) = value else {
        return Err(ProtocolError::NotAHash);
    };
    let event = match map.get("event") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            return Err(ProtocolError::NoEvent);
        }
        Some(Value::String(event)) => event.as_str(),
        Some(_) => return Err(ProtocolError::UnknownEvent),
    };
    match event {
        "info" => Ok(ClientMessage::Info),
        "ping" => Ok(ClientMessage::Ping),
        "join_room" => {
            let room_id = RoomId::parse(map.get("room_id"))?;
            Ok(ClientMessage::JoinRoom {
                room_id,
                status: map.remove("status"),
            })
        }
        "leave_room" => Ok(ClientMessage::LeaveRoom),
        "update_status" => Ok(ClientMessage::UpdateStatus {
            status: map.remove("status"),
        }),
        "send_to_peer" => {
            let Some(Value::Object(data)) = map.remove("data") else {
                return Err(ProtocolError::CannotSendRawData);
            };
            let peer_id = match map.get("peer_id") {
                Some(Value::String(id)) => id.parse().ok(),
                _ => None,
            };
            Ok(ClientMessage::SendToPeer { peer_id, data })
        }
        _ => Err(ProtocolError::UnknownEvent),
    }
}

/// The event of a `send_to_peer` payload, one of [`FORWARD_EVENTS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardEvent {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// An ICE candidate.
    IceCandidate,
    /// An application message (chat and the like).
    Message,
}

impl ForwardEvent {
    /// Checks `data.event`: anything but the four allowed events is `event not allowed`.
    pub fn of(data: &Map<String, Value>) -> Result<ForwardEvent, ProtocolError> {
        match data.get("event").and_then(Value::as_str) {
            Some("offer") => Ok(ForwardEvent::Offer),
            Some("answer") => Ok(ForwardEvent::Answer),
            Some("ice_candidate") => Ok(ForwardEvent::IceCandidate),
            Some("message") => Ok(ForwardEvent::Message),
            _ => Err(ProtocolError::EventNotAllowed),
        }
    }

    /// The event name, for metric labels.
    pub fn name(&self) -> &'static str {
        match self {
            ForwardEvent::Offer => FORWARD_EVENTS[0],
            ForwardEvent::Answer => FORWARD_EVENTS[1],
            ForwardEvent::IceCandidate => FORWARD_EVENTS[2],
            ForwardEvent::Message => FORWARD_EVENTS[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> ProtocolError {
        decode(text).expect_err(text)
    }

    #[test]
    fn parse_errors_in_order() {
        assert_eq!(err(""), ProtocolError::InvalidMessage);
        assert_eq!(err("{"), ProtocolError::InvalidMessage);
        assert_eq!(err("hello"), ProtocolError::InvalidMessage);
        assert_eq!(
            err(r#"{"event":"ping"} trailing"#),
            ProtocolError::InvalidMessage
        );
        for not_a_hash in ["[]", "[1,2]", "\"ping\"", "42", "null", "true"] {
            assert_eq!(err(not_a_hash), ProtocolError::NotAHash, "{not_a_hash}");
        }
        for no_event in [
            "{}",
            r#"{"event":null}"#,
            r#"{"event":false}"#,
            r#"{"room_id":"x"}"#,
        ] {
            assert_eq!(err(no_event), ProtocolError::NoEvent, "{no_event}");
        }
        for unknown in [
            r#"{"event":"dance"}"#,
            r#"{"event":""}"#,
            r#"{"event":true}"#,
            r#"{"event":1}"#,
            r#"{"event":["ping"]}"#,
            r#"{"event":{"a":1}}"#,
            r#"{"event":"PING"}"#,
            r#"{"event":"joined_room"}"#,
        ] {
            assert_eq!(err(unknown), ProtocolError::UnknownEvent, "{unknown}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(err(&deep), ProtocolError::NestedTooDeeply);
        let deep_obj = format!(
            r#"{{"event":"ping","x":{}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(err(&deep_obj), ProtocolError::NestedTooDeeply);
    }

    #[test]
    fn the_depth_limit_counts_the_message_itself() {
        // A join whose status nests `levels` deep below the status object.
        let join = |levels: usize| {
            format!(
                r#"{{"event":"join_room","room_id":"r","status":{{"x":{}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // message (1) + status (1) + 30 arrays = 32: the default limit, accepted.
        assert!(decode(&join(30)).is_ok());
        assert_eq!(err(&join(31)), ProtocolError::NestedTooDeeply);
        assert!(decode_with_depth(&join(31), 33).is_ok());
        assert_eq!(
            decode_with_depth(r#"{"event":"ping"}"#, 1),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            decode_with_depth(r#"{"event":"update_status","status":{}}"#, 1),
            Err(ProtocolError::NestedTooDeeply)
        );
        // Not JSON before the limit is reached: the plain parse error, as before.
        assert_eq!(
            err(r#"{"event":"ping","x":[}"#),
            ProtocolError::InvalidMessage
        );
    }

    #[test]
    fn simple_events() {
        assert_eq!(decode(r#"{"event":"info"}"#), Ok(ClientMessage::Info));
        assert_eq!(
            decode(r#"{"event":"ping","extra":1}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            decode(r#"{"event":"leave_room"}"#),
            Ok(ClientMessage::LeaveRoom)
        );
    }

    #[test]
    fn join_room() {
        assert_eq!(err(r#"{"event":"join_room"}"#), ProtocolError::NoRoomId);
        assert_eq!(
            err(r#"{"event":"join_room","room_id":""}"#),
            ProtocolError::NoRoomId
        );
        assert_eq!(
            err(r#"{"event":"join_room","room_id":3}"#),
            ProtocolError::NoRoomId
        );
        let long = json!({"event": "join_room", "room_id": "r".repeat(51)}).to_string();
        assert_eq!(err(&long), ProtocolError::RoomIdTooLong);
        // The room id is judged before the status, whatever the status holds.
        let both = json!({"event": "join_room", "room_id": "", "status": {"name": " "}});
        assert_eq!(err(&both.to_string()), ProtocolError::NoRoomId);
        let ok = decode(r#"{"event":"join_room","room_id":"abc","status":{"name":"x"}}"#).unwrap();
        let ClientMessage::JoinRoom { room_id, status } = ok else {
            panic!("not a join: {ok:?}");
        };
        assert_eq!(room_id.as_str(), "abc");
        assert_eq!(status, Some(json!({"name": "x"})));
    }

    #[test]
    fn update_status_keeps_status_for_later_validation() {
        assert_eq!(
            decode(r#"{"event":"update_status","status":"odd"}"#),
            Ok(ClientMessage::UpdateStatus {
                status: Some(json!("odd"))
            })
        );
        assert_eq!(
            decode(r#"{"event":"update_status"}"#),
            Ok(ClientMessage::UpdateStatus { status: None })
        );
    }

    #[test]
    fn send_to_peer() {
        for raw in [
            r#"{"event":"send_to_peer","peer_id":"x"}"#,
            r#"{"event":"send_to_peer","peer_id":"x","data":"sdp"}"#,
            r#"{"event":"send_to_peer","peer_id":"x","data":[1]}"#,
            r#"{"event":"send_to_peer","peer_id":"x","data":null}"#,
        ] {
            assert_eq!(err(raw), ProtocolError::CannotSendRawData, "{raw}");
        }
        let id = ConnId::from_random_bytes([9; 16]);
        let msg = json!({"event": "send_to_peer", "peer_id": id.to_string(),
                         "data": {"event": "offer", "sdp": "v=0"}});
        assert_eq!(
            decode(&msg.to_string()),
            Ok(ClientMessage::SendToPeer {
                peer_id: Some(id),
                data: json!({"event": "offer", "sdp": "v=0"})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
        );
        let bad_peer = r#"{"event":"send_to_peer","peer_id":5,"data":{}}"#;
        assert!(matches!(
            decode(bad_peer),
            Ok(ClientMessage::SendToPeer { peer_id: None, .. })
        ));
    }

    #[test]
    fn forward_events() {
        for (name, event) in [
            ("offer", ForwardEvent::Offer),
            ("answer", ForwardEvent::Answer),
            ("ice_candidate", ForwardEvent::IceCandidate),
            ("message", ForwardEvent::Message),
        ] {
            let data = json!({"event": name}).as_object().cloned().unwrap();
            assert_eq!(ForwardEvent::of(&data), Ok(event));
            assert_eq!(event.name(), name);
        }
        for bad in [
            json!({}),
            json!({"event": "join_room"}),
            json!({"event": 1}),
        ] {
            let data = bad.as_object().cloned().unwrap();
            assert_eq!(ForwardEvent::of(&data), Err(ProtocolError::EventNotAllowed));
        }
    }
}
