//! The bus: how an edge reaches the router that owns a room, and how peer messages reach other edges.
//!
//! Standalone (the default), the router runs in this process ([`crate::local_router`]) behind this
//! interface; in a cluster ([`crate::cluster`]) commands are NATS requests to the slot's owner and
//! peer messages are published to the target's subject. Connection code only talks to [`Bus`], so
//! both modes run the same edge logic. Inbound traffic arrives at the [`crate::registry::Registry`]
//! in both modes.

use std::time::Duration;

use async_nats::HeaderMap;
use std::collections::BTreeMap;
use switchboard_proto::bus::CommandReply;
use switchboard_proto::control::{RoomReply, RoomRequest};

use switchboard_proto::{ConnId, RoomKey, TenantId, subject};
use switchboard_rooms::{Command, HourlyStats, TenantUsage};
use switchboard_runtime::nats::Link;
use switchboard_runtime::trace;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::field::Empty;
use tracing::{Instrument as _, Span, debug};

use crate::metrics::Metrics;

/// A request to the in-process router.
#[derive(Debug)]
pub enum LocalRequest {
    /// A membership command.
    Command(Command),
    /// A snapshot of statistics.
    Stats(oneshot::Sender<StatsSnapshot>),
    /// A control API request about rooms (the standalone room service, `crate::room_service`).
    Rooms(RoomRequest, oneshot::Sender<RoomReply>),
    /// Hosted mode: tenants' usage counted by the edge (connections, messages) in one round, by
    /// UTC hour and tenant, for the hourly statistics.
    Usage(BTreeMap<(u64, TenantId), TenantUsage>),
}

/// Rooms, members and hourly statistics at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatsSnapshot {
    /// Open rooms.
    pub rooms: usize,
    /// Connections in a room.
    pub members: usize,
    /// palava's hourly statistics.
    pub hourly: HourlyStats,
}

/// The bus could not take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// No router took the command within the retry window (or the process is stopping).
    #[error("router unavailable")]
    Unavailable,
    /// This edge does not hold the statistics (in a cluster, the routers do).
    #[error("statistics are served by the routers")]
    NotHere,
}

/// The edge's way to the routers and the other edges; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Local(mpsc::Sender<LocalRequest>),
    // Boxed: the NATS bus is large and the bus is cloned into every connection's context.
    Nats(Box<NatsBus>),
}

/// The cluster bus over NATS.
#[derive(Debug, Clone)]
pub struct NatsBus {
    /// The connection.
    pub client: async_nats::Client,
    /// Link state.
    pub link: watch::Receiver<Link>,
    /// Number of slots rooms hash into.
    pub slots: u32,
    /// How long a command is retried while its slot has no serving router.
    pub retry_window: Duration,
    /// The newest lease epoch seen per slot (fencing of deposed routers).
    pub epochs: Epochs,
    /// Counts the times NATS dropped messages for this edge (slow consumer).
    pub slow_consumers: watch::Receiver<u64>,
    /// Metrics.
    pub metrics: Metrics,
}

/// The newest lease epoch this edge has seen for each slot: from a router's resync (before it
/// serves), its events and its replies. Anything from an older epoch comes from a router that has
/// been deposed and is dropped, so two routers can never both change what this edge's clients see.
#[derive(Debug, Clone, Default)]
pub struct Epochs {
    newest: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u32, u64>>>,
}

impl Epochs {
    /// Records `epoch` for `slot`; false if a newer one was seen already (the sender is deposed).
    pub fn admit(&self, slot: u32, epoch: u64) -> bool {
        let mut newest = self
            .newest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = newest.entry(slot).or_insert(epoch);
        if epoch < *seen {
            return false;
        }
        *seen = epoch;
        true
    }
}

/// First pause between command attempts; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// Longest wait for one command's reply before asking again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

impl Bus {
    /// A bus to an in-process router fed through `tx`.
    pub fn local(tx: mpsc::Sender<LocalRequest>) -> Self {
        Bus {
            inner: Inner::Local(tx),
        }
    }

    /// A bus over NATS.
    pub fn nats(bus: NatsBus) -> Self {
        Bus {
            inner: Inner::Nats(Box::new(bus)),
        }
    }

    /// The NATS bus, in a cluster.
    pub fn as_nats(&self) -> Option<&NatsBus> {
        match &self.inner {
            Inner::Local(_) => None,
            Inner::Nats(bus) => Some(bus),
        }
    }

    /// Whether the bus can carry traffic now (readiness).
    pub fn is_up(&self) -> bool {
        match &self.inner {
            Inner::Local(tx) => !tx.is_closed(),
            Inner::Nats(bus) => *bus.link.borrow() == Link::Up,
        }
    }

    /// Hands a membership command to the router owning its room and waits until it was applied (its
    /// effects are then on their way). Standalone, waits while the router's queue is full
    /// (backpressure). In a cluster, retries while the slot has no serving router (failover,
    /// handover) for up to the retry window; a retried command is harmless (joins and leaves are
    /// idempotent at the router).
    pub async fn command(&self, command: Command) -> Result<(), BusError> {
        // Boxed: the NATS request with its retries is a large future, and this one is awaited from
        // every connection's task. Inline, its state would be part of every idle connection's memory
        // (the task's future is as large as its largest await); boxed, it costs one allocation per
        // command, which is rare next to relays.
        Box::pin(async move {
            match &self.inner {
                Inner::Local(tx) => tx
                    .send(LocalRequest::Command(command))
                    .await
                    .map_err(|_| BusError::Unavailable),
                Inner::Nats(bus) => bus.command(command).await,
            }
        })
        .await
    }

