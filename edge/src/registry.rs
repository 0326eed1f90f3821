//! The edge's local state: its connections (each with an outbound queue) and its view of the rooms
//! those connections are in.
//!
//! The room view lets the edge check `send_to_peer` targets and relay peer messages without asking a
//! router (relays never touch the router: docs/architecture.md, "Inside the edge"). It is built only from the room events the router
//! sends for local members, in the router's order, so it converges to the router's membership.
//!
//! A connection's membership moves `None -> Joining(room) -> Joined(room) -> None`. Room events are
//! handed only to connections `Joined` to that room, and `joined_room` only to one `Joining` it, which
//! gives the protocol's guarantees at the edge: `joined_room` is a joiner's first room message, and
//! after `leave_room` a connection hears nothing more of that room, even if the router sent it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde_json::{Map, Value};
use switchboard_proto::bus::{MemberRecord, ResyncReply, RoomView};
use switchboard_proto::{
    ConnId, EdgeId, ForwardEvent, ProtocolError, RoomKey, ServerMessage, StoredStatus, TenantId,
};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;
use crate::queue;
use crate::turn::TurnGrant;

/// Where a connection stands with rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// In no room.
    None,
    /// Asked to join `room`; `joined_room` has not arrived yet.
    Joining(RoomKey),
    /// A member of `room`.
    Joined(RoomKey),
}

impl Membership {
    /// The room joined or being joined.
    pub fn room(self) -> Option<RoomKey> {
        match self {
            Membership::None => None,
            Membership::Joining(room) | Membership::Joined(room) => Some(room),
        }
    }
}

/// The sending side of a connection: its queue and the switch that closes it when it stops reading.
#[derive(Debug, Clone)]
pub struct Outlet {
    tx: queue::Sender,
    slow: CancellationToken,
}

impl Outlet {
    /// A new outlet; the connection task keeps the receiver and watches `slow`.
    pub fn new(tx: queue::Sender, slow: CancellationToken) -> Self {
        Outlet { tx, slow }
    }

    /// Queues a room event without waiting. Room events come from the router, which serves every
    /// connection and must never wait for one: a full queue means the client does not read, and it is
    /// closed (slow consumer) rather than missing an event, which would corrupt its view of the room.
    /// (A status update replacing an unsent one of the same member is no loss: see `queue`.)
    pub fn push(&self, text: Utf8Bytes, kind: queue::Kind) -> bool {
        match self.tx.try_send(text, kind) {
            Ok(()) => true,
            Err(queue::Refused::Full(..)) => {
                self.mark_slow();
                false
            }
            Err(queue::Refused::Closed) => false,
        }
    }

    /// Queues a peer message if there is room; hands it back when the queue is full, so the sender
    /// can wait for room without blocking anyone else (see `conn`).
    pub fn offer(&self, text: Utf8Bytes) -> Result<(), Offer> {
        match self.tx.try_send(text, queue::Kind::Other) {
            Ok(()) => Ok(()),
            Err(queue::Refused::Full(text, _)) => Err(Offer::Full(text)),
            Err(queue::Refused::Closed) => Err(Offer::Gone),
        }
    }

    /// Waits until the queue has room for a message of `len` bytes (or is closed); `offer` again
    /// then.
    pub async fn room(&self, len: usize) {
        self.tx.room(len).await;
    }

    /// Marks the connection as not reading; its task closes it.
    pub fn mark_slow(&self) {
        self.slow.cancel();
    }
}

/// A peer message that could not be queued at once.
#[derive(Debug)]
pub enum Offer {
    /// The queue is full; here is the message back.
    Full(Utf8Bytes),
    /// The connection is closing.
    Gone,
}

