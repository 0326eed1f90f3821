//! One served slot: a task that owns the slot's [`Rooms`], its lease and its command subscription.
//!
//! Life of a slot task: (1) resync: ask every live edge for its members in the slot and restore them
//! silently (the edges are the ground truth), with stored peaks; (2) serve: apply commands in arrival
//! order, publish effects to the edges, reply; renew the lease; remove the members of lost edges;
//! (3) end: on purpose (release the lease so another router takes over at once), or fenced (the lease
//! could not be renewed in time: stop serving before anyone else can start).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::Message;
use bytes::Bytes;
use futures_util::StreamExt;
use switchboard_proto::bus::{
    Command, CommandReply, EdgeEvent, ResyncReply, ResyncRequest, StatEvent,
};
use switchboard_proto::{EdgeId, RoomKey, subject};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Shared;
use super::lease::{Lease, LeaseError};
use super::liveness::EdgeNotice;
use crate::{Effect, Rooms, RoomsConfig, UnixMillis};

/// How a slot task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotEnd {
    /// Handed over on purpose.
    Released,
    /// The lease was lost (not renewed in time, or taken).
    Lost,
}

/// Serves `slot` under `lease` until `stop` or until the lease is lost.
pub async fn serve(shared: Arc<Shared>, mut lease: Lease, stop: CancellationToken) -> SlotEnd {
    let slot = lease.slot;
    let mut notices = shared.liveness.subscribe();
    let started = Instant::now();
    let mut task = SlotTask {
        rooms: Rooms::new(RoomsConfig {
            max_room_size: shared.config.max_room_size,
            stats_retention_hours: shared.config.stats_retention_hours,
        }),
        peaks: HashMap::new(),
        counted: (0, 0),
        shared: shared.clone(),
        slot,
    };
    if let Err(e) = task.resync().await {
        warn!(slot, error = %e, "resync failed; giving the slot up");
        let _ = shared.leases.release(lease).await;
        return SlotEnd::Lost;
    }
    shared
        .metrics
        .resync_seconds
        .observe(started.elapsed().as_secs_f64());

    // Logged before subscribing and after unsubscribing, so that the logged interval contains the
    // whole time this router serves the slot (tests check that such intervals never overlap).
    info!(slot, "slot serving starts");
    let mut commands = match shared.client.subscribe(subject::slot(slot)).await {
        Ok(subscriber) => subscriber,
        Err(e) => {
            warn!(slot, error = %e, "cannot subscribe to the slot; giving it up");
            info!(slot, "slot serving ended");
            let _ = shared.leases.release(lease).await;
            return SlotEnd::Lost;
        }
    };
    shared.metrics.slot_takeovers.inc();
    shared.metrics.slots_owned.inc();
    info!(slot, members = task.rooms.member_count(), "serving slot");

    let mut renew = tokio::time::interval(shared.leases.renew_interval());
    renew.reset();
    let end = loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break SlotEnd::Released,
            () = sleep_until(lease.valid_until) => {
                warn!(slot, "lease not renewed in time: stopping serving the slot (fenced)");
                break SlotEnd::Lost;
            }
            _ = renew.tick() => match shared.leases.renew(&mut lease).await {
                Ok(()) => shared.metrics.lease_renewals.with_label_values(&["ok"]).inc(),
                Err(LeaseError::Taken) => {
                    shared.metrics.lease_renewals.with_label_values(&["error"]).inc();
                    warn!(slot, "lease taken by another router: stopping serving the slot");
                    break SlotEnd::Lost;
                }
                Err(e) => {
                    shared.metrics.lease_renewals.with_label_values(&["error"]).inc();
                    warn!(slot, error = %e, "lease renewal failed; retrying until fenced");
                }
            },
            notice = notices.recv() => match notice {
                Ok(EdgeNotice::Lost(edge)) => task.apply(Command::EdgeLost { edge }).await,
                Ok(EdgeNotice::Appeared(_)) => {}
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break SlotEnd::Released,
            },
            message = commands.next() => {
                let Some(message) = message else {
                    break SlotEnd::Lost;
                };
                // Fencing is checked per command as well: never apply after the lease ran out.
                if Instant::now() >= lease.valid_until {
                    task.reply(&message, CommandReply::NotServing).await;
                    break SlotEnd::Lost;
                }
                task.handle(message).await;
            }
        }
    };

    // No command is applied after this point (what is still queued is dropped unanswered, and the
    // edges ask again), so this is where serving ends.
    info!(slot, ?end, "slot serving ended");
    let _ = commands.unsubscribe().await;
    task.forget();
    shared.metrics.slots_owned.dec();
    match end {
        SlotEnd::Released => {
            shared.metrics.slot_releases.inc();
            if let Err(e) = shared.leases.release(lease).await {
                debug!(slot, error = %e, "lease release failed; it will expire");
            }
            info!(slot, "slot handed over");
        }
        SlotEnd::Lost => shared.metrics.lease_losses.inc(),
    }
    end
}

