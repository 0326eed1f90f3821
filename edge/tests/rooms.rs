//! Rooms under concurrency: many simultaneous joiners, and message order between two peers. The
//! checks live in `checks/` and run against a cluster too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod common;

use common::TestEdge;

/// 50 clients join one room at once: each gets `joined_room` first and all views converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_joiners_converge() {
    let edge = TestEdge::start().await;
    let _joined = checks::fifty_concurrent_joiners_converge(&edge.edges()).await;
    edge.wait_metric("switchboard_room_members", &[], 50.0)
        .await;
    edge.wait_metric("switchboard_joins_total", &[], 50.0).await;
}

/// 1,000 messages each way between two peers arrive complete and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_each_way_keep_their_order() {
    let edge = TestEdge::start_with(|c| {
        c.rate_limit = 1_000_000;
        c.rate_burst = 1_000_000;
    })
    .await;
    checks::a_thousand_messages_each_way_keep_their_order(&edge.edges()).await;
    edge.wait_metric(
        "switchboard_messages_total",
        &[("event", "ice_candidate"), ("direction", "out")],
        2000.0,
    )
    .await;
}
