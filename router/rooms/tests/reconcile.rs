//! Reconciliation of a slot with the edges' reports: ghosts get `peer_left`, unannounced members
//! `new_peer`, departed members are counted, and nothing is said where views are already right.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use switchboard_proto::bus::{ResyncReply, RoomView};
use switchboard_proto::{ConnId, EdgeId, RoomKey, ServerMessage, StoredStatus};
use switchboard_rooms::reconcile::reconcile;
use switchboard_rooms::{Command, Effect, MemberRecord, Rooms, RoomsConfig, UnixMillis};

const E1: EdgeId = EdgeId(1);
const E2: EdgeId = EdgeId(2);
const NOW: UnixMillis = UnixMillis(10 * 60_000);

fn conn(edge: EdgeId, n: u8) -> ConnId {
    ConnId::for_edge(edge, [n.wrapping_mul(97); 16])
}

fn room(n: u8) -> RoomKey {
    RoomKey::from_bytes([n; 16])
}

fn member(conn: ConnId, room: RoomKey, joined_at_ms: u64) -> MemberRecord {
    MemberRecord {
        conn,
        edge: conn.edge(),
        room,
        status: StoredStatus::default(),
        joined_at_ms,
        tenant: None,
        room_name: None,
    }
}

fn report(edge: EdgeId, members: &[MemberRecord], views: &[(RoomKey, &[ConnId])]) -> ResyncReply {
    ResyncReply {
        edge,
        members: members.to_vec(),
        views: views
            .iter()
            .map(|(room, members)| RoomView {
                room: *room,
                members: members.to_vec(),
            })
            .collect(),
        joining: Vec::new(),
    }
}

/// (edge, recipients, "left"/"new", peer) for each delivery, in order.
fn deliveries(effects: &[Effect]) -> Vec<(EdgeId, Vec<ConnId>, &'static str, ConnId)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver {
                edge, to, message, ..
            } => Some(match message {
                ServerMessage::PeerLeft { sender_id } => (*edge, to.clone(), "left", *sender_id),
                ServerMessage::NewPeer { peer_id, .. } => (*edge, to.clone(), "new", *peer_id),
                other => panic!("unexpected delivery {other:?}"),
            }),
            _ => None,
        })
        .collect()
}

fn all(_: RoomKey) -> bool {
    true
}