#[derive(Debug)]
struct Entry {
    outlet: Outlet,
    membership: Membership,
    /// The stored part of the connection's status, as the router has it (for resync).
    status: StoredStatus,
    /// When `joined_room` reached it, in milliseconds since the epoch (for resync).
    joined_at_ms: u64,
    /// Hosted mode: the tenant of its room (for resync).
    tenant: Option<TenantId>,
    /// Hosted mode: its room's name (for resync: the control API lists rooms by name).
    room_name: Option<Box<str>>,
    /// The control API removed it: its task closes it with `close_code::REMOVED` once its queue
    /// (ending with the `removed by the service` error) is written.
    removed: bool,
    /// When its join was sent to the router (for `switchboard_join_seconds`); `None` when not
    /// joining.
    join_started: Option<Instant>,
    /// Whom its `joined_room`s mint TURN credentials for, and with what. Shared, so that the
    /// minting happens after the lock is released, and a connection without TURN pays one pointer.
    turn: Option<Arc<TurnGrant>>,
}

#[derive(Debug, Default)]
struct View {
    members: HashSet<ConnId>,
    /// Local connections `Joined` to this room; the view is dropped when it reaches zero.
    local: usize,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnId, Entry>,
    rooms: HashMap<RoomKey, View>,
}

impl State {
    /// A local member left `room`. It stays in the view until the router's `peer_left` for it, which
    /// the other local members still need (the view drops `peer_left` for unknown members).
    fn leave_view(&mut self, room: RoomKey) {
        if let Some(view) = self.rooms.get_mut(&room) {
            view.local = view.local.saturating_sub(1);
            if view.local == 0 {
                self.rooms.remove(&room);
            }
        }
    }
}

/// Where a peer message should go.
#[derive(Debug)]
pub enum PeerRoute {
    /// To a connection on this edge.
    Local(Outlet),
    /// To a connection on another edge (cluster).
    Remote(ConnId),
    /// The target is leaving or gone; the message is dropped silently (it was a member a moment ago,
    /// and its `peer_left` is on the way).
    Gone,
}

/// The handle to the edge's local state; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    metrics: Metrics,
    edge: EdgeId,
}

