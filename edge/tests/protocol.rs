//! Every message and every error text of the protocol, against an edge started in-process and real
//! WebSocket clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, TestEdge};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn is_v4_lowercase(id: &str) -> bool {
    id.len() == 36 && id == id.to_lowercase() && uuid_like(id) && &id[14..15] == "4"
}

fn uuid_like(id: &str) -> bool {
    id.chars().enumerate().all(|(i, c)| {
        if [8, 13, 18, 23].contains(&i) {
            c == '-'
        } else {
            c.is_ascii_hexdigit()
        }
    })
}

#[tokio::test]
async fn info_and_ping() {
    let edge = TestEdge::start().await;
    let mut c = Client::connect(&edge).await;
    c.send(json!({"event": "info"})).await;
    assert_eq!(
        c.recv().await,
        json!({"event": "info", "protocol_version": "1.0.0"})
    );
    c.send(json!({"event": "ping"})).await;
    assert_eq!(c.recv().await, json!({"event": "pong"}));
}

#[tokio::test]
async fn parse_errors_have_palavas_texts() {
    let edge = TestEdge::start().await;
    let mut c = Client::connect(&edge).await;
    for (raw, text) in [
        ("not json", "invalid message"),
        ("{\"event\":", "invalid message"),
        ("[1,2,3]", "invalid message: not a hash"),
        ("\"join_room\"", "invalid message: not a hash"),
        ("{}", "no event given"),
        ("{\"event\":null}", "no event given"),
        ("{\"event\":false}", "no event given"),
        ("{\"event\":\"dance\"}", "unknown event"),
        ("{\"event\":7}", "unknown event"),
        ("{\"event\":true}", "unknown event"),
    ] {
        c.send_raw(Message::text(raw)).await;
        c.expect_error(text).await;
    }
    // The connection survives all of it.
    c.sync().await;
}

#[tokio::test]
async fn join_room_validation() {
    let edge = TestEdge::start().await;
    let mut c = Client::connect(&edge).await;
    for bad in [json!(null), json!(""), json!(5), json!({"a": 1})] {
        c.send(json!({"event": "join_room", "room_id": bad})).await;
        c.expect_error("no room id given").await;
    }
    c.send(json!({"event": "join_room"})).await;
    c.expect_error("no room id given").await;
    c.send(json!({"event": "join_room", "room_id": "r".repeat(51)}))
        .await;
    c.expect_error("room id too long").await;
    // 50 characters is fine even when they are 200 bytes.
    let (own_id, joined) = c.join(&"\u{1F600}".repeat(50), json!({})).await;
    assert!(is_v4_lowercase(&own_id), "{own_id}");
    assert_eq!(
        joined,
        json!({"event": "joined_room", "own_id": own_id, "peers": []})
    );
}

#[tokio::test]
async fn joining_tells_everyone_with_the_right_shapes() {
    let edge = TestEdge::start().await;
    let mut alice = Client::connect(&edge).await;
    let mut bob = Client::connect(&edge).await;
    let (alice_id, _) = alice
        .join(
            "standup",
            json!({"name": "Alice", "user_agent": "firefox", "mood": "sunny"}),
        )
        .await;
    let (bob_id, joined) = bob.join("standup", json!({})).await;
    assert_ne!(alice_id, bob_id);
    // Later joiners see only the stored fields (name, user_agent).
    assert_eq!(
        joined,
        json!({"event": "joined_room", "own_id": bob_id,
               "peers": [{"peer_id": alice_id, "status": {"name": "Alice", "user_agent": "firefox"}}]})
    );
    // new_peer carries the status as sent, `{}` when empty, and no sender_id.
    assert_eq!(
        alice.recv().await,
        json!({"event": "new_peer", "peer_id": bob_id, "status": {}})
    );
    let mut carol = Client::connect(&edge).await;
    let (carol_id, joined) = carol
        .join("standup", json!({"name": "Carol", "extra": [1, 2]}))
        .await;
    let peers: Vec<&str> = joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(peers, [alice_id.as_str(), bob_id.as_str()], "join order");
    for c in [&mut alice, &mut bob] {
        assert_eq!(
            c.recv().await,
            json!({"event": "new_peer", "peer_id": carol_id,
                   "status": {"name": "Carol", "extra": [1, 2]}})
        );
    }
}

