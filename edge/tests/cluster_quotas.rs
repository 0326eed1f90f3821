//! Hosted mode's quotas and usage in a cluster of real processes (nats-server, routers, edges):
//! each tenant limit holds cluster-wide, a simultaneous burst of connections over two edges passes
//! the limit by no more than the documented bound, and a router's `/stats` shows each tenant's
//! usage counted by the edges and the routers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_proto::{RoomId, RoomKeyer, TenantId};
use switchboard_rooms::quota::overshoot_bound;
use switchboard_testkit::{Process, http_get, wait_until};

use common::cluster::{Cluster, SECRET, SETTLE};
use common::hosted::{
    A_ORIGIN, A1, TenantsFile, claims, connect, token, try_connect, two_tenants, usage_of,
};
use common::{Client, parse_metric};

/// The usage interval (quota round) of the test clusters.
const INTERVAL: &str = "100ms";
/// Connections (or rooms) of a tenant one edge (router) admits per round.
const BURST: u64 = 2;

/// A cluster of `routers` routers and two hosted edges, with tenant a's `limits`.
async fn hosted_cluster(limits: &str, routers: usize) -> (TenantsFile, Cluster) {
    let file = TenantsFile::new(&two_tenants(limits));
    let path = file.path.to_str().unwrap().to_string();
    let burst = BURST.to_string();
    let edge_args = [
        "--auth",
        "tokens",
        "--tenants-file",
        &path,
        "--usage-interval",
        INTERVAL,
        "--quota-admit-burst",
        &burst,
    ];
    let router_args = ["--usage-interval", INTERVAL, "--quota-admit-burst", &burst];
    let cluster = Cluster::start_with_args(routers, 2, &edge_args, &router_args).await;
    (file, cluster)
}

async fn metric(process: &Process, name: &str, labels: &[(&str, &str)]) -> f64 {
    let addr = process.addr("admin_listen").unwrap();
    let (_, body) = http_get(addr, "/metrics").await.unwrap();
    parse_metric(&body, name, labels)
}