#[test]
fn a_takeover_with_right_views_restores_silently() {
    let (a, b, c) = (conn(E1, 1), conn(E1, 2), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    let reports = [
        report(E1, &[member(a, r, 1), member(b, r, 2)], &[(r, &[a, b, c])]),
        report(E2, &[member(c, r, 3)], &[(r, &[a, b])]),
    ];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(deliveries(&effects), vec![]);
    let restored: Vec<ConnId> = rooms.records().iter().map(|m| m.conn).collect();
    assert_eq!(restored, vec![a, b, c], "restored in join order");
}

#[test]
fn a_leaver_the_old_owner_never_announced_is_a_ghost_everywhere() {
    // g left while no router served the slot: its edge forgot it, the others still show it.
    let (a, g, c) = (conn(E1, 1), conn(E1, 2), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    let reports = [
        report(E1, &[member(a, r, 1)], &[(r, &[a, g, c])]),
        report(E2, &[member(c, r, 3)], &[(r, &[a, g])]),
    ];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(
        deliveries(&effects),
        vec![(E1, vec![a], "left", g), (E2, vec![c], "left", g)]
    );
}

#[test]
fn a_member_some_edge_never_announced_is_announced_there_only() {
    let (a, b, c) = (conn(E1, 1), conn(E1, 2), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    // E2 never got new_peer for b; E1 knows everyone.
    let reports = [
        report(E1, &[member(a, r, 1), member(b, r, 2)], &[(r, &[a, b, c])]),
        report(E2, &[member(c, r, 3)], &[(r, &[a])]),
    ];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(deliveries(&effects), vec![(E2, vec![c], "new", b)]);
}

#[test]
fn a_local_member_is_never_announced_to_itself() {
    let (a, b) = (conn(E1, 1), conn(E1, 2));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    // a never heard of b (the router died between b's joined_room and new_peer).
    let reports = [report(
        E1,
        &[member(a, r, 1), member(b, r, 2)],
        &[(r, &[a])],
    )];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(deliveries(&effects), vec![(E1, vec![a], "new", b)]);
}

#[test]
fn a_serving_owner_removes_members_their_edge_no_longer_has() {
    let (a, b, c) = (conn(E1, 1), conn(E1, 2), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    for m in [member(a, r, 0), member(b, r, 0), member(c, r, 0)] {
        rooms.restore(m);
    }
    // b left at its edge, but the leave never reached this router.
    let reports = [
        report(E1, &[member(a, r, 0)], &[(r, &[a, b, c])]),
        report(E2, &[member(c, r, 0)], &[(r, &[a, b])]),
    ];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(
        deliveries(&effects),
        vec![(E1, vec![a], "left", b), (E2, vec![c], "left", b)]
    );
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::MemberLeft { minutes: 10, .. })),
        "the departed member's connection time is counted: {effects:?}"
    );
    let left: Vec<ConnId> = rooms.records().iter().map(|m| m.conn).collect();
    assert_eq!(left, vec![a, c]);
}

#[test]
fn a_member_whose_joined_room_is_still_on_its_way_is_kept() {
    // The router applied b's join; b's edge answered before delivering `joined_room`, so it reports
    // b as joining, not as a member. b is not gone.
    let (a, b) = (conn(E1, 1), conn(E2, 2));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    rooms.restore(member(a, r, 0));
    rooms.restore(member(b, r, 1));
    let mut joining = report(E2, &[], &[]);
    joining.joining.push(b);
    let reports = [report(E1, &[member(a, r, 0)], &[(r, &[b])]), joining];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(deliveries(&effects), vec![]);
    assert_eq!(rooms.member_count(), 2);
}

#[test]
fn members_of_edges_that_did_not_answer_are_kept() {
    let (a, c) = (conn(E1, 1), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    rooms.restore(member(a, r, 0));
    rooms.restore(member(c, r, 0));
    let effects = reconcile(
        &mut rooms,
        NOW,
        &[report(E1, &[member(a, r, 0)], &[(r, &[c])])],
        all,
    );
    assert_eq!(deliveries(&effects), vec![]);
    assert_eq!(rooms.member_count(), 2);
}

#[test]
fn a_closed_room_is_counted_and_its_views_emptied() {
    let (a, b) = (conn(E1, 1), conn(E2, 2));
    let (r, s) = (room(1), room(2));
    let mut rooms = Rooms::new(RoomsConfig::default());
    rooms.restore(member(b, s, 0));
    // b moved on (its edge reports nothing); a is alone in r and still sees b there.
    let reports = [
        report(E1, &[member(a, r, 0)], &[(r, &[b])]),
        report(E2, &[], &[]),
    ];
    let effects = reconcile(&mut rooms, NOW, &reports, all);
    assert!(effects.contains(&Effect::RoomClosed { peak: 1 }));
    assert_eq!(deliveries(&effects), vec![(E1, vec![a], "left", b)]);
    // Applying the leave again later (the edge's retry) changes nothing.
    let again = rooms.apply(
        NOW,
        Command::Leave {
            conn: b,
            edge: E2,
            room: s,
        },
    );
    assert_eq!(again, vec![]);
}

#[test]
fn rooms_outside_the_slot_are_ignored() {
    let (a, c) = (conn(E1, 1), conn(E2, 3));
    let (r, other) = (room(1), room(2));
    let mut rooms = Rooms::new(RoomsConfig::default());
    let reports = [report(
        E1,
        &[member(a, r, 0), member(c, other, 0)],
        &[(other, &[conn(E2, 9)])],
    )];
    let effects = reconcile(&mut rooms, NOW, &reports, |room| room == r);
    assert_eq!(deliveries(&effects), vec![]);
    assert_eq!(rooms.member_count(), 1);
}

#[test]
fn reconciling_twice_says_nothing_the_second_time() {
    let (a, g, c) = (conn(E1, 1), conn(E1, 2), conn(E2, 3));
    let r = room(1);
    let mut rooms = Rooms::new(RoomsConfig::default());
    let reports = [
        report(E1, &[member(a, r, 1)], &[(r, &[a, g])]),
        report(E2, &[member(c, r, 3)], &[(r, &[a, g])]),
    ];
    let first = reconcile(&mut rooms, NOW, &reports, all);
    assert_eq!(deliveries(&first).len(), 3, "{first:?}");
    // The edges' views after the first reconciliation.
    let settled = [
        report(E1, &[member(a, r, 1)], &[(r, &[a, c])]),
        report(E2, &[member(c, r, 3)], &[(r, &[a, c])]),
    ];
    assert_eq!(
        deliveries(&reconcile(&mut rooms, NOW, &settled, all)),
        vec![]
    );
}
