//! Property tests of the protocol crate: the decoder against a reference written from the contract,
//! round trips of valid client messages, the shape of every server message, and status validation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use serde_json::{Map, Value, json};
use switchboard_proto::depth::depth;
use switchboard_proto::limits::{
    DEFAULT_MAX_JSON_DEPTH, FORWARD_EVENTS, MAX_NAME_CHARS, MAX_ROOM_ID_CHARS,
};
use switchboard_proto::{
    ClientMessage, ConnId, ForwardEvent, PeerEntry, ProtocolError, RoomId, ServerMessage, Status,
    StatusRules, StoredStatus, decode,
};

const CLIENT_EVENTS: &[&str] = switchboard_proto::client::EVENTS;

/// Keys the decoder looks at, plus a few it must ignore.
const KEYS: &[&str] = &[
    "event",
    "room_id",
    "status",
    "data",
    "peer_id",
    "name",
    "user_agent",
    "sender_id",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        prop::collection::vec(any::<char>(), 0..12).prop_map(String::from_iter),
        prop::sample::select(vec![
            "", " ", "\t\n", "\u{a0}", "null", "{}", "\\u0000", "é"
        ])
        .prop_map(str::to_owned),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// Any JSON value, with any float. serde_json's default parser may read a float back one unit in
/// the last place off, so tests that compare values after a trip through text use [`exact_json`].
fn json_value() -> impl Strategy<Value = Value> {
    json_tree(any::<f64>().boxed())
}

/// JSON whose floats are short decimals, which survive printing and parsing unchanged.
fn exact_json() -> impl Strategy<Value = Value> {
    json_tree(
        (any::<i32>(), 0..4i32)
            .prop_map(|(m, k)| f64::from(m) / 10f64.powi(k))
            .boxed(),
    )
}

fn json_tree(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Non-finite floats have no JSON form; serde_json turns them into null.
        floats.prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values for `event`: real names (client and server side), near misses, and non-strings.
fn event_value() -> impl Strategy<Value = Value> {
    let names: Vec<&str> = CLIENT_EVENTS
        .iter()
        .copied()
        .chain([
            "",
            "PING",
            "Ping",
            " ping",
            "joined_room",
            "offer",
            "pong",
            "error",
            "dance",
        ])
        .collect();
    prop_oneof![
        4 => prop::sample::select(names).prop_map(|s| Value::String(s.to_owned())),
        1 => text().prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => json_value(),
    ]
}

/// Objects that look like client messages: an optional `event` and fields the decoder reads.
fn message_like() -> impl Strategy<Value = Value> {
    (
        prop::option::of(event_value()),
        prop::collection::btree_map(key(), json_value(), 0..5),
        prop::option::of(room_id_value()),
    )
        .prop_map(|(event, fields, room_id)| {
            let mut map: Map<String, Value> = fields.into_iter().collect();
            if let Some(room_id) = room_id {
                map.insert("room_id".into(), room_id);
            }
            match event {
                Some(event) => {
                    map.insert("event".into(), event);
                }
                None => {
                    map.remove("event");
                }
            }
            Value::Object(map)
        })
}

/// Room ids around the limits: valid, empty, too long (by characters, not bytes), not strings.
fn room_id_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        chars(1, MAX_ROOM_ID_CHARS).prop_map(Value::String),
        chars(MAX_ROOM_ID_CHARS + 1, MAX_ROOM_ID_CHARS + 20).prop_map(Value::String),
        Just(json!("")),
        json_value(),
    ]
}

/// A string of `min..=max` characters, any Unicode scalar values.
fn chars(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), min..=max).prop_map(String::from_iter),
        prop::collection::vec(prop::char::range('a', 'z'), min..=max).prop_map(String::from_iter),
        prop::collection::vec(Just('\u{1F600}'), min..=max).prop_map(String::from_iter),
    ]
}

