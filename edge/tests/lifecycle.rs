//! The shutdown sequence (docs/protocol.md, "Lifecycle"), readiness, and the HTTP endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, Ended, TestEdge, http_get, http_request, parse_metric};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_announces_waits_then_closes_with_4200() {
    let mut edge = TestEdge::start().await;
    let mut stays = Client::connect(&edge).await;
    let mut leaves = Client::connect(&edge).await;
    stays.join("r", json!({})).await;
    let (leaves_id, _) = leaves.join("r", json!({})).await;
    stays.expect("new_peer").await;
    assert_eq!(http_get(edge.admin, "/readyz").await.0, 200);

    let began = tokio::time::Instant::now();
    edge.begin_shutdown(Duration::from_secs(2));
    assert_eq!(
        stays.recv().await,
        json!({"event": "shutdown", "seconds": 2})
    );
    assert_eq!(
        leaves.recv().await,
        json!({"event": "shutdown", "seconds": 2})
    );

    // Draining: not ready, new clients refused with 503 (and counted), but the rooms still work.
    for port in [edge.admin, edge.addr] {
        assert_eq!(http_get(port, "/readyz").await.0, 503);
        assert_eq!(http_get(port, "/healthz").await.0, 200);
    }
    edge.wait_metric("switchboard_draining", &[], 1.0).await;
    for _ in 0..2 {
        match tokio_tungstenite::connect_async(edge.url()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(
                    response.status(),
                    503,
                    "a draining edge takes no new clients"
                );
            }
            other => panic!("a draining edge answers an upgrade with 503, not {other:?}"),
        }
    }
    edge.wait_metric(
        "switchboard_connections_refused_total",
        &[("reason", "draining")],
        2.0,
    )
    .await;
    drop(leaves);
    assert_eq!(
        stays.recv().await,
        json!({"event": "peer_left", "sender_id": leaves_id})
    );

    // The one that stayed is closed with 4200 when the grace is over, not before.
    assert_eq!(
        stays.ended().await,
        Ended::Close(Some(4200), "server shutting down".into())
    );
    assert!(began.elapsed() >= Duration::from_secs(2));
    edge.stopped().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_early_when_every_client_has_left() {
    let mut edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    a.join("r", json!({})).await;
    let began = tokio::time::Instant::now();
    edge.begin_shutdown(Duration::from_secs(60));
    a.expect("shutdown").await;
    a.ws.close(None).await.unwrap();
    drop(a);
    edge.stopped().await;
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "stopped without waiting out the 60 s grace"
    );
}

/// SIGINT's variant: no grace. The client still hears `shutdown` first, then the 4200 close.
#[tokio::test]
async fn zero_grace_still_announces_before_closing() {
    let mut edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    a.sync().await;
    edge.begin_shutdown(Duration::ZERO);
    let (seen, ended) = a.drain_until_closed().await;
    assert_eq!(seen, [json!({"event": "shutdown", "seconds": 0})]);
    assert_eq!(
        ended,
        Ended::Close(Some(4200), "server shutting down".into())
    );
    edge.stopped().await;
}

