//! The room state machine.
//!
//! Guarantees (each has a test):
//! - a joiner's first room message is `joined_room`, listing every other member in join order;
//! - every other member then gets `new_peer`; a leaver's remaining members get `peer_left`;
//! - a status update reaches every member, the sender included;
//! - applying the effects in order gives every member a view equal to the true membership;
//! - a refused command changes nothing.
//!
//! Messages for one edge are batched: one [`Effect::Deliver`] per (edge, message) lists every
//! recipient that edge holds, so a cluster publishes a room event once per edge, not once per member.

mod control;
mod tenant;

use std::collections::HashMap;

use switchboard_proto::bus::TenantScope;
pub use switchboard_proto::bus::{Command, MemberRecord};
use switchboard_proto::{
    ConnId, EdgeId, PeerEntry, ProtocolError, RoomKey, ServerMessage, Status, StoredStatus,
    TenantId,
};

use crate::UnixMillis;
use crate::stats::HourlyStats;

/// Limits of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomsConfig {
    /// Most members a room may have; 0 means unlimited.
    pub max_room_size: usize,
    /// How many UTC hours of statistics to keep.
    pub stats_retention_hours: u64,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            max_room_size: switchboard_proto::limits::DEFAULT_MAX_ROOM_SIZE,
            stats_retention_hours: 24 * 7,
        }
    }
}

/// What the driver must do after a command, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send `message` to each of `to`, all held by `edge`, about `room`.
    Deliver {
        /// The edge holding the recipients.
        edge: EdgeId,
        /// The room the message is about.
        room: RoomKey,
        /// The recipients, in join order.
        to: Vec<ConnId>,
        /// The message.
        message: ServerMessage,
    },
    /// The command was refused and changed nothing; tell `conn` why.
    Refuse {
        /// The edge holding the connection.
        edge: EdgeId,
        /// The connection whose command was refused.
        conn: ConnId,
        /// The room the command named.
        room: RoomKey,
        /// Why.
        error: ProtocolError,
    },
    /// A room closed (its last member left) with this peak member count. Already counted in
    /// [`Rooms::stats`]; drivers use it for metrics.
    RoomClosed {
        /// Most members the room ever had at once.
        peak: u64,
    },
    /// A member left after this long. Already counted in [`Rooms::stats`] (in whole minutes).
    MemberLeft {
        /// Whole minutes between its join and its leave (palava's `connection_time`).
        minutes: u64,
        /// Milliseconds between its join and its leave (the `switchboard_connection_seconds`
        /// metric; 0 if the clock stepped back).
        millis: u64,
    },
    /// Hosted mode: a join opened a room of `tenant` (for per-tenant room counts and usage).
    TenantRoomOpened {
        /// Whose room.
        tenant: TenantId,
    },
    /// Hosted mode: a room of `tenant` closed with this peak member count.
    TenantRoomClosed {
        /// Whose room.
        tenant: TenantId,
        /// Most members it ever had at once.
        peak: u64,
    },
    /// The control API removed `to`, held by `edge`, from `room` (already done here, and the
    /// others told): the edge tells each `removed by the service` and closes it.
    Remove {
        /// The edge holding them.
        edge: EdgeId,
        /// The room.
        room: RoomKey,
        /// The removed connections.
        to: Vec<ConnId>,
    },
    /// Hosted mode: a room of `tenant` has `members` members: after a join or rejoin, and at the
    /// first command of each UTC hour for the tenant's largest room (so each hour's peak counts the
    /// rooms that were already open). Already counted in [`Rooms::stats`]; routers count it into the
    /// hour's `peak_room_members`.
    TenantRoomMembers {
        /// Whose room.
        tenant: TenantId,
        /// Its members now.
        members: u64,
    },
    /// Hosted mode: `conn` joined the named room `room` of `tenant` with `status` (for the tenant's
    /// webhooks: `room_started` first if `opened`, then `participant_joined`). Only for a join a
    /// client made; a rejoin or restore rebuilds membership the tenant already heard about.
    TenantMemberJoined {
        /// Whose room.
        tenant: TenantId,
        /// The room's name (its `room_id`): only ever sent to its tenant.
        room: String,
        /// The member.
        conn: ConnId,
        /// Its status as stored.
        status: StoredStatus,
        /// Whether this join opened the room.
        opened: bool,
    },
    /// Hosted mode: `conn` left (or was removed from, or lost with its edge) the named room `room`
    /// of `tenant`, with its last `status` (webhooks: `participant_left`, then `room_finished` if
    /// `closed`).
    TenantMemberLeft {
        /// Whose room.
        tenant: TenantId,
        /// The room's name.
        room: String,
        /// The member.
        conn: ConnId,
        /// Its last status.
        status: StoredStatus,
        /// Whether it was the last member: the room closed.
        closed: bool,
    },
}

