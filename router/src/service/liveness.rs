//! Who is alive, on core NATS (no JetStream): edges by their heartbeats, routers by their presence,
//! and this router itself by hearing its own presence come back.
//!
//! - An edge silent for `--edge-timeout` is declared lost: every slot task removes its members and
//!   tells the rest of their rooms (`peer_left`). An edge heard from that was not known (new, or back
//!   after being declared lost) is announced too, so the router can ask it for the members it lacks.
//! - Routers publish their presence, with the slot leases they hold (slot and epoch), every quarter of
//!   the lease lifetime. A router silent for the lease lifetime is gone: its slots may be taken over.
//!   A router that stops on purpose says `leaving`, so the others take its slots at once.
//! - **Serving deadline.** A router may serve only while it hears its own presence: from the moment
//!   it sent the last presence it heard back, for half the lease lifetime. Whoever judges it gone has
//!   heard nothing from it for a whole lifetime, so it stops first; a router cut off from NATS, or
//!   frozen, stops serving on its own. While it cannot hear itself, it declares nobody lost either.
//! - A claim of a slot at a newer epoch than this router's deposes it: the slot task stops at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use switchboard_proto::EdgeId;
use switchboard_proto::bus::{Heartbeat, ReconcileRequest, RouterPresence, SlotClaim};
use switchboard_proto::subject;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::RouterMetrics;

/// Something the slot tasks must react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The edge stopped sending heartbeats.
    EdgeLost(EdgeId),
    /// A heartbeat from an edge that was not known.
    EdgeAppeared(EdgeId),
    /// Another router claims `slot` at a newer epoch than `ours`.
    Deposed {
        /// The slot.
        slot: u32,
        /// Our epoch, now stale.
        ours: u64,
    },
    /// Events were lost (an edge says so, or this router was a slow consumer): reconcile.
    Reconcile,
}

#[derive(Default)]
struct State {
    edges: HashMap<EdgeId, Instant>,
    /// Other routers: when last heard, and what they claimed then.
    routers: HashMap<String, (Instant, Vec<SlotClaim>)>,
    /// Slots this router holds, with their epochs (published in its presence).
    claims: BTreeMap<u32, u64>,
}

/// Handle to the live sets; cheap to clone.
#[derive(Clone)]
pub struct Liveness {
    state: Arc<Mutex<State>>,
    owner: Arc<str>,
    notices: broadcast::Sender<Notice>,
    serving_until: watch::Sender<Instant>,
}

