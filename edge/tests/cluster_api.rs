//! The control API of a cluster (2 routers serving it, 2 hosted edges, a 3-node NATS), end to end
//! and through the API alone: the operator onboards a customer on one router, every edge takes the
//! new key within a second, the customer's clients call each other across the edges, the router
//! owning their room is killed, and the other router lists, removes, reports usage, while the
//! customer's webhook receiver (a real HTTP server on loopback) gets the room's events, verified
//! and in order. Then a receiver down for 30 s, with the owning router killed meanwhile, gets every
//! event of the outage from the JetStream outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::api::{OPERATOR_TOKEN, call};
use common::cluster::{Cluster, SECRET};
use common::hosted::{
    TenantsFile, claims, claims_with_grants, connect, token, try_connect, two_tenants,
};
use common::webhook::{Received, Seq, WEBHOOK_SECRET, check_meeting, meet, serve};
use common::{Ended, PATIENCE};
use serde_json::{Value, json};
use switchboard_tenants::token::Grant;
use switchboard_testkit::TempDir;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The routers' control API flags, with the operator's token file in `dir`.
fn api_args(dir: &TempDir) -> Vec<String> {
    let tokens = dir.path().join("api-tokens");
    std::fs::write(&tokens, format!("{OPERATOR_TOKEN}\n")).unwrap();
    [
        "--api-listen",
        "127.0.0.1:0",
        "--api-token-file",
        tokens.to_str().unwrap(),
        "--room-key-secret",
        SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Calls `path` until it answers something else than 503 (a failover in progress, as an API
/// client would retry), within [`PATIENCE`].
async fn settled(addr: SocketAddr, method: &str, path: &str, auth: &str) -> (u16, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = call(addr, method, path, auth, None).await;
        if status != 503 || Instant::now() >= deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant's usage over every hour reported (a test may run across an hour's end): totals
/// added up, peaks the largest.
fn total(usage: &Value) -> Value {
    let hours = usage["hours"].as_array().cloned().unwrap_or_default();
    let sum = |field: &str| hours.iter().filter_map(|h| h[field].as_u64()).sum::<u64>();
    let max = |field: &str| hours.iter().filter_map(|h| h[field].as_u64()).max();
    json!({
        "hours": hours.len(),
        "rooms_opened": sum("rooms_opened"),
        "messages_relayed": sum("messages_relayed"),
        "connection_seconds": sum("connection_seconds"),
        "peak_room_members": max("peak_room_members"),
        "peak_connections": max("peak_connections"),
    })
}

/// Polls the usage route until `done` holds for the tenant's total ([`total`]); returns it.
async fn usage_until(
    addr: SocketAddr,
    auth: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, usage) = call(addr, "GET", "/v1/tenants/acme/usage", auth, None).await;
        let total = total(&usage);
        if status == 200 && done(&total) {
            return total;
        }
        assert!(
            Instant::now() < deadline,
            "usage never showed {what}: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_through_the_api_of_a_cluster_with_a_router_killed_between_steps() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let received = Received::default();
    let server = serve(listener, received.clone());
    let dir = TempDir::new("cluster-api").unwrap();
    let router_args = api_args(&dir);
    let router_args: Vec<&str> = router_args.iter().map(String::as_str).collect();
    let mut cluster = Cluster::start_with_args(2, 2, &["--auth", "tokens"], &router_args).await;
    let api = |cluster: &Cluster, i: usize| cluster.router(i).addr("api_listen").unwrap();
    let operator = format!("Bearer {OPERATOR_TOKEN}");

    // The operator creates the tenant, a key and the webhook through router 0.
    let (status, tenant) = call(
        api(&cluster, 0),
        "POST",
        "/v1/tenants",
        &operator,
        Some(json!({"id": "acme", "limits": {"max_room_size": 4}})),
    )
    .await;
    assert_eq!(status, 201, "{tenant}");
    let (status, webhook) = call(
        api(&cluster, 0),
        "PUT",
        "/v1/tenants/acme/webhook",
        &operator,
        Some(json!({"url": format!("http://{receiver}/hooks"), "secret": WEBHOOK_SECRET})),
    )
    .await;
    assert_eq!(status, 200, "{webhook}");
    let (status, key) = call(
        api(&cluster, 0),
        "POST",
        "/v1/tenants/acme/keys",
        &operator,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let created = Instant::now();
    let key = (
        key["id"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    );
    let key = (key.0.as_str(), key.1.as_str());

    // Within a second, both edges admit the key's tokens and router 1 shows the tenant.
    for edge in 0..2 {
        let url = cluster.edge_url(edge);
        loop {
            match try_connect(&url, &token(key, &claims("probe")), None).await {
                Ok(_) => break,
                Err(status) => assert!(
                    created.elapsed() < Duration::from_secs(1),
                    "edge {edge} still refuses the new key ({status}) a second after it was created"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (status, shown) = call(api(&cluster, 1), "GET", "/v1/tenants/acme", &operator, None).await;
    assert_eq!(
        (status, &shown["limits"]["max_room_size"]),
        (200, &json!(4))
    );

    // Two clients, one on each edge, call each other.
    let mut alice = connect(&cluster.edge_url(0), &token(key, &claims("alice")), None).await;
    let mut bob = connect(&cluster.edge_url(1), &token(key, &claims("bob")), None).await;
    let (alice_id, _) = alice.join("standup", json!({"name": "Alice"})).await;
    let (bob_id, joined) = bob.join("standup", json!({"name": "Bob"})).await;
    assert_eq!(joined["peers"][0]["peer_id"], alice_id.as_str());
    alice.expect("new_peer").await;
    alice
        .send(json!({"event": "send_to_peer", "peer_id": bob_id, "data": {"event": "offer", "sdp": "x"}}))
        .await;
    assert_eq!(bob.expect("offer").await["sender_id"], json!(alice_id));

    // The customer's backend, with an admin token of its key, sees the usage stored so far: asked
    // of the router that does not own the room, which knows the owner's counts only once they are
    // stored (the owner shows its own at once, and loses up to a second of them when it dies).
    let admin = format!(
        "Bearer {}",
        token(key, &claims_with_grants("backend", &[Grant::Admin]))
    );
    let owner = cluster
        .owner_of_tenant_room("acme", "standup")
        .await
        .unwrap();
    let api1 = api(&cluster, 1 - owner);
    usage_until(api1, &admin, "the room and the message", |total| {
        total["rooms_opened"] == 1
            && total["peak_room_members"] == 2
            && total["messages_relayed"] == 1
    })
    .await;

    // The router owning the room dies; the other serves the rest.
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();

    let (status, rooms) = settled(api1, "GET", "/v1/tenants/acme/rooms", &admin).await;
    assert_eq!(status, 200, "{rooms}\n{}", cluster.logs());
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1), "{rooms}");
    assert_eq!(
        (&rooms["rooms"][0]["name"], &rooms["rooms"][0]["members"]),
        (&json!("standup"), &json!(2))
    );
    let (status, room) = settled(api1, "GET", "/v1/tenants/acme/rooms/standup", &admin).await;
    assert_eq!(status, 200, "{room}");
    let members = room["members"].as_array().unwrap();
    let ids: Vec<&str> = members
        .iter()
        .map(|m| m["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alice_id.as_str(), bob_id.as_str()]);
    assert_eq!(members[1]["status"]["name"], "Bob");
    assert_ne!(
        members[0]["edge"], members[1]["edge"],
        "one member per edge"
    );

    // Bob is removed: he is told and closed, Alice sees him leave.
    let (status, body) = settled(
        api1,
        "DELETE",
        &format!("/v1/tenants/acme/rooms/standup/members/{bob_id}"),
        &admin,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (_, ended) = bob.drain_until_closed().await;
    assert_eq!(
        ended,
        Ended::Close(Some(4403), "removed by the service".into())
    );
    assert_eq!(alice.expect("peer_left").await["sender_id"], json!(bob_id));
    alice.send(json!({"event": "leave_room"})).await;
    alice.sync().await;
    let (status, rooms) = settled(api1, "GET", "/v1/tenants/acme/rooms", &admin).await;
    assert_eq!(
        (status, rooms["rooms"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // The usage survived the owner's death: one room of two members, one message, and the edges'
    // connection counts (the probes included).
    let total = usage_until(api1, &admin, "the connections", |total| {
        total["peak_connections"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(
        (
            &total["rooms_opened"],
            &total["peak_room_members"],
            &total["messages_relayed"]
        ),
        (&json!(1), &json!(2), &json!(1)),
        "{total}"
    );

    // The webhook receiver heard the room's story in order, each event verified.
    let events = received.wait_for(6).await;
    let got: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            assert_eq!(
                (&e["tenant"], &e["room"]),
                (&json!("acme"), &json!("standup"))
            );
            (e["event"].as_str().unwrap(), e["peer_id"].as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("room_started", None),
            ("participant_joined", Some(alice_id.as_str())),
            ("participant_joined", Some(bob_id.as_str())),
            ("participant_left", Some(bob_id.as_str())),
            ("participant_left", Some(alice_id.as_str())),
            ("room_finished", None),
        ],
        "{events:#?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");

    // Deleting the tenant through the surviving router closes its connections everywhere.
    let mut carol = connect(&cluster.edge_url(0), &token(key, &claims("carol")), None).await;
    carol.sync().await;
    let (status, _) = call(api1, "DELETE", "/v1/tenants/acme", &operator, None).await;
    assert_eq!(status, 204);
    assert_eq!(
        carol.ended().await,
        Ended::Close(Some(4401), "tenant deleted".into())
    );
    server.abort();
}

/// Events must wait out the backoff after a 30 s outage (attempts about 1, 2, 4, 8, 16 and 32 s
/// apart): up to about a minute after the receiver is back.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_down_for_30_s_gets_every_event_in_order_across_a_failover() {
    // The receiver's port, closed from the start: connections are refused.
    let receiver = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let file = TenantsFile::new(&format!(
        "{}\n[tenants.a.webhook]\nurl = \"http://{receiver}/hooks\"\nsecret = \"{WEBHOOK_SECRET}\"\n",
        two_tenants("")
    ));
    let path = file.path.display().to_string();
    let mut cluster = Cluster::start_with_args(
        2,
        2,
        &["--auth", "tokens", "--tenants-file", &path],
        &["--tenants-file", &path],
    )
    .await;
    let down = Instant::now();
    let (e0, e1) = (cluster.edge_url(0), cluster.edge_url(1));

    // Two meetings across the edges while the receiver is down, then the owner of the first room
    // dies: its events wait in the JetStream outbox for the next owner.
    let standup = meet(&e0, &e1, "standup").await;
    let retro = meet(&e1, &e0, "retro").await;
    let owner = cluster.owner_of_tenant_room("a", "standup").await.unwrap();
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();

    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down.elapsed())).await;
    let received = Received::default();
    let server = serve(TcpListener::bind(receiver).await.unwrap(), received.clone());
    let deadline = Instant::now() + OUTAGE_PATIENCE;
    while received.snapshot().len() < 12 {
        assert!(
            Instant::now() < deadline,
            "{} of 12 events arrived: {:#?}\n{}",
            received.snapshot().len(),
            received.snapshot(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = received.snapshot();
    assert_eq!(events.len(), 12, "{events:#?}");
    for (room, (ada, bob)) in [("standup", &standup), ("retro", &retro)] {
        let of_room: Vec<Value> = events
            .iter()
            .filter(|e| e["room"] == room)
            .cloned()
            .collect();
        check_meeting(&of_room, room, ada, bob, Seq::Increasing);
    }
    server.abort();
}
