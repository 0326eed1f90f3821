//! Hosted mode in the room state machine: a tenant's room size and open-room limits (with rooms
//! open elsewhere in the cluster), what it refuses, and the usage it counts per hour.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchboard_proto::bus::TenantScope;
use switchboard_proto::{ConnId, EdgeId, ProtocolError, RoomKey, Status, TenantId};
use switchboard_rooms::{
    Command, Effect, MemberRecord, Rooms, RoomsConfig, TenantUsage, UnixMillis,
};

const E1: EdgeId = EdgeId(1);
const HOUR: u64 = 3_600_000;

fn conn(n: u8) -> ConnId {
    ConnId::from_random_bytes([n; 16])
}

fn room(n: u8) -> RoomKey {
    RoomKey::from_bytes([n; 16])
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn scope(id: &str, max_rooms: u32, max_room_size: u32) -> TenantScope {
    TenantScope {
        id: tenant(id),
        max_rooms,
        max_room_size,
        room_name: None,
    }
}

fn join(rooms: &mut Rooms, at: u64, c: u8, r: u8, scope: &TenantScope) -> Vec<Effect> {
    rooms.apply(
        UnixMillis(at),
        Command::Join {
            conn: conn(c),
            edge: E1,
            room: room(r),
            status: Status::default(),
            tenant: Some(scope.clone()),
        },
    )
}

fn leave(rooms: &mut Rooms, at: u64, c: u8, r: u8) -> Vec<Effect> {
    rooms.apply(
        UnixMillis(at),
        Command::Leave {
            conn: conn(c),
            edge: E1,
            room: room(r),
        },
    )
}

fn refusal(effects: &[Effect]) -> Option<ProtocolError> {
    effects.iter().find_map(|e| match e {
        Effect::Refuse { error, .. } => Some(*error),
        _ => None,
    })
}

fn tenant_effects(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::TenantRoomOpened { .. }
                    | Effect::TenantRoomClosed { .. }
                    | Effect::TenantRoomMembers { .. }
            )
        })
        .cloned()
        .collect()
}

#[test]
fn a_tenants_room_size_is_the_smaller_of_its_own_and_the_routers() {
    let mut rooms = Rooms::new(RoomsConfig {
        max_room_size: 3,
        ..RoomsConfig::default()
    });
    let small = scope("small", 0, 2);
    let large = scope("large", 0, 10);
    assert_eq!(refusal(&join(&mut rooms, 0, 1, 1, &small)), None);
    assert_eq!(refusal(&join(&mut rooms, 0, 2, 1, &small)), None);
    assert_eq!(
        refusal(&join(&mut rooms, 0, 3, 1, &small)),
        Some(ProtocolError::RoomFull)
    );
    for c in 10..13 {
        assert_eq!(refusal(&join(&mut rooms, 0, c, 2, &large)), None);
    }
    assert_eq!(
        refusal(&join(&mut rooms, 0, 13, 2, &large)),
        Some(ProtocolError::RoomFull),
        "the router's own limit still applies"
    );
    assert_eq!(rooms.member_count(), 5, "a refused join adds nobody");
}

#[test]
fn a_tenants_open_rooms_count_here_and_elsewhere() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let a = scope("a", 2, 0);
    let b = scope("b", 1, 0);
    assert_eq!(refusal(&join(&mut rooms, 0, 1, 1, &a)), None);
    rooms.set_rooms_elsewhere(tenant("a"), 1);
    assert_eq!(
        refusal(&join(&mut rooms, 0, 2, 2, &a)),
        Some(ProtocolError::RoomQuotaExceeded)
    );
    // Joining a room that is open already opens nothing: allowed at the limit.
    assert_eq!(refusal(&join(&mut rooms, 0, 3, 1, &a)), None);
    // Another tenant's count is its own.
    assert_eq!(refusal(&join(&mut rooms, 0, 4, 3, &b)), None);
    assert_eq!(
        refusal(&join(&mut rooms, 0, 5, 4, &b)),
        Some(ProtocolError::RoomQuotaExceeded)
    );
    // The rooms elsewhere closed: room for one more.
    rooms.set_rooms_elsewhere(tenant("a"), 0);
    assert_eq!(refusal(&join(&mut rooms, 0, 2, 2, &a)), None);
    assert_eq!(rooms.tenant_rooms()[&tenant("a")], 2);
    leave(&mut rooms, 0, 2, 2);
    assert_eq!(rooms.tenant_rooms()[&tenant("a")], 1);
    leave(&mut rooms, 0, 1, 1);
    leave(&mut rooms, 0, 3, 1);
    assert_eq!(rooms.tenant_rooms().get(&tenant("a")), None);
}