/// Text that is not JSON is `invalid message`, or `invalid message: nested too deeply` when it
/// nested too deeply before it broke.
fn not_json(got: &Result<ClientMessage, ProtocolError>) -> bool {
    matches!(
        got,
        Err(ProtocolError::InvalidMessage | ProtocolError::NestedTooDeeply)
    )
}

/// The decoder's contract, written out from docs: what `decode` must return for a JSON value.
fn check_decode(value: &Value, got: Result<ClientMessage, ProtocolError>) -> TestCaseResult {
    if depth(value) > DEFAULT_MAX_JSON_DEPTH {
        prop_assert_eq!(got, Err(ProtocolError::NestedTooDeeply));
        return Ok(());
    }
    let Value::Object(map) = value else {
        prop_assert_eq!(got, Err(ProtocolError::NotAHash));
        return Ok(());
    };
    let event = match map.get("event") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {
            prop_assert_eq!(got, Err(ProtocolError::NoEvent));
            return Ok(());
        }
        Some(Value::String(event)) if CLIENT_EVENTS.contains(&event.as_str()) => event.as_str(),
        Some(_) => {
            prop_assert_eq!(got, Err(ProtocolError::UnknownEvent));
            return Ok(());
        }
    };
    match event {
        "info" => prop_assert_eq!(got, Ok(ClientMessage::Info)),
        "ping" => prop_assert_eq!(got, Ok(ClientMessage::Ping)),
        "leave_room" => prop_assert_eq!(got, Ok(ClientMessage::LeaveRoom)),
        "update_status" => prop_assert_eq!(
            got,
            Ok(ClientMessage::UpdateStatus {
                status: map.get("status").cloned()
            })
        ),
        "join_room" => match map.get("room_id") {
            Some(Value::String(id)) if !id.is_empty() => {
                if id.chars().count() > MAX_ROOM_ID_CHARS {
                    prop_assert_eq!(got, Err(ProtocolError::RoomIdTooLong));
                } else {
                    let Ok(ClientMessage::JoinRoom { room_id, status }) = got else {
                        return Err(TestCaseError::fail(format!("not a join: {got:?}")));
                    };
                    prop_assert_eq!(room_id.as_str(), id.as_str());
                    prop_assert_eq!(status, map.get("status").cloned());
                }
            }
            _ => prop_assert_eq!(got, Err(ProtocolError::NoRoomId)),
        },
        "send_to_peer" => match map.get("data") {
            Some(Value::Object(data)) => {
                let Ok(ClientMessage::SendToPeer { peer_id, data: got }) = got else {
                    return Err(TestCaseError::fail(format!("not a send: {got:?}")));
                };
                prop_assert_eq!(&got, data);
                match map.get("peer_id") {
                    Some(Value::String(sent)) => {
                        prop_assert_eq!(peer_id, sent.parse::<ConnId>().ok());
                        // A recognised peer id is exactly the text the client sent.
                        if let Some(id) = peer_id {
                            prop_assert_eq!(&id.to_string(), sent);
                        }
                    }
                    _ => prop_assert_eq!(peer_id, None, "only a string can name a peer"),
                }
            }
            _ => prop_assert_eq!(got, Err(ProtocolError::CannotSendRawData)),
        },
        _ => unreachable!("filtered above"),
    }
    Ok(())
}

/// Inserts, deletes or replaces a few characters, to reach the decoder's paths near valid JSON.
fn mutated(text: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(at, kind, c) in edits {
        let at = if chars.is_empty() {
            0
        } else {
            at % chars.len()
        };
        match kind % 3 {
            0 => chars.insert(at, c),
            1 if !chars.is_empty() => {
                chars.remove(at);
            }
            _ if !chars.is_empty() => chars[at] = c,
            _ => chars.push(c),
        }
    }
    chars.into_iter().collect()
}

