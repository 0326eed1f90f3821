//! What a test client has been told about its room, to compare with the true membership.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Client;

/// A member and what it has been told about its room.
pub struct Member {
    pub client: Client,
    pub id: String,
    pub view: BTreeSet<String>,
}

impl Member {
    /// Joins `room` through the edge at `url`; panics if refused.
    pub async fn join(url: &str, room: &str) -> Member {
        Self::try_join(url, room)
            .await
            .expect("the join is not refused")
    }

    pub fn apply(&mut self, message: &Value) {
        match message["event"].as_str() {
            Some("new_peer") => {
                let peer = message["peer_id"].as_str().unwrap().to_string();
                assert!(
                    self.view.insert(peer.clone()),
                    "{} was told twice that {peer} joined",
                    self.id
                );
            }
            Some("peer_left") => {
                self.view.remove(message["sender_id"].as_str().unwrap());
            }
            Some("error") => panic!("{} got an error: {message}", self.id),
            _ => {}
        }
    }

    /// Reads events until the view equals `truth` (without this member), or `within` runs out.
    pub async fn converges(&mut self, truth: &BTreeSet<String>, within: Duration) -> bool {
        let mut want = truth.clone();
        want.remove(&self.id);
        let deadline = Instant::now() + within;
        while self.view != want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.client.recv_within(left).await {
                Some(message) => self.apply(&message),
                None => return false,
            }
        }
        true
    }
}

impl Member {
    /// Joins `room` through the edge at `url`, or `None` if the cluster refuses (`service
    /// unavailable` while no router can serve the room).
    pub async fn try_join(url: &str, room: &str) -> Option<Member> {
        let mut client = Client::connect_url(url).await;
        client
            .send(json!({"event": "join_room", "room_id": room, "status": {}}))
            .await;
        let first = client.recv().await;
        match first["event"].as_str() {
            Some("joined_room") => {}
            Some("error") if first["message"] == "service unavailable" => return None,
            _ => panic!("unexpected answer to a join: {first}"),
        }
        let view = first["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["peer_id"].as_str().unwrap().to_string())
            .collect();
        let id = first["own_id"].as_str().unwrap().to_string();
        Some(Member { client, id, view })
    }

    /// Reads whatever has arrived, without waiting.
    pub async fn drain(&mut self) {
        while let Some(message) = self.client.recv_within(Duration::from_millis(1)).await {
            self.apply(&message);
        }
    }
}
