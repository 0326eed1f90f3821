//! Rooms under concurrency: many simultaneous joiners, and message order between two peers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};

use common::{Client, TestEdge};
use serde_json::json;

/// 50 clients join one room at once. Each must get `joined_room` as its first message, and once every
/// `new_peer` has arrived, every client's view (peers from joined_room plus new_peer) must be the same
/// set: all 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_joiners_converge() {
    const N: usize = 50;
    let edge = TestEdge::start().await;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(Client::connect(&edge).await);
    }
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                client
                    .send(json!({"event": "join_room", "room_id": "crowd"}))
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
    edge.wait_metric("switchboard_room_members", &[], N as f64)
        .await;
    edge.wait_metric("switchboard_joins_total", &[], N as f64)
        .await;
}

/// 1,000 messages each way between two peers arrive complete and in order (ICE depends on it), while
/// both sides send at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_each_way_keep_their_order() {
    const N: u64 = 1000;
    // The default rate limit (50/s) would throttle this on purpose; this test is about ordering.
    let edge = TestEdge::start_with(|c| {
        c.rate_limit = 1_000_000;
        c.rate_burst = 1_000_000;
    })
    .await;
    let mut a = Client::connect(&edge).await;
    let mut b = Client::connect(&edge).await;
    let (a_id, _) = a.join("pair", json!({})).await;
    let (b_id, _) = b.join("pair", json!({})).await;
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
                let frame = tokio::time::timeout(common::PATIENCE, stream.next())
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
    };
    tokio::join!(
        run(a, b_id.clone(), a_id.clone()),
        run(b, a_id.clone(), b_id.clone())
    );
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "ice_candidate"), ("direction", "out")],
        2.0 * N as f64,
    )
    .await;
}