fn json_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '{', '}', '[', ']', '"', ':', ',', '\\', ' ', '0', 'e', '-'
        ]),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_arbitrary_bytes_follows_the_contract(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let got = decode(&text);
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => check_decode(&value, got)?,
            Err(_) => prop_assert!(not_json(&got), "{got:?}"),
        }
    }

    #[test]
    fn decode_of_arbitrary_json_follows_the_contract(
        value in prop_oneof![1 => json_value(), 4 => message_like()],
    ) {
        let text = value.to_string();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        check_decode(&parsed, decode(&text))?;
        // Pretty-printed text is the same message.
        check_decode(&parsed, decode(&serde_json::to_string_pretty(&value).unwrap()))?;
    }

    #[test]
    fn decode_of_damaged_messages_follows_the_contract(
        value in message_like(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), json_char()), 1..4),
    ) {
        let text = mutated(&value.to_string(), &edits);
        let got = decode(&text);
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => check_decode(&value, got)?,
            Err(_) => prop_assert!(not_json(&got), "{got:?}"),
        }
    }

    /// What the edge does next with a decoded message never panics either.
    #[test]
    fn follow_on_validators_accept_whatever_decode_returns(
        value in message_like(),
        max_bytes in 0usize..600,
    ) {
        let rules = StatusRules { max_bytes, ..StatusRules::default() };
        match decode(&value.to_string()) {
            Ok(ClientMessage::JoinRoom { status, .. } | ClientMessage::UpdateStatus { status }) => {
                if let Ok(status) = Status::validate(status, &rules) {
                    let _ = status.stored().to_json();
                }
            }
            Ok(ClientMessage::SendToPeer { data, .. }) => {
                let expected = data
                    .get("event")
                    .and_then(Value::as_str)
                    .filter(|e| FORWARD_EVENTS.contains(e));
                prop_assert_eq!(ForwardEvent::of(&data).ok().map(|e| e.name()), expected);
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone)]
enum Valid {
    Info,
    Ping,
    Leave,
    Join {
        room_id: String,
        status: Option<Value>,
    },
    Update {
        status: Option<Value>,
    },
    Send {
        peer_id: PeerIdField,
        data: Map<String, Value>,
    },
}

#[derive(Debug, Clone)]
enum PeerIdField {
    Missing,
    Id(ConnId),
    /// Text that names no connection (an uppercase id, a random string) or a non-string.
    Other(Value),
}

fn conn_id() -> impl Strategy<Value = ConnId> {
    any::<[u8; 16]>().prop_map(ConnId::from_random_bytes)
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(key(), exact_json(), 0..5).prop_map(|m| m.into_iter().collect())
}

fn valid() -> impl Strategy<Value = Valid> {
    let peer_id = prop_oneof![
        1 => Just(PeerIdField::Missing),
        3 => conn_id().prop_map(PeerIdField::Id),
        1 => conn_id().prop_map(|id| PeerIdField::Other(json!(id.to_string().to_uppercase()))),
        1 => exact_json().prop_filter_map("a string that parses as an id", |v| match &v {
            Value::String(s) if s.parse::<ConnId>().is_ok() => None,
            _ => Some(PeerIdField::Other(v)),
        }),
    ];
    prop_oneof![
        Just(Valid::Info),
        Just(Valid::Ping),
        Just(Valid::Leave),
        (chars(1, MAX_ROOM_ID_CHARS), prop::option::of(exact_json()))
            .prop_map(|(room_id, status)| Valid::Join { room_id, status }),
        prop::option::of(exact_json()).prop_map(|status| Valid::Update { status }),
        (peer_id, object()).prop_map(|(peer_id, data)| Valid::Send { peer_id, data }),
    ]
}

impl Valid {
    /// The JSON a client sends, with unrelated extra fields (palava ignores them).
    fn to_json(&self, extra: &Map<String, Value>) -> Value {
        let mut map = extra.clone();
        let mut set = |k: &str, v: Value| {
            map.insert(k.to_owned(), v);
        };
        match self {
            Valid::Info => set("event", json!("info")),
            Valid::Ping => set("event", json!("ping")),
            Valid::Leave => set("event", json!("leave_room")),
            Valid::Join { room_id, status } => {
                set("event", json!("join_room"));
                set("room_id", json!(room_id));
                if let Some(status) = status {
                    set("status", status.clone());
                }
            }
            Valid::Update { status } => {
                set("event", json!("update_status"));
                if let Some(status) = status {
                    set("status", status.clone());
                }
            }
            Valid::Send { peer_id, data } => {
                set("event", json!("send_to_peer"));
                set("data", Value::Object(data.clone()));
                match peer_id {
                    PeerIdField::Missing => {}
                    PeerIdField::Id(id) => set("peer_id", json!(id.to_string())),
                    PeerIdField::Other(v) => set("peer_id", v.clone()),
                }
            }
        }
        Value::Object(map)
    }

    fn expected(&self) -> ClientMessage {
        match self.clone() {
            Valid::Info => ClientMessage::Info,
            Valid::Ping => ClientMessage::Ping,
            Valid::Leave => ClientMessage::LeaveRoom,
            Valid::Join { room_id, status } => ClientMessage::JoinRoom {
                room_id: RoomId::parse(Some(&Value::String(room_id))).unwrap(),
                status,
            },
            Valid::Update { status } => ClientMessage::UpdateStatus { status },
            Valid::Send { peer_id, data } => ClientMessage::SendToPeer {
                peer_id: match peer_id {
                    PeerIdField::Id(id) => Some(id),
                    _ => None,
                },
                data,
            },
        }
    }
}

fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,6}", exact_json(), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn valid_client_messages_round_trip(message in valid(), extra in extra_fields()) {
        let text = message.to_json(&extra).to_string();
        let decoded = decode(&text);
        prop_assert_eq!(decoded.clone(), Ok(message.expected()), "{}", text);
        let bare = message.to_json(&Map::new());
        prop_assert_eq!(Some(decoded.unwrap().event()), bare["event"].as_str());
    }

    #[test]
    fn conn_ids_print_and_parse_in_one_canonical_form(
        id in conn_id(),
        (at, replacement) in (0..36usize, prop::sample::select(vec!['0', '4', '8', 'a', 'b', 'f', 'A', 'F', '-', 'g'])),
    ) {
        let text = id.to_string();
        prop_assert_eq!(text.parse::<ConnId>(), Ok(id));
        // One character of a real id changed: the result parses exactly when it is still the
        // canonical lowercase hyphenated v4 form, and then it prints back exactly as written.
        // (Mutating a real id, rather than drawing random strings, makes both outcomes common.)
        let mut chars: Vec<char> = text.chars().collect();
        chars[at] = replacement;
        let noise: String = chars.into_iter().collect();
        let canonical = noise.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            14 => c == '4',
            19 => matches!(c, '8' | '9' | 'a' | 'b'),
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        });
        match noise.parse::<ConnId>() {
            Ok(parsed) => {
                prop_assert!(canonical, "{} parsed but is not canonical", noise);
                prop_assert_eq!(parsed.to_string(), noise);
            }
            Err(_) => prop_assert!(!canonical, "{} is canonical but did not parse", noise),
        }
    }
}