impl Registry {
    /// An empty registry of edge `edge`.
    pub fn new(edge: EdgeId, metrics: Metrics) -> Self {
        Registry {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                metrics,
                edge,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is never held across an await or a call that can panic on client input; recover
        // from poisoning rather than take every connection down.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection.
    pub fn register(&self, conn: ConnId, outlet: Outlet) {
        self.state().conns.insert(
            conn,
            Entry {
                outlet,
                membership: Membership::None,
                status: StoredStatus::default(),
                joined_at_ms: 0,
                tenant: None,
                room_name: None,
                removed: false,
                join_started: None,
                turn: None,
            },
        );
    }

    /// Gives a registered connection TURN credentials in each of its `joined_room`s, minted for
    /// `grant` when the message is delivered (so every join has fresh ones). The hook for whoever
    /// decides a connection's TURN user: `conn::serve` in open mode, hosted mode with a tenant's.
    pub fn grant_turn(&self, conn: ConnId, grant: TurnGrant) {
        if let Some(entry) = self.state().conns.get_mut(&conn) {
            entry.turn = Some(Arc::new(grant));
        }
    }

    /// Sets `switchboard_edge_rooms` and `switchboard_edge_room_members` from the room view (at
    /// each scrape: nothing on the hot path).
    pub fn export_gauges(&self) {
        let (rooms, members) = {
            let state = self.state();
            let members: usize = state.rooms.values().map(|view| view.local).sum();
            (state.rooms.len(), members)
        };
        self.shared.metrics.edge_rooms.set(rooms as i64);
        self.shared.metrics.edge_room_members.set(members as i64);
    }

    /// Removes a connection, returning the membership it had (the caller tells the router).
    pub fn unregister(&self, conn: ConnId) -> Membership {
        let mut state = self.state();
        let Some(entry) = state.conns.remove(&conn) else {
            return Membership::None;
        };
        if let Membership::Joined(room) = entry.membership {
            state.leave_view(room);
        }
        entry.membership
    }

    /// The connection's membership.
    pub fn membership(&self, conn: ConnId) -> Membership {
        self.state()
            .conns
            .get(&conn)
            .map_or(Membership::None, |e| e.membership)
    }

    /// Starts a join: fails with `already joined another room` if in or joining a room. Hosted
    /// mode passes the room's tenant and name, which resync carries to routers.
    pub fn begin_join(
        &self,
        conn: ConnId,
        room: RoomKey,
        status: StoredStatus,
        tenant: Option<TenantId>,
        room_name: Option<&str>,
    ) -> Result<(), ProtocolError> {
        let mut state = self.state();
        let entry = state
            .conns
            .get_mut(&conn)
            .ok_or(ProtocolError::Unavailable)?;
        if entry.membership != Membership::None {
            return Err(ProtocolError::AlreadyJoined);
        }
        entry.membership = Membership::Joining(room);
        entry.join_started = Some(Instant::now());
        entry.status = status;
        entry.tenant = tenant;
        entry.room_name = room_name.map(Box::from);
        Ok(())
    }

    /// Mirrors a status update the router applied (fields present replace the stored ones).
    pub fn merge_status(&self, conn: ConnId, update: StoredStatus) {
        if let Some(entry) = self.state().conns.get_mut(&conn) {
            entry.status.merge(update);
        }
    }

    /// The members this edge holds, joined to a room whose slot (of `slots`) is in `owned`; all of
    /// them when `owned` is `None`. The edge is the ground truth a router rebuilds from.
    pub fn members(&self, slots: u32, owned: Option<&[u32]>) -> Vec<MemberRecord> {
        let state = self.state();
        state
            .conns
            .iter()
            .filter_map(|(conn, entry)| match entry.membership {
                Membership::Joined(room)
                    if owned.is_none_or(|owned| owned.contains(&room.slot(slots))) =>
                {
                    Some(MemberRecord {
                        conn: *conn,
                        edge: self.shared.edge,
                        room,
                        status: entry.status.clone(),
                        joined_at_ms: entry.joined_at_ms,
                        tenant: entry.tenant.clone(),
                        room_name: entry.room_name.as_deref().map(String::from),
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// What a router reconciling `slot` (of `slots`) needs from this edge: its members there, for
    /// each of their rooms the peers announced to them (the view), and the connections still joining
    /// a room there.
    pub fn slot_report(&self, slots: u32, slot: u32) -> ResyncReply {
        let members = self.members(slots, Some(&[slot]));
        let state = self.state();
        let joining = state
            .conns
            .iter()
            .filter_map(|(conn, entry)| match entry.membership {
                Membership::Joining(room) if room.slot(slots) == slot => Some(*conn),
                _ => None,
            })
            .collect();
        let views = state
            .rooms
            .iter()
            .filter(|(room, _)| room.slot(slots) == slot)
            .map(|(room, view)| RoomView {
                room: *room,
                members: view.members.iter().copied().collect(),
            })
            .collect();
        ResyncReply {
            edge: self.shared.edge,
            members,
            views,
            joining,
        }
    }

    /// Leaves the current room (or abandons a join); returns the room, if there was one.
    pub fn leave(&self, conn: ConnId) -> Option<RoomKey> {
        let mut state = self.state();
        let entry = state.conns.get_mut(&conn)?;
        let previous = std::mem::replace(&mut entry.membership, Membership::None);
        if let Membership::Joined(room) = previous {
            state.leave_view(room);
        }
        previous.room()
    }

    /// Decides where `send_to_peer` goes, with the protocol's checks in order: not in a room ->
    /// `currently not in any room`; target not in the sender's room -> `unknown peer`; payload event
    /// not forwardable -> `event not allowed`.
    pub fn route_to_peer(
        &self,
        sender: ConnId,
        target: Option<ConnId>,
        data: &Map<String, Value>,
    ) -> Result<(PeerRoute, ForwardEvent), ProtocolError> {
        let state = self.state();
        let room = state
            .conns
            .get(&sender)
            .and_then(|e| e.membership.room())
            .ok_or(ProtocolError::NotInRoom)?;
        let target = target.ok_or(ProtocolError::UnknownPeer)?;
        // Sending to yourself is allowed.
        let known = target == sender
            || state
                .rooms
                .get(&room)
                .is_some_and(|view| view.members.contains(&target));
        if !known {
            return Err(ProtocolError::UnknownPeer);
        }
        let event = ForwardEvent::of(data)?;
        let route = match state.conns.get(&target) {
            Some(entry) if entry.membership == Membership::Joined(room) => {
                PeerRoute::Local(entry.outlet.clone())
            }
            Some(_) => PeerRoute::Gone,
            None if target.edge() != self.shared.edge => PeerRoute::Remote(target),
            None => PeerRoute::Gone,
        };
        Ok((route, event))
    }

    /// Delivers a peer message that came over the bus from another edge, if its target is still a
    /// member of the room it was sent in. Like a room event it cannot wait: a full queue closes the
    /// target as a slow consumer.
    pub fn deliver_relay(&self, target: ConnId, room: RoomKey, event: &str, text: Utf8Bytes) {
        let outlet = {
            let state = self.state();
            match state.conns.get(&target) {
                Some(entry) if entry.membership == Membership::Joined(room) => entry.outlet.clone(),
                _ => return,
            }
        };
        if outlet.push(text, queue::Kind::Other) {
            self.shared.metrics.messages_out(event, 1);
        }
    }

    /// Delivers a room event from the router to the local connections `to`, updating the room view.
    pub fn deliver(&self, room: RoomKey, to: &[ConnId], message: ServerMessage) {
        let event = message.event();
        let mut state = self.state();
        let mut joined_now = None;
        let mut turn = None;
        match &message {
            ServerMessage::JoinedRoom { own_id, peers } => {
                let Some(entry) = state.conns.get_mut(own_id) else {
                    return;
                };
                if entry.membership != Membership::Joining(room) {
                    // The connection left (or closed) before its join was processed: stale.
                    return;
                }
                entry.membership = Membership::Joined(room);
                entry.joined_at_ms = unix_millis();
                if let Some(started) = entry.join_started.take() {
                    self.shared
                        .metrics
                        .join_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                joined_now = Some(*own_id);
                turn = entry.turn.clone();
                // The view holds the members announced to local clients: the joiner's peers now,
                // the joiner itself once the router's `new_peer` for it passes here. Added to, not
                // replaced: a peer another local client was told about stays until its `peer_left`
                // (a reconciliation sends one for a ghost), so no client keeps a ghost unnoticed.
                let view = state.rooms.entry(room).or_default();
                view.members.extend(peers.iter().map(|p| p.peer_id));
                view.local += 1;
            }
            // Membership events are idempotent at the edge: a `new_peer` for a known member or a
            // `peer_left` for an unknown one (possible around a router failover) reaches nobody, so
            // clients never see a peer twice.
            ServerMessage::NewPeer { peer_id, .. } => {
                if let Some(view) = state.rooms.get_mut(&room)
                    && !view.members.insert(*peer_id)
                {
                    return;
                }
            }
            ServerMessage::PeerLeft { sender_id } => {
                if let Some(view) = state.rooms.get_mut(&room)
                    && !view.members.remove(sender_id)
                {
                    return;
                }
            }
            _ => {}
        }
        let outlets: Vec<Outlet> = to
            .iter()
            // A joiner's TURN credentials are its own, whoever else the router listed.
            .filter(|id| turn.is_none() || joined_now == Some(**id))
            .filter_map(|id| state.conns.get(id))
            .filter(|entry| entry.membership == Membership::Joined(room))
            .map(|entry| entry.outlet.clone())
            .collect();
        drop(state);

        if joined_now.is_some() {
            self.shared.metrics.joins.inc();
        }
        if outlets.is_empty() {
            return;
        }
        // Encode once; every recipient shares the same bytes (with TURN credentials, the joiner
        // is the only one).
        let kind = kind_of(&message);
        let text = Utf8Bytes::from(match (turn, joined_now) {
            (Some(grant), Some(conn)) => encode_with_turn(message, conn, &grant),
            _ => message.encode(),
        });
        let delivered = outlets
            .iter()
            .filter(|o| o.push(text.clone(), kind))
            .count();
        self.shared.metrics.messages_out(event, delivered as u64);
    }

    /// Reports a refused command to `conn`, abandoning its join if that was what was refused.
    pub fn refuse(&self, conn: ConnId, room: RoomKey, error: ProtocolError) {
        let (outlet, tenant) = {
            let mut state = self.state();
            let Some(entry) = state.conns.get_mut(&conn) else {
                return;
            };
            if entry.membership == Membership::Joining(room) {
                entry.membership = Membership::None;
            }
            (entry.outlet.clone(), entry.tenant.clone())
        };
        let text = Utf8Bytes::from(ServerMessage::Error(error).encode());
        if outlet.push(text, queue::Kind::Other) {
            self.shared.metrics.error(error);
        }
        // Hosted mode: the room quotas are decided by the room's router; the edge counts them,
        // beside its own (connections, messages), so every quota refusal is counted in one place.
        let quota = match error {
            ProtocolError::RoomQuotaExceeded => Some("rooms"),
            ProtocolError::RoomFull => Some("room_size"),
            _ => None,
        };
        if let (Some(tenant), Some(quota)) = (tenant, quota) {
            self.shared
                .metrics
                .tenant_quota_refusals
                .with_label_values(&[tenant.as_str(), quota])
                .inc();
        }
    }

    /// The control API removed `to` from `room` (the router did already, and told the others):
    /// each leaves the room here as by `leave_room` (so its socket's close sends no leave), is
    /// told `removed by the service`, and its task closes it with `close_code::REMOVED`.
    pub fn remove_by_service(&self, room: RoomKey, to: &[ConnId]) {
        let mut outlets = Vec::new();
        {
            let mut state = self.state();
            for conn in to {
                let Some(entry) = state.conns.get_mut(conn) else {
                    continue;
                };
                if entry.membership.room() != Some(room) {
                    // It left (or moved) meanwhile: nothing of this room to end.
                    continue;
                }
                let previous = std::mem::replace(&mut entry.membership, Membership::None);
                entry.removed = true;
                outlets.push(entry.outlet.clone());
                if let Membership::Joined(room) = previous {
                    state.leave_view(room);
                }
            }
        }
        let error = ProtocolError::RemovedByService;
        let text = Utf8Bytes::from(ServerMessage::Error(error).encode());
        for outlet in outlets {
            if outlet.push(text.clone(), queue::Kind::Other) {
                self.shared.metrics.error(error);
            }
            // The switch that closes it; its task sees `removed` and writes the queue first.
            outlet.mark_slow();
        }
    }

    /// Whether the control API removed `conn` (its task then closes it with
    /// `close_code::REMOVED` rather than as a slow consumer).
    pub fn was_removed(&self, conn: ConnId) -> bool {
        self.state().conns.get(&conn).is_some_and(|e| e.removed)
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.state().conns.len()
    }
}

/// How a room event may replace or block replacing another in a queue.
fn kind_of(message: &ServerMessage) -> queue::Kind {
    match message {
        ServerMessage::PeerUpdatedStatus { sender_id, .. } => queue::Kind::Status(*sender_id),
        ServerMessage::NewPeer { peer_id, .. } => queue::Kind::Membership(*peer_id),
        ServerMessage::PeerLeft { sender_id } => queue::Kind::Membership(*sender_id),
        ServerMessage::JoinedRoom { .. } => queue::Kind::RoomChange,
        _ => queue::Kind::Other,
    }
}

/// A `joined_room` with credentials minted now for `grant`; without them (and a warning) if the
/// grant's user is one the TURN server would refuse.
fn encode_with_turn(message: ServerMessage, conn: ConnId, grant: &TurnGrant) -> String {
    match grant.joined_room_fields(unix_millis() / 1000) {
        Ok(fields) => message.encode_extended(fields),
        Err(e) => {
            warn!(error = %e, conn.id = %conn, "no TURN credentials for this join");
            message.encode()
        }
    }
}

fn unix_millis() -> u64 {
    switchboard_runtime::clock::unix_millis()
}

#[cfg(test)]
mod tests;
