//! Hosted mode across a cluster: two tenants using the same room name on two edges never meet, not
//! even after the router owning their rooms is killed and another rebuilds them from the edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Client;
use common::cluster::Cluster;
use common::hosted::{A_ORIGIN, A1, A2, B1, TenantsFile, claims, connect, token, two_tenants};
use serde_json::{Value, json};

fn peer_ids(joined: &Value) -> Vec<String> {
    let mut ids: Vec<String> = joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn offer_to(from: &mut Client, to: &str) {
    from.send(
        json!({"event": "send_to_peer", "peer_id": to, "data": {"event": "offer", "sdp": "x"}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_meet_across_edges_and_a_router_failover() {
    let file = TenantsFile::new(&two_tenants(""));
    let path = file.path.display().to_string();
    let mut cluster =
        Cluster::start_with(2, 2, &["--auth", "tokens", "--tenants-file", &path]).await;
    let (e0, e1) = (cluster.edge_url(0), cluster.edge_url(1));
    let mut a1 = connect(&e0, &token(A1, &claims("a-1")), Some(A_ORIGIN)).await;
    let mut a2 = connect(&e1, &token(A2, &claims("a-2")), Some(A_ORIGIN)).await;
    let mut b1 = connect(&e0, &token(B1, &claims("b-1")), None).await;
    let mut b2 = connect(&e1, &token(B1, &claims("b-2")), None).await;

    let (a1_id, _) = a1.join("lobby", json!({"name": "a1"})).await;
    let (b1_id, joined) = b1.join("lobby", json!({"name": "b1"})).await;
    assert_eq!(joined["peers"], json!([]), "{}", cluster.logs());
    let (a2_id, joined) = a2.join("lobby", json!({"name": "a2"})).await;
    assert_eq!(peer_ids(&joined), vec![a1_id.clone()]);
    let (b2_id, joined) = b2.join("lobby", json!({"name": "b2"})).await;
    assert_eq!(peer_ids(&joined), vec![b1_id.clone()]);
    assert_eq!(a1.expect("new_peer").await["peer_id"], a2_id.as_str());
    assert_eq!(b1.expect("new_peer").await["peer_id"], b2_id.as_str());

    // Guessed (here: known) peer ids of the other tenant, on this edge and across.
    for target in [&a1_id, &a2_id] {
        offer_to(&mut b1, target).await;
        b1.expect_error("unknown peer").await;
        offer_to(&mut b2, target).await;
        b2.expect_error("unknown peer").await;
    }
    offer_to(&mut a2, &b1_id).await;
    a2.expect_error("unknown peer").await;
    // Within a tenant, across edges, relays work.
    offer_to(&mut a1, &a2_id).await;
    assert_eq!(a2.expect("offer").await["sender_id"], a1_id.as_str());

    // Kill the router owning tenant a's lobby: the next owner rebuilds both tenants' rooms from
    // the edges, each with its own members.
    let owner = cluster.owner_of_tenant_room("a", "lobby").await.unwrap();
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();
    let mut a3 = connect(&e0, &token(A1, &claims("a-3")), Some(A_ORIGIN)).await;
    let (a3_id, joined) = a3.join("lobby", json!({"name": "a3"})).await;
    let mut expected = vec![a1_id.clone(), a2_id.clone()];
    expected.sort();
    assert_eq!(peer_ids(&joined), expected, "{}", cluster.logs());
    let mut b3 = connect(&e1, &token(B1, &claims("b-3")), None).await;
    let (_, joined) = b3.join("lobby", json!({"name": "b3"})).await;
    let mut expected = vec![b1_id.clone(), b2_id.clone()];
    expected.sort();
    assert_eq!(peer_ids(&joined), expected, "{}", cluster.logs());
    for member in [&mut a1, &mut a2] {
        assert_eq!(member.expect("new_peer").await["peer_id"], a3_id.as_str());
    }
    for member in [&mut b1, &mut b2] {
        member.expect("new_peer").await;
    }
    // And nothing else reached anyone.
    for member in [&mut a1, &mut a2, &mut b1, &mut b2, &mut a3, &mut b3] {
        member.sync().await;
        assert!(
            member
                .recv_within(Duration::from_millis(100))
                .await
                .is_none()
        );
    }
}