fn stored_status() -> impl Strategy<Value = StoredStatus> {
    (prop::option::of(text()), prop::option::of(text()))
        .prop_map(|(name, user_agent)| StoredStatus { name, user_agent })
}

fn protocol_error() -> impl Strategy<Value = ProtocolError> {
    prop::sample::select(ProtocolError::ALL.to_vec())
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    let forward_data = (
        prop::sample::select(FORWARD_EVENTS),
        object(),
        prop::option::of(exact_json()),
    )
        .prop_map(|(event, mut data, forged_sender)| {
            data.insert("event".into(), json!(event));
            if let Some(forged) = forged_sender {
                data.insert("sender_id".into(), forged);
            }
            data
        });
    prop_oneof![
        (
            conn_id(),
            prop::collection::vec((conn_id(), stored_status()), 0..5)
        )
            .prop_map(|(own_id, peers)| ServerMessage::JoinedRoom {
                own_id,
                peers: peers
                    .into_iter()
                    .map(|(peer_id, status)| PeerEntry { peer_id, status })
                    .collect(),
            }),
        (conn_id(), object())
            .prop_map(|(peer_id, status)| ServerMessage::NewPeer { peer_id, status }),
        conn_id().prop_map(|sender_id| ServerMessage::PeerLeft { sender_id }),
        (conn_id(), object())
            .prop_map(|(sender_id, status)| ServerMessage::PeerUpdatedStatus { sender_id, status }),
        (conn_id(), forward_data)
            .prop_map(|(sender_id, data)| ServerMessage::Forward { sender_id, data }),
        protocol_error().prop_map(ServerMessage::Error),
        any::<u64>().prop_map(|seconds| ServerMessage::Shutdown { seconds }),
        object().prop_map(|data| ServerMessage::ServerMessage { data }),
        Just(ServerMessage::Pong),
        Just(ServerMessage::Info),
    ]
}