#[tokio::test]
async fn already_joined_another_room() {
    let edge = TestEdge::start().await;
    let mut c = Client::connect(&edge).await;
    c.join("one", json!({})).await;
    c.send(json!({"event": "join_room", "room_id": "one"}))
        .await;
    c.expect_error("already joined another room").await;
    c.send(json!({"event": "join_room", "room_id": "two"}))
        .await;
    c.expect_error("already joined another room").await;
    // "already joined" comes before the status rules.
    c.send(json!({"event": "join_room", "room_id": "two", "status": {"name": " "}}))
        .await;
    c.expect_error("already joined another room").await;
    // Leaving allows joining again.
    c.send(json!({"event": "leave_room"})).await;
    c.join("two", json!({})).await;
}

#[tokio::test]
async fn status_rules_and_a_failed_join_adds_nobody() {
    let edge = TestEdge::start().await;
    let mut member = Client::connect(&edge).await;
    member.join("room", json!({})).await;
    let mut c = Client::connect(&edge).await;
    for (status, text) in [
        (json!({"name": ""}), "blank name not allowed"),
        (json!({"name": "  \t"}), "blank name not allowed"),
        (json!({"name": "n".repeat(51)}), "name too long"),
        (json!({"user_agent": "netscape"}), "unknown user agent"),
        (json!({"name": 42}), "invalid status"),
        (json!("just a string"), "invalid status"),
        (json!({"blob": "x".repeat(5000)}), "status too large"),
    ] {
        c.send(json!({"event": "join_room", "room_id": "room", "status": status}))
            .await;
        c.expect_error(text).await;
    }
    // None of those joins happened: the member heard nothing, and the next join works and shows
    // exactly one peer. Unicode names are kept as they are.
    let name = "Zoë 李 \u{1F600}";
    let (c_id, joined) = c
        .join("room", json!({"name": name, "user_agent": "safari"}))
        .await;
    assert_eq!(joined["peers"].as_array().unwrap().len(), 1);
    assert_eq!(
        member.recv().await,
        json!({"event": "new_peer", "peer_id": c_id, "status": {"name": name, "user_agent": "safari"}})
    );
}

#[tokio::test]
async fn update_status() {
    let edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    a.send(json!({"event": "update_status", "status": {"name": "x"}}))
        .await;
    a.expect_error("currently not in any room").await;
    // Not being in a room is reported before the status rules.
    a.send(json!({"event": "update_status", "status": {"name": " "}}))
        .await;
    a.expect_error("currently not in any room").await;

    let (a_id, _) = a
        .join("r", json!({"name": "A", "user_agent": "chrome"}))
        .await;
    let mut b = Client::connect(&edge).await;
    let (b_id, _) = b.join("r", json!({})).await;
    a.expect("new_peer").await;

    a.send(json!({"event": "update_status", "status": {"name": " "}}))
        .await;
    a.expect_error("blank name not allowed").await;
    a.send(json!({"event": "update_status", "status": {"user_agent": "lynx"}}))
        .await;
    a.expect_error("unknown user agent").await;

    let status = json!({"name": "A2", "typing": true});
    a.send(json!({"event": "update_status", "status": status}))
        .await;
    // Everyone, the sender included, gets it with the status as sent and the sender's id.
    let expected = json!({"event": "peer_updated_status", "status": status, "sender_id": a_id});
    assert_eq!(a.recv().await, expected);
    assert_eq!(b.recv().await, expected);

    // A later joiner sees the stored status: the new name, the user agent kept from before.
    let mut c = Client::connect(&edge).await;
    let (_, joined) = c.join("r", json!({})).await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": a_id, "status": {"name": "A2", "user_agent": "chrome"}},
               {"peer_id": b_id, "status": {}}])
    );
}

