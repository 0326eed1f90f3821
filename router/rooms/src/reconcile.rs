//! Reconciling one slot's rooms with the edges, the ground truth of who is connected.
//!
//! A router runs it when it takes a slot over (its rooms are empty), when it serves a slot again
//! after pausing (it could not tell whether it was still the owner), when it may have missed edge
//! notices, and when an edge says it lost room events. The edges report their members in the slot
//! and, per room, the peers they have announced to those members (their *view*). Then:
//!
//! 1. a member whose edge answered but no longer reports it (and does not report it as still
//!    joining: the router may have applied a join the edge has not seen answered yet) has left: it
//!    is removed (its statistics are counted; nobody is told yet, step 3 does that for every edge
//!    at once);
//! 2. a reported member the rooms lack is added, silently;
//! 3. for every answering edge and room, the view is compared with the rooms: each ghost (announced,
//!    not a member) gets a `peer_left`, each member never announced a `new_peer`, sent to that edge's
//!    members of the room (never to the member itself).
//!
//! Edges deliver membership events idempotently (a `new_peer` for a peer already announced and a
//! `peer_left` for an unknown one reach nobody), so events still in flight while the edges answered
//! cannot make a client see a peer twice; and members of edges that did not answer are left as they
//! are (they are asked again when those edges are heard from).

use std::collections::{HashMap, HashSet};

use switchboard_proto::bus::ResyncReply;
use switchboard_proto::{ConnId, EdgeId, RoomKey, ServerMessage};

use crate::rooms::status_map;
use crate::{Command, Effect, MemberRecord, Rooms, UnixMillis};

/// Brings `rooms` in line with the edges' `reports`, considering only rooms for which `in_slot`
/// holds, and returns what to deliver (and the statistics of the members found gone).
pub fn reconcile(
    rooms: &mut Rooms,
    now: UnixMillis,
    reports: &[ResyncReply],
    in_slot: impl Fn(RoomKey) -> bool,
) -> Vec<Effect> {
    let answered: HashSet<EdgeId> = reports.iter().map(|r| r.edge).collect();
    // A report only speaks for its own edge's members.
    let mut reported: Vec<&MemberRecord> = reports
        .iter()
        .flat_map(|r| r.members.iter().filter(move |m| m.edge == r.edge))
        .filter(|m| in_slot(m.room))
        .collect();
    // Restored in join order, so `joined_room.peers` keeps listing members oldest first.
    reported.sort_by_key(|m| (m.joined_at_ms, m.conn));
    let where_reported: HashMap<ConnId, RoomKey> =
        reported.iter().map(|m| (m.conn, m.room)).collect();
    // A join the router applied whose `joined_room` the edge has not delivered yet: not gone.
    let joining: HashSet<ConnId> = reports
        .iter()
        .flat_map(|r| r.joining.iter().copied())
        .collect();

    let mut effects = Vec::new();
    for record in rooms.records() {
        if answered.contains(&record.edge)
            && where_reported.get(&record.conn) != Some(&record.room)
            && !joining.contains(&record.conn)
        {
            let leave = Command::Leave {
                conn: record.conn,
                edge: record.edge,
                room: record.room,
            };
            effects.extend(
                rooms
                    .apply(now, leave)
                    .into_iter()
                    .filter(|e| matches!(e, Effect::RoomClosed { .. } | Effect::MemberLeft { .. })),
            );
        }
    }
    for member in reported {
        rooms.restore(member.clone());
    }

    let mut by_room: HashMap<RoomKey, Vec<MemberRecord>> = HashMap::new();
    for record in rooms.records() {
        by_room.entry(record.room).or_default().push(record);
    }
    for report in reports {
        let mut locals: HashMap<RoomKey, Vec<(u64, ConnId)>> = HashMap::new();
        for m in report.members.iter().filter(|m| m.edge == report.edge) {
            locals
                .entry(m.room)
                .or_default()
                .push((m.joined_at_ms, m.conn));
        }
        for view in report.views.iter().filter(|v| in_slot(v.room)) {
            let Some(locals) = locals.get_mut(&view.room) else {
                continue;
            };
            locals.sort_unstable();
            let to: Vec<ConnId> = locals.iter().map(|(_, c)| *c).collect();
            let truth = by_room
                .get(&view.room)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let members: HashSet<ConnId> = truth.iter().map(|m| m.conn).collect();
            let seen: HashSet<ConnId> = view.members.iter().copied().collect();
            for ghost in view.members.iter().filter(|c| !members.contains(c)) {
                effects.push(Effect::Deliver {
                    edge: report.edge,
                    room: view.room,
                    to: to.clone(),
                    message: ServerMessage::PeerLeft { sender_id: *ghost },
                });
            }
            for member in truth.iter().filter(|m| !seen.contains(&m.conn)) {
                let to: Vec<ConnId> = to.iter().copied().filter(|c| *c != member.conn).collect();
                if to.is_empty() {
                    continue;
                }
                effects.push(Effect::Deliver {
                    edge: report.edge,
                    room: view.room,
                    to,
                    message: ServerMessage::NewPeer {
                        peer_id: member.conn,
                        status: status_map(&member.status),
                    },
                });
            }
        }
    }
    effects
}
