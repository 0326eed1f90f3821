//! Hosted mode in the state machine: each tenant's open rooms (for its `max_rooms`, with what the
//! driver reports from elsewhere in the cluster) and its usage (rooms opened, peak room members).

use std::collections::{BTreeMap, HashMap};

use switchboard_proto::{RoomKey, TenantId};

use super::{Effect, Rooms};
use crate::UnixMillis;
use crate::stats::TenantUsage;

impl Rooms {
    /// Open rooms of `tenant` in the whole cluster, as far as this state machine knows.
    pub(super) fn open_rooms_of(&self, tenant: &TenantId) -> usize {
        self.tenant_rooms.get(tenant).copied().unwrap_or(0)
            + self.rooms_elsewhere.get(tenant).copied().unwrap_or(0)
    }

    /// Hosted mode: how many rooms `tenant` has open outside this state machine (the driver's
    /// count of other slots and routers), checked with its own at the next join that opens a room.
    pub fn set_rooms_elsewhere(&mut self, tenant: TenantId, rooms: usize) {
        if rooms == 0 {
            self.rooms_elsewhere.remove(&tenant);
        } else {
            self.rooms_elsewhere.insert(tenant, rooms);
        }
    }

    /// Hosted mode: open rooms per tenant, here.
    pub fn tenant_rooms(&self) -> &HashMap<TenantId, usize> {
        &self.tenant_rooms
    }

    /// A member joined (or rejoined) `room` of `tenant`: counts the room as opened if `opened`,
    /// and its size towards the hour's peak.
    pub(super) fn tenant_room_grew(
        &mut self,
        now: UnixMillis,
        tenant: TenantId,
        room: RoomKey,
        opened: bool,
        effects: &mut Vec<Effect>,
    ) {
        let members = self.rooms.get(&room).map_or(0, |r| r.members.len()) as u64;
        let usage = TenantUsage {
            rooms_opened: u64::from(opened),
            peak_room_members: members,
            ..TenantUsage::default()
        };
        self.stats.tenant_usage(now.hour(), &tenant, &usage);
        if opened {
            effects.push(Effect::TenantRoomOpened {
                tenant: tenant.clone(),
            });
        }
        effects.push(Effect::TenantRoomMembers { tenant, members });
    }

    /// At the start of a new UTC hour: the hour's peak room members start at the size of each
    /// tenant's largest open room, or a room open all hour long without a join would not count.
    /// [`Rooms::apply`] does this at the first command of an hour; a driver calls it at the hour's
    /// start too, for hours without commands.
    pub fn roll_hour(&mut self, now: UnixMillis) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.roll_hour_into(now, &mut effects);
        effects
    }

    pub(super) fn roll_hour_into(&mut self, now: UnixMillis, effects: &mut Vec<Effect>) {
        let hour = now.hour();
        if hour <= self.usage_hour {
            return;
        }
        self.usage_hour = hour;
        if self.tenant_rooms.is_empty() {
            return;
        }
        // Once an hour over every room: cheap next to the commands of an hour. Ordered, so that
        // effects are reproducible.
        let mut largest: BTreeMap<TenantId, u64> = BTreeMap::new();
        for room in self.rooms.values() {
            if let Some(tenant) = &room.tenant {
                let size = largest.entry(tenant.clone()).or_default();
                *size = (*size).max(room.members.len() as u64);
            }
        }
        for (tenant, members) in largest {
            let usage = TenantUsage {
                peak_room_members: members,
                ..TenantUsage::default()
            };
            self.stats.tenant_usage(hour, &tenant, &usage);
            effects.push(Effect::TenantRoomMembers { tenant, members });
        }
    }
}
