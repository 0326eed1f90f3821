//! Hosted mode, standalone: join tokens, refusals, origins, grants, tenant isolation, and the
//! tenants file reloaded while the edge runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::json;
use switchboard_tenants::token::{Claims, Grant};

use common::TestEdge;
use common::hosted::{
    A_ORIGIN, A1, A2, B1, TenantsFile, claims, claims_for_room, claims_with_grants, connect, now,
    refused_upgrade, token, two_tenants,
};

/// An upgrade path, its headers, and the expected status and reason.
type Case<'a> = (String, Vec<(&'a str, &'a str)>, u16, &'a str);

async fn hosted_edge(file: &TenantsFile) -> TestEdge {
    TestEdge::start_with(|config| file.configure(config)).await
}

/// Every refusal of docs/hosting.md's table, with its status and JSON reason, and none of them
/// takes a connection.
#[tokio::test]
async fn upgrades_without_a_valid_token_are_refused_with_the_documented_reason() {
    let file = TenantsFile::new(&two_tenants(""));
    let mut revoked = two_tenants("");
    revoked = revoked.replace(
        &format!("{{ id = \"{}\", secret = \"{}\" }},\n  {{", A1.0, A1.1),
        &format!(
            "{{ id = \"{}\", secret = \"{}\", revoked = true }},\n  {{",
            A1.0, A1.1
        ),
    );
    file.rewrite(&revoked);
    let edge = hosted_edge(&file).await;
    let origin = ("Origin", A_ORIGIN);
    let good = token(A2, &claims("alice"));
    let expired = token(
        A2,
        &Claims {
            exp: now() - 120,
            ..claims("alice")
        },
    );
    let future = token(
        A2,
        &Claims {
            nbf: Some(now() + 600),
            ..claims("alice")
        },
    );
    let too_long = token(
        A2,
        &Claims {
            exp: now() + 48 * 3600,
            ..claims("alice")
        },
    );
    // Tenant b's secret, but tenant a's key id: a forgery.
    let forged = token((A2.0, B1.1), &claims("mallory"));
    let unknown = token(("nobody", A2.1), &claims("alice"));
    let revoked = token(A1, &claims("alice"));
    let tampered = {
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };
    // alg: none, unsigned, naming a real key.
    let none = {
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT", "kid": A2.0})),
            b64(serde_json::to_value(claims("alice")).unwrap())
        )
    };
    let cases: Vec<Case> = vec![
        ("/".into(), vec![origin], 401, "missing token"),
        ("/?access_token=".into(), vec![origin], 401, "missing token"),
        (
            "/?access_token=garbage".into(),
            vec![origin],
            401,
            "invalid token",
        ),
        (
            format!("/?access_token={expired}"),
            vec![origin],
            401,
            "token expired",
        ),
        (
            format!("/?access_token={future}"),
            vec![origin],
            401,
            "token not yet valid",
        ),
        (
            format!("/?access_token={too_long}"),
            vec![origin],
            401,
            "token lifetime too long",
        ),
        (
            format!("/?access_token={forged}"),
            vec![origin],
            401,
            "invalid token",
        ),
        (
            format!("/?access_token={tampered}"),
            vec![origin],
            401,
            "invalid token",
        ),
        (
            format!("/?access_token={none}"),
            vec![origin],
            401,
            "invalid token",
        ),
        (
            format!("/?access_token={unknown}"),
            vec![origin],
            401,
            "unknown key",
        ),
        (
            format!("/?access_token={revoked}"),
            vec![origin],
            401,
            "key revoked",
        ),
        (
            format!("/?access_token={good}"),
            vec![("Origin", "https://evil.test")],
            403,
            "origin not allowed",
        ),
        // Tenant a takes browsers only.
        (
            format!("/?access_token={good}"),
            vec![],
            403,
            "origin required",
        ),
    ];
    for (path, headers, status, reason) in cases {
        let (got_status, body) = refused_upgrade(edge.addr, &path, &headers).await;
        assert_eq!(
            (got_status, body.clone()),
            (status, json!({ "error": reason })),
            "{path} {headers:?}"
        );
        let label = reason.replace(' ', "_");
        assert!(
            edge.metric(
                "switchboard_connections_refused_total",
                &[("reason", &label)]
            )
            .await
                >= 1.0
        );
    }
    assert_eq!(edge.metric("switchboard_connections", &[]).await, 0.0);
    assert_eq!(
        edge.metric("switchboard_connections_accepted_total", &[])
            .await,
        0.0
    );

    // The same token with the right origin connects, in the URL or as a bearer header.
    let mut client = connect(&edge.url(), &good, Some(A_ORIGIN)).await;
    client.join("lobby", json!({})).await;
    let bearer = format!("Bearer {}", token(B1, &claims("bob")));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(edge.url())
            .unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut native = common::Client { ws };
    native.join("lobby", json!({})).await;
}