struct SlotTask {
    shared: Arc<Shared>,
    slot: u32,
    rooms: Rooms,
    /// The peak last stored for each open room.
    peaks: HashMap<RoomKey, usize>,
    /// (rooms, members) last added to the process-wide gauges.
    counted: (i64, i64),
}

impl SlotTask {
    /// Rebuilds the slot's membership from the edges before serving it.
    async fn resync(&mut self) -> anyhow::Result<()> {
        let client = &self.shared.client;
        let expected: HashSet<EdgeId> = self.shared.liveness.edges().into_iter().collect();
        let inbox = client.new_inbox();
        let mut replies = client.subscribe(inbox.clone()).await?;
        let request = ResyncRequest {
            slot: self.slot,
            slots: self.shared.config.slots,
        };
        client
            .publish_with_reply(subject::RESYNC, inbox, serde_json::to_vec(&request)?.into())
            .await?;
        client.flush().await?;
        let deadline = Instant::now() + self.shared.config.resync_timeout;
        let mut answered = HashSet::new();
        let mut members = Vec::new();
        while !expected.is_subset(&answered) {
            tokio::select! {
                () = sleep_until(deadline) => {
                    let missing: Vec<String> =
                        expected.difference(&answered).map(|e| e.to_string()).collect();
                    warn!(slot = self.slot, ?missing, "resync: edges did not answer in time");
                    break;
                }
                reply = replies.next() => {
                    let Some(reply) = reply else { break };
                    let Ok(reply) = serde_json::from_slice::<ResyncReply>(&reply.payload) else {
                        continue;
                    };
                    answered.insert(reply.edge);
                    members.extend(reply.members);
                }
            }
        }
        let _ = replies.unsubscribe().await;
        // Restore in join order, so `joined_room.peers` keeps listing members oldest first.
        members.sort_by_key(|m| (m.joined_at_ms, m.conn));
        for member in members {
            if member.room.slot(self.shared.config.slots) == self.slot {
                self.rooms.restore(member);
            }
        }
        let rooms: HashSet<RoomKey> = self.rooms.records().iter().map(|m| m.room).collect();
        for room in rooms {
            if let Some(peak) = self.shared.store.stored_peak(room).await {
                self.rooms.restore_peak(room, peak);
            }
            if let Some((_, peak)) = self.rooms.room_size(room) {
                self.peaks.insert(room, peak);
            }
        }
        self.count();
        Ok(())
    }

