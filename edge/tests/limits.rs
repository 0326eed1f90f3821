//! Limits and abuse: slow consumers, oversized and malformed frames, rate limits, connection limits,
//! idle connections. In every case the offender is dealt with and everyone else carries on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, Ended, RawWs, TestEdge};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A client that never reads is closed as a slow consumer once its queue stays full; the sender and
/// the rest of the room carry on, and learn that it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_closed_not_buffered() {
    let edge = TestEdge::start_with(|c| {
        c.outbound_queue = 8;
        c.slow_client_timeout = Duration::from_millis(300);
        c.rate_limit = 100_000;
        c.rate_burst = 100_000;
    })
    .await;
    let mut sender = Client::connect(&edge).await;
    let mut bystander = Client::connect(&edge).await;
    let mut sleeper = Client::connect(&edge).await;
    sender.join("r", json!({})).await;
    bystander.join("r", json!({})).await;
    let (sleeper_id, _) = sleeper.join("r", json!({})).await;
    sender.expect("new_peer").await;
    sender.expect("new_peer").await;
    bystander.expect("new_peer").await;

    // 100 KB messages, far more than the socket buffers hold: the sleeper's queue must fill.
    let blob = "x".repeat(100_000);
    let mut sent = 0;
    let sleeper_left = json!({"event": "peer_left", "sender_id": sleeper_id});
    loop {
        sender
            .send(json!({"event": "send_to_peer", "peer_id": sleeper_id,
                         "data": {"event": "message", "blob": blob}}))
            .await;
        sent += 1;
        assert!(sent < 2_000, "the sleeper was never closed");
        // The sleeper is gone once the bystander hears it left.
        if sent % 50 == 0 {
            bystander.send(json!({"event": "ping"})).await;
            let next = bystander.recv().await;
            if next == sleeper_left {
                break;
            }
            assert_eq!(next, json!({"event": "pong"}));
        }
    }
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "slow_consumer")],
        1.0,
    )
    .await;
    // The sender's own traffic still flows: its messages now go nowhere (the target is gone).
    let mut saw_left = false;
    loop {
        sender.send(json!({"event": "ping"})).await;
        let message = sender.recv().await;
        if message == sleeper_left {
            saw_left = true;
            continue;
        }
        if message["event"] == "pong" && saw_left {
            break;
        }
    }
    // What the sleeper finally reads ends with the connection gone, not with an unbounded backlog.
    let (seen, _) = sleeper.drain_until_closed().await;
    assert!(
        seen.len() < sent,
        "the sleeper received {} of {sent} messages",
        seen.len()
    );
}

#[tokio::test]
async fn oversized_frames_close_with_1009_and_hurt_nobody_else() {
    let edge = TestEdge::start_with(|c| c.max_frame_bytes = 4096).await;
    let mut big = Client::connect(&edge).await;
    let mut other = Client::connect(&edge).await;
    other.join("r", json!({})).await;
    // Just under the limit is fine.
    let fits = json!({"event": "ping", "pad": "p".repeat(4000)}).to_string();
    assert!(fits.len() <= 4096);
    big.send_raw(Message::text(fits)).await;
    big.expect("pong").await;

    big.send_raw(Message::text("y".repeat(5000))).await;
    assert_eq!(
        big.ended().await,
        Ended::Close(Some(1009), "message too big".into())
    );
    other.sync().await;
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "frame_too_large")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn binary_and_malformed_frames() {
    let edge = TestEdge::start().await;
    let mut bystander = Client::connect(&edge).await;
    bystander.join("r", json!({})).await;

    // Binary frames are answered, never fatal.
    let mut c = Client::connect(&edge).await;
    c.send_raw(Message::binary(vec![0, 159, 146, 150])).await;
    c.expect_error("invalid message").await;
    c.sync().await;

    // A text frame that is not UTF-8 breaks RFC 6455: close 1007.
    let mut raw = RawWs::connect(edge.addr, "/").await;
    raw.send_frame(0x1, &[0x7b, 0xff, 0xfe, 0x7d], true).await;
    let (close, _) = raw.read_until_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1007));

    // An unmasked client frame is a protocol violation: close 1002.
    let mut raw = RawWs::connect(edge.addr, "/").await;
    raw.send_frame(0x1, br#"{"event":"ping"}"#, false).await;
    let (close, _) = raw.read_until_close().await;
    assert_eq!(close.map(|(code, _)| code), Some(1002));

    // A masked, valid frame over the raw socket works: the harness itself is sound.
    let mut raw = RawWs::connect(edge.addr, "/any/path").await;
    raw.send_frame(0x1, br#"{"event":"ping"}"#, true).await;
    assert_eq!(
        raw.read_frame().await,
        Some((0x1, br#"{"event":"pong"}"#.to_vec()))
    );

    // Nobody else noticed.
    bystander.sync().await;
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "protocol_violation")],
        2.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_errors_total",
        &[("reason", "invalid_message")],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn rate_limit_drops_then_closes() {
    // A refill of one token per second cannot happen within this test's few milliseconds of sending.
    let edge = TestEdge::start_with(|c| {
        c.rate_limit = 1;
        c.rate_burst = 10;
        c.rate_limit_close_after = 5;
    })
    .await;
    let mut bystander = Client::connect(&edge).await;
    let mut c = Client::connect(&edge).await;
    for _ in 0..16 {
        c.send(json!({"event": "ping"})).await;
    }
    let (seen, ended) = c.drain_until_closed().await;
    let pongs = seen.iter().filter(|m| m["event"] == "pong").count();
    let limited = seen
        .iter()
        .filter(|m| {
            **m == json!({"event": "error", "message": "rate limit exceeded",
                                  "description": "rate limit exceeded"})
        })
        .count();
    assert_eq!((pongs, limited), (10, 5), "{seen:?}");
    assert_eq!(
        ended,
        Ended::Close(Some(1008), "rate limit exceeded".into())
    );
    bystander.sync().await;
    edge.wait_metric(
        "switchboard_errors_total",
        &[("reason", "rate_limited")],
        5.0,
    )
    .await;
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "rate_limit_abuse")],
        1.0,
    )
    .await;
}