#[derive(Debug)]
struct Member {
    edge: EdgeId,
    status: StoredStatus,
    joined_at: UnixMillis,
    /// Join order within the room, for stable `peers` and recipient lists.
    seq: u64,
}

#[derive(Debug, Default)]
struct Room {
    members: HashMap<ConnId, Member>,
    peak: usize,
    /// Hosted mode: whose room it is (its key already depends on the tenant; this is for counts).
    tenant: Option<TenantId>,
    /// Hosted mode: its name, for the control API's listing (only ever shown to its tenant).
    name: Option<String>,
    /// When it opened (rebuilt after a takeover: when its earliest present member joined).
    opened_at: UnixMillis,
}

impl Room {
    /// Members other than `except`, in join order.
    fn others(&self, except: Option<ConnId>) -> Vec<(ConnId, &Member)> {
        let mut others: Vec<_> = self
            .members
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(id, m)| (*id, m))
            .collect();
        others.sort_unstable_by_key(|(_, m)| m.seq);
        others
    }
}

/// All rooms of one router (or of a standalone edge), with their members and statistics.
#[derive(Debug)]
pub struct Rooms {
    config: RoomsConfig,
    rooms: HashMap<RoomKey, Room>,
    /// Which room each connection is in.
    members: HashMap<ConnId, RoomKey>,
    stats: HourlyStats,
    next_seq: u64,
    /// Hosted mode: open rooms per tenant, here.
    tenant_rooms: HashMap<TenantId, usize>,
    /// Hosted mode: open rooms per tenant elsewhere in the cluster (other slots and routers), as the
    /// driver last heard; with `tenant_rooms`, what a tenant's `max_rooms` is checked against.
    rooms_elsewhere: HashMap<TenantId, usize>,
    /// Hosted mode: the UTC hour for which the tenants' open rooms were last counted into the
    /// usage statistics (`tenant::roll_hour`).
    usage_hour: u64,
}

impl Rooms {
    /// No rooms yet.
    pub fn new(config: RoomsConfig) -> Self {
        Rooms {
            stats: HourlyStats::new(config.stats_retention_hours),
            config,
            rooms: HashMap::new(),
            members: HashMap::new(),
            next_seq: 0,
            tenant_rooms: HashMap::new(),
            rooms_elsewhere: HashMap::new(),
            usage_hour: 0,
        }
    }

