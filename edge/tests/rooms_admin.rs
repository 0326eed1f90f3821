//! The control API's rooms and members, standalone, through the edge's room service
//! (`LocalRoomService`): listing by name, members, removing a member (it is told `removed by the
//! service` and closed with 4403, the others get `peer_left`), closing a room, server messages,
//! and tenant isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::json;
use switchboard_api::service::{Audience, ServiceError};
use switchboard_proto::{ConnId, TenantId};

use common::hosted::{A_ORIGIN, A1, B1, TenantsFile, claims, connect, token, two_tenants};
use common::{Client, Ended, TestEdge};

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

async fn client(edge: &TestEdge, key: (&str, &str), user: &str) -> Client {
    connect(&edge.url(), &token(key, &claims(user)), Some(A_ORIGIN)).await
}

#[tokio::test]
async fn a_tenant_lists_removes_closes_and_messages_its_rooms() {
    let file = TenantsFile::new(&two_tenants(""));
    let mut edge = TestEdge::start_with(|config| file.configure(config)).await;
    let rooms = edge.room_service().await;
    let a = tenant("a");

    let mut alice = client(&edge, A1, "alice").await;
    let (alice_id, _) = alice.join("standup", json!({"name": "Alice"})).await;
    let mut bob = client(&edge, A1, "bob").await;
    let (bob_id, _) = bob.join("standup", json!({"name": "Bob"})).await;
    alice.expect("new_peer").await;
    let mut carol = client(&edge, A1, "carol").await;
    let (carol_id, _) = carol.join("standup", json!({})).await;
    alice.expect("new_peer").await;
    bob.expect("new_peer").await;

    let listed = rooms.rooms(&a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].members,
            listed[0].peak_members
        ),
        ("standup", 3, 3)
    );
    let members = rooms.members(&a, "standup").await.unwrap();
    let ids: Vec<String> = members.iter().map(|m| m.peer_id.to_string()).collect();
    assert_eq!(
        ids,
        vec![alice_id.clone(), bob_id.clone(), carol_id.clone()]
    );
    assert_eq!(
        members[0].status,
        json!({"name": "Alice"}).as_object().cloned().unwrap()
    );
    assert_eq!(
        rooms.members(&a, "nowhere").await.unwrap_err(),
        ServiceError::NotFound
    );

    // A server message to one member, then to the room.
    let data = json!({"text": "recording starts"})
        .as_object()
        .cloned()
        .unwrap();
    let bob_conn: ConnId = bob_id.parse().unwrap();
    rooms
        .send(&a, "standup", Audience::Member(bob_conn), data.clone())
        .await
        .unwrap();
    assert_eq!(
        bob.expect("server_message").await,
        json!({"event": "server_message", "data": {"text": "recording starts"}})
    );
    rooms
        .send(&a, "standup", Audience::Room, data.clone())
        .await
        .unwrap();
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.expect("server_message").await["data"], json!(data));
    }

    // Bob is removed: he is told why and closed with 4403; the others see him leave.
    rooms.remove_member(&a, "standup", bob_conn).await.unwrap();
    let (seen, ended) = bob.drain_until_closed().await;
    assert_eq!(
        seen.last(),
        Some(
            &json!({"event": "error", "message": "removed by the service",
                     "description": "removed by the service"})
        )
    );
    assert_eq!(
        ended,
        Ended::Close(Some(4403), "removed by the service".into())
    );
    for client in [&mut alice, &mut carol] {
        assert_eq!(client.expect("peer_left").await["sender_id"], json!(bob_id));
    }
    assert_eq!(
        rooms
            .remove_member(&a, "standup", bob_conn)
            .await
            .unwrap_err(),
        ServiceError::NotFound
    );
    // Alice can no longer reach him: the edge dropped him from its view.
    alice
        .send(json!({"event": "send_to_peer", "peer_id": bob_id, "data": {"event": "message"}}))
        .await;
    alice.expect_error("unknown peer").await;

    // Closing the room removes everyone the same way.
    rooms.close_room(&a, "standup").await.unwrap();
    for client in [&mut alice, &mut carol] {
        let (_, ended) = client.drain_until_closed().await;
        assert_eq!(
            ended,
            Ended::Close(Some(4403), "removed by the service".into())
        );
    }
    assert!(rooms.rooms(&a).await.unwrap().is_empty());
    assert_eq!(
        rooms.close_room(&a, "standup").await.unwrap_err(),
        ServiceError::NotFound
    );
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_rooms() {
    let file = TenantsFile::new(&two_tenants(""));
    let mut edge = TestEdge::start_with(|config| file.configure(config)).await;
    let rooms = edge.room_service().await;
    let (a, b) = (tenant("a"), tenant("b"));

    let mut alice = client(&edge, A1, "alice").await;
    let (alice_id, _) = alice.join("standup", json!({})).await;
    let alice_conn: ConnId = alice_id.parse().unwrap();
    let mut bert = client(&edge, B1, "bert").await;
    bert.join("other", json!({})).await;

    let names = |list: Vec<switchboard_api::service::RoomInfo>| {
        list.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(names(rooms.rooms(&a).await.unwrap()), vec!["standup"]);
    assert_eq!(names(rooms.rooms(&b).await.unwrap()), vec!["other"]);
    // Tenant b names tenant a's room and member: none of it exists for b.
    assert_eq!(
        rooms.members(&b, "standup").await.unwrap_err(),
        ServiceError::NotFound
    );
    assert_eq!(
        rooms
            .remove_member(&b, "standup", alice_conn)
            .await
            .unwrap_err(),
        ServiceError::NotFound
    );
    assert_eq!(
        rooms
            .send(&b, "standup", Audience::Room, Default::default())
            .await
            .unwrap_err(),
        ServiceError::NotFound
    );
    assert_eq!(
        rooms.close_room(&b, "standup").await.unwrap_err(),
        ServiceError::NotFound
    );
    // Alice was told nothing and is still in her room.
    alice.sync().await;
    assert_eq!(rooms.members(&a, "standup").await.unwrap().len(), 1);
}