/// A token's room, grants and name decide what its connection may do.
#[tokio::test]
async fn tokens_restrict_rooms_grants_and_names() {
    let file = TenantsFile::new(&two_tenants(""));
    let edge = hosted_edge(&file).await;

    let mut bound = connect(
        &edge.url(),
        &token(A1, &claims_for_room("alice", "standup")),
        Some(A_ORIGIN),
    )
    .await;
    bound
        .send(json!({"event": "join_room", "room_id": "retro"}))
        .await;
    bound.expect_error("room not allowed by token").await;
    let (alice, _) = bound.join("standup", json!({"name": "Mallory"})).await;

    let mut watcher = connect(
        &edge.url(),
        &token(
            A1,
            &Claims {
                name: Some("Carol".into()),
                ..claims_with_grants("carol", &[Grant::Join])
            },
        ),
        Some(A_ORIGIN),
    )
    .await;
    let (carol, joined) = watcher.join("standup", json!({"name": "Impostor"})).await;
    // Alice's token has no name: her own stays. Carol's name comes from her token.
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": alice, "status": {"name": "Mallory"}}])
    );
    let new_peer = bound.expect("new_peer").await;
    assert_eq!(new_peer["status"]["name"], "Carol");
    watcher
        .send(json!({"event": "update_status", "status": {"name": "Impostor"}}))
        .await;
    let update = bound.expect("peer_updated_status").await;
    assert_eq!(update["status"]["name"], "Carol");
    watcher.expect("peer_updated_status").await;
    // Carol may join but not send.
    watcher
        .send(json!({"event": "send_to_peer", "peer_id": alice, "data": {"event": "offer", "sdp": "x"}}))
        .await;
    watcher.expect_error("send not allowed by token").await;
    bound
        .send(json!({"event": "send_to_peer", "peer_id": carol, "data": {"event": "offer", "sdp": "x"}}))
        .await;
    assert_eq!(watcher.expect("offer").await["sender_id"], alice.as_str());

    let mut sender_only = connect(
        &edge.url(),
        &token(A1, &claims_with_grants("dave", &[Grant::Send])),
        Some(A_ORIGIN),
    )
    .await;
    sender_only
        .send(json!({"event": "join_room", "room_id": "standup"}))
        .await;
    sender_only.expect_error("join not allowed by token").await;
}

