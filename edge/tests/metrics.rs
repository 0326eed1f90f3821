//! The metrics a dashboard reads, scraped from live processes: naming conventions on the whole
//! exposition (counters end in `_total`, base units only), `switchboard_build_info`, the limit
//! gauges equal to the flags, and the latency histograms observed after a join and a relay. Once on
//! a standalone edge, once on a cluster's router and edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use common::cluster::{Cluster, MAX_ROOM_SIZE};
use common::{Client, TestEdge, http_get, parse_metric};
use serde_json::json;
use switchboard_runtime::metrics::convention_violations;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Scrapes `admin` and checks what every Switchboard process must export.
async fn scrape_checked(admin: SocketAddr, binary: &str) -> String {
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let problems = convention_violations(&body);
    assert!(problems.is_empty(), "{problems:#?}\n{body}");
    assert_eq!(
        parse_metric(
            &body,
            "switchboard_build_info",
            &[("binary", binary), ("version", VERSION)]
        ),
        1.0,
        "{body}"
    );
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter"),
        "{body}"
    );
    assert_eq!(
        body.matches("# TYPE process_cpu_seconds_total").count(),
        1,
        "one CPU counter"
    );
    body
}

fn has(body: &str, name: &str) -> bool {
    body.contains(&format!("# TYPE {name} "))
}

/// `a` and `b` join one room, and `b` sends `a` an offer: a join each and one relay.
async fn meet_and_offer(a: &mut Client, b: &mut Client) {
    let (a_id, _) = a.join("dash", json!({})).await;
    b.join("dash", json!({})).await;
    a.expect("new_peer").await;
    b.send(json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "offer"}}))
        .await;
    a.expect("offer").await;
}

#[tokio::test]
async fn a_standalone_edge_exports_dashboard_ready_metrics() {
    let edge = TestEdge::start_with(|c| {
        c.max_connections = 1234;
        c.max_room_size = 7;
        c.rate_limit = 33;
        c.rate_burst = 44;
        c.outbound_queue = 55;
        c.outbound_queue_bytes = 1 << 20;
        c.max_frame_bytes = 1 << 16;
        c.max_status_bytes = 999;
    })
    .await;
    let mut a = Client::connect(&edge).await;
    let mut b = Client::connect(&edge).await;
    meet_and_offer(&mut a, &mut b).await;
    b.send(json!({"event": "leave_room"})).await;
    a.expect("peer_left").await;
    edge.wait_metric("switchboard_connection_seconds_count", &[], 1.0)
        .await;

    let body = scrape_checked(edge.admin, "edge").await;
    for (name, want) in [
        ("switchboard_connections_limit", 1234.0),
        ("switchboard_room_members_limit", 7.0),
        ("switchboard_client_message_rate_limit", 33.0),
        ("switchboard_client_message_burst_limit", 44.0),
        ("switchboard_outbound_queue_messages_limit", 55.0),
        ("switchboard_outbound_queue_bytes_limit", f64::from(1 << 20)),
        ("switchboard_frame_bytes_limit", f64::from(1 << 16)),
        ("switchboard_status_bytes_limit", 999.0),
        ("switchboard_join_seconds_count", 2.0),
        ("switchboard_relay_seconds_count", 1.0),
        ("switchboard_connection_seconds_count", 1.0),
        // Standalone, the edge holds the rooms: both views agree.
        ("switchboard_rooms", 1.0),
        ("switchboard_room_members", 1.0),
        ("switchboard_edge_rooms", 1.0),
        ("switchboard_edge_room_members", 1.0),
    ] {
        assert_eq!(parse_metric(&body, name, &[]), want, "{name}\n{body}");
    }
    // A fraction of a second in the room, not "0 whole minutes".
    let stayed = parse_metric(&body, "switchboard_connection_seconds_sum", &[]);
    assert!(stayed > 0.0 && stayed < 60.0, "{stayed}");
    for gone in [
        "switchboard_connection_minutes",
        "switchboard_connection_minutes_count",
    ] {
        assert!(!body.contains(gone), "{gone}");
    }
}

/// Needs nats-server (scripts/nats-server, or SWITCHBOARD_NATS_SERVER_BIN), like the other cluster
/// tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_exports_dashboard_ready_metrics() {
    let cluster = Cluster::start(1, 2).await;
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    meet_and_offer(&mut a, &mut b).await;

    let router_admin = cluster.router(0).addr("admin_listen").unwrap();
    let router = scrape_checked(router_admin, "router").await;
    for (name, labels, want) in [
        (
            "switchboard_room_members_limit",
            &[][..],
            MAX_ROOM_SIZE as f64,
        ),
        (
            "switchboard_webhooks_stream_bytes_limit",
            &[],
            256.0 * 1024.0 * 1024.0,
        ),
        (
            "switchboard_webhooks_stream_messages_limit",
            &[],
            1_000_000.0,
        ),
        ("switchboard_webhooks_ack_pending_limit", &[], 1_000.0),
        ("switchboard_webhooks_pending_limit", &[], 100_000.0),
        ("switchboard_webhooks_tenant_pending_limit", &[], 10_000.0),
        ("switchboard_webhooks_in_flight_limit", &[], 64.0),
        ("switchboard_rooms", &[], 1.0),
        ("switchboard_room_members", &[], 2.0),
    ] {
        assert_eq!(
            parse_metric(&router, name, labels),
            want,
            "{name}\n{router}"
        );
    }
    for (name, labels) in [
        (
            "switchboard_bus_publish_seconds_count",
            &[("kind", "event")][..],
        ),
        (
            "switchboard_bus_publish_seconds_count",
            &[("kind", "reply")],
        ),
        (
            "switchboard_bus_publish_seconds_count",
            &[("kind", "presence")],
        ),
        (
            "switchboard_router_lease_seconds_count",
            &[("op", "acquire")],
        ),
    ] {
        assert!(
            parse_metric(&router, name, labels) > 0.0,
            "{name}{labels:?}\n{router}"
        );
    }

    for (i, relayed) in [(0, 0.0), (1, 1.0)] {
        let admin = cluster.edge(i).addr("admin_listen").unwrap();
        let edge = scrape_checked(admin, "edge").await;
        // Each edge knows its own side of the room; the routers hold the room itself.
        for (name, want) in [
            ("switchboard_edge_rooms", 1.0),
            ("switchboard_edge_room_members", 1.0),
            ("switchboard_join_seconds_count", 1.0),
            ("switchboard_relay_seconds_count", relayed),
        ] {
            assert_eq!(
                parse_metric(&edge, name, &[]),
                want,
                "edge {i}: {name}\n{edge}"
            );
        }
        assert!(
            parse_metric(
                &edge,
                "switchboard_bus_publish_seconds_count",
                &[("kind", "heartbeat")]
            ) > 0.0,
            "{edge}"
        );
        assert_eq!(
            parse_metric(
                &edge,
                "switchboard_bus_publish_seconds_count",
                &[("kind", "relay")]
            ),
            relayed,
            "{edge}"
        );
        for router_side in [
            "switchboard_rooms",
            "switchboard_room_members",
            "switchboard_connection_seconds",
        ] {
            assert!(!has(&edge, router_side), "edge {i} exports {router_side}");
        }
    }
}
