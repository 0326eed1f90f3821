//! Hosted mode's quotas and usage, standalone: each of a tenant's limits as its clients meet them
//! (refusals, error texts, metrics), and the usage per tenant in the metrics and `/stats`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::hosted::{
    A_ORIGIN, A1, B1, TenantsFile, claims, connect, refused_upgrade, token, two_tenants, usage_of,
};
use common::{Client, TestEdge, http_get};

async fn hosted_edge(file: &TenantsFile) -> TestEdge {
    TestEdge::start_with(|config| file.configure(config)).await
}

/// A client of tenant a (user `sub`).
async fn a_client(edge: &TestEdge, sub: &str) -> Client {
    connect(&edge.url(), &token(A1, &claims(sub)), Some(A_ORIGIN)).await
}

async fn refusals(edge: &TestEdge, tenant: &str, quota: &str) -> f64 {
    edge.metric(
        "switchboard_tenant_quota_refusals_total",
        &[("tenant", tenant), ("quota", quota)],
    )
    .await
}

#[tokio::test]
async fn connections_beyond_a_tenants_limit_are_refused_with_429() {
    let file = TenantsFile::new(&two_tenants("max_connections = 2"));
    let edge = hosted_edge(&file).await;
    let mut first = a_client(&edge, "u1").await;
    let mut second = a_client(&edge, "u2").await;
    first.sync().await;
    second.sync().await;

    let path = format!("/?access_token={}", token(A1, &claims("u3")));
    let (status, body) = refused_upgrade(edge.addr, &path, &[("Origin", A_ORIGIN)]).await;
    assert_eq!(
        (status, body),
        (429, json!({"error": "connection quota exceeded"}))
    );
    assert_eq!(
        edge.metric(
            "switchboard_connections_refused_total",
            &[("reason", "connection_quota_exceeded")]
        )
        .await,
        1.0
    );
    assert_eq!(refusals(&edge, "a", "connections").await, 1.0);
    assert_eq!(
        edge.metric("switchboard_tenant_connections", &[("tenant", "a")])
            .await,
        2.0
    );

    // Another tenant's connections are its own.
    let mut other = connect(&edge.url(), &token(B1, &claims("b")), None).await;
    other.sync().await;

    // A connection that ends gives its place back.
    drop(second);
    edge.wait_metric("switchboard_tenant_connections", &[("tenant", "a")], 1.0)
        .await;
    a_client(&edge, "u3").await.sync().await;
}

#[tokio::test]
async fn a_tenants_open_rooms_and_room_size_are_limited() {
    let file = TenantsFile::new(&two_tenants("max_rooms = 2\nmax_room_size = 2"));
    let edge = hosted_edge(&file).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(a_client(&edge, &format!("u{i}")).await);
    }
    clients[0].join("one", json!({})).await;
    clients[1].join("two", json!({})).await;
    clients[2]
        .send(json!({"event": "join_room", "room_id": "three"}))
        .await;
    clients[2].expect_error("room quota exceeded").await;
    assert_eq!(refusals(&edge, "a", "rooms").await, 1.0);
    assert_eq!(
        edge.metric("switchboard_tenant_rooms", &[("tenant", "a")])
            .await,
        2.0
    );

    // An open room takes members up to the tenant's room size.
    clients[2].join("one", json!({})).await;
    clients[0].expect("new_peer").await;
    clients[3]
        .send(json!({"event": "join_room", "room_id": "one"}))
        .await;
    clients[3].expect_error("room is full").await;
    assert_eq!(refusals(&edge, "a", "room_size").await, 1.0);

    // A room that closes makes room for another; the refused clients were left in no room.
    clients[1].send(json!({"event": "leave_room"})).await;
    clients[1].sync().await;
    clients[3].join("three", json!({})).await;
    clients[4]
        .send(json!({"event": "join_room", "room_id": "four"}))
        .await;
    clients[4].expect_error("room quota exceeded").await;

    // Tenant b has no limits and its own rooms, whatever their names.
    let mut b = connect(&edge.url(), &token(B1, &claims("b")), None).await;
    let (_, joined) = b.join("one", json!({})).await;
    assert_eq!(joined["peers"], json!([]));
    let mut b2 = connect(&edge.url(), &token(B1, &claims("b2")), None).await;
    b2.join("four", json!({})).await;
    assert_eq!(refusals(&edge, "b", "rooms").await, 0.0);
}

