//! The control API's requests in the room state machine: a tenant's rooms by name, a room's
//! members, removing members and closing rooms (the others told `peer_left`, the removed ones'
//! edges told to close them), server messages, and isolation between tenants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use switchboard_proto::bus::TenantScope;
use switchboard_proto::control::{RoomEntry, RoomReply, RoomRequest};
use switchboard_proto::{ConnId, EdgeId, RoomKey, ServerMessage, Status, TenantId};
use switchboard_rooms::{Command, Effect, MemberRecord, Rooms, RoomsConfig, UnixMillis};

const E1: EdgeId = EdgeId(1);
const E2: EdgeId = EdgeId(2);

fn conn(n: u8) -> ConnId {
    ConnId::from_random_bytes([n; 16])
}

fn room(n: u8) -> RoomKey {
    RoomKey::from_bytes([n; 16])
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).unwrap()
}

fn join(rooms: &mut Rooms, at: u64, c: u8, edge: EdgeId, r: u8, who: &str, name: &str) {
    let effects = rooms.apply(
        UnixMillis(at),
        Command::Join {
            conn: conn(c),
            edge,
            room: room(r),
            status: Status::validate(Some(json!({"name": format!("n{c}")})), &Default::default())
                .unwrap(),
            tenant: Some(TenantScope {
                id: tenant(who),
                max_rooms: 0,
                max_room_size: 0,
                room_name: Some(name.into()),
            }),
        },
    );
    assert!(!effects.iter().any(|e| matches!(e, Effect::Refuse { .. })));
}

/// Two rooms of acme (one with two members on two edges), one of globex.
fn setup() -> Rooms {
    let mut rooms = Rooms::new(RoomsConfig::default());
    join(&mut rooms, 1_000, 1, E1, 1, "acme", "standup");
    join(&mut rooms, 2_000, 2, E2, 1, "acme", "standup");
    join(&mut rooms, 3_000, 3, E1, 2, "acme", "all-hands");
    join(&mut rooms, 4_000, 4, E1, 3, "globex", "standup");
    rooms
}

#[test]
fn a_tenant_lists_its_own_rooms_by_name() {
    let mut rooms = setup();
    let (reply, effects) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Rooms {
            tenant: tenant("acme"),
        },
    );
    assert!(effects.is_empty());
    assert_eq!(
        reply,
        RoomReply::Rooms(vec![
            RoomEntry {
                name: "all-hands".into(),
                members: 1,
                peak: 1,
                opened_at_ms: 3_000
            },
            RoomEntry {
                name: "standup".into(),
                members: 2,
                peak: 2,
                opened_at_ms: 1_000
            },
        ])
    );
    let (reply, _) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Rooms {
            tenant: tenant("initech"),
        },
    );
    assert_eq!(reply, RoomReply::Rooms(Vec::new()));
}

#[test]
fn members_are_listed_in_join_order_with_status_and_edge() {
    let mut rooms = setup();
    let (reply, _) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Members {
            tenant: tenant("acme"),
            room: room(1),
        },
    );
    let RoomReply::Members(members) = reply else {
        panic!("{reply:?}");
    };
    let summary: Vec<_> = members
        .iter()
        .map(|m| (m.peer_id, m.edge, m.status.name.clone(), m.joined_at_ms))
        .collect();
    assert_eq!(
        summary,
        vec![
            (conn(1), E1, Some("n1".into()), 1_000),
            (conn(2), E2, Some("n2".into()), 2_000)
        ]
    );
}

#[test]
fn another_tenant_finds_nothing_even_with_the_key() {
    let mut rooms = setup();
    let requests = [
        RoomRequest::Members {
            tenant: tenant("globex"),
            room: room(1),
        },
        RoomRequest::Remove {
            tenant: tenant("globex"),
            room: room(1),
            peer: conn(1),
        },
        RoomRequest::Close {
            tenant: tenant("globex"),
            room: room(1),
        },
        RoomRequest::Send {
            tenant: tenant("globex"),
            room: room(1),
            to: None,
            data: Default::default(),
        },
    ];
    for request in requests {
        let (reply, effects) = rooms.answer(UnixMillis(5_000), request);
        assert_eq!(reply, RoomReply::NotFound);
        assert!(effects.is_empty());
    }
    assert_eq!(rooms.member_count(), 4);
}