/// WebSocket pings and pongs take tokens from the same bucket as messages: a client flooding them is
/// closed with 1008 like one flooding messages (excess control frames get no error reply), and
/// nobody else notices.
#[tokio::test]
async fn control_frame_floods_are_rate_limited_too() {
    let edge = TestEdge::start_with(|c| {
        c.rate_limit = 1;
        c.rate_burst = 10;
        c.rate_limit_close_after = 5;
    })
    .await;
    let mut bystander = Client::connect(&edge).await;
    bystander.join("r", json!({})).await;
    for flood in [
        Message::Ping(Default::default()),
        Message::Pong(Default::default()),
    ] {
        let mut c = Client::connect(&edge).await;
        // Burst (10) plus strikes (5), then one more.
        for _ in 0..16 {
            c.send_raw(flood.clone()).await;
        }
        let (seen, ended) = c.drain_until_closed().await;
        assert_eq!(
            seen,
            Vec::<serde_json::Value>::new(),
            "no replies to control frames"
        );
        assert_eq!(
            ended,
            Ended::Close(Some(1008), "rate limit exceeded".into())
        );
        bystander.sync().await;
    }
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "rate_limit_abuse")],
        2.0,
    )
    .await;
    // Within its rate, a client may ping as it likes (the bucket refills): the edge's own pings'
    // pongs never get a well-behaved client closed.
    let mut polite = Client::connect(&edge).await;
    for _ in 0..5 {
        polite.send_raw(Message::Ping(Default::default())).await;
    }
    polite.sync().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let edge = TestEdge::start_with(|c| c.max_connections = 2).await;
    let mut a = Client::connect(&edge).await;
    let _b = Client::connect(&edge).await;
    let refused = tokio_tungstenite::connect_async(edge.url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    edge.wait_metric(
        "switchboard_connections_refused_total",
        &[("reason", "capacity")],
        1.0,
    )
    .await;
    // A place frees up when a client leaves.
    a.ws.close(None).await.unwrap();
    drop(a);
    edge.wait_metric("switchboard_connections", &[], 1.0).await;
    let mut c = Client::connect(&edge).await;
    c.sync().await;
}

/// A client that answers no pings is closed after the idle timeout; one that answers stays.
#[tokio::test]
async fn idle_connections_are_closed_live_ones_are_not() {
    let edge = TestEdge::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut live = Client::connect(&edge).await;
    // The raw client reads but never writes, so it never answers a ping.
    let mut silent = RawWs::connect(edge.addr, "/").await;
    let silent_closed = silent.read_until_close();
    tokio::pin!(silent_closed);
    // Meanwhile the library client reads, and so answers the server's pings.
    let (close, pings) = loop {
        tokio::select! {
            result = &mut silent_closed => break result,
            frame = futures_util::StreamExt::next(&mut live.ws) => {
                let frame = frame.expect("live stays open").unwrap();
                assert!(frame.is_ping(), "only pings while idle, got {frame:?}");
            }
        }
    };
    assert_eq!(close, Some((1000, "idle timeout".into())));
    assert!(pings >= 2, "the server pinged before giving up ({pings})");

    // The live client outlasted the idle timeout.
    live.sync().await;
    edge.wait_metric(
        "switchboard_disconnects_total",
        &[("reason", "idle_timeout")],
        1.0,
    )
    .await;
}