/// Waits until `name{tenant="a"}` is `want` on every one of `processes`: their views have settled.
async fn all_see(cluster: &Cluster, processes: &[&Process], name: &str, want: f64) {
    wait_until(SETTLE, || async {
        for process in processes {
            if metric(process, name, &[("tenant", "a")]).await != want {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or_else(|e| panic!("{name} never {want} everywhere: {e}\n{}", cluster.logs()));
}

fn edges(cluster: &Cluster) -> [&Process; 2] {
    [cluster.edge(0), cluster.edge(1)]
}

/// A client of tenant a on edge `edge`.
async fn a_client(cluster: &Cluster, edge: usize, sub: &str) -> Client {
    connect(
        &cluster.edge_url(edge),
        &token(A1, &claims(sub)),
        Some(A_ORIGIN),
    )
    .await
}

async fn try_a_client(cluster: &Cluster, edge: usize, sub: &str) -> Result<Client, u16> {
    try_connect(
        &cluster.edge_url(edge),
        &token(A1, &claims(sub)),
        Some(A_ORIGIN),
    )
    .await
}

#[tokio::test]
async fn a_burst_of_connections_over_two_edges_stays_within_the_bound() {
    const LIMIT: usize = 10;
    let (_file, cluster) = hosted_cluster(&format!("max_connections = {LIMIT}"), 1).await;
    let urls = [cluster.edge_url(0), cluster.edge_url(1)];

    // Twice the limit at once, half on each edge.
    let attempts: Vec<_> = (0..2 * LIMIT)
        .map(|i| {
            let url = urls[i % 2].clone();
            let token = token(A1, &claims(&format!("u{i}")));
            tokio::spawn(async move { try_connect(&url, &token, Some(A_ORIGIN)).await })
        })
        .collect();
    let mut accepted = Vec::new();
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(client) => accepted.push(client),
            Err(status) => assert_eq!(status, 429),
        }
    }
    let burst_accepted = accepted.len();
    let bound = overshoot_bound(2, BURST) as usize;
    assert!(
        (LIMIT..=LIMIT + bound).contains(&accepted.len()),
        "{} accepted, limit {LIMIT}, bound {bound}",
        accepted.len()
    );
    let mut held = 0.0;
    for edge in edges(&cluster) {
        held += metric(edge, "switchboard_tenant_connections", &[("tenant", "a")]).await;
    }
    assert_eq!(
        held,
        accepted.len() as f64,
        "the edges count what they took"
    );

    // Once the edges have heard each other, exactly at the limit, both refuse at once.
    accepted.truncate(LIMIT);
    let names = "switchboard_tenant_cluster_connections";
    all_see(&cluster, &edges(&cluster), names, LIMIT as f64).await;
    for edge in 0..2 {
        assert_eq!(try_a_client(&cluster, edge, "late").await.err(), Some(429));
    }
    // One leaves: there is a place, on either edge, and then none again.
    accepted.pop();
    all_see(&cluster, &edges(&cluster), names, (LIMIT - 1) as f64).await;
    let mut last = try_a_client(&cluster, 1, "last")
        .await
        .expect("a free place");
    last.sync().await;
    all_see(&cluster, &edges(&cluster), names, LIMIT as f64).await;
    assert_eq!(try_a_client(&cluster, 0, "over").await.err(), Some(429));
    let mut refused = 0.0;
    for edge in edges(&cluster) {
        refused += metric(
            edge,
            "switchboard_tenant_quota_refusals_total",
            &[("tenant", "a"), ("quota", "connections")],
        )
        .await;
    }
    // The burst's refusals, two at the limit, one after the last place was taken.
    assert_eq!(refused, (2 * LIMIT - burst_accepted + 3) as f64);
}

/// Room names of tenant a whose slots are served by `router`, `n` of them.
async fn rooms_on(cluster: &Cluster, router: usize, n: usize, tag: &str) -> Vec<String> {
    let keyer = RoomKeyer::new(SECRET.as_bytes());
    let tenant = TenantId::parse("a").unwrap();
    let slots = cluster.slots().await;
    let served = slots[router].clone().unwrap();
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .filter(|name| {
            let id = RoomId::parse(Some(&json!(name))).unwrap();
            let slot = keyer
                .key_in(&tenant, &id)
                .slot(switchboard_proto::bus::DEFAULT_SLOTS);
            served.contains(&slot)
        })
        .take(n)
        .collect()
}

#[tokio::test]
async fn a_tenants_rooms_and_room_size_are_limited_cluster_wide() {
    let (_file, cluster) = hosted_cluster("max_rooms = 3\nmax_room_size = 2", 2).await;
    let routers = [cluster.router(0), cluster.router(1)];
    let on_0 = rooms_on(&cluster, 0, 3, "zero").await;
    let on_1 = rooms_on(&cluster, 1, 3, "one").await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(a_client(&cluster, i % 2, &format!("u{i}")).await);
    }
    // Three rooms, on both routers, from both edges.
    clients[0].join(&on_0[0], json!({})).await;
    clients[1].join(&on_1[0], json!({})).await;
    clients[2].join(&on_0[1], json!({})).await;
    let rooms = "switchboard_tenant_cluster_rooms";
    all_see(&cluster, &routers, rooms, 3.0).await;

    // A fourth is refused whichever router would hold it.
    for (client, room) in [(3, &on_1[1]), (4, &on_0[2])] {
        clients[client]
            .send(json!({"event": "join_room", "room_id": room}))
            .await;
        clients[client].expect_error("room quota exceeded").await;
    }
    // An open room takes members up to the tenant's room size, from any edge.
    clients[3].join(&on_0[0], json!({})).await;
    clients[0].expect("new_peer").await;
    clients[4]
        .send(json!({"event": "join_room", "room_id": on_0[0]}))
        .await;
    clients[4].expect_error("room is full").await;

    // A room closes on router 1: one more may open, on router 0, and then none.
    clients[1].send(json!({"event": "leave_room"})).await;
    clients[1].sync().await;
    all_see(&cluster, &routers, rooms, 2.0).await;
    clients[5].join(&on_0[2], json!({})).await;
    all_see(&cluster, &routers, rooms, 3.0).await;
    clients[6]
        .send(json!({"event": "join_room", "room_id": on_1[2]}))
        .await;
    clients[6].expect_error("room quota exceeded").await;

    let mut counted = [0.0; 2];
    for edge in edges(&cluster) {
        for (i, quota) in ["rooms", "room_size"].iter().enumerate() {
            counted[i] += metric(
                edge,
                "switchboard_tenant_quota_refusals_total",
                &[("tenant", "a"), ("quota", quota)],
            )
            .await;
        }
    }
    assert_eq!(counted, [3.0, 1.0], "rooms, room_size");
}

/// Sends `n` `info` messages one after the other and counts the answers (the rest are refused).
async fn infos(client: &mut Client, n: usize) -> (usize, f64) {
    let started = Instant::now();
    let mut answered = 0;
    for _ in 0..n {
        client.send(json!({"event": "info"})).await;
        let reply = client.recv().await;
        if reply["event"] == "info" {
            answered += 1;
        } else {
            assert_eq!(reply["message"], "tenant rate limit exceeded", "{reply}");
        }
    }
    (answered, started.elapsed().as_secs_f64())
}

#[tokio::test]
async fn a_tenants_message_rate_is_split_between_edges_by_their_connections() {
    let (_file, cluster) = hosted_cluster("messages_per_second = 4\nmessage_burst = 4", 1).await;
    let mut on_0 = a_client(&cluster, 0, "zero").await;
    let mut on_1 = a_client(&cluster, 1, "one").await;
    let names = "switchboard_tenant_cluster_connections";
    all_see(&cluster, &edges(&cluster), names, 2.0).await;

    // One connection on each edge: each edge has half the rate and half the burst.
    for client in [&mut on_0, &mut on_1] {
        let (answered, elapsed) = infos(client, 10).await;
        assert!(
            answered >= 2 && answered as f64 <= 2.0 + (2.0 * elapsed).ceil(),
            "{answered} answered in {elapsed:.2} s"
        );
        client.sync().await;
    }

    // Alone, edge 0's connection has the whole rate once the edges have heard of it.
    drop(on_1);
    all_see(&cluster, &edges(&cluster), names, 1.0).await;
    // Time for the bucket to fill at 4 a second (it keeps its tokens when its share grows).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (answered, elapsed) = infos(&mut on_0, 12).await;
    assert!(
        answered >= 4 && answered as f64 <= 4.0 + (4.0 * elapsed).ceil(),
        "{answered} answered in {elapsed:.2} s"
    );
    on_0.sync().await;
}

#[tokio::test]
async fn usage_per_tenant_reaches_the_routers_stats() {
    let (_file, cluster) = hosted_cluster("", 2).await;
    let outer = Instant::now();
    let mut clients = vec![
        a_client(&cluster, 0, "u0").await,
        a_client(&cluster, 1, "u1").await,
        a_client(&cluster, 0, "u2").await,
    ];
    let mut ids = Vec::new();
    for client in &mut clients {
        ids.push(client.join("standup", json!({})).await.0);
    }
    let inner = Instant::now();
    clients[0].expect("new_peer").await;
    clients[0].expect("new_peer").await;
    clients[1].expect("new_peer").await;
    // Three peer messages across edges, two on one edge.
    for target in [1, 1, 1, 2, 2] {
        clients[0]
            .send(json!({"event": "send_to_peer", "peer_id": ids[target], "data": {"event": "message"}}))
            .await;
        clients[target].expect("message").await;
    }
    clients[2].send(json!({"event": "leave_room"})).await;
    clients[2].join("retro", json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = inner.elapsed().as_secs_f64();
    drop(clients);
    for edge in edges(&cluster) {
        wait_until(SETTLE, || async {
            metric(edge, "switchboard_tenant_connections", &[("tenant", "a")]).await == 0.0
        })
        .await
        .unwrap();
    }
    let open = outer.elapsed().as_secs_f64();

    // Every router shows the same usage once the edges' and routers' records are stored.
    for router in [cluster.router(0), cluster.router(1)] {
        let addr = router.addr("admin_listen").unwrap();
        let deadline = Instant::now() + SETTLE;
        let usage = loop {
            let (_, body) = http_get(addr, "/stats").await.unwrap();
            let usage = usage_of(&serde_json::from_str(&body).unwrap(), "a");
            // Each edge reports whole seconds and keeps the fraction for its next report, so up to a
            // second per edge (2) may still be unreported.
            if usage["connection_seconds"].as_f64().unwrap() >= (3.0 * held - 2.0).floor()
                && usage["messages_relayed"] == 5
                && usage["rooms_opened"] == 2
            {
                break usage;
            }
            assert!(Instant::now() < deadline, "{usage}\n{}", cluster.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            usage["connection_seconds"].as_f64().unwrap() <= 3.0 * open,
            "{usage}: at most {open:.2} s for each of 3"
        );
        assert_eq!(usage["peak_connections"], 3, "{usage}");
        assert_eq!(usage["peak_room_members"], 3, "{usage}");
    }
}