fn check_server_message(message: ServerMessage) -> TestCaseResult {
    let text = message.clone().encode();
    let value: Value = serde_json::from_str(&text).unwrap();
    let Value::Object(map) = value else {
        return Err(TestCaseError::fail(format!("not an object: {text}")));
    };
    let Some(Value::String(event)) = map.get("event") else {
        return Err(TestCaseError::fail(format!("no string event: {text}")));
    };
    let sender = map.get("sender_id");
    match message {
        ServerMessage::JoinedRoom { own_id, peers } => {
            prop_assert_eq!(event, "joined_room");
            prop_assert_eq!(&map["own_id"], &json!(own_id.to_string()));
            let listed: Vec<Value> = peers
                .iter()
                .map(|p| json!({"peer_id": p.peer_id.to_string(), "status": p.status.to_json()}))
                .collect();
            prop_assert_eq!(&map["peers"], &Value::Array(listed));
            prop_assert!(sender.is_none());
        }
        ServerMessage::NewPeer { peer_id, status } => {
            prop_assert_eq!(event, "new_peer");
            prop_assert_eq!(&map["peer_id"], &json!(peer_id.to_string()));
            prop_assert_eq!(&map["status"], &Value::Object(status));
            prop_assert!(sender.is_none());
        }
        ServerMessage::PeerLeft { sender_id } => {
            prop_assert_eq!(event, "peer_left");
            prop_assert_eq!(sender, Some(&json!(sender_id.to_string())));
        }
        ServerMessage::PeerUpdatedStatus { sender_id, status } => {
            prop_assert_eq!(event, "peer_updated_status");
            prop_assert_eq!(sender, Some(&json!(sender_id.to_string())));
            prop_assert_eq!(&map["status"], &Value::Object(status));
        }
        ServerMessage::Forward {
            sender_id,
            mut data,
        } => {
            // The payload arrives as sent, except that the server's sender id wins.
            data.insert("sender_id".into(), json!(sender_id.to_string()));
            prop_assert_eq!(map, data);
        }
        ServerMessage::Error(error) => {
            prop_assert_eq!(event, "error");
            let text = error.to_string();
            prop_assert_eq!(map.get("message"), Some(&json!(text)));
            prop_assert_eq!(map.get("description"), Some(&json!(text)));
            prop_assert!(sender.is_none());
        }
        ServerMessage::Shutdown { seconds } => {
            prop_assert_eq!(event, "shutdown");
            prop_assert_eq!(map["seconds"].as_u64(), Some(seconds));
            prop_assert!(sender.is_none());
        }
        ServerMessage::ServerMessage { data } => {
            prop_assert_eq!(event, "server_message");
            prop_assert_eq!(&map["data"], &Value::Object(data));
            prop_assert!(sender.is_none());
        }
        ServerMessage::Pong => {
            prop_assert_eq!(Value::Object(map), json!({"event": "pong"}));
        }
        ServerMessage::Info => {
            prop_assert_eq!(event, "info");
            prop_assert_eq!(&map["protocol_version"], &json!("1.0.0"));
            prop_assert!(sender.is_none());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn server_messages_encode_to_objects_with_a_string_event(message in server_message()) {
        let label = message.event();
        let text = message.clone().encode();
        let value: Value = serde_json::from_str(&text).unwrap();
        let event = value.get("event").and_then(Value::as_str);
        prop_assert!(event.is_some(), "{}", text);
        if label != "forward" {
            prop_assert_eq!(event, Some(label));
        } else {
            prop_assert!(FORWARD_EVENTS.contains(&event.unwrap()));
        }
        check_server_message(message)?;
    }
}

/// A user agent list drawn from the defaults and one extra, so that both "in the list" and "not in
/// the list" happen for every value.
fn rules() -> impl Strategy<Value = StatusRules> {
    (
        prop::sample::subsequence(
            vec!["firefox", "chrome", "safari", "edge", "unknown", "netscape"],
            0..=6,
        ),
        prop_oneof![0usize..300, Just(4096)],
    )
        .prop_map(|(agents, max_bytes)| StatusRules {
            user_agents: agents.into_iter().map(str::to_owned).collect(),
            max_bytes,
        })
}

fn name_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::collection::vec(
            prop::sample::select(vec![
                ' ', '\t', '\n', '\r', '\u{a0}', '\u{3000}', '\u{2003}'
            ]),
            0..6
        )
        .prop_map(|c| Value::String(String::from_iter(c))),
        chars(1, MAX_NAME_CHARS + 10).prop_map(Value::String),
        Just(Value::Null),
        json_value(),
    ]
}

