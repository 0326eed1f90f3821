//! Who is alive: edges (by their heartbeats) and routers (by their presence messages).
//!
//! An edge silent for `--edge-timeout` is declared lost: every slot task removes its members and tells
//! the rest of their rooms (`peer_left`). An edge heard from that was not known (new, or back after
//! being declared lost) is announced too, so the router can ask it for the members it does not know.
//! Router presence feeds slot balancing; a router that stops on purpose says so, so the others take
//! its slots without waiting for its presence to time out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_proto::EdgeId;
use switchboard_proto::bus::Heartbeat;
use switchboard_proto::subject;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::RouterMetrics;

/// Payload of a router presence message announcing that it is stopping.
pub const LEAVING: &[u8] = b"leaving";

/// A change in the set of live edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeNotice {
    /// The edge stopped sending heartbeats.
    Lost(EdgeId),
    /// A heartbeat from an edge that was not known.
    Appeared(EdgeId),
}

#[derive(Default)]
struct State {
    edges: HashMap<EdgeId, Instant>,
    routers: HashMap<String, Instant>,
}

/// Handle to the live sets; cheap to clone.
#[derive(Clone)]
pub struct Liveness {
    state: Arc<Mutex<State>>,
    router_id: Arc<str>,
    notices: broadcast::Sender<EdgeNotice>,
}

impl Liveness {
    /// Empty sets.
    pub fn new(router_id: &str) -> Self {
        let (notices, _) = broadcast::channel(1024);
        Liveness {
            state: Arc::default(),
            router_id: router_id.into(),
            notices,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Edge notices from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EdgeNotice> {
        self.notices.subscribe()
    }

    /// Edges currently alive.
    pub fn edges(&self) -> Vec<EdgeId> {
        self.state().edges.keys().copied().collect()
    }

    /// Routers currently present, this one always included.
    pub fn routers(&self) -> usize {
        let state = self.state();
        state.routers.len() + usize::from(!state.routers.contains_key(&*self.router_id))
    }

    /// Listens to heartbeats and presence, publishes this router's presence, and expires the silent,
    /// until `stop`.
    pub async fn run(
        self,
        client: Client,
        edge_timeout: Duration,
        router_timeout: Duration,
        metrics: RouterMetrics,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut edges = client.subscribe(subject::EDGE_HEARTBEATS).await?;
        let mut routers = client.subscribe(subject::ROUTER_HEARTBEATS).await?;
        let presence_subject = subject::router_heartbeat(&self.router_id);
        let mut presence = tokio::time::interval(router_timeout / 4);
        let mut sweep = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                Some(message) = edges.next() => {
                    let Ok(beat) = serde_json::from_slice::<Heartbeat>(&message.payload) else {
                        debug!(subject = %message.subject, "malformed edge heartbeat");
                        continue;
                    };
                    let new = self.state().edges.insert(beat.edge, Instant::now()).is_none();
                    if new {
                        info!(edge = %beat.edge, "edge alive");
                        let _ = self.notices.send(EdgeNotice::Appeared(beat.edge));
                    }
                }
                Some(message) = routers.next() => {
                    let Some(name) = message.subject.as_str().rsplit('.').next() else {
                        continue;
                    };
                    let mut state = self.state();
                    if message.payload.as_ref() == LEAVING {
                        state.routers.remove(name);
                    } else {
                        state.routers.insert(name.to_string(), Instant::now());
                    }
                }
                _ = presence.tick() => {
                    if let Err(e) = client.publish(presence_subject.clone(), Bytes::new()).await {
                        warn!(error = %e, "cannot publish router presence");
                    }
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let lost: Vec<EdgeId> = {
                        let mut state = self.state();
                        let lost: Vec<EdgeId> = state
                            .edges
                            .iter()
                            .filter(|(_, seen)| now.duration_since(**seen) > edge_timeout)
                            .map(|(edge, _)| *edge)
                            .collect();
                        for edge in &lost {
                            state.edges.remove(edge);
                        }
                        state.routers.retain(|_, seen| now.duration_since(*seen) <= router_timeout);
                        metrics.edges_alive.set(state.edges.len() as i64);
                        lost
                    };
                    metrics.routers_alive.set(self.routers() as i64);
                    for edge in lost {
                        warn!(edge = %edge, "edge lost: no heartbeat within the edge timeout");
                        metrics.edges_lost.inc();
                        let _ = self.notices.send(EdgeNotice::Lost(edge));
                    }
                }
            }
        }
        // Tell the others at once, so they take over this router's slots without waiting.
        let _ = client
            .publish(presence_subject, Bytes::from_static(LEAVING))
            .await;
        let _ = client.flush().await;
        Ok(())
    }
}
