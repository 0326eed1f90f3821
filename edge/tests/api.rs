//! The control API of a standalone edge, end to end: the operator onboards a customer through the
//! API alone, the customer's tokens get clients in, and revoking and deleting take effect at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::api::{OPERATOR_TOKEN, acme_with_a_key, call};
use common::hosted::{claims, claims_with_grants, connect, try_connect};
use common::{Ended, TestEdge};
use serde_json::json;
use switchboard_tenants::token::Grant;
use switchboard_testkit::TempDir;

async fn edge_with_api(dir: &TempDir) -> TestEdge {
    let tokens = dir.path().join("api-tokens");
    std::fs::write(&tokens, format!("# the operator\n{OPERATOR_TOKEN}\n")).unwrap();
    let state = dir.path().join("api-state.json");
    TestEdge::start_with(|config| {
        config.hosted.auth = switchboard_edge::config::AuthMode::Tokens;
        config.api.api_listen = Some("127.0.0.1:0".parse().unwrap());
        config.api.api_token_file = Some(tokens);
        config.api.api_state_file = Some(state);
    })
    .await
}

#[tokio::test]
async fn onboarding_through_the_api_alone() {
    let dir = TempDir::new("api-e2e").unwrap();
    let edge = edge_with_api(&dir).await;
    let api = edge.api.expect("the API listens");
    let operator = format!("Bearer {OPERATOR_TOKEN}");

    let (status, tenant) = call(
        api,
        "POST",
        "/v1/tenants",
        &operator,
        Some(json!({"id": "acme", "limits": {"max_room_size": 2}})),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    let (status, key) = call(
        api,
        "POST",
        "/v1/tenants/acme/keys",
        &operator,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key = (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    );
    let key = (key.0.as_str(), key.1.as_str());

    // The customer's backend mints join tokens with the secret it was given; two clients meet.
    let mut alice = connect(
        &edge.url(),
        &common::hosted::token(key, &claims("alice")),
        None,
    )
    .await;
    let mut bob = connect(
        &edge.url(),
        &common::hosted::token(key, &claims("bob")),
        None,
    )
    .await;
    let (alice_id, _) = alice.join("standup", json!({"name": "Alice"})).await;
    let (_, joined) = bob.join("standup", json!({"name": "Bob"})).await;
    assert_eq!(joined["peers"][0]["peer_id"], alice_id.as_str());
    alice.expect("new_peer").await;

    // The same key, as the customer's admin token, reads its own tenant and usage.
    let admin = format!(
        "Bearer {}",
        common::hosted::token(key, &claims_with_grants("backend", &[Grant::Admin]))
    );
    let (status, own) = call(api, "GET", "/v1/tenants/acme", &admin, None).await;
    assert_eq!((status, &own["limits"]["max_room_size"]), (200, &json!(2)));
    let (status, usage) = call(api, "GET", "/v1/tenants/acme/usage", &admin, None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["tenant"], "acme");
    let (status, _) = call(api, "GET", "/v1/tenants", &admin, None).await;
    assert_eq!(status, 403, "listing tenants is the operator's");

    // Revoking the key refuses new connections at once; the open ones stay.
    let (status, _) = call(
        api,
        "POST",
        &format!("/v1/tenants/acme/keys/{}/revoke", key.0),
        &operator,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        try_connect(
            &edge.url(),
            &common::hosted::token(key, &claims("carol")),
            None
        )
        .await
        .err(),
        Some(401)
    );
    alice.send(json!({"event": "ping"})).await;
    alice.expect("pong").await;

    // Deleting the tenant closes its connections with 4401.
    let (status, _) = call(api, "DELETE", "/v1/tenants/acme", &operator, None).await;
    assert_eq!(status, 204);
    for client in [&mut alice, &mut bob] {
        match client.ended().await {
            Ended::Close(code, reason) => {
                assert_eq!((code, reason.as_str()), (Some(4401), "tenant deleted"))
            }
            Ended::Eof => panic!("a deleted tenant's connection is closed with 4401"),
        }
    }
    let (status, _) = call(api, "GET", "/v1/tenants/acme", &operator, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tenants_survive_a_restart_in_the_state_file() {
    let dir = TempDir::new("api-restart").unwrap();
    let key = {
        let mut edge = edge_with_api(&dir).await;
        let api = edge.api.unwrap();
        let key = acme_with_a_key(api, json!({})).await;
        edge.begin_shutdown(std::time::Duration::ZERO);
        edge.stopped().await;
        key
    };
    let edge = edge_with_api(&dir).await;
    let key = (key.0.as_str(), key.1.as_str());
    let mut client = connect(
        &edge.url(),
        &common::hosted::token(key, &claims("alice")),
        None,
    )
    .await;
    client.join("standup", json!({})).await;
    let (status, _) = call(
        edge.api.unwrap(),
        "GET",
        "/v1/tenants",
        "Bearer not-the-operator-token",
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_tenant_lists_its_rooms_and_removes_a_member() {
    let dir = TempDir::new("api-rooms").unwrap();
    let edge = edge_with_api(&dir).await;
    let api = edge.api.expect("the API listens");
    let key = acme_with_a_key(api, json!({})).await;
    let key = (key.0.as_str(), key.1.as_str());
    let admin = format!(
        "Bearer {}",
        common::hosted::token(key, &claims_with_grants("backend", &[Grant::Admin]))
    );

    let mut alice = connect(
        &edge.url(),
        &common::hosted::token(key, &claims("alice")),
        None,
    )
    .await;
    let mut bob = connect(
        &edge.url(),
        &common::hosted::token(key, &claims("bob")),
        None,
    )
    .await;
    let (alice_id, _) = alice.join("stand up", json!({"name": "Alice"})).await;
    let (bob_id, _) = bob.join("stand up", json!({"name": "Bob"})).await;
    alice.expect("new_peer").await;

    let (status, rooms) = call(api, "GET", "/v1/tenants/acme/rooms", &admin, None).await;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1, "{rooms}");
    let room = &rooms["rooms"][0];
    assert_eq!(
        (&room["name"], &room["members"], &room["peak_members"]),
        (&json!("stand up"), &json!(2), &json!(2))
    );
    assert!(
        room["opened_at"].as_u64().unwrap() > 1_700_000_000,
        "{room}"
    );

    let (status, room) = call(
        api,
        "GET",
        "/v1/tenants/acme/rooms/stand%20up",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{room}");
    let members = room["members"].as_array().unwrap();
    assert_eq!(
        members
            .iter()
            .map(|m| m["peer_id"].clone())
            .collect::<Vec<_>>(),
        [json!(alice_id), json!(bob_id)]
    );
    assert_eq!(members[1]["status"]["name"], "Bob");
    assert!(members[1]["edge"].is_string() && members[1]["joined_at"].is_u64());

    // A server message to Bob only.
    let (status, _) = call(
        api,
        "POST",
        "/v1/tenants/acme/rooms/stand%20up/messages",
        &admin,
        Some(json!({"data": {"text": "you are next"}, "to": bob_id})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        bob.expect("server_message").await["data"],
        json!({"text": "you are next"})
    );

    // Bob is removed: told why and closed with 4403; Alice sees him leave.
    let member = format!("/v1/tenants/acme/rooms/stand%20up/members/{bob_id}");
    let (status, _) = call(api, "DELETE", &member, &admin, None).await;
    assert_eq!(status, 204);
    let (seen, ended) = bob.drain_until_closed().await;
    assert_eq!(
        seen.last().map(|e| (&e["event"], &e["message"])),
        Some((&json!("error"), &json!("removed by the service")))
    );
    assert_eq!(
        ended,
        Ended::Close(Some(4403), "removed by the service".into())
    );
    assert_eq!(alice.expect("peer_left").await["sender_id"], json!(bob_id));
    let (status, _) = call(api, "DELETE", &member, &admin, None).await;
    assert_eq!(status, 404, "already gone");
    let (status, _) = call(api, "GET", "/v1/tenants/acme/rooms/nowhere", &admin, None).await;
    assert_eq!(status, 404);
}
