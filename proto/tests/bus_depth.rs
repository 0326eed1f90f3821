//! Whatever status or peer message the edge accepts, at any nesting limit it may be configured with,
//! travels through every bus message that carries it and decodes on the other side. Were it not so,
//! a router or a receiving edge would drop the event ("recursion limit exceeded") and the sender
//! would hide in its room.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use switchboard_proto::bus::{Command, EdgeEvent, MemberRecord, ResyncReply, RoomView};
use switchboard_proto::depth::depth;
use switchboard_proto::limits::{DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH, MIN_JSON_DEPTH};
use switchboard_proto::{
    ClientMessage, ConnId, EdgeId, PeerEntry, RoomKey, ServerMessage, Status, StatusRules,
    decode_with_depth,
};

/// A status object nested `shape.len() + 1` deep: one level per entry (`true` an array, `false` an
/// object) inside the status object itself.
fn status_shaped(shape: &[bool]) -> Value {
    let mut value = json!("leaf");
    for &array in shape.iter().rev() {
        value = if array {
            json!([value, 1])
        } else {
            json!({"k": value, "n": null})
        };
    }
    json!({"name": "deep", "x": value})
}

fn status_of_depth(levels: usize) -> Value {
    let shape: Vec<bool> = (0..levels - 1).map(|i| i % 2 == 0).collect();
    status_shaped(&shape)
}

/// The status as the edge takes it from a join at nesting limit `limit`; `None` if refused.
fn accepted(status: &Value, limit: usize) -> Option<Status> {
    let text = json!({"event": "join_room", "room_id": "r", "status": status}).to_string();
    let Ok(ClientMessage::JoinRoom { status, .. }) = decode_with_depth(&text, limit) else {
        return None;
    };
    let rules = StatusRules {
        max_bytes: usize::MAX,
        ..StatusRules::default()
    };
    Status::validate(status, &rules).ok()
}

fn round_trip<T>(message: &T) -> Result<(), String>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    let back: T = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if &back != message {
        return Err("changed on the way".into());
    }
    Ok(())
}

/// Every bus message that carries a status (or a peer message's data, which nests like one), each
/// through serde_json and back.
fn through_every_envelope(status: &Status) -> Result<(), String> {
    let edge = EdgeId(7);
    let conn = ConnId::for_edge(edge, [3; 16]);
    let room = RoomKey::from_bytes([4; 16]);
    let member = MemberRecord {
        conn,
        edge,
        room,
        status: status.stored(),
        joined_at_ms: 1,
        tenant: None,
        room_name: None,
    };
    let map: Map<String, Value> = status.as_map().clone();
    let commands = [
        Command::Join {
            conn,
            edge,
            room,
            status: status.clone(),
            tenant: None,
        },
        Command::UpdateStatus {
            conn,
            edge,
            room,
            status: status.clone(),
        },
        Command::Rejoin {
            member: member.clone(),
        },
    ];
    for command in &commands {
        round_trip(command).map_err(|e| format!("{command:?}: {e}"))?;
    }
    let messages = [
        ServerMessage::NewPeer {
            peer_id: conn,
            status: map.clone(),
        },
        ServerMessage::PeerUpdatedStatus {
            sender_id: conn,
            status: map.clone(),
        },
        ServerMessage::JoinedRoom {
            own_id: conn,
            peers: vec![PeerEntry {
                peer_id: conn,
                status: status.stored(),
            }],
        },
        ServerMessage::Forward {
            sender_id: conn,
            data: map,
        },
    ];
    for message in messages {
        let event = EdgeEvent::Deliver {
            epoch: 1,
            room,
            to: vec![conn],
            message,
        };
        round_trip(&event).map_err(|e| format!("{event:?}: {e}"))?;
    }
    round_trip(&ResyncReply {
        edge,
        members: vec![member],
        views: vec![RoomView {
            room,
            members: vec![conn],
        }],
        joining: vec![conn],
    })
}

#[test]
fn a_status_at_the_deepest_accepted_nesting_survives_every_envelope() {
    for limit in [MIN_JSON_DEPTH, DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH] {
        // The status object sits one level below the message: it may be `limit - 1` deep.
        let deepest = status_of_depth(limit - 1);
        assert_eq!(depth(&deepest), limit - 1);
        let status = accepted(&deepest, limit).expect("the edge accepts it");
        through_every_envelope(&status).unwrap_or_else(|e| panic!("limit {limit}: {e}"));
        assert!(
            accepted(&status_of_depth(limit), limit).is_none(),
            "one level more is refused at limit {limit}"
        );
    }
}

/// The configurable maximum is exact: one level more would not decode on the bus. So
/// `bus::ENVELOPE_DEPTH` is not larger than it must be, and the test above proves it is not smaller.
#[test]
fn one_level_beyond_the_maximum_would_be_lost_on_the_bus() {
    let status = accepted(&status_of_depth(MAX_JSON_DEPTH), MAX_JSON_DEPTH + 1)
        .expect("accepted with a limit one higher than allowed");
    let error = through_every_envelope(&status).expect_err("too deep for serde_json");
    assert!(error.contains("recursion limit exceeded"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Statuses of any shape the edge accepts at the largest limit it may be configured with.
    #[test]
    fn any_accepted_status_survives_every_envelope(
        shape in prop::collection::vec(any::<bool>(), 0..MAX_JSON_DEPTH + 4),
    ) {
        let status = status_shaped(&shape);
        match accepted(&status, MAX_JSON_DEPTH) {
            Some(status) => prop_assert_eq!(through_every_envelope(&status), Ok(())),
            None => prop_assert!(depth(&status) >= MAX_JSON_DEPTH),
        }
    }
}
