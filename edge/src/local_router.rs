//! The router, in process: the standalone edge's room service. One task owns the [`Rooms`] state
//! machine, applies commands in arrival order and hands the effects to the registry. The cluster
//! replaces this task with router processes over NATS; the edge code around it stays the same.

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_router::{Effect, Rooms, RoomsConfig, UnixMillis};
use tokio::sync::mpsc;

use crate::bus::{LocalRequest, StatsSnapshot};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Capacity of the router's command queue; senders wait when it is full.
pub const QUEUE: usize = 4096;

/// Runs the router until every sender is gone.
pub async fn run(
    config: RoomsConfig,
    mut rx: mpsc::Receiver<LocalRequest>,
    registry: Registry,
    metrics: Metrics,
) {
    let mut rooms = Rooms::new(config);
    while let Some(request) = rx.recv().await {
        match request {
            LocalRequest::Command(command) => {
                for effect in rooms.apply(now(), command) {
                    match effect {
                        Effect::Deliver {
                            room, to, message, ..
                        } => registry.deliver(room, &to, message),
                        Effect::Refuse {
                            conn, room, error, ..
                        } => registry.refuse(conn, room, error),
                        Effect::RoomClosed { peak } => {
                            metrics.room_peak_members.observe(peak as f64)
                        }
                        Effect::MemberLeft { minutes } => {
                            metrics.connection_minutes.observe(minutes as f64)
                        }
                    }
                }
                metrics.rooms.set(rooms.room_count() as i64);
                metrics.members.set(rooms.member_count() as i64);
            }
            LocalRequest::Stats(reply) => {
                let _ = reply.send(StatsSnapshot {
                    rooms: rooms.room_count(),
                    members: rooms.member_count(),
                    hourly: rooms.stats().clone(),
                });
            }
        }
    }
}

fn now() -> UnixMillis {
    // A clock before 1970 is a broken host; count it as the epoch rather than fail joins.
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UnixMillis(since_epoch.as_millis() as u64)
}