#[tokio::test]
async fn send_to_peer_checks_in_order_and_forwards() {
    let edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    let stranger = "0b6a5f7c-3d1e-4c2b-9a8f-7e6d5c4b3a21";
    a.send(json!({"event": "send_to_peer", "peer_id": stranger, "data": "raw"}))
        .await;
    a.expect_error("cannot send raw data").await;
    a.send(json!({"event": "send_to_peer", "peer_id": stranger, "data": {"event": "offer"}}))
        .await;
    a.expect_error("currently not in any room").await;

    let (a_id, _) = a.join("r", json!({})).await;
    let mut b = Client::connect(&edge).await;
    let (b_id, _) = b.join("r", json!({})).await;
    a.expect("new_peer").await;
    let mut other = Client::connect(&edge).await;
    let (other_id, _) = other.join("elsewhere", json!({})).await;

    for target in [
        json!(stranger),
        json!(other_id),
        json!("nonsense"),
        json!(17),
        Value::Null,
    ] {
        a.send(json!({"event": "send_to_peer", "peer_id": target, "data": {"event": "offer"}}))
            .await;
        a.expect_error("unknown peer").await;
    }
    // unknown peer is reported before event not allowed.
    a.send(json!({"event": "send_to_peer", "peer_id": stranger, "data": {"event": "hack"}}))
        .await;
    a.expect_error("unknown peer").await;
    for event in [json!("join_room"), json!("peer_left"), Value::Null] {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": event}}))
            .await;
        a.expect_error("event not allowed").await;
    }

    for event in ["offer", "answer", "ice_candidate", "message"] {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id,
                      "data": {"event": event, "payload": {"n": 1}, "sender_id": "forged"}}))
            .await;
        assert_eq!(
            b.recv().await,
            json!({"event": event, "payload": {"n": 1}, "sender_id": a_id})
        );
    }
    // Sending to yourself is allowed.
    a.send(
        json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "message", "t": "me"}}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!({"event": "message", "t": "me", "sender_id": a_id})
    );
}

#[tokio::test]
async fn leaving_and_closing() {
    let edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    // Leaving when in no room is silently ignored: the next reply is the pong.
    a.send(json!({"event": "leave_room"})).await;
    a.sync().await;

    let (a_id, _) = a.join("r", json!({})).await;
    let mut b = Client::connect(&edge).await;
    let (b_id, _) = b.join("r", json!({})).await;
    a.expect("new_peer").await;
    let mut c = Client::connect(&edge).await;
    let (c_id, _) = c.join("r", json!({})).await;
    a.expect("new_peer").await;
    b.expect("new_peer").await;

    b.send(json!({"event": "leave_room"})).await;
    let left = json!({"event": "peer_left", "sender_id": b_id});
    assert_eq!(a.recv().await, left);
    assert_eq!(c.recv().await, left);

    // The leaver hears nothing more of the room: c's status update reaches a but not b, whose next
    // message is the pong of its own ping.
    c.send(json!({"event": "update_status", "status": {"name": "C"}}))
        .await;
    a.expect("peer_updated_status").await;
    b.sync().await;
    // ...and it can send to nobody there any more.
    b.send(json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "offer"}}))
        .await;
    b.expect_error("currently not in any room").await;

    // A closed socket is a leave.
    drop(c);
    assert_eq!(
        a.recv().await,
        json!({"event": "peer_left", "sender_id": c_id})
    );

    // Rejoining after leaving works and shows the current members.
    let (b2, joined) = b.join("r", json!({})).await;
    assert_eq!(b2, b_id, "a connection keeps its id");
    assert_eq!(joined["peers"], json!([{"peer_id": a_id, "status": {}}]));
}

#[tokio::test]
async fn full_rooms_refuse_joins() {
    let edge = TestEdge::start_with(|c| c.max_room_size = 2).await;
    let mut a = Client::connect(&edge).await;
    let mut b = Client::connect(&edge).await;
    let mut c = Client::connect(&edge).await;
    a.join("small", json!({})).await;
    b.join("small", json!({})).await;
    c.send(json!({"event": "join_room", "room_id": "small"}))
        .await;
    c.expect_error("room is full").await;
    // The refused client is in no room and may join elsewhere.
    c.join("big", json!({})).await;
    // Room sizes are per room.
    a.expect("new_peer").await;
    a.sync().await;
}