#[tokio::test]
async fn a_tenants_message_rate_is_shared_by_its_connections_and_never_closes_them() {
    let file = TenantsFile::new(&two_tenants("messages_per_second = 1\nmessage_burst = 3"));
    let edge = hosted_edge(&file).await;
    let mut clients = [a_client(&edge, "u1").await, a_client(&edge, "u2").await];
    let started = Instant::now();
    let (mut answered, mut limited) = (0, 0);
    for i in 0..12 {
        let client = &mut clients[i % 2];
        client.send(json!({"event": "info"})).await;
        let reply = client.recv().await;
        match reply["event"].as_str() {
            Some("info") => answered += 1,
            Some("error") => {
                assert_eq!(reply["message"], "tenant rate limit exceeded");
                limited += 1;
            }
            _ => panic!("unexpected reply {reply}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst of 3 over both connections, plus what one message a second refilled meanwhile.
    assert!(answered >= 3, "{answered}");
    assert!(
        f64::from(answered) <= 3.0 + elapsed.ceil(),
        "{answered} answered in {elapsed:.2} s"
    );
    assert_eq!(refusals(&edge, "a", "messages").await, f64::from(limited));
    // Still open, and pings (palava-client's keep-alive) are never limited.
    for client in &mut clients {
        for _ in 0..5 {
            client.sync().await;
        }
    }
    assert_eq!(
        edge.metric(
            "switchboard_disconnects_total",
            &[("reason", "rate_limit_abuse")]
        )
        .await,
        0.0
    );
    // Tenant b's rate is its own.
    let mut b = connect(&edge.url(), &token(B1, &claims("b")), None).await;
    for _ in 0..5 {
        b.send(json!({"event": "info"})).await;
        b.expect("info").await;
    }
}

#[tokio::test]
async fn usage_per_tenant_is_in_the_metrics_and_the_hourly_statistics() {
    let file = TenantsFile::new(&two_tenants(""));
    let edge = hosted_edge(&file).await;
    let outer = Instant::now();
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(a_client(&edge, &format!("u{i}")).await);
    }
    let mut ids = Vec::new();
    for client in &mut clients {
        ids.push(client.join("standup", json!({})).await.0);
    }
    let inner = Instant::now();
    clients[0].expect("new_peer").await;
    clients[0].expect("new_peer").await;
    clients[1].expect("new_peer").await;
    assert_eq!(
        edge.metric("switchboard_tenant_connections", &[("tenant", "a")])
            .await,
        3.0
    );
    // Five peer messages, one sent to a peer that is not in the room (not relayed).
    for _ in 0..5 {
        clients[0]
            .send(json!({"event": "send_to_peer", "peer_id": ids[1], "data": {"event": "message"}}))
            .await;
        clients[1].expect("message").await;
    }
    clients[2].send(json!({"event": "leave_room"})).await;
    clients[2].join("retro", json!({})).await;
    clients[2]
        .send(json!({"event": "send_to_peer", "peer_id": ids[0], "data": {"event": "message"}}))
        .await;
    clients[2].expect_error("unknown peer").await;
    edge.wait_metric("switchboard_tenant_rooms", &[("tenant", "a")], 2.0)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = inner.elapsed().as_secs_f64();
    drop(clients);
    edge.wait_metric("switchboard_tenant_connections", &[("tenant", "a")], 0.0)
        .await;
    let open = outer.elapsed().as_secs_f64();

    // Within a usage round or two of the last close, every second is counted.
    let deadline = Instant::now() + common::PATIENCE;
    let (usage, seconds_metric) = loop {
        let (_, body) = http_get(edge.admin, "/stats").await;
        let usage = usage_of(&serde_json::from_str(&body).unwrap(), "a");
        let metric = edge
            .metric(
                "switchboard_tenant_connection_seconds_total",
                &[("tenant", "a")],
            )
            .await;
        let seconds = usage["connection_seconds"].as_f64().unwrap();
        if seconds >= (3.0 * held).floor() && metric == seconds {
            break (usage, metric);
        }
        assert!(Instant::now() < deadline, "{usage} {metric}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        seconds_metric <= 3.0 * open,
        "{seconds_metric} s counted, at most {open:.2} s for each of 3"
    );
    assert_eq!(usage["peak_connections"], 3, "{usage}");
    assert_eq!(usage["rooms_opened"], 2, "{usage}");
    assert_eq!(usage["peak_room_members"], 3, "{usage}");
    assert_eq!(usage["messages_relayed"], 5, "{usage}");
    assert_eq!(
        edge.metric(
            "switchboard_tenant_messages_relayed_total",
            &[("tenant", "a")]
        )
        .await,
        5.0
    );
    assert_eq!(
        edge.metric("switchboard_tenant_rooms_opened_total", &[("tenant", "a")])
            .await,
        2.0
    );
    edge.wait_metric("switchboard_tenant_rooms", &[("tenant", "a")], 0.0)
        .await;
    // Tenant b did nothing and has no usage.
    let (_, body) = http_get(edge.admin, "/stats").await;
    assert_eq!(
        usage_of(&serde_json::from_str(&body).unwrap(), "b")["peak_connections"],
        0
    );
}

#[tokio::test]
async fn a_tenant_that_leaves_the_tenants_file_loses_its_series() {
    let file = TenantsFile::new(&two_tenants(""));
    let edge = hosted_edge(&file).await;
    let mut b = connect(&edge.url(), &token(B1, &claims("b")), None).await;
    b.join("lobby", json!({})).await;
    drop(b);
    edge.wait_metric("switchboard_tenant_connections", &[("tenant", "b")], 0.0)
        .await;
    let (_, metrics) = http_get(edge.admin, "/metrics").await;
    assert!(
        metrics.contains("tenant=\"b\""),
        "b has series while listed"
    );

    let only_a = two_tenants("");
    let only_a = &only_a[..only_a.find("[tenants.b]").unwrap()];
    file.rewrite(only_a);
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let (_, metrics) = http_get(edge.admin, "/metrics").await;
        if !metrics.contains("tenant=\"b\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tenant b's series stay:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn usage_per_tenant_outlives_a_restart_with_a_stats_file() {
    let file = TenantsFile::new(&two_tenants(""));
    let dir = switchboard_testkit::TempDir::new("usage").unwrap();
    let stats_file = dir.path().join("stats.json");
    let start = || {
        let stats_file = stats_file.clone();
        TestEdge::start_with(|config| {
            file.configure(config);
            config.stats_file = Some(stats_file);
        })
    };
    let mut edge = start().await;
    let mut clients = [a_client(&edge, "u1").await, a_client(&edge, "u2").await];
    let (first, _) = clients[0].join("standup", json!({})).await;
    clients[1].join("standup", json!({})).await;
    clients[0].expect("new_peer").await;
    clients[1]
        .send(json!({"event": "send_to_peer", "peer_id": first, "data": {"event": "offer"}}))
        .await;
    clients[0].expect("offer").await;
    // A graceful stop counts the last round and saves the statistics.
    edge.begin_shutdown(Duration::ZERO);
    edge.stopped().await;
    drop(clients);

    let edge = start().await;
    let (_, body) = http_get(edge.admin, "/stats").await;
    let usage = usage_of(&serde_json::from_str(&body).unwrap(), "a");
    assert_eq!(usage["rooms_opened"], 1, "{usage}");
    assert_eq!(usage["peak_room_members"], 2, "{usage}");
    assert_eq!(usage["peak_connections"], 2, "{usage}");
    assert_eq!(usage["messages_relayed"], 1, "{usage}");
}
