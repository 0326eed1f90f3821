//! Feeds arbitrary frames to `decode`, then runs what the edge runs next on whatever it accepts:
//! status validation, the forward-event check, and the encoding of the messages the server would
//! send in reply. Any panic, or any broken invariant asserted below, is a finding.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use switchboard_proto::limits::MAX_ROOM_ID_CHARS;
use switchboard_proto::{
    ClientMessage, ConnId, ForwardEvent, ServerMessage, Status, StatusRules, decode,
};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time the edge sees them.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match decode(text) {
        Err(error) => {
            let reply = parse(ServerMessage::Error(error).encode());
            assert_eq!(reply["message"], Value::String(error.to_string()));
        }
        Ok(message) => follow_on(message),
    }
});

fn follow_on(message: ClientMessage) {
    let me = ConnId::from_random_bytes([0x5a; 16]);
    match message {
        ClientMessage::JoinRoom { room_id, status } => {
            let chars = room_id.as_str().chars().count();
            assert!((1..=MAX_ROOM_ID_CHARS).contains(&chars));
            relay_status(me, status);
        }
        ClientMessage::UpdateStatus { status } => relay_status(me, status),
        ClientMessage::SendToPeer { peer_id, data } => {
            if let Some(peer) = peer_id {
                assert_eq!(peer.to_string().parse::<ConnId>(), Ok(peer));
            }
            if let Ok(event) = ForwardEvent::of(&data) {
                let out = parse(
                    ServerMessage::Forward {
                        sender_id: me,
                        data,
                    }
                    .encode(),
                );
                assert_eq!(out["event"], Value::String(event.name().to_owned()));
                assert_eq!(out["sender_id"], Value::String(me.to_string()));
            }
        }
        ClientMessage::Info | ClientMessage::Ping | ClientMessage::LeaveRoom => {}
    }
}

/// Validates a status under the default rules and a tight size limit, and encodes what would be
/// relayed if it were accepted.
fn relay_status(me: ConnId, status: Option<Value>) {
    let tight = StatusRules {
        max_bytes: 64,
        ..StatusRules::default()
    };
    for rules in [StatusRules::default(), tight] {
        let Ok(status) = Status::validate(status.clone(), &rules) else {
            continue;
        };
        let stored = status.stored();
        let _ = stored.to_json();
        let relayed: Map<String, Value> = status.into_map();
        let out = parse(
            ServerMessage::PeerUpdatedStatus {
                sender_id: me,
                status: relayed.clone(),
            }
            .encode(),
        );
        // Keys, not values: serde_json's default float parsing may move a float by one unit in the
        // last place on a second trip through text.
        let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        let sent = out["status"].as_object().map(keys);
        assert_eq!(sent, Some(keys(&relayed)));
    }
}

/// Every server message is one JSON object with a string `event`.
fn parse(text: String) -> Value {
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(value.get("event").is_some_and(Value::is_string), "{text}");
    value
}