const AGENTS_AND_NEAR_MISSES: &[&str] = &[
    "firefox", "chrome", "safari", "edge", "unknown", "netscape", "Chrome", "",
];

fn user_agent_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::sample::select(AGENTS_AND_NEAR_MISSES).prop_map(|s| json!(s)),
        1 => Just(Value::Null),
        1 => json_value(),
    ]
}

fn status_value() -> impl Strategy<Value = Option<Value>> {
    let object = (
        prop::option::of(name_value()),
        prop::option::of(user_agent_value()),
        prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4),
    )
        .prop_map(|(name, agent, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            map.remove("name");
            map.remove("user_agent");
            if let Some(name) = name {
                map.insert("name".into(), name);
            }
            if let Some(agent) = agent {
                map.insert("user_agent".into(), agent);
            }
            Value::Object(map)
        });
    prop_oneof![
        1 => Just(None),
        6 => object.prop_map(Some),
        2 => json_value().prop_map(Some),
    ]
}

/// The status rules as documented, in their documented order.
fn expected_status(value: &Option<Value>, rules: &StatusRules) -> Result<(), ProtocolError> {
    let map = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ProtocolError::InvalidStatus),
    };
    if serde_json::to_string(map).unwrap().len() > rules.max_bytes {
        return Err(ProtocolError::StatusTooLarge);
    }
    match map.get("name") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) if name.trim().is_empty() => {
            return Err(ProtocolError::BlankName);
        }
        Some(Value::String(name)) if name.chars().count() > MAX_NAME_CHARS => {
            return Err(ProtocolError::NameTooLong);
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(ProtocolError::InvalidStatus),
    }
    match map.get("user_agent") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(agent)) if rules.user_agents.contains(agent) => Ok(()),
        Some(_) => Err(ProtocolError::UnknownUserAgent),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn status_validation_follows_the_documented_rules(value in status_value(), rules in rules()) {
        let got = Status::validate(value.clone(), &rules);
        prop_assert_eq!(got.as_ref().map(|_| ()).map_err(|e| *e), expected_status(&value, &rules));
        let Ok(status) = got else { return Ok(()) };

        // What was accepted obeys every rule, and is kept exactly as sent.
        let sent = match value {
            Some(Value::Object(map)) => {
                prop_assert!(serde_json::to_string(&map).unwrap().len() <= rules.max_bytes);
                map
            }
            // A missing or null status is the empty status, whatever the size limit.
            _ => Map::new(),
        };
        prop_assert_eq!(status.as_map(), &sent);
        let stored = status.stored();
        if let Some(name) = &stored.name {
            prop_assert!(!name.trim().is_empty());
            prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
        }
        if let Some(agent) = &stored.user_agent {
            prop_assert!(rules.user_agents.contains(agent));
        }
        prop_assert_eq!(stored.name.as_deref(), sent.get("name").and_then(Value::as_str));
        prop_assert_eq!(
            stored.user_agent.as_deref(),
            sent.get("user_agent").and_then(Value::as_str)
        );
        let mut shown = BTreeMap::new();
        if let Some(name) = stored.name {
            shown.insert("name".to_owned(), json!(name));
        }
        if let Some(agent) = stored.user_agent {
            shown.insert("user_agent".to_owned(), json!(agent));
        }
        prop_assert_eq!(status.stored().to_json(), json!(shown));
    }

    #[test]
    fn status_validation_never_panics_on_any_value(
        value in prop::option::of(json_value()),
        rules in rules(),
    ) {
        let got = Status::validate(value.clone(), &rules);
        prop_assert_eq!(got.map(|_| ()), expected_status(&value, &rules));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// The room id is judged before anything else in a join, whatever the status holds.
    #[test]
    fn a_bad_room_id_wins_over_a_bad_status(
        room_id in prop_oneof![
            Just(None),
            Just(Some(json!(""))),
            chars(MAX_ROOM_ID_CHARS + 1, MAX_ROOM_ID_CHARS + 10).prop_map(|s| Some(json!(s))),
            json_value().prop_filter("not a string", |v| !v.is_string()).prop_map(Some),
        ],
        status in status_value(),
    ) {
        let mut map = Map::new();
        map.insert("event".into(), json!("join_room"));
        if let Some(room_id) = &room_id {
            map.insert("room_id".into(), room_id.clone());
        }
        if let Some(status) = status {
            map.insert("status".into(), status);
        }
        let expected = match &room_id {
            Some(Value::String(s)) if !s.is_empty() => ProtocolError::RoomIdTooLong,
            _ => ProtocolError::NoRoomId,
        };
        prop_assert_eq!(decode(&Value::Object(map).to_string()), Err(expected));
    }

    /// Non-object `data` is refused before the peer id is looked at.
    #[test]
    fn raw_data_wins_over_a_bad_peer_id(
        data in prop::option::of(json_value().prop_filter("not an object", |v| !v.is_object())),
        peer_id in prop::option::of(json_value()),
    ) {
        let mut map = Map::new();
        map.insert("event".into(), json!("send_to_peer"));
        if let Some(data) = data {
            map.insert("data".into(), data);
        }
        if let Some(peer_id) = peer_id {
            map.insert("peer_id".into(), peer_id);
        }
        prop_assert_eq!(
            decode(&Value::Object(map).to_string()),
            Err(ProtocolError::CannotSendRawData)
        );
    }

    /// Parsing errors come before anything about the message's content.
    #[test]
    fn shape_errors_win_over_content_errors(
        fields in prop::collection::btree_map(key(), json_value(), 0..5),
    ) {
        let mut map: Map<String, Value> = fields.into_iter().collect();
        map.remove("event");
        let body = Value::Object(map.clone()).to_string();
        prop_assert_eq!(decode(&body), Err(ProtocolError::NoEvent));
        prop_assert_eq!(decode(&format!("[{body}]")), Err(ProtocolError::NotAHash));
        prop_assert_eq!(decode(&format!("{body}{body}")), Err(ProtocolError::InvalidMessage));
        map.insert("event".into(), json!("join_room "));
        prop_assert_eq!(decode(&Value::Object(map).to_string()), Err(ProtocolError::UnknownEvent));
    }
}
