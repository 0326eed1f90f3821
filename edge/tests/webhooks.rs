//! Webhooks, standalone: a hosted edge tells a tenant's receiver (a real HTTP server on 127.0.0.1)
//! when its rooms start and finish and members join and leave, signed and in room order, and a
//! receiver that was down for a while gets every event once it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;

use common::TestEdge;
use common::hosted::{B1, TenantsFile, claims, connect, token, two_tenants};
use common::webhook::{Received, Seq, WEBHOOK_SECRET, check_meeting, meet, serve};

/// Tenant a (keys a1, a2) with its webhook at `receiver`; tenant b without one.
fn tenants(receiver: SocketAddr) -> String {
    format!(
        "{}\n[tenants.a.webhook]\nurl = \"http://{receiver}/hooks\"\nsecret = \"{WEBHOOK_SECRET}\"\n",
        two_tenants("")
    )
}

#[tokio::test]
async fn a_tenants_receiver_hears_its_rooms_in_order_even_after_an_outage() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let received = Received::default();
    let server = serve(listener, received.clone());
    let file = TenantsFile::new(&tenants(receiver));
    let edge = TestEdge::start_with(|config| file.configure(config)).await;

    let (ada, bob) = meet(&edge.url(), &edge.url(), "standup").await;
    let events = received.wait_for(6).await;
    check_meeting(&events, "standup", &ada, &bob, Seq::Contiguous);
    edge.wait_metric("switchboard_webhooks_sent_total", &[], 6.0)
        .await;

    // Tenant b has no webhook: its rooms send nothing.
    let mut b = connect(&edge.url(), &token(B1, &claims("b")), None).await;
    b.join("standup", json!({"name": "B"})).await;
    b.send(json!({"event": "leave_room"})).await;
    b.sync().await;

    // The receiver goes down (its port refuses connections) while a meeting happens, and comes
    // back on the same port two seconds later.
    server.abort();
    let _ = server.await;
    let (ada, bob) = meet(&edge.url(), &edge.url(), "retro").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(received.snapshot().len(), 6, "nothing arrives while down");
    assert!(
        edge.metric(
            "switchboard_webhooks_failed_total",
            &[("reason", "connect")]
        )
        .await
            > 0.0,
        "the engine tried and failed"
    );
    let listener = TcpListener::bind(receiver).await.unwrap();
    let server = serve(listener, received.clone());
    let events = received.wait_for(12).await;
    assert_eq!(events.len(), 12, "{events:#?}");
    check_meeting(&events[6..], "retro", &ada, &bob, Seq::Contiguous);
    assert_ne!(events[0]["id"], events[6]["id"]);
    edge.wait_metric("switchboard_webhooks_pending", &[], 0.0)
        .await;
    assert_eq!(
        edge.metric("switchboard_webhooks_dropped_total", &[]).await,
        0.0
    );
    server.abort();
}