/// Two tenants using the same room name never meet, and guessing another tenant's peer ids leads
/// nowhere.
#[tokio::test]
async fn tenants_with_the_same_room_name_never_meet() {
    let file = TenantsFile::new(&two_tenants(""));
    let edge = hosted_edge(&file).await;
    let mut a1 = connect(&edge.url(), &token(A1, &claims("a-user-1")), Some(A_ORIGIN)).await;
    let mut a2 = connect(&edge.url(), &token(A2, &claims("a-user-2")), Some(A_ORIGIN)).await;
    let mut b1 = connect(&edge.url(), &token(B1, &claims("b-user-1")), None).await;
    let mut b2 = connect(&edge.url(), &token(B1, &claims("b-user-2")), None).await;

    let (a1_id, _) = a1.join("lobby", json!({"name": "a1"})).await;
    let (a2_id, joined) = a2.join("lobby", json!({"name": "a2"})).await;
    assert_eq!(joined["peers"].as_array().unwrap().len(), 1);
    a1.expect("new_peer").await;
    let (b1_id, joined) = b1.join("lobby", json!({"name": "b1"})).await;
    assert_eq!(joined["peers"], json!([]), "tenant b's lobby is its own");
    let (_, joined) = b2.join("lobby", json!({"name": "b2"})).await;
    assert_eq!(joined["peers"].as_array().unwrap().len(), 1);
    b1.expect("new_peer").await;

    // b1 knows a1's id (say it leaked): still an unknown peer.
    for target in [&a1_id, &a2_id] {
        b1.send(json!({"event": "send_to_peer", "peer_id": target, "data": {"event": "offer", "sdp": "x"}}))
            .await;
        b1.expect_error("unknown peer").await;
    }
    a1.send(
        json!({"event": "send_to_peer", "peer_id": b1_id, "data": {"event": "message", "x": 1}}),
    )
    .await;
    a1.expect_error("unknown peer").await;
    b1.send(json!({"event": "update_status", "status": {"name": "b1 again"}}))
        .await;
    b1.expect("peer_updated_status").await;
    b2.expect("peer_updated_status").await;
    // Nothing of tenant b reached tenant a.
    for client in [&mut a1, &mut a2] {
        client.sync().await;
    }
    assert!(a1.recv_within(Duration::from_millis(200)).await.is_none());
    assert!(a2.recv_within(Duration::from_millis(200)).await.is_none());
}

/// The tenants file is re-read while the edge runs: a revoked key stops new connections, a new key
/// works, and a broken file keeps the previous tenants.
#[tokio::test]
async fn the_tenants_file_is_reloaded_and_a_bad_one_keeps_the_previous() {
    let file = TenantsFile::new(&two_tenants(""));
    let edge = hosted_edge(&file).await;
    let a1_token = token(A1, &claims("alice"));
    let mut before = connect(&edge.url(), &a1_token, Some(A_ORIGIN)).await;
    before.join("lobby", json!({})).await;

    file.rewrite("[tenants.a]\nkeys = \"not a list\"\n");
    edge.wait_metric(
        "switchboard_tenants_reloads_total",
        &[("result", "refused")],
        1.0,
    )
    .await;
    assert_eq!(edge.metric("switchboard_tenants", &[]).await, 2.0);
    connect(&edge.url(), &a1_token, Some(A_ORIGIN))
        .await
        .sync()
        .await;

    // Key a1 revoked: new connections with it are refused at once; its open connection stays.
    let revoked = two_tenants("").replace(
        &format!("secret = \"{}\" }},\n  {{ id = \"{}\"", A1.1, A2.0),
        &format!(
            "secret = \"{}\", revoked = true }},\n  {{ id = \"{}\"",
            A1.1, A2.0
        ),
    );
    assert_ne!(revoked, two_tenants(""));
    file.rewrite(&revoked);
    edge.wait_metric(
        "switchboard_tenants_reloads_total",
        &[("result", "loaded")],
        1.0,
    )
    .await;
    let (status, body) = refused_upgrade(
        edge.addr,
        &format!("/?access_token={a1_token}"),
        &[("Origin", A_ORIGIN)],
    )
    .await;
    assert_eq!((status, body), (401, json!({"error": "key revoked"})));
    connect(&edge.url(), &token(A2, &claims("alice")), Some(A_ORIGIN))
        .await
        .sync()
        .await;
    before.sync().await;
}

/// Open mode stays open, and `--allowed-origin` limits browsers.
#[tokio::test]
async fn open_mode_origins() {
    let edge = TestEdge::start_with(|config| {
        config.hosted.allowed_origins = vec!["https://ok.test".into()];
    })
    .await;
    let (status, body) = refused_upgrade(edge.addr, "/", &[("Origin", "https://evil.test")]).await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "origin not allowed"}))
    );
    // A native client (no Origin) is allowed by default; a token is ignored.
    let mut native =
        common::Client::connect_url(&format!("{}?access_token=whatever", edge.url())).await;
    native.join("lobby", json!({})).await;
}