impl Liveness {
    /// Empty sets, for router process `owner` (its presence subject token and lease owner).
    pub fn new(owner: &str) -> Self {
        let (notices, _) = broadcast::channel(1024);
        Liveness {
            state: Arc::default(),
            owner: owner.into(),
            notices,
            serving_until: watch::Sender::new(Instant::now()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notices from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Until when this router may serve (see the module documentation); updated as its own presence
    /// comes back.
    pub fn serving_until(&self) -> watch::Receiver<Instant> {
        self.serving_until.subscribe()
    }

    /// Whether this router hears itself now.
    pub fn hears_itself(&self) -> bool {
        Instant::now() < *self.serving_until.borrow()
    }

    /// Edges currently alive.
    pub fn edges(&self) -> Vec<EdgeId> {
        self.state().edges.keys().copied().collect()
    }

    /// Routers currently present, this one always included.
    pub fn routers(&self) -> usize {
        let state = self.state();
        state.routers.len() + usize::from(!state.routers.contains_key(&*self.owner))
    }

    /// Whether router process `owner` is present (this one always is).
    pub fn is_present(&self, owner: &str) -> bool {
        owner == &*self.owner || self.state().routers.contains_key(owner)
    }

    /// Slots claimed by other present routers.
    pub fn claimed_by_others(&self) -> Vec<u32> {
        let state = self.state();
        state
            .routers
            .iter()
            .filter(|(owner, _)| **owner != *self.owner)
            .flat_map(|(_, (_, claims))| claims.iter().map(|c| c.slot))
            .collect()
    }

    /// Asks every slot task to reconcile with the edges.
    pub fn reconcile_all(&self) {
        let _ = self.notices.send(Notice::Reconcile);
    }

    /// Records that this router holds `slot` at `epoch` (`None`: no longer).
    pub fn set_claim(&self, slot: u32, epoch: Option<u64>) {
        let mut state = self.state();
        match epoch {
            Some(epoch) => state.claims.insert(slot, epoch),
            None => state.claims.remove(&slot),
        };
    }

    /// The slots this router holds.
    pub fn claims(&self) -> Vec<SlotClaim> {
        self.state()
            .claims
            .iter()
            .map(|(slot, epoch)| SlotClaim {
                slot: *slot,
                epoch: *epoch,
            })
            .collect()
    }

    /// Listens to heartbeats, presence and reconciliation requests, publishes this router's
    /// presence, and expires the silent, until `stop`.
    pub async fn run(
        self,
        client: Client,
        edge_timeout: Duration,
        router_timeout: Duration,
        metrics: RouterMetrics,
        stop: CancellationToken,
    ) -> Result<(), async_nats::SubscribeError> {
        let mut edges = client.subscribe(subject::EDGE_HEARTBEATS).await?;
        let mut routers = client.subscribe(subject::ROUTER_HEARTBEATS).await?;
        let mut reconciles = client.subscribe(subject::RECONCILE).await?;
        let presence_subject = subject::router_heartbeat(&self.owner);
        let mut presence = tokio::time::interval(router_timeout / 4);
        let mut sweep = tokio::time::interval(Duration::from_millis(100));
        // Presence messages sent and not heard back yet: (seq, sent at).
        let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
        let mut seq = 0u64;
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
                        let _ = self.notices.send(Notice::EdgeAppeared(beat.edge));
                    }
                }
                Some(message) = routers.next() => {
                    let Some(name) = message.subject.as_str().rsplit('.').next() else {
                        continue;
                    };
                    let Ok(presence) = serde_json::from_slice::<RouterPresence>(&message.payload) else {
                        debug!(subject = %message.subject, "malformed router presence");
                        continue;
                    };
                    if name == &*self.owner {
                        self.heard_itself(presence.seq, &mut sent, router_timeout);
                    } else {
                        self.heard_router(name, presence);
                    }
                }
                Some(message) = reconciles.next() => {
                    if let Ok(request) = serde_json::from_slice::<ReconcileRequest>(&message.payload) {
                        info!(edge = %request.edge, "an edge lost room events: reconciling its slots");
                        let _ = self.notices.send(Notice::Reconcile);
                    }
                }
                _ = presence.tick() => {
                    seq += 1;
                    let message = RouterPresence { claims: self.claims(), seq, leaving: false };
                    let Ok(payload) = serde_json::to_vec(&message) else { continue };
                    sent.push_back((seq, Instant::now()));
                    // Only the newest few matter; an unanswered backlog means we are cut off.
                    while sent.len() > 64 {
                        sent.pop_front();
                    }
                    let started = Instant::now();
                    let published = client.publish(presence_subject.clone(), payload.into()).await;
                    metrics.bus_publish_presence.observe(started.elapsed().as_secs_f64());
                    if let Err(e) = published {
                        warn!(error = %e, "cannot publish router presence");
                    }
                }
                _ = sweep.tick() => self.sweep(edge_timeout, router_timeout, &metrics),
            }
        }
        // Tell the others at once, so they take over this router's slots without waiting.
        let leaving = RouterPresence {
            claims: Vec::new(),
            seq: seq + 1,
            leaving: true,
        };
        if let Ok(payload) = serde_json::to_vec(&leaving) {
            let _ = client.publish(presence_subject, payload.into()).await;
        }
        let _ = client.flush().await;
        Ok(())
    }

    fn heard_itself(&self, seq: u64, sent: &mut VecDeque<(u64, Instant)>, timeout: Duration) {
        while let Some(&(s, at)) = sent.front() {
            if s > seq {
                break;
            }
            sent.pop_front();
            if s == seq {
                let was_cut_off = !self.hears_itself();
                self.serving_until.send_replace(at + timeout / 2);
                if was_cut_off {
                    // We heard nothing while cut off: give every edge and router a fresh start
                    // rather than declare them all lost.
                    let now = Instant::now();
                    let mut state = self.state();
                    state.edges.values_mut().for_each(|seen| *seen = now);
                    state.routers.values_mut().for_each(|(seen, _)| *seen = now);
                    info!("hearing our own presence again");
                }
            }
        }
    }

    fn heard_router(&self, name: &str, presence: RouterPresence) {
        let mut state = self.state();
        if presence.leaving {
            state.routers.remove(name);
            return;
        }
        for claim in &presence.claims {
            if let Some(&ours) = state.claims.get(&claim.slot)
                && ours < claim.epoch
            {
                warn!(
                    slot = claim.slot,
                    ours,
                    theirs = claim.epoch,
                    router = name,
                    "another router holds our slot at a newer epoch: we were deposed"
                );
                let _ = self.notices.send(Notice::Deposed {
                    slot: claim.slot,
                    ours,
                });
            }
        }
        let new = state
            .routers
            .insert(name.to_string(), (Instant::now(), presence.claims))
            .is_none();
        if new {
            info!(router = name, "router present");
        }
    }

    fn sweep(&self, edge_timeout: Duration, router_timeout: Duration, metrics: &RouterMetrics) {
        metrics.hears_itself.set(i64::from(self.hears_itself()));
        if !self.hears_itself() {
            // Cut off (or frozen): silence says nothing about the others.
            return;
        }
        let now = Instant::now();
        let (lost, gone) = {
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
            let gone: Vec<String> = state
                .routers
                .iter()
                .filter(|(_, (seen, _))| now.duration_since(*seen) > router_timeout)
                .map(|(name, _)| name.clone())
                .collect();
            for name in &gone {
                state.routers.remove(name);
            }
            metrics.edges_alive.set(state.edges.len() as i64);
            (lost, gone)
        };
        metrics.routers_alive.set(self.routers() as i64);
        for router in gone {
            warn!(router = %router, "router lost: no presence within the lease lifetime");
        }
        for edge in lost {
            warn!(edge = %edge, "edge lost: no heartbeat within the edge timeout");
            metrics.edges_lost.inc();
            let _ = self.notices.send(Notice::EdgeLost(edge));
        }
    }
}