#[tokio::test]
async fn http_endpoints() {
    let edge = TestEdge::start().await;
    for addr in [edge.addr, edge.admin] {
        assert_eq!(http_get(addr, "/healthz").await, (200, "ok\n".into()));
        assert_eq!(http_get(addr, "/readyz").await, (200, "ready\n".into()));
    }
    // Without an upgrade, the public root is the demo page (standalone default; with the demo off it
    // answers 426, see tests/web.rs); other paths are not found.
    let (status, body) = http_get(edge.addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>"), "{body}");
    assert_eq!(http_get(edge.addr, "/nothing-here").await.0, 404);
    assert_eq!(http_get(edge.admin, "/nothing-here").await.0, 404);

    // The endpoints answer GET and HEAD; any other method is told so, not served.
    let endpoints = [
        (edge.addr, "/healthz"),
        (edge.addr, "/readyz"),
        (edge.admin, "/healthz"),
        (edge.admin, "/readyz"),
        (edge.admin, "/metrics"),
        (edge.admin, "/stats"),
    ];
    for (addr, path) in endpoints {
        for method in ["POST", "PUT", "DELETE"] {
            let response = http_request(addr, method, path, &[]).await;
            assert_eq!(response.status, 405, "{method} {path} on {addr}");
            assert_eq!(
                response.header("allow"),
                Some("GET, HEAD"),
                "{method} {path}"
            );
        }
        let head = http_request(addr, "HEAD", path, &[]).await;
        assert_eq!((head.status, head.body.as_str()), (200, ""), "HEAD {path}");
    }
    assert_eq!(
        http_request(edge.admin, "POST", "/nothing-here", &[])
            .await
            .status,
        404
    );

    // The upgrade works on any unreserved path.
    let mut c = Client::connect_url(&format!("ws://{}/some/app/path?x=1", edge.addr)).await;
    c.join("r", json!({"name": "n"})).await;

    let (status, metrics) = http_get(edge.admin, "/metrics").await;
    assert_eq!(status, 200);
    // The one client and its join show in the metrics an operator watches first.
    for (name, labels, want) in [
        ("switchboard_connections", &[][..], 1.0),
        ("switchboard_rooms", &[], 1.0),
        ("switchboard_room_members", &[], 1.0),
        ("switchboard_joins_total", &[], 1.0),
        (
            "switchboard_messages_total",
            &[("event", "join_room"), ("direction", "in")],
            1.0,
        ),
        (
            "switchboard_messages_total",
            &[("event", "joined_room"), ("direction", "out")],
            1.0,
        ),
    ] {
        assert_eq!(
            parse_metric(&metrics, name, labels),
            want,
            "{name} {labels:?}"
        );
    }
    assert!(parse_metric(&metrics, "process_resident_memory_bytes", &[]) > 0.0);
    let (status, stats) = http_get(edge.admin, "/stats").await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        (stats["rooms"].clone(), stats["members"].clone()),
        (json!(1), json!(1))
    );
}

/// Metrics follow what clients did: messages by event and direction, errors by reason, rooms,
/// members, disconnects, and palava's statistics when rooms close.
#[tokio::test]
async fn metrics_reflect_traffic() {
    let edge = TestEdge::start().await;
    let mut a = Client::connect(&edge).await;
    let mut b = Client::connect(&edge).await;
    let (a_id, _) = a.join("m", json!({})).await;
    let (b_id, _) = b.join("m", json!({})).await;
    a.expect("new_peer").await;
    for _ in 0..3 {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "offer"}}))
            .await;
        b.expect("offer").await;
    }
    b.send(json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "bogus"}}))
        .await;
    b.expect_error("event not allowed").await;
    b.send(json!({"event": "nope"})).await;
    b.expect_error("unknown event").await;

    edge.wait_metric("switchboard_rooms", &[], 1.0).await;
    edge.wait_metric("switchboard_room_members", &[], 2.0).await;
    edge.wait_metric("switchboard_connections", &[], 2.0).await;
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "send_to_peer"), ("direction", "in")],
        4.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "offer"), ("direction", "out")],
        3.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "invalid"), ("direction", "in")],
        1.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "joined_room"), ("direction", "out")],
        2.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_errors_total",
        &[("reason", "event_not_allowed")],
        1.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_errors_total",
        &[("reason", "unknown_event")],
        1.0,
    )
    .await;
    edge.wait_metric("switchboard_relay_seconds_count", &[], 3.0)
        .await;

    drop(a);
    b.expect("peer_left").await;
    b.send(json!({"event": "leave_room"})).await;
    b.sync().await;
    edge.wait_metric("switchboard_rooms", &[], 0.0).await;
    edge.wait_metric("switchboard_room_members", &[], 0.0).await;
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "client_closed")],
        1.0,
    )
    .await;
    // One room closed with a peak of 2; two members left (after 0 whole minutes in the statistics).
    edge.wait_metric("switchboard_room_peak_members_count", &[], 1.0)
        .await;
    edge.wait_metric("switchboard_room_peak_members_sum", &[], 2.0)
        .await;
    edge.wait_metric("switchboard_connection_seconds_count", &[], 2.0)
        .await;
    let (_, stats) = http_get(edge.admin, "/stats").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let hours = stats["hourly"]["hours"].as_object().unwrap();
    assert_eq!(hours.len(), 1, "{stats}");
    let hour = hours.values().next().unwrap();
    assert_eq!(hour["room_peaks"], json!({"2": 1}));
    assert_eq!(hour["connection_time"], json!({"0": 2}));
}
