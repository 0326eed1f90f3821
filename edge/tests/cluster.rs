//! The cluster's guarantees (design.md), against real processes: a 3-node nats-server cluster with
//! JetStream, two routers and two edges, all on loopback. Clients are spread over both edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use serde_json::json;

/// Guarantee 1: clients on different edges in one room see each other and exchange
/// offer/answer/ICE in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_meet_and_relay_in_order() {
    let cluster = Cluster::start(2, 2).await;
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join("across", json!({"name": "A"})).await;
    let (b_id, joined) = b.join("across", json!({"name": "B"})).await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": a_id, "status": {"name": "A"}}]),
        "{}",
        cluster.logs()
    );
    assert_eq!(
        a.recv().await,
        json!({"event": "new_peer", "peer_id": b_id, "status": {"name": "B"}})
    );
    a.send(
        json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "offer", "sdp": "o"}}),
    )
    .await;
    assert_eq!(
        b.recv().await,
        json!({"event": "offer", "sdp": "o", "sender_id": a_id})
    );
    b.send(
        json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "answer", "sdp": "a"}}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!({"event": "answer", "sdp": "a", "sender_id": b_id})
    );
    for n in 0..150 {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id,
                      "data": {"event": "ice_candidate", "n": n}}))
            .await;
    }
    for n in 0..150 {
        let m = b.recv().await;
        assert_eq!(m["n"], n, "ICE candidates in order: {m}");
    }
    b.send(json!({"event": "leave_room"})).await;
    assert_eq!(
        a.recv().await,
        json!({"event": "peer_left", "sender_id": b_id})
    );
    let _ = Duration::ZERO;
}
