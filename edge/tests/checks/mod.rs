//! The protocol checks, written once and run against any set of edges: one standalone edge
//! (protocol.rs, rooms.rs) or the two edges of a cluster (cluster.rs), where clients alternate between
//! the edges so that every room spans both. Room names get a per-run suffix (`Edges::room`) so that
//! checks sharing a cluster never meet.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Client, Edges};

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

pub async fn info_and_ping(at: &Edges) {
    let mut c = at.client().await;
    c.send(json!({"event": "info"})).await;
    assert_eq!(
        c.recv().await,
        json!({"event": "info", "protocol_version": "1.0.0"})
    );
    c.send(json!({"event": "ping"})).await;
    assert_eq!(c.recv().await, json!({"event": "pong"}));
}

pub async fn parse_errors_have_palavas_texts(at: &Edges) {
    let mut c = at.client().await;
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

pub async fn join_room_validation(at: &Edges) {
    let mut c = at.client().await;
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

pub async fn joining_tells_everyone_with_the_right_shapes(at: &Edges) {
    let mut alice = at.client().await;
    let mut bob = at.client().await;
    let (alice_id, _) = alice
        .join(
            &at.room("standup"),
            json!({"name": "Alice", "user_agent": "firefox", "mood": "sunny"}),
        )
        .await;
    let (bob_id, joined) = bob.join(&at.room("standup"), json!({})).await;
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
    let mut carol = at.client().await;
    let (carol_id, joined) = carol
        .join(
            &at.room("standup"),
            json!({"name": "Carol", "extra": [1, 2]}),
        )
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

pub async fn already_joined_another_room(at: &Edges) {
    let mut c = at.client().await;
    c.join(&at.room("one"), json!({})).await;
    c.send(json!({"event": "join_room", "room_id": at.room("one")}))
        .await;
    c.expect_error("already joined another room").await;
    c.send(json!({"event": "join_room", "room_id": at.room("two")}))
        .await;
    c.expect_error("already joined another room").await;
    // "already joined" comes before the status rules.
    c.send(json!({"event": "join_room", "room_id": at.room("two"), "status": {"name": " "}}))
        .await;
    c.expect_error("already joined another room").await;
    // Leaving allows joining again.
    c.send(json!({"event": "leave_room"})).await;
    c.join(&at.room("two"), json!({})).await;
}

pub async fn status_rules_and_a_failed_join_adds_nobody(at: &Edges) {
    let mut member = at.client().await;
    member.join(&at.room("room"), json!({})).await;
    let mut c = at.client().await;
    for (status, text) in [
        (json!({"name": ""}), "blank name not allowed"),
        (json!({"name": "  \t"}), "blank name not allowed"),
        (json!({"name": "n".repeat(51)}), "name too long"),
        (json!({"user_agent": "netscape"}), "unknown user agent"),
        (json!({"name": 42}), "invalid status"),
        (json!("just a string"), "invalid status"),
        (json!({"blob": "x".repeat(5000)}), "status too large"),
    ] {
        c.send(json!({"event": "join_room", "room_id": at.room("room"), "status": status}))
            .await;
        c.expect_error(text).await;
    }
    // None of those joins happened: the member heard nothing, and the next join works and shows
    // exactly one peer. Unicode names are kept as they are.
    let name = "Zoë 李 \u{1F600}";
    let (c_id, joined) = c
        .join(
            &at.room("room"),
            json!({"name": name, "user_agent": "safari"}),
        )
        .await;
    assert_eq!(joined["peers"].as_array().unwrap().len(), 1);
    assert_eq!(
        member.recv().await,
        json!({"event": "new_peer", "peer_id": c_id, "status": {"name": name, "user_agent": "safari"}})
    );
}

pub async fn update_status(at: &Edges) {
    let mut a = at.client().await;
    a.send(json!({"event": "update_status", "status": {"name": "x"}}))
        .await;
    a.expect_error("currently not in any room").await;
    // Not being in a room is reported before the status rules.
    a.send(json!({"event": "update_status", "status": {"name": " "}}))
        .await;
    a.expect_error("currently not in any room").await;

    let (a_id, _) = a
        .join(&at.room("r"), json!({"name": "A", "user_agent": "chrome"}))
        .await;
    let mut b = at.client().await;
    let (b_id, _) = b.join(&at.room("r"), json!({})).await;
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
    let mut c = at.client().await;
    let (_, joined) = c.join(&at.room("r"), json!({})).await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": a_id, "status": {"name": "A2", "user_agent": "chrome"}},
               {"peer_id": b_id, "status": {}}])
    );
}