    async fn handle(&mut self, message: Message) {
        let command = match serde_json::from_slice::<Command>(&message.payload) {
            Ok(command) => command,
            Err(e) => {
                debug!(slot = self.slot, error = %e, "malformed command");
                return;
            }
        };
        let misrouted = command
            .room()
            .is_some_and(|room| room.slot(self.shared.config.slots) != self.slot);
        if misrouted {
            self.reply(&message, CommandReply::NotServing).await;
            return;
        }
        let started = Instant::now();
        self.apply(command).await;
        self.reply(&message, CommandReply::Applied).await;
        self.shared
            .metrics
            .command_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Applies a command and publishes its effects, then stores what changed.
    async fn apply(&mut self, command: Command) {
        let kind = match &command {
            Command::Join { .. } => "join",
            Command::Leave { .. } => "leave",
            Command::UpdateStatus { .. } => "update_status",
            Command::Rejoin { .. } => "rejoin",
            Command::EdgeLost { .. } => "edge_lost",
        };
        self.shared
            .metrics
            .commands
            .with_label_values(&[kind])
            .inc();
        debug!(slot = self.slot, ?command, "applying");
        let touched = command.room();
        let now = now();
        for effect in self.rooms.apply(now, command) {
            match effect {
                Effect::Deliver {
                    edge,
                    room,
                    to,
                    message,
                } => {
                    self.publish(edge, &EdgeEvent::Deliver { room, to, message })
                        .await
                }
                Effect::Refuse {
                    edge,
                    conn,
                    room,
                    error,
                } => {
                    self.publish(edge, &EdgeEvent::Refuse { conn, room, error })
                        .await
                }
                Effect::RoomClosed { peak } => {
                    self.shared.metrics.room_peak_members.observe(peak as f64);
                    self.shared.store.stat(StatEvent::RoomClosed {
                        hour: now.hour(),
                        peak,
                    });
                }
                Effect::MemberLeft { minutes } => {
                    self.shared
                        .metrics
                        .connection_minutes
                        .observe(minutes as f64);
                    self.shared.store.stat(StatEvent::MemberLeft {
                        hour: now.hour(),
                        minutes,
                    });
                }
            }
        }
        self.store_peaks(touched);
        self.count();
    }

    /// Stores raised peaks, and forgets those of rooms that closed.
    fn store_peaks(&mut self, touched: Option<RoomKey>) {
        match touched {
            Some(room) => match self.rooms.room_size(room) {
                Some((_, peak)) => {
                    if self.peaks.get(&room).is_none_or(|stored| peak > *stored) {
                        self.peaks.insert(room, peak);
                        self.shared.store.peak(room, peak);
                    }
                }
                None => {
                    if self.peaks.remove(&room).is_some() {
                        self.shared.store.room_closed(room);
                    }
                }
            },
            // Losing an edge may close any number of rooms.
            None => {
                let closed: Vec<RoomKey> = self
                    .peaks
                    .keys()
                    .filter(|room| self.rooms.room_size(**room).is_none())
                    .copied()
                    .collect();
                for room in closed {
                    self.peaks.remove(&room);
                    self.shared.store.room_closed(room);
                }
            }
        }
    }

    async fn publish(&self, edge: EdgeId, event: &EdgeEvent) {
        let Ok(payload) = serde_json::to_vec(event) else {
            return;
        };
        if let Err(e) = self
            .shared
            .client
            .publish(subject::edge_events(edge), Bytes::from(payload))
            .await
        {
            self.shared
                .metrics
                .bus_errors
                .with_label_values(&["event"])
                .inc();
            warn!(slot = self.slot, edge = %edge, error = %e, "cannot publish a room event");
        }
    }

    async fn reply(&self, message: &Message, reply: CommandReply) {
        let Some(inbox) = &message.reply else {
            return;
        };
        let Ok(payload) = serde_json::to_vec(&reply) else {
            return;
        };
        if self
            .shared
            .client
            .publish(inbox.clone(), payload.into())
            .await
            .is_err()
        {
            self.shared
                .metrics
                .bus_errors
                .with_label_values(&["reply"])
                .inc();
        }
    }

    /// Keeps the process-wide room and member gauges in step with this slot.
    fn count(&mut self) {
        let now = (
            self.rooms.room_count() as i64,
            self.rooms.member_count() as i64,
        );
        self.shared.metrics.rooms.add(now.0 - self.counted.0);
        self.shared.metrics.members.add(now.1 - self.counted.1);
        self.counted = now;
    }

    /// Takes this slot's rooms out of the gauges when the slot is given up.
    fn forget(&mut self) {
        self.shared.metrics.rooms.sub(self.counted.0);
        self.shared.metrics.members.sub(self.counted.1);
        self.counted = (0, 0);
    }
}

fn now() -> UnixMillis {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    UnixMillis(since_epoch.as_millis() as u64)
}
