//! The bus: how an edge reaches the router that owns a room.
//!
//! Standalone (the default), the router runs in this process ([`crate::local_router`]) behind this
//! same interface; the cluster adds a NATS variant. Connection code only ever talks to [`Bus`], so both
//! modes run the same edge logic. Inbound traffic (room events for local connections) arrives at the
//! [`crate::registry::Registry`] in both modes.

use switchboard_router::{Command, HourlyStats};
use tokio::sync::{mpsc, oneshot};

/// A request to the in-process router.
#[derive(Debug)]
pub enum LocalRequest {
    /// A membership command.
    Command(Command),
    /// A snapshot of statistics.
    Stats(oneshot::Sender<StatsSnapshot>),
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
    /// The router is gone (the process is stopping).
    #[error("router unavailable")]
    Unavailable,
}

/// The edge's way to the routers; cheap to clone.
#[derive(Debug, Clone)]
pub struct Bus {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Local(mpsc::Sender<LocalRequest>),
}

impl Bus {
    /// A bus to an in-process router fed through `tx`.
    pub fn local(tx: mpsc::Sender<LocalRequest>) -> Self {
        Bus {
            inner: Inner::Local(tx),
        }
    }

    /// Hands a membership command to the router owning its room. Waits while the router's queue is
    /// full (backpressure), so a join storm slows joiners down instead of growing memory.
    pub async fn command(&self, command: Command) -> Result<(), BusError> {
        match &self.inner {
            Inner::Local(tx) => tx
                .send(LocalRequest::Command(command))
                .await
                .map_err(|_| BusError::Unavailable),
        }
    }

    /// Current statistics.
    pub async fn stats(&self) -> Result<StatsSnapshot, BusError> {
        match &self.inner {
            Inner::Local(tx) => {
                let (reply, rx) = oneshot::channel();
                tx.send(LocalRequest::Stats(reply))
                    .await
                    .map_err(|_| BusError::Unavailable)?;
                rx.await.map_err(|_| BusError::Unavailable)
            }
        }
    }
}
