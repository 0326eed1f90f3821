//! The control API's requests (`switchboard_proto::control`): listing a tenant's rooms and a
//! room's members, removing members, closing rooms, server messages. Pure like the rest of
//! [`Rooms`]: an answer and the effects the driver publishes, as for a command.
//!
//! A room is found by its key and must belong to the asking tenant: keys already differ per tenant
//! (`RoomKeyer::key_in`), and the check makes isolation hold even for an open-mode room whose key a
//! caller had somehow computed.

use switchboard_proto::control::{MemberEntry, RoomEntry, RoomReply, RoomRequest};
use switchboard_proto::{ConnId, RoomKey, ServerMessage, TenantId};

use super::{Effect, Room, Rooms, push_grouped};
use crate::UnixMillis;

impl Rooms {
    /// Answers one control request at `now`; the effects (room events, removals) must be
    /// published as those of [`Rooms::apply`].
    pub fn answer(&mut self, now: UnixMillis, request: RoomRequest) -> (RoomReply, Vec<Effect>) {
        let mut effects = Vec::new();
        self.roll_hour_into(now, &mut effects);
        let reply = match request {
            RoomRequest::Rooms { tenant } => RoomReply::Rooms(self.rooms_of(&tenant)),
            RoomRequest::Members { tenant, room } => match self.members_of(&tenant, room) {
                Some(members) => RoomReply::Members(members),
                None => RoomReply::NotFound,
            },
            RoomRequest::Remove { tenant, room, peer } => {
                let member = self
                    .tenant_room(&tenant, room)
                    .is_some_and(|r| r.members.contains_key(&peer));
                if member {
                    self.remove_by_service(now, room, &[peer], &mut effects);
                    RoomReply::Done
                } else {
                    RoomReply::NotFound
                }
            }
            RoomRequest::Close { tenant, room } => match self.tenant_room(&tenant, room) {
                Some(found) => {
                    let everyone: Vec<ConnId> =
                        found.others(None).into_iter().map(|(id, _)| id).collect();
                    self.remove_by_service(now, room, &everyone, &mut effects);
                    RoomReply::Done
                }
                None => RoomReply::NotFound,
            },
            RoomRequest::Send {
                tenant,
                room,
                to,
                data,
            } => match self.tenant_room(&tenant, room) {
                Some(found) => {
                    let mut recipients = found.others(None);
                    if let Some(to) = to {
                        recipients.retain(|(id, _)| *id == to);
                    }
                    if recipients.is_empty() {
                        RoomReply::NotFound
                    } else {
                        push_grouped(
                            &mut effects,
                            room,
                            &recipients,
                            ServerMessage::ServerMessage { data },
                        );
                        RoomReply::Done
                    }
                }
                None => RoomReply::NotFound,
            },
        };
        (reply, effects)
    }

    /// The open rooms of `tenant` that have a name, by name.
    pub fn rooms_of(&self, tenant: &TenantId) -> Vec<RoomEntry> {
        let mut rooms: Vec<RoomEntry> = self
            .rooms
            .values()
            .filter(|room| room.tenant.as_ref() == Some(tenant))
            .filter_map(|room| {
                Some(RoomEntry {
                    name: room.name.clone()?,
                    members: room.members.len() as u64,
                    peak: room.peak as u64,
                    opened_at_ms: room.opened_at.0,
                })
            })
            .collect();
        rooms.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// The members of `tenant`'s room `room`, in join order; `None` if it has no such room.
    pub fn members_of(&self, tenant: &TenantId, room: RoomKey) -> Option<Vec<MemberEntry>> {
        let room = self.tenant_room(tenant, room)?;
        Some(
            room.others(None)
                .into_iter()
                .map(|(id, member)| MemberEntry {
                    peer_id: id,
                    status: member.status.clone(),
                    edge: member.edge,
                    joined_at_ms: member.joined_at.0,
                })
                .collect(),
        )
    }

    fn tenant_room(&self, tenant: &TenantId, room: RoomKey) -> Option<&Room> {
        self.rooms
            .get(&room)
            .filter(|found| found.tenant.as_ref() == Some(tenant))
    }

    /// Removes `peers` from `room` as leaves (the rest get `peer_left`, statistics count them),
    /// and tells their edges to close them. Each edge hears of its removed members before the
    /// `peer_left`s, so it drops them from its view first.
    fn remove_by_service(
        &mut self,
        now: UnixMillis,
        room: RoomKey,
        peers: &[ConnId],
        effects: &mut Vec<Effect>,
    ) {
        if let Some(found) = self.rooms.get(&room) {
            let removed: Vec<(ConnId, &super::Member)> = found
                .others(None)
                .into_iter()
                .filter(|(id, _)| peers.contains(id))
                .collect();
            let mut by_edge: Vec<Effect> = Vec::new();
            for (id, member) in removed {
                match by_edge.iter_mut().find(
                    |effect| matches!(effect, Effect::Remove { edge, .. } if *edge == member.edge),
                ) {
                    Some(Effect::Remove { to, .. }) => to.push(id),
                    _ => by_edge.push(Effect::Remove {
                        edge: member.edge,
                        room,
                        to: vec![id],
                    }),
                }
            }
            effects.extend(by_edge);
        }
        for peer in peers {
            self.remove(now, *peer, None, effects);
        }
    }
}
