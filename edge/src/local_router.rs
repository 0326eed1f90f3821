//! The router, in process: the standalone edge's room service. One task owns the [`Rooms`] state
//! machine, applies commands in arrival order and hands the effects to the registry. The cluster
//! replaces this task with router processes over NATS; the edge code around it stays the same.
//!
//! With `--stats-file`, palava's hourly statistics survive restarts: they are loaded at start and saved
//! (atomically) at most every [`SAVE_INTERVAL`] while they change, and once more when the task ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchboard_api::webhooks::Webhooks;
use switchboard_proto::TenantId;
use switchboard_rooms::{Effect, HourlyStats, Rooms, RoomsConfig, UnixMillis};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::bus::{LocalRequest, StatsSnapshot};
use crate::metrics::Metrics;
use crate::registry::Registry;

/// Capacity of the router's command queue; senders wait when it is full.
pub const QUEUE: usize = 4096;

/// Longest time changed statistics stay unsaved.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the router until every sender is gone.
pub async fn run(
    config: RoomsConfig,
    mut rx: mpsc::Receiver<LocalRequest>,
    registry: Registry,
    metrics: Metrics,
    stats_file: Option<PathBuf>,
    webhooks: Option<Webhooks>,
) {
    let mut rooms = Rooms::new(config);
    if let Some(path) = &stats_file {
        load(path, rooms.stats_mut()).await;
    }
    let mut dirty = false;
    let mut save = tokio::time::interval(SAVE_INTERVAL);
    save.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let request = tokio::select! {
            request = rx.recv() => match request {
                Some(request) => request,
                None => break,
            },
            _ = save.tick(), if dirty && stats_file.is_some() => {
                if let Some(path) = &stats_file {
                    store(path, rooms.stats()).await;
                }
                dirty = false;
                continue;
            }
        };
        match request {
            LocalRequest::Command(command) => {
                let now = now();
                let effects = rooms.apply(now, command);
                dirty |= handle(&rooms, effects, &registry, &metrics, webhooks.as_ref(), now);
            }
            LocalRequest::Rooms(request, reply) => {
                let now = now();
                let (answer, effects) = rooms.answer(now, request);
                dirty |= handle(&rooms, effects, &registry, &metrics, webhooks.as_ref(), now);
                // The asker may have given up (its HTTP client went away): nothing to do then.
                let _ = reply.send(answer);
            }
            LocalRequest::Usage(usage) => {
                // Usage arrives every round while a tenant has connections, so also while it has
                // rooms: the moment to start a new hour's room peaks when no command did.
                rooms.roll_hour(now());
                let stats = rooms.stats_mut();
                for ((hour, tenant), usage) in usage {
                    stats.tenant_usage(hour, &tenant, &usage);
                }
                dirty = true;
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
    if dirty && let Some(path) = &stats_file {
        store(path, rooms.stats()).await;
    }
}

/// Hands the effects of a command or control request to the registry, the metrics and the
/// webhooks (here, in effect order, which is the rooms' order); returns whether the statistics
/// changed.
fn handle(
    rooms: &Rooms,
    effects: Vec<Effect>,
    registry: &Registry,
    metrics: &Metrics,
    webhooks: Option<&Webhooks>,
    now: UnixMillis,
) -> bool {
    let mut dirty = false;
    for effect in effects {
        match effect {
            Effect::TenantMemberJoined { .. } | Effect::TenantMemberLeft { .. } => {
                if let Some(webhooks) = webhooks {
                    crate::webhooks::emit(webhooks, &effect, now);
                }
            }
            Effect::Deliver {
                room, to, message, ..
            } => registry.deliver(room, &to, message),
            Effect::Refuse {
                conn, room, error, ..
            } => registry.refuse(conn, room, error),
            Effect::Remove { room, to, .. } => registry.remove_by_service(room, &to),
            Effect::RoomClosed { peak } => {
                dirty = true;
                metrics.room_peak_members.observe(peak as f64)
            }
            Effect::MemberLeft { millis, .. } => {
                dirty = true;
                metrics.connection_seconds.observe(millis as f64 / 1000.0)
            }
            Effect::TenantRoomOpened { tenant } => {
                dirty = true;
                metrics.tenant_rooms.opened(&tenant);
                count_rooms(rooms, metrics, &tenant);
            }
            Effect::TenantRoomClosed { tenant, .. } => {
                count_rooms(rooms, metrics, &tenant);
            }
            // Counted in the statistics by `Rooms` itself.
            Effect::TenantRoomMembers { .. } => dirty = true,
        }
    }
    metrics.rooms.set(rooms.room_count() as i64);
    metrics.members.set(rooms.member_count() as i64);
    dirty
}

/// Adds the statistics saved in `path` (if any) to `stats`. A file that cannot be read is set aside
/// rather than overwritten, and the service starts with empty statistics: losing history must never
/// stop signaling.
async fn load(path: &Path, stats: &mut HourlyStats) {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the statistics file; starting empty");
            return;
        }
    };
    match serde_json::from_slice::<HourlyStats>(&bytes) {
        Ok(saved) => {
            stats.merge(&saved);
            info!(path = %path.display(), hours = saved.hours().len(), "statistics restored");
        }
        Err(e) => {
            let aside = path.with_extension("corrupt");
            warn!(path = %path.display(), moved_to = %aside.display(), error = %e,
                "statistics file is not valid; set aside, starting empty");
            let _ = tokio::fs::rename(path, aside).await;
        }
    }
}

/// Saves `stats` to `path` atomically (write a temporary file, then rename over).
async fn store(path: &Path, stats: &HourlyStats) {
    let result = async {
        let json = serde_json::to_vec(stats).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, json).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = result {
        warn!(path = %path.display(), error = %e, "cannot save statistics");
    }
}

/// Sets a tenant's open-rooms gauge from the state machine's count.
fn count_rooms(rooms: &Rooms, metrics: &Metrics, tenant: &TenantId) {
    let open = rooms.tenant_rooms().get(tenant).copied().unwrap_or(0);
    metrics.tenant_rooms.set_rooms(tenant, open);
}

// Moved to the rooms crate: the webhooks' events (switchboard-api) need it too.
pub use switchboard_rooms::status_map;

fn now() -> UnixMillis {
    UnixMillis(switchboard_runtime::clock::unix_millis())
}
