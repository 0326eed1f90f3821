//! A webhook receiver in tests: a plain HTTP server on loopback that checks every request's
//! signature and keeps each event once (by id), in the order events first arrived.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_api::webhooks::signature::DEFAULT_TOLERANCE;
use switchboard_api::webhooks::verify;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::hosted::{A_ORIGIN, A1, claims, connect, token};

/// The webhook secret of the test tenants.
pub const WEBHOOK_SECRET: &str = "whsec_edge_test_0123456789";

/// Longest wait for an event: the engine's backoff after a 2 s outage stays well under it.
const EVENT_PATIENCE: Duration = Duration::from_secs(20);

/// Verified events in the order they first arrived (a redelivery, same `id`, is not repeated).
#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Value>>>);

impl Received {
    pub fn snapshot(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until `n` events arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + EVENT_PATIENCE;
        loop {
            let got = self.snapshot();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} events arrived: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Serves webhook requests on `listener` (HTTP/1.1, one request per connection, as the engine
/// sends them), checking each signature, until the task is aborted.
pub fn serve(listener: TcpListener, received: Received) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let received = received.clone();
            tokio::spawn(async move { answer(stream, received).await });
        }
    })
}

async fn answer(mut stream: TcpStream, received: Received) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the request ended early");
        bytes.extend_from_slice(&chunk[..n]);
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let length: usize = header(&head, "content-length").unwrap().parse().unwrap();
        while bytes.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the body ended early");
            bytes.extend_from_slice(&chunk[..n]);
        }
        break (head, bytes[end + 4..end + 4 + length].to_vec());
    };
    assert!(head.starts_with("POST /hooks HTTP/1.1\r\n"), "{head}");
    let signature = header(&head, "switchboard-signature").expect("a signature");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(
        verify(
            WEBHOOK_SECRET.as_bytes(),
            &signature,
            &body,
            now,
            DEFAULT_TOLERANCE
        ),
        Ok(()),
        "every request verifies with the tenant's secret"
    );
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        header(&head, "switchboard-event-id").as_deref(),
        event["id"].as_str()
    );
    {
        let mut all = received.0.lock().unwrap();
        if !all.iter().any(|e| e["id"] == event["id"]) {
            all.push(event);
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await;
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Two members of tenant a join `room` (Ada at `ada_url`, Bob at `bob_url`) and leave it, one after
/// the other (each step seen by the other member first, so the room's order is known); returns
/// their ids in join order.
pub async fn meet(ada_url: &str, bob_url: &str, room: &str) -> (String, String) {
    let mut ada = connect(ada_url, &token(A1, &claims("ada")), Some(A_ORIGIN)).await;
    let mut bob = connect(bob_url, &token(A1, &claims("bob")), Some(A_ORIGIN)).await;
    let (ada_id, _) = ada.join(room, json!({"name": "Ada"})).await;
    let (bob_id, _) = bob.join(room, json!({"name": "Bob"})).await;
    ada.expect("new_peer").await;
    ada.send(json!({"event": "leave_room"})).await;
    bob.expect("peer_left").await;
    bob.send(json!({"event": "leave_room"})).await;
    bob.sync().await;
    (ada_id, bob_id)
}

/// What a room's `seq` numbers must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seq {
    /// One more per event (a standalone edge counts them).
    Contiguous,
    /// Growing (a cluster's are the outbox stream's sequence numbers).
    Increasing,
}

/// The six events of [`meet`], in order, with their room's `seq` numbers as `seq` says.
pub fn check_meeting(events: &[Value], room: &str, ada: &str, bob: &str, seq: Seq) {
    let got: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            assert_eq!(e["tenant"], "a", "{e}");
            assert_eq!(e["room"], room, "{e}");
            (
                e["event"].as_str().unwrap(),
                e["peer_id"].as_str(),
                e["status"]["name"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("room_started", None, None),
            ("participant_joined", Some(ada), Some("Ada")),
            ("participant_joined", Some(bob), Some("Bob")),
            ("participant_left", Some(ada), Some("Ada")),
            ("participant_left", Some(bob), Some("Bob")),
            ("room_finished", None, None),
        ]
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    match seq {
        Seq::Contiguous => assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "seq grows by one: {seqs:?}"
        ),
        Seq::Increasing => assert!(seqs.windows(2).all(|w| w[1] > w[0]), "seq grows: {seqs:?}"),
    }
}