    /// Applies one command at `now` and returns what must happen, in order.
    pub fn apply(&mut self, now: UnixMillis, command: Command) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.roll_hour_into(now, &mut effects);
        match command {
            Command::Join {
                conn,
                edge,
                room,
                status,
                tenant,
            } => self.join(now, conn, edge, room, status, tenant, &mut effects),
            Command::Leave { conn, room, .. } => {
                if self.members.get(&conn) == Some(&room) {
                    self.remove(now, conn, None, &mut effects);
                }
            }
            Command::UpdateStatus {
                conn,
                edge,
                room,
                status,
            } => self.update_status(conn, edge, room, status, &mut effects),
            Command::Rejoin { member } => self.rejoin(now, member, &mut effects),
            Command::EdgeLost { edge } => {
                let mut lost: Vec<(RoomKey, u64, ConnId)> = Vec::new();
                for (key, room) in &self.rooms {
                    for (id, member) in &room.members {
                        if member.edge == edge {
                            lost.push((*key, member.seq, *id));
                        }
                    }
                }
                // Deterministic order (room, then join order) keeps replays and tests reproducible.
                lost.sort_unstable();
                for (_, _, conn) in lost {
                    self.remove(now, conn, Some(edge), &mut effects);
                }
            }
        }
        effects
    }

    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        edge: EdgeId,
        key: RoomKey,
        status: Status,
        tenant: Option<TenantScope>,
        effects: &mut Vec<Effect>,
    ) {
        let refuse = |error| Effect::Refuse {
            edge,
            conn,
            room: key,
            error,
        };
        match self.members.get(&conn) {
            // A retried join (its reply was lost on the bus): it was applied, so nothing to do.
            Some(current) if *current == key => return,
            Some(_) => {
                effects.push(refuse(ProtocolError::AlreadyJoined));
                return;
            }
            None => {}
        }
        let tenant_max = tenant.as_ref().map_or(0, |t| t.max_room_size as usize);
        let max = smallest_limit(self.config.max_room_size, tenant_max);
        let existing = self.rooms.get(&key).map(|r| r.members.len());
        if max > 0 && existing.unwrap_or(0) >= max {
            effects.push(refuse(ProtocolError::RoomFull));
            return;
        }
        if let Some(scope) = &tenant
            && existing.is_none()
            && scope.max_rooms > 0
            && self.open_rooms_of(&scope.id) >= scope.max_rooms as usize
        {
            effects.push(refuse(ProtocolError::RoomQuotaExceeded));
            return;
        }

        // Not created here: `insert` creates it, and counts it as opened for its tenant.
        let others = self
            .rooms
            .get(&key)
            .map(|room| room.others(None))
            .unwrap_or_default();
        let peers = others
            .iter()
            .map(|(id, m)| PeerEntry {
                peer_id: *id,
                status: m.status.clone(),
            })
            .collect();
        effects.push(Effect::Deliver {
            edge,
            room: key,
            to: vec![conn],
            message: ServerMessage::JoinedRoom {
                own_id: conn,
                peers,
            },
        });
        push_grouped(
            effects,
            key,
            &others,
            ServerMessage::NewPeer {
                peer_id: conn,
                status: status.as_map().clone(),
            },
        );

        let (tenant, room_name) = match tenant {
            Some(scope) => (Some(scope.id), scope.room_name),
            None => (None, None),
        };
        let stored = status.stored();
        let opened = self.insert(MemberRecord {
            conn,
            edge,
            room: key,
            status: stored.clone(),
            joined_at_ms: now.0,
            tenant: tenant.clone(),
            room_name,
        });
        if let Some(tenant) = tenant {
            // The room's name as kept (the first member's), so every event of a room names it alike.
            if let Some(name) = self.rooms.get(&key).and_then(|r| r.name.clone()) {
                effects.push(Effect::TenantMemberJoined {
                    tenant: tenant.clone(),
                    room: name,
                    conn,
                    status: stored,
                    opened,
                });
            }
            self.tenant_room_grew(now, tenant, key, opened, effects);
        }
    }

    /// Adds a member its edge knows but this router does not, telling the others (`new_peer`); the
    /// member itself already had its `joined_room`. Moves it if the router had it in another room.
    fn rejoin(&mut self, now: UnixMillis, member: MemberRecord, effects: &mut Vec<Effect>) {
        match self.members.get(&member.conn) {
            Some(current) if *current == member.room => return,
            Some(_) => self.remove(now, member.conn, None, effects),
            None => {}
        }
        let key = member.room;
        let others = self
            .rooms
            .get(&key)
            .map(|room| room.others(None))
            .unwrap_or_default();
        push_grouped(
            effects,
            key,
            &others,
            ServerMessage::NewPeer {
                peer_id: member.conn,
                status: status_map(&member.status),
            },
        );
        let tenant = member.tenant.clone();
        self.insert(member);
        if let Some(tenant) = tenant {
            // Not a room opened: the room existed for its members all along, this router had lost
            // it (a failover or an edge cut off for a while), and usage must not count it twice.
            self.tenant_room_grew(now, tenant, key, false, effects);
        }
    }

    /// Adds a member silently: used when a router takes over a slot and rebuilds its membership from
    /// the edges, whose clients already know each other. Returns false if it was there already.
    pub fn restore(&mut self, member: MemberRecord) -> bool {
        if self.members.contains_key(&member.conn) {
            return false;
        }
        self.insert(member);
        true
    }

    /// Raises the recorded peak of `room` to at least `peak` (restored from storage after a takeover).
    pub fn restore_peak(&mut self, room: RoomKey, peak: usize) {
        if let Some(room) = self.rooms.get_mut(&room) {
            room.peak = room.peak.max(peak);
        }
    }

    /// Adds a member; returns whether that opened its room.
    fn insert(&mut self, member: MemberRecord) -> bool {
        let opened = !self.rooms.contains_key(&member.room);
        let room = self.rooms.entry(member.room).or_default();
        if opened {
            room.tenant = member.tenant.clone();
            room.opened_at = UnixMillis(member.joined_at_ms);
            if let Some(tenant) = &member.tenant {
                *self.tenant_rooms.entry(tenant.clone()).or_default() += 1;
            }
        }
        // Rebuilt rooms learn their opening from the earliest member, and their name from any
        // member that carries it (only tenant rooms have one).
        room.opened_at = room.opened_at.min(UnixMillis(member.joined_at_ms));
        if room.name.is_none() && room.tenant.is_some() {
            room.name = member.room_name;
        }
        room.members.insert(
            member.conn,
            Member {
                edge: member.edge,
                status: member.status,
                joined_at: UnixMillis(member.joined_at_ms),
                seq: self.next_seq,
            },
        );
        self.next_seq += 1;
        room.peak = room.peak.max(room.members.len());
        self.members.insert(member.conn, member.room);
        opened
    }

    /// Every member, as records (for handing a slot's state around and for tests).
    pub fn records(&self) -> Vec<MemberRecord> {
        let mut records: Vec<(u64, MemberRecord)> = self
            .rooms
            .iter()
            .flat_map(|(key, room)| {
                room.members.iter().map(|(conn, m)| {
                    (
                        m.seq,
                        MemberRecord {
                            conn: *conn,
                            edge: m.edge,
                            room: *key,
                            status: m.status.clone(),
                            joined_at_ms: m.joined_at.0,
                            tenant: room.tenant.clone(),
                            room_name: room.name.clone(),
                        },
                    )
                })
            })
            .collect();
        records.sort_unstable_by_key(|(seq, _)| *seq);
        records.into_iter().map(|(_, r)| r).collect()
    }

    fn update_status(
        &mut self,
        conn: ConnId,
        edge: EdgeId,
        key: RoomKey,
        status: Status,
        effects: &mut Vec<Effect>,
    ) {
        let room = match self.rooms.get_mut(&key) {
            Some(room) if self.members.get(&conn) == Some(&key) => room,
            _ => {
                effects.push(Effect::Refuse {
                    edge,
                    conn,
                    room: key,
                    error: ProtocolError::NotInRoom,
                });
                return;
            }
        };
        if let Some(member) = room.members.get_mut(&conn) {
            member.status.merge(status.stored());
        }
        let everyone = room.others(None);
        push_grouped(
            effects,
            key,
            &everyone,
            ServerMessage::PeerUpdatedStatus {
                sender_id: conn,
                status: status.into_map(),
            },
        );
    }

    /// Removes `conn` from its room, telling the rest and recording statistics. Members held by
    /// `gone_edge` are not told: that edge and all its connections are being removed, so messages to
    /// them would go nowhere (and a big room on a dead edge would cost quadratically many of them).
    fn remove(
        &mut self,
        now: UnixMillis,
        conn: ConnId,
        gone_edge: Option<EdgeId>,
        effects: &mut Vec<Effect>,
    ) {
        let Some(key) = self.members.remove(&conn) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&key) else {
            return;
        };
        let Some(member) = room.members.remove(&conn) else {
            return;
        };
        let minutes = now.whole_minutes_since(member.joined_at);
        let millis = now.0.saturating_sub(member.joined_at.0);
        self.stats.member_left(now.hour(), minutes);
        effects.push(Effect::MemberLeft { minutes, millis });

        let mut rest = room.others(None);
        rest.retain(|(_, m)| Some(m.edge) != gone_edge);
        push_grouped(
            effects,
            key,
            &rest,
            ServerMessage::PeerLeft { sender_id: conn },
        );
        if let (Some(tenant), Some(name)) = (&room.tenant, &room.name) {
            effects.push(Effect::TenantMemberLeft {
                tenant: tenant.clone(),
                room: name.clone(),
                conn,
                status: member.status,
                closed: room.members.is_empty(),
            });
        }
        if room.members.is_empty() {
            let peak = room.peak as u64;
            let tenant = room.tenant.take();
            self.rooms.remove(&key);
            self.stats.room_closed(now.hour(), peak);
            effects.push(Effect::RoomClosed { peak });
            if let Some(tenant) = tenant {
                if let Some(count) = self.tenant_rooms.get_mut(&tenant) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.tenant_rooms.remove(&tenant);
                    }
                }
                effects.push(Effect::TenantRoomClosed { tenant, peak });
            }
        }
    }

    /// Current and peak member count of `room`, if it exists.
    pub fn room_size(&self, room: RoomKey) -> Option<(usize, usize)> {
        self.rooms.get(&room).map(|r| (r.members.len(), r.peak))
    }

    /// Number of open rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Number of connections in a room.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The hourly statistics.
    pub fn stats(&self) -> &HourlyStats {
        &self.stats
    }

    /// Mutable statistics, for restoring persisted ones.
    pub fn stats_mut(&mut self) -> &mut HourlyStats {
        &mut self.stats
    }
}

/// The tighter of two limits where 0 means unlimited.
fn smallest_limit(a: usize, b: usize) -> usize {
    match (a, b) {
        (0, b) => b,
        (a, 0) => a,
        (a, b) => a.min(b),
    }
}

/// A member's stored status as the JSON object clients and webhooks see (empty if it is not one).
pub fn status_map(status: &StoredStatus) -> serde_json::Map<String, serde_json::Value> {
    match status.to_json() {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// Pushes one `Deliver` per edge holding any of `recipients` (kept in their given order), so each edge
/// gets each message once with its own recipient list.
fn push_grouped(
    effects: &mut Vec<Effect>,
    room: RoomKey,
    recipients: &[(ConnId, &Member)],
    message: ServerMessage,
) {
    let mut by_edge: Vec<(EdgeId, Vec<ConnId>)> = Vec::new();
    for (id, member) in recipients {
        match by_edge.iter_mut().find(|(edge, _)| *edge == member.edge) {
            Some((_, to)) => to.push(*id),
            None => by_edge.push((member.edge, vec![*id])),
        }
    }
    for (edge, to) in by_edge {
        effects.push(Effect::Deliver {
            edge,
            room,
            to,
            message: message.clone(),
        });
    }
}