pub async fn send_to_peer_checks_in_order_and_forwards(at: &Edges) {
    let mut a = at.client().await;
    let stranger = "0b6a5f7c-3d1e-4c2b-9a8f-7e6d5c4b3a21";
    a.send(json!({"event": "send_to_peer", "peer_id": stranger, "data": "raw"}))
        .await;
    a.expect_error("cannot send raw data").await;
    a.send(json!({"event": "send_to_peer", "peer_id": stranger, "data": {"event": "offer"}}))
        .await;
    a.expect_error("currently not in any room").await;

    let (a_id, _) = a.join(&at.room("r"), json!({})).await;
    let mut b = at.client().await;
    let (b_id, _) = b.join(&at.room("r"), json!({})).await;
    a.expect("new_peer").await;
    let mut other = at.client().await;
    let (other_id, _) = other.join(&at.room("elsewhere"), json!({})).await;

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

pub async fn leaving_and_closing(at: &Edges) {
    let mut a = at.client().await;
    // Leaving when in no room is silently ignored: the next reply is the pong.
    a.send(json!({"event": "leave_room"})).await;
    a.sync().await;

    let (a_id, _) = a.join(&at.room("r"), json!({})).await;
    let mut b = at.client().await;
    let (b_id, _) = b.join(&at.room("r"), json!({})).await;
    a.expect("new_peer").await;
    let mut c = at.client().await;
    let (c_id, _) = c.join(&at.room("r"), json!({})).await;
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
    let (b2, joined) = b.join(&at.room("r"), json!({})).await;
    assert_eq!(b2, b_id, "a connection keeps its id");
    assert_eq!(joined["peers"], json!([{"peer_id": a_id, "status": {}}]));
}

pub async fn full_rooms_refuse_joins(at: &Edges, max_room_size: usize) {
    let small = at.room("small");
    let mut members = Vec::new();
    for _ in 0..max_room_size {
        let mut m = at.client().await;
        m.join(&small, json!({})).await;
        members.push(m);
    }
    let mut c = at.client().await;
    c.send(json!({"event": "join_room", "room_id": small}))
        .await;
    c.expect_error("room is full").await;
    // The refused client is in no room and may join elsewhere: room sizes are per room.
    c.join(&at.room("big"), json!({})).await;
    // Nobody in the full room heard of it: the first member's next messages are the other members'
    // arrivals, then its own pong.
    let first = &mut members[0];
    for _ in 1..max_room_size {
        first.expect("new_peer").await;
    }
    first.sync().await;
}

/// Returns the clients, still joined, so callers can look at metrics before they leave.
pub async fn fifty_concurrent_joiners_converge(at: &Edges) -> Vec<Client> {
    const N: usize = 50;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(at.client().await);
    }
    let crowd = at.room("crowd");
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let crowd = crowd.clone();
            tokio::spawn(async move {
                client
                    .send(json!({"event": "join_room", "room_id": crowd}))
                    .await;
                let first = client.recv().await;
                assert_eq!(first["event"], "joined_room", "first message: {first}");
                let own = first["own_id"].as_str().unwrap().to_string();
                let mut view: BTreeSet<String> = first["peers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["peer_id"].as_str().unwrap().to_string())
                    .collect();
                assert!(!view.contains(&own), "a joiner is not its own peer");
                view.insert(own.clone());
                while view.len() < N {
                    let message = client.expect("new_peer").await;
                    let new = message["peer_id"].as_str().unwrap().to_string();
                    assert!(view.insert(new), "new_peer for a known member: {message}");
                }
                (own, view, client)
            })
        })
        .collect();
    let mut views = HashMap::new();
    let mut clients = Vec::new();
    for handle in handles {
        let (own, view, client) = handle.await.unwrap();
        views.insert(own, view);
        clients.push(client);
    }
    let everyone: BTreeSet<String> = views.keys().cloned().collect();
    assert_eq!(everyone.len(), N, "ids are unique");
    for (own, view) in &views {
        assert_eq!(view, &everyone, "view of {own}");
    }
    // Nothing more is pending: each client's next message is its own pong.
    for client in &mut clients {
        client.sync().await;
    }
    clients
}

pub async fn a_thousand_messages_each_way_keep_their_order(at: &Edges) {
    const N: u64 = 1000;
    // The edges must not rate-limit this (the default 50/s would, on purpose): it is about order.
    let mut a = at.client().await;
    let mut b = at.client().await;
    let (a_id, _) = a.join(&at.room("pair"), json!({})).await;
    let (b_id, _) = b.join(&at.room("pair"), json!({})).await;
    a.expect("new_peer").await;

    let run = |me: Client, peer: String, own: String| async move {
        let (mut sink, mut stream) = {
            use futures_util::StreamExt;
            me.ws.split()
        };
        let send = async {
            use futures_util::SinkExt;
            for seq in 0..N {
                let msg = json!({"event": "send_to_peer", "peer_id": peer,
                                 "data": {"event": "ice_candidate", "seq": seq}});
                sink.feed(tokio_tungstenite::tungstenite::Message::text(
                    msg.to_string(),
                ))
                .await
                .unwrap();
            }
            sink.flush().await.unwrap();
        };
        let receive = async {
            use futures_util::StreamExt;
            let mut next = 0;
            while next < N {
                let frame = tokio::time::timeout(crate::common::PATIENCE, stream.next())
                    .await
                    .expect("messages keep coming")
                    .unwrap()
                    .unwrap();
                let tokio_tungstenite::tungstenite::Message::Text(text) = frame else {
                    continue;
                };
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["event"], "ice_candidate", "{value}");
                assert_eq!(value["sender_id"], peer.as_str());
                assert_eq!(value["seq"], next, "out of order at {next} for {own}");
                next += 1;
            }
        };
        tokio::join!(send, receive);
        // Hand the socket back: closing it here would make this client leave while the other may
        // still be receiving, and its peer_left may overtake relays still on their way.
        (sink, stream)
    };
    let _open = tokio::join!(
        run(a, b_id.clone(), a_id.clone()),
        run(b, a_id.clone(), b_id.clone())
    );
}
