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

/// Reads messages until one satisfies `want`, failing on any error event on the way.
async fn until(
    client: &mut Client,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let message = client.recv().await;
        assert_ne!(message["event"], "error", "unexpected error: {message}");
        if want(&message) {
            return message;
        }
    }
}

fn peer_ids(joined: &serde_json::Value) -> Vec<String> {
    joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect()
}

/// Guarantee 2: kill -9 of the router owning a room. Relays between members keep flowing (they
/// never touch a router); joins to the room succeed again within 5 s; nobody is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_crash_keeps_relays_and_joins_recover_within_5s() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "router-crash";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({"name": "A"})).await;
    let (b_id, _) = b.join(room, json!({"name": "B"})).await;
    a.expect("new_peer").await;
    let owner = cluster
        .owner_of(room)
        .await
        .expect("the room's slot is served");

    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();
    let killed = tokio::time::Instant::now();

    // Relays right after the crash: all arrive, in order.
    for n in 0..100 {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id,
                      "data": {"event": "ice_candidate", "n": n}}))
            .await;
    }
    for n in 0..100 {
        assert_eq!(b.recv().await["n"], n);
    }

    // A join to the room (on either edge) succeeds within 5 s of the crash, with the exact members.
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (c_id, joined) = c.join(room, json!({"name": "C"})).await;
    let recovered = killed.elapsed();
    assert!(
        recovered <= Duration::from_secs(5),
        "join took {recovered:?} after the crash\n{}",
        cluster.logs()
    );
    assert_eq!(peer_ids(&joined), [a_id.clone(), b_id.clone()], "{joined}");
    // The others hear of C exactly once, and of nothing else.
    for member in [&mut a, &mut b] {
        assert_eq!(
            member.recv().await,
            json!({"event": "new_peer", "peer_id": c_id, "status": {"name": "C"}})
        );
        member.sync().await;
    }
    let mut d = Client::connect_url(&cluster.edge_url(1)).await;
    let (_, joined) = d.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id, b_id, c_id]);
    eprintln!("router failover: join recovered {recovered:?} after kill -9");
}

/// Guarantee 3: kill -9 of an edge: members elsewhere get `peer_left` for each of its clients within
/// 5 s, and later joiners do not see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_crash_gives_peer_left_within_5s() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "edge-crash";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let (a_id, _) = a.join(room, json!({})).await;
    let mut lost = Vec::new();
    for _ in 0..3 {
        let mut b = Client::connect_url(&cluster.edge_url(1)).await;
        let (b_id, _) = b.join(room, json!({})).await;
        until(&mut a, |m| {
            m["event"] == "new_peer" && m["peer_id"] == b_id.as_str()
        })
        .await;
        lost.push((b_id, b));
    }
    cluster.edges[1].as_mut().unwrap().kill9().unwrap();
    let killed = tokio::time::Instant::now();
    let mut gone: Vec<String> = Vec::new();
    while gone.len() < lost.len() {
        let m = until(&mut a, |m| m["event"] == "peer_left").await;
        gone.push(m["sender_id"].as_str().unwrap().to_string());
    }
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(5), "peer_left took {took:?}");
    gone.sort();
    let mut expected: Vec<String> = lost.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    assert_eq!(gone, expected);
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (_, joined) = c.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id]);
    eprintln!(
        "edge crash: peer_left for all {} clients after {took:?}",
        lost.len()
    );
}
