//! The control API's rooms and members across a cluster (2 routers, 2 edges, hosted mode), through
//! the routers' room service over NATS (`ClusterRoomService`): listing gathered from every slot,
//! members on both edges, server messages and removal across edges, and the same after the router
//! owning the room is killed (its successor rebuilt the room, name included, from the edges).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::cluster::{Cluster, SECRET};
use common::hosted::{A_ORIGIN, A1, A2, B1, TenantsFile, claims, connect, token, two_tenants};
use common::{Ended, PATIENCE};
use serde_json::json;
use switchboard_api::service::{Audience, ServiceError};
use switchboard_proto::{ConnId, RoomKeyer, TenantId};
use switchboard_router::service::room_service::ClusterRoomService;

/// Retries `call` while the room service is unavailable (a failover in progress), as an API client
/// would; any other answer is returned.
async fn settled<T, F, Fut>(mut call: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match call().await {
            Err(ServiceError::Unavailable) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_listed_and_managed_across_edges_and_a_router_failover() {
    let file = TenantsFile::new(&two_tenants(""));
    let path = file.path.display().to_string();
    let mut cluster =
        Cluster::start_with(2, 2, &["--auth", "tokens", "--tenants-file", &path]).await;
    let client = async_nats::connect(cluster.nats.url(0)).await.unwrap();
    let rooms = ClusterRoomService::shared(
        client,
        RoomKeyer::new(SECRET.as_bytes()),
        switchboard_proto::bus::DEFAULT_SLOTS,
    );
    let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
    let (e0, e1) = (cluster.edge_url(0), cluster.edge_url(1));

    let mut a1 = connect(&e0, &token(A1, &claims("a-1")), Some(A_ORIGIN)).await;
    let mut a2 = connect(&e1, &token(A2, &claims("a-2")), Some(A_ORIGIN)).await;
    let mut a3 = connect(&e1, &token(A2, &claims("a-3")), Some(A_ORIGIN)).await;
    let mut b1 = connect(&e0, &token(B1, &claims("b-1")), None).await;
    let (a1_id, _) = a1.join("lobby", json!({"name": "a1"})).await;
    let (a2_id, _) = a2.join("lobby", json!({"name": "a2"})).await;
    a1.expect("new_peer").await;
    let (a3_id, _) = a3.join("lobby", json!({"name": "a3"})).await;
    a1.expect("new_peer").await;
    a2.expect("new_peer").await;
    b1.join("lobby", json!({"name": "b1"})).await;

    let listed = rooms.rooms(&a).await.unwrap();
    assert_eq!(listed.len(), 1, "{}", cluster.logs());
    assert_eq!((listed[0].name.as_str(), listed[0].members), ("lobby", 3));
    let members = rooms.members(&a, "lobby").await.unwrap();
    let ids: Vec<String> = members.iter().map(|m| m.peer_id.to_string()).collect();
    assert_eq!(ids, vec![a1_id.clone(), a2_id.clone(), a3_id.clone()]);
    assert_ne!(members[0].edge, members[1].edge, "members on both edges");
    // Tenant b's room of the same name is its own.
    let theirs = rooms.members(&b, "lobby").await.unwrap();
    assert_eq!(theirs.len(), 1);
    let a1_conn: ConnId = a1_id.parse().unwrap();
    assert_eq!(
        rooms.remove_member(&b, "lobby", a1_conn).await.unwrap_err(),
        ServiceError::NotFound
    );

    // A message to the room reaches both edges.
    let data = json!({"text": "hello"}).as_object().cloned().unwrap();
    rooms
        .send(&a, "lobby", Audience::Room, data.clone())
        .await
        .unwrap();
    for client in [&mut a1, &mut a2, &mut a3] {
        assert_eq!(client.expect("server_message").await["data"], json!(data));
    }

    // Kill the router owning the room; its successor knows the room by name.
    let owner = cluster.owner_of_tenant_room("a", "lobby").await.unwrap();
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();
    let listed = settled(|| rooms.rooms(&a)).await.unwrap();
    assert_eq!(listed.len(), 1, "{}", cluster.logs());
    assert_eq!((listed[0].name.as_str(), listed[0].members), ("lobby", 3));

    // Remove a1 (edge 0) through the new owner: it is closed with 4403, a2 and a3 (edge 1) see it
    // leave.
    settled(|| rooms.remove_member(&a, "lobby", a1_conn))
        .await
        .unwrap();
    let (seen, ended) = a1.drain_until_closed().await;
    assert_eq!(
        seen.last().map(|m| m["message"].clone()),
        Some(json!("removed by the service"))
    );
    assert_eq!(
        ended,
        Ended::Close(Some(4403), "removed by the service".into())
    );
    for client in [&mut a2, &mut a3] {
        assert_eq!(client.expect("peer_left").await["sender_id"], json!(a1_id));
    }
    let members = settled(|| rooms.members(&a, "lobby")).await.unwrap();
    assert_eq!(members.len(), 2);

    // Closing the room closes the members on the other edge.
    settled(|| rooms.close_room(&a, "lobby")).await.unwrap();
    for client in [&mut a2, &mut a3] {
        let (_, ended) = client.drain_until_closed().await;
        assert_eq!(
            ended,
            Ended::Close(Some(4403), "removed by the service".into())
        );
    }
    assert!(settled(|| rooms.rooms(&a)).await.unwrap().is_empty());
    assert_eq!(settled(|| rooms.rooms(&b)).await.unwrap().len(), 1);
}
