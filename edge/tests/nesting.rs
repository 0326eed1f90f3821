//! JSON nesting is limited at the edge (`--max-json-depth`): a message nested too deeply is refused
//! with `invalid message: nested too deeply` and has no effect, so nobody can hide in a room behind a
//! status the bus could not carry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, TestEdge, nested_status};
use serde_json::json;
use switchboard_proto::limits::{DEFAULT_MAX_JSON_DEPTH, MAX_JSON_DEPTH};

const TOO_DEEP: &str = "invalid message: nested too deeply";

#[tokio::test]
async fn a_status_nested_too_deeply_is_refused_and_joins_nobody() {
    let edge = TestEdge::start().await;
    let mut member = Client::connect(&edge).await;
    member.join("deep", json!({})).await;

    // The join message is one level deeper than its status: one too many.
    let mut joiner = Client::connect(&edge).await;
    let too_deep = nested_status(DEFAULT_MAX_JSON_DEPTH);
    joiner
        .send(json!({"event": "join_room", "room_id": "deep", "status": too_deep}))
        .await;
    joiner.expect_error(TOO_DEEP).await;
    // The member heard of nobody, and the joiner is in no room: a status update is refused as such.
    member.sync().await;
    joiner
        .send(json!({"event": "update_status", "status": {}}))
        .await;
    joiner.expect_error("currently not in any room").await;

    // At exactly the limit it is welcome, and announced with its status as sent.
    let deepest = nested_status(DEFAULT_MAX_JSON_DEPTH - 1);
    let (joiner_id, _) = joiner.join("deep", deepest.clone()).await;
    assert_eq!(
        member.recv().await,
        json!({"event": "new_peer", "peer_id": joiner_id, "status": deepest})
    );

    // A status update too deep changes nothing for anyone.
    joiner
        .send(json!({"event": "update_status", "status": too_deep}))
        .await;
    joiner.expect_error(TOO_DEEP).await;
    member.sync().await;
    edge.wait_metric(
        "switchboard_errors_total",
        &[("reason", "nested_too_deeply")],
        2.0,
    )
    .await;
}

/// The limit is configurable up to the maximum the bus carries.
#[tokio::test]
async fn the_limit_follows_the_configuration() {
    let edge = TestEdge::start_with(|c| c.max_json_depth = MAX_JSON_DEPTH).await;
    let mut member = Client::connect(&edge).await;
    member.join("deeper", json!({})).await;
    let mut joiner = Client::connect(&edge).await;
    joiner
        .send(json!({"event": "join_room", "room_id": "deeper",
                     "status": nested_status(MAX_JSON_DEPTH)}))
        .await;
    joiner.expect_error(TOO_DEEP).await;
    let deepest = nested_status(MAX_JSON_DEPTH - 1);
    let (joiner_id, _) = joiner.join("deeper", deepest.clone()).await;
    assert_eq!(
        member.recv().await,
        json!({"event": "new_peer", "peer_id": joiner_id, "status": deepest})
    );
}