    /// Publishes a peer message for `target`, held by another edge, with `span`'s trace context.
    /// Messages from one sender keep their order (one NATS connection, one subject per target).
    pub async fn relay(
        &self,
        target: ConnId,
        room: RoomKey,
        event: &'static str,
        text: Utf8Bytes,
        span: &trace::Leaf,
    ) -> Result<(), BusError> {
        match &self.inner {
            // Standalone every connection is local; there is no other edge.
            Inner::Local(_) => Err(BusError::Unavailable),
            // Boxed for the reason given at `command`: this future is as large as async-nats's
            // publish, and only cluster relays need it.
            Inner::Nats(bus) => {
                Box::pin(async move {
                    let mut headers = HeaderMap::new();
                    headers.insert(subject::HEADER_ROOM, room.to_string().as_str());
                    headers.insert(subject::HEADER_EVENT, event);
                    // The sender's `client.send_to_peer` span: the target's edge continues it.
                    span.inject(&mut headers);
                    // Shares the encoded text; no copy.
                    let payload = bytes::Bytes::from(text);
                    let started = Instant::now();
                    let published = bus
                        .client
                        .publish_with_headers(subject::conn(target), headers, payload)
                        .await;
                    bus.metrics
                        .bus_publish_relay
                        .observe(started.elapsed().as_secs_f64());
                    published.map_err(|e| {
                        bus.metrics.bus_errors.with_label_values(&["relay"]).inc();
                        debug!(error = %e, "cannot publish a peer message");
                        BusError::Unavailable
                    })
                })
                .await
            }
        }
    }

    /// Hands tenants' usage to the in-process router's statistics (standalone only; in a cluster
    /// edges store their own).
    pub async fn usage(
        &self,
        usage: BTreeMap<(u64, TenantId), TenantUsage>,
    ) -> Result<(), BusError> {
        match &self.inner {
            Inner::Local(tx) => tx
                .send(LocalRequest::Usage(usage))
                .await
                .map_err(|_| BusError::Unavailable),
            Inner::Nats(_) => Err(BusError::NotHere),
        }
    }

    /// Current statistics (standalone only; in a cluster the routers serve them).
    pub async fn stats(&self) -> Result<StatsSnapshot, BusError> {
        match &self.inner {
            Inner::Local(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(LocalRequest::Stats(reply))
                    .await
                    .map_err(|_| BusError::Unavailable)?;
                rx.await.map_err(|_| BusError::Unavailable)
            }
            Inner::Nats(_) => Err(BusError::NotHere),
        }
    }
}

impl NatsBus {
    async fn command(&self, command: Command) -> Result<(), BusError> {
        let Some(room) = command.room() else {
            return Err(BusError::Unavailable);
        };
        let slot = room.slot(self.slots);
        let subject = subject::slot(slot);
        let payload: bytes::Bytes = serde_json::to_vec(&command)
            .map_err(|_| BusError::Unavailable)?
            .into();
        // The request to the slot's owner, all attempts: the router's `router.apply` is its child.
        let span = switchboard_runtime::trace_span!(
            "bus.command",
            otel.kind = "client",
            otel.status_code = Empty,
            sb.slot = slot,
            sb.attempts = Empty,
        );
        let headers = trace::traced_headers(&span);
        let result = self
            .command_attempts(slot, subject, payload, headers)
            .instrument(span.clone())
            .await;
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    async fn command_attempts(
        &self,
        slot: u32,
        subject: String,
        payload: bytes::Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<(), BusError> {
        let started = Instant::now();
        let deadline = started + self.retry_window;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            Span::current().record("sb.attempts", attempts);
            let request = async {
                match &headers {
                    Some(headers) => {
                        self.client
                            .request_with_headers(subject.clone(), headers.clone(), payload.clone())
                            .await
                    }
                    None => self.client.request(subject.clone(), payload.clone()).await,
                }
            };
            let reply = tokio::time::timeout(ATTEMPT_TIMEOUT, request).await;
            let applied = match &reply {
                Ok(Ok(message)) => match serde_json::from_slice::<CommandReply>(&message.payload) {
                    Ok(CommandReply::Applied { epoch }) => {
                        let admitted = self.epochs.admit(slot, epoch);
                        if !admitted {
                            self.metrics.stale_epochs.inc();
                        }
                        admitted
                    }
                    _ => false,
                },
                _ => false,
            };
            if applied {
                self.metrics
                    .bus_command_seconds
                    .observe(started.elapsed().as_secs_f64());
                if attempts > 1 {
                    self.metrics
                        .bus_command_retries
                        .inc_by(u64::from(attempts - 1));
                }
                return Ok(());
            }
            // No responders, a timeout, or "not serving": the slot's owner is changing. Ask again.
            let pause = backoff
                + Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
            if Instant::now() + pause >= deadline {
                self.metrics
                    .bus_errors
                    .with_label_values(&["command"])
                    .inc();
                return Err(BusError::Unavailable);
            }
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