#[test]
fn usage_counts_rooms_opened_and_each_hours_largest_room() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let a = scope("a", 0, 0);
    let at = 10 * HOUR;
    let effects = join(&mut rooms, at, 1, 1, &a);
    assert_eq!(
        tenant_effects(&effects),
        [
            Effect::TenantRoomOpened {
                tenant: tenant("a")
            },
            Effect::TenantRoomMembers {
                tenant: tenant("a"),
                members: 1
            },
        ]
    );
    join(&mut rooms, at, 2, 1, &a);
    join(&mut rooms, at, 3, 1, &a);
    join(&mut rooms, at, 4, 2, &a);
    leave(&mut rooms, at, 3, 1);
    let usage = &rooms.stats().hours()[&10].tenants[&tenant("a")];
    assert_eq!(
        *usage,
        TenantUsage {
            rooms_opened: 2,
            peak_room_members: 3,
            ..TenantUsage::default()
        }
    );

    // The next hour starts with the rooms as they are: the largest has 2 members.
    let effects = rooms.roll_hour(UnixMillis(at + HOUR));
    assert_eq!(
        effects,
        [Effect::TenantRoomMembers {
            tenant: tenant("a"),
            members: 2
        }]
    );
    assert!(rooms.roll_hour(UnixMillis(at + HOUR + 1)).is_empty());
    // Without the driver's call, the first command of an hour does it.
    let effects = leave(&mut rooms, at + 2 * HOUR, 4, 2);
    assert!(effects.contains(&Effect::TenantRoomMembers {
        tenant: tenant("a"),
        members: 2
    }));
    assert!(effects.contains(&Effect::TenantRoomClosed {
        tenant: tenant("a"),
        peak: 1
    }));
    for hour in [11, 12] {
        assert_eq!(
            rooms.stats().hours()[&hour].tenants[&tenant("a")],
            TenantUsage {
                peak_room_members: 2,
                ..TenantUsage::default()
            },
            "hour {hour}"
        );
    }
}

#[test]
fn a_rejoin_is_no_room_opened_and_open_mode_counts_nothing() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let effects = rooms.apply(
        UnixMillis(HOUR),
        Command::Rejoin {
            member: MemberRecord {
                conn: conn(1),
                edge: E1,
                room: room(1),
                status: Default::default(),
                joined_at_ms: 0,
                tenant: Some(tenant("a")),
                room_name: None,
            },
        },
    );
    assert_eq!(
        tenant_effects(&effects),
        [Effect::TenantRoomMembers {
            tenant: tenant("a"),
            members: 1
        }]
    );
    assert_eq!(rooms.tenant_rooms()[&tenant("a")], 1);
    assert_eq!(
        rooms.stats().hours()[&1].tenants[&tenant("a")].rooms_opened,
        0
    );

    let effects = rooms.apply(
        UnixMillis(2 * HOUR),
        Command::Join {
            conn: conn(2),
            edge: E1,
            room: room(2),
            status: Status::default(),
            tenant: None,
        },
    );
    assert_eq!(
        tenant_effects(&effects).len(),
        1,
        "only the hour's roll of tenant a"
    );
    assert!(rooms.stats().hours()[&2].tenants.len() == 1);
}

/// The member effects of `effects` as (joined, conn, flag, room name), in order.
fn member_effects(effects: &[Effect]) -> Vec<(bool, ConnId, bool, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::TenantMemberJoined {
                conn, opened, room, ..
            } => Some((true, *conn, *opened, room.clone())),
            Effect::TenantMemberLeft {
                conn, closed, room, ..
            } => Some((false, *conn, *closed, room.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn named_tenant_rooms_report_members_joining_and_leaving_in_order() {
    let mut rooms = Rooms::new(RoomsConfig::default());
    let named = TenantScope {
        room_name: Some("standup".into()),
        ..scope("a", 0, 0)
    };
    let name = || "standup".to_owned();
    let effects = join(&mut rooms, 0, 1, 1, &named);
    assert_eq!(member_effects(&effects), [(true, conn(1), true, name())]);
    let Some(Effect::TenantMemberJoined { tenant: t, .. }) = effects
        .iter()
        .find(|e| matches!(e, Effect::TenantMemberJoined { .. }))
    else {
        panic!("no join effect: {effects:?}")
    };
    assert_eq!(*t, tenant("a"));
    let effects = join(&mut rooms, 0, 2, 1, &named);
    assert_eq!(member_effects(&effects), [(true, conn(2), false, name())]);
    // A retried join changes nothing and reports nothing.
    assert!(member_effects(&join(&mut rooms, 0, 2, 1, &named)).is_empty());
    let effects = leave(&mut rooms, 0, 1, 1);
    assert_eq!(member_effects(&effects), [(false, conn(1), false, name())]);
    let effects = leave(&mut rooms, 0, 2, 1);
    assert_eq!(member_effects(&effects), [(false, conn(2), true, name())]);
    // The member's leave comes before the room's close.
    let left = effects
        .iter()
        .position(|e| matches!(e, Effect::TenantMemberLeft { .. }));
    let closed = effects
        .iter()
        .position(|e| matches!(e, Effect::TenantRoomClosed { .. }));
    assert!(left < closed, "{effects:?}");

    // An edge lost: each of its members leaves, the last one closes the room.
    join(&mut rooms, 0, 3, 2, &named);
    join(&mut rooms, 0, 4, 2, &named);
    let effects = rooms.apply(UnixMillis(0), Command::EdgeLost { edge: E1 });
    assert_eq!(
        member_effects(&effects),
        [
            (false, conn(3), false, name()),
            (false, conn(4), true, name())
        ]
    );

    // Rooms without a name (older edges) and open mode report no members.
    let effects = join(&mut rooms, 0, 5, 3, &scope("a", 0, 0));
    assert!(member_effects(&effects).is_empty());
    let open = rooms.apply(
        UnixMillis(0),
        Command::Join {
            conn: conn(6),
            edge: E1,
            room: room(4),
            status: Status::default(),
            tenant: None,
        },
    );
    assert!(member_effects(&open).is_empty());
    assert!(member_effects(&leave(&mut rooms, 0, 6, 4)).is_empty());
}
