//! Room events fan out to every member; members updating their statuses as fast as their rate limit
//! allows must not close a member that reads normally. An unsent `peer_updated_status` is replaced by
//! the same member's newer one, so a reader's queue holds at most one per member.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{Client, PATIENCE, TestEdge};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_edge::Config;
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 8;

/// Reads until every sender's status with sequence number `last` has arrived; returns the sequence
/// numbers seen per sender, in arrival order. Fails on an error event or if the connection ends.
async fn read_statuses<S>(
    stream: &mut S,
    senders: &[String],
    last: u64,
) -> HashMap<String, Vec<u64>>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let done = |seen: &HashMap<String, Vec<u64>>| {
        senders
            .iter()
            .all(|s| seen.get(s).and_then(|v| v.last()) == Some(&last))
    };
    while !done(&seen) {
        let frame = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("statuses keep coming")
            .expect("the connection stays open")
            .expect("no websocket error");
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(close) => panic!("closed: {close:?}"),
            _ => continue,
        };
        let message: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(message["event"], "error", "{message}");
        if message["event"] == "peer_updated_status" {
            let sender = message["sender_id"].as_str().unwrap().to_string();
            let seq = message["status"]["seq"].as_u64().unwrap();
            seen.entry(sender).or_default().push(seq);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_updates_at_the_rate_limit_never_close_a_reading_member() {
    // A queue far smaller than the senders' combined burst (8 x 199 updates), so that without
    // coalescing no reader keeps up, however fast the machine; with it, a queue holds at most one
    // update per member.
    let edge = TestEdge::start_with(|c| c.outbound_queue = 4 * SENDERS).await;
    // The join takes one token of the burst; every update after it is within the rate limit.
    let updates = u64::from(Config::default().rate_burst) - 1;
    let mut reader = Client::connect(&edge).await;
    reader.join("busy", json!({})).await;
    let mut senders = Vec::new();
    let mut ids = Vec::new();
    for i in 0..SENDERS {
        let mut sender = Client::connect(&edge).await;
        let (id, _) = sender.join("busy", json!({"name": format!("s{i}")})).await;
        ids.push(id);
        senders.push(sender);
    }
    for _ in 0..SENDERS {
        reader.expect("new_peer").await;
    }

    // Every sender updates its ~3.9 KB status as fast as it can, and reads what the room sends it.
    let mut tasks = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let (mut sink, mut stream) = sender.ws.split();
            let send = async move {
                for seq in 0..updates {
                    let status =
                        json!({"name": format!("s{i}"), "seq": seq, "pad": "x".repeat(3800)});
                    let update = json!({"event": "update_status", "status": status});
                    sink.send(Message::text(update.to_string())).await.unwrap();
                }
                sink
            };
            let (sink, _) = tokio::join!(send, read_statuses(&mut stream, &ids, updates - 1));
            sink.reunite(stream).unwrap()
        }));
    }
    let seen = read_statuses(&mut reader.ws, &ids, updates - 1).await;
    // Kept open until the end: a sender leaving would be news to the reader.
    let mut still_open = Vec::new();
    for task in tasks {
        still_open.push(task.await.unwrap());
    }

    // Updates were dropped, never reordered; each sender's latest status arrived last.
    for (sender, seqs) in &seen {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{sender}: {seqs:?}");
    }
    reader.sync().await;
    assert_eq!(
        edge.metric(
            "switchboard_disconnects_total",
            &[("reason", "slow_consumer")]
        )
        .await,
        0.0
    );
}