#[test]
fn removing_a_member_tells_its_edge_and_the_others() {
    let mut rooms = setup();
    let (reply, effects) = rooms.answer(
        UnixMillis(65_000),
        RoomRequest::Remove {
            tenant: tenant("acme"),
            room: room(1),
            peer: conn(1),
        },
    );
    assert_eq!(reply, RoomReply::Done);
    // The removed member's edge first, then the rest, as for a leave.
    assert_eq!(
        effects[0],
        Effect::Remove {
            edge: E1,
            room: room(1),
            to: vec![conn(1)]
        }
    );
    assert!(effects.contains(&Effect::Deliver {
        edge: E2,
        room: room(1),
        to: vec![conn(2)],
        message: ServerMessage::PeerLeft { sender_id: conn(1) },
    }));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::MemberLeft { minutes: 1, .. }))
    );
    let left: Vec<MemberRecord> = rooms.records();
    assert!(!left.iter().any(|m| m.conn == conn(1)));
    // Not a member (any more): not found, nothing happens.
    let (reply, effects) = rooms.answer(
        UnixMillis(65_000),
        RoomRequest::Remove {
            tenant: tenant("acme"),
            room: room(1),
            peer: conn(1),
        },
    );
    assert_eq!(reply, RoomReply::NotFound);
    assert!(effects.is_empty());
}

#[test]
fn closing_a_room_removes_everyone() {
    let mut rooms = setup();
    let (reply, effects) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Close {
            tenant: tenant("acme"),
            room: room(1),
        },
    );
    assert_eq!(reply, RoomReply::Done);
    let removed: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Remove { edge, to, .. } => Some((*edge, to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(removed, vec![(E1, vec![conn(1)]), (E2, vec![conn(2)])]);
    assert!(effects.contains(&Effect::RoomClosed { peak: 2 }));
    assert_eq!(rooms.room_size(room(1)), None);
    assert_eq!(rooms.rooms_of(&tenant("acme")).len(), 1);
}

#[test]
fn server_messages_reach_one_member_or_all() {
    let mut rooms = setup();
    let data = json!({"text": "hi"}).as_object().cloned().unwrap();
    let message = ServerMessage::ServerMessage { data: data.clone() };
    let (reply, effects) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Send {
            tenant: tenant("acme"),
            room: room(1),
            to: None,
            data: data.clone(),
        },
    );
    assert_eq!(reply, RoomReply::Done);
    assert_eq!(
        effects,
        vec![
            Effect::Deliver {
                edge: E1,
                room: room(1),
                to: vec![conn(1)],
                message: message.clone()
            },
            Effect::Deliver {
                edge: E2,
                room: room(1),
                to: vec![conn(2)],
                message: message.clone()
            },
        ]
    );
    let (reply, effects) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Send {
            tenant: tenant("acme"),
            room: room(1),
            to: Some(conn(2)),
            data: data.clone(),
        },
    );
    assert_eq!(reply, RoomReply::Done);
    assert_eq!(
        effects,
        vec![Effect::Deliver {
            edge: E2,
            room: room(1),
            to: vec![conn(2)],
            message
        }]
    );
    // A member of another room is not in this one.
    let (reply, _) = rooms.answer(
        UnixMillis(5_000),
        RoomRequest::Send {
            tenant: tenant("acme"),
            room: room(1),
            to: Some(conn(3)),
            data,
        },
    );
    assert_eq!(reply, RoomReply::NotFound);
}

#[test]
fn a_rebuilt_room_keeps_its_name_and_earliest_opening() {
    let original = setup();
    let mut rebuilt = Rooms::new(RoomsConfig::default());
    // A takeover restores members in whatever order the edges answer.
    for record in original.records().into_iter().rev() {
        rebuilt.restore(record);
    }
    assert_eq!(
        rebuilt.rooms_of(&tenant("acme")),
        original.rooms_of(&tenant("acme"))
    );
}
