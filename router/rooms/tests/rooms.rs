//! Deterministic tests of the room state machine: what each member is told, in which order and on
//! which edge, what a refused command leaves behind, and the statistics palava's dashboards read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use switchboard_proto::{
    ConnId, EdgeId, PeerEntry, ProtocolError, RoomKey, ServerMessage, Status, StatusRules,
    StoredStatus,
};
use switchboard_rooms::{Command, Effect, MemberRecord, Rooms, RoomsConfig, UnixMillis};

const E1: EdgeId = EdgeId(1);
const E2: EdgeId = EdgeId(2);
const E3: EdgeId = EdgeId(3);

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;

/// Ids whose byte order is unrelated to join order, so that a list sorted by id (or in hash order)
/// instead of join order shows up.
fn conn(n: u8) -> ConnId {
    ConnId::from_random_bytes([n.wrapping_mul(97); 16])
}

fn room(n: u8) -> RoomKey {
    RoomKey::from_bytes([n; 16])
}

/// The members of `r` in join order, as the router hands them around (`records`).
fn members(rooms: &Rooms, r: RoomKey) -> Vec<ConnId> {
    rooms
        .records()
        .into_iter()
        .filter(|m| m.room == r)
        .map(|m| m.conn)
        .collect()
}

/// The room `c` is in.
fn room_of(rooms: &Rooms, c: ConnId) -> Option<RoomKey> {
    rooms
        .records()
        .into_iter()
        .find(|m| m.conn == c)
        .map(|m| m.room)
}

fn status(value: Value) -> Status {
    Status::validate(Some(value), &StatusRules::default()).unwrap()
}

fn map(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn stored(name: Option<&str>, user_agent: Option<&str>) -> StoredStatus {
    StoredStatus {
        name: name.map(str::to_owned),
        user_agent: user_agent.map(str::to_owned),
    }
}

/// A `Rooms` plus a clock, so tests read as a script.
struct Script {
    rooms: Rooms,
    now: UnixMillis,
}

impl Script {
    fn new() -> Self {
        Script::with(RoomsConfig::default())
    }

    fn with(config: RoomsConfig) -> Self {
        Script {
            rooms: Rooms::new(config),
            now: UnixMillis(0),
        }
    }

    fn at(&mut self, millis: u64) -> &mut Self {
        self.now = UnixMillis(millis);
        self
    }

    fn join(&mut self, c: ConnId, edge: EdgeId, r: RoomKey, s: Value) -> Vec<Effect> {
        self.rooms.apply(
            self.now,
            Command::Join {
                conn: c,
                edge,
                room: r,
                status: status(s),
                tenant: None,
            },
        )
    }

    fn leave(&mut self, c: ConnId, edge: EdgeId, r: RoomKey) -> Vec<Effect> {
        self.rooms.apply(
            self.now,
            Command::Leave {
                conn: c,
                edge,
                room: r,
            },
        )
    }

    fn update(&mut self, c: ConnId, edge: EdgeId, r: RoomKey, s: Value) -> Vec<Effect> {
        self.rooms.apply(
            self.now,
            Command::UpdateStatus {
                conn: c,
                edge,
                room: r,
                status: status(s),
            },
        )
    }

    fn edge_lost(&mut self, edge: EdgeId) -> Vec<Effect> {
        self.rooms.apply(self.now, Command::EdgeLost { edge })
    }
}

fn deliver(edge: EdgeId, r: RoomKey, to: &[ConnId], message: ServerMessage) -> Effect {
    Effect::Deliver {
        edge,
        room: r,
        to: to.to_vec(),
        message,
    }
}

fn joined(own_id: ConnId, peers: &[(ConnId, StoredStatus)]) -> ServerMessage {
    ServerMessage::JoinedRoom {
        own_id,
        peers: peers
            .iter()
            .map(|(peer_id, status)| PeerEntry {
                peer_id: *peer_id,
                status: status.clone(),
            })
            .collect(),
    }
}

fn left(sender_id: ConnId) -> ServerMessage {
    ServerMessage::PeerLeft { sender_id }
}

/// Only the `Deliver` effects, as (edge, recipients, message).
fn deliveries(effects: &[Effect]) -> Vec<(EdgeId, Vec<ConnId>, ServerMessage)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver {
                edge, to, message, ..
            } => Some((*edge, to.clone(), message.clone())),
            _ => None,
        })
        .collect()
}

/// The statistics effects, in order.
fn stat_effects(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::RoomClosed { .. } | Effect::MemberLeft { .. }))
        .cloned()
        .collect()
}

#[test]
fn first_joiner_gets_joined_room_with_no_peers() {
    let mut s = Script::new();
    let a = conn(1);
    let effects = s.join(a, E1, room(1), json!({"name": "Ann"}));
    assert_eq!(effects, [deliver(E1, room(1), &[a], joined(a, &[]))]);
    let text = ServerMessage::JoinedRoom {
        own_id: a,
        peers: vec![],
    }
    .encode();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"event": "joined_room", "own_id": a.to_string(), "peers": []})
    );
}

#[test]
fn joined_room_lists_the_others_in_join_order_with_their_stored_status() {
    let mut s = Script::new();
    let (a, b, c, d) = (conn(9), conn(1), conn(5), conn(3));
    s.join(
        a,
        E1,
        room(1),
        json!({"name": "Ann", "user_agent": "firefox", "avatar": "https://x/a.png"}),
    );
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(1), json!({"name": "Cy", "mood": ["busy"]}));

    let effects = s.join(d, E2, room(1), json!({"user_agent": "safari"}));
    assert_eq!(
        effects[0],
        deliver(
            E2,
            room(1),
            &[d],
            joined(
                d,
                &[
                    // Only name and user_agent are stored: no avatar, no mood.
                    (a, stored(Some("Ann"), Some("firefox"))),
                    (b, stored(None, None)),
                    (c, stored(Some("Cy"), None)),
                ]
            )
        ),
        "the joiner's joined_room comes first, before anyone hears of it"
    );
}

#[test]
fn others_get_new_peer_with_the_status_as_sent() {
    let mut s = Script::new();
    let (a, b, c) = (conn(1), conn(2), conn(3));
    s.join(a, E1, room(1), json!({}));
    let effects = s.join(
        b,
        E1,
        room(1),
        json!({"name": "Bo", "mood": {"busy": true}}),
    );
    assert_eq!(
        effects,
        [
            deliver(E1, room(1), &[b], joined(b, &[(a, stored(None, None))])),
            deliver(
                E1,
                room(1),
                &[a],
                ServerMessage::NewPeer {
                    peer_id: b,
                    status: map(json!({"name": "Bo", "mood": {"busy": true}})),
                }
            ),
        ]
    );

    // No status at all is relayed as `{}`, never as null or a missing field.
    let effects = s.rooms.apply(
        s.now,
        Command::Join {
            conn: c,
            edge: E1,
            room: room(1),
            status: Status::validate(None, &StatusRules::default()).unwrap(),
            tenant: None,
        },
    );
    let new_peer = ServerMessage::NewPeer {
        peer_id: c,
        status: Map::new(),
    };
    assert_eq!(
        effects[1..],
        [deliver(E1, room(1), &[a, b], new_peer.clone())]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&new_peer.encode()).unwrap(),
        json!({"event": "new_peer", "peer_id": c.to_string(), "status": {}})
    );
}

#[test]
fn leaving_tells_the_remaining_members_only() {
    let mut s = Script::new();
    let (a, b, c) = (conn(1), conn(2), conn(3));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(1), json!({}));

    let effects = s.leave(b, E2, room(1));
    assert_eq!(deliveries(&effects), [(E1, vec![a, c], left(b))]);
    assert_eq!(members(&s.rooms, room(1)), [a, c]);
    assert_eq!(room_of(&s.rooms, b), None);

    let effects = s.leave(a, E1, room(1));
    assert_eq!(deliveries(&effects), [(E1, vec![c], left(a))]);

    // The last one out tells nobody.
    let effects = s.leave(c, E1, room(1));
    assert!(deliveries(&effects).is_empty(), "{effects:?}");
    assert_eq!(s.rooms.room_count(), 0);
}

#[test]
fn leave_of_a_non_member_or_of_the_wrong_room_is_ignored() {
    let mut s = Script::new();
    let (a, b) = (conn(1), conn(2));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E1, room(1), json!({}));

    assert_eq!(s.leave(conn(3), E1, room(1)), []);
    assert_eq!(s.leave(a, E1, room(2)), [], "a is not in room 2");
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(room_of(&s.rooms, a), Some(room(1)));
    assert_eq!(s.rooms.room_size(room(2)), None, "no room appears");

    // Leaving twice: the second is ignored.
    assert!(!s.leave(a, E1, room(1)).is_empty());
    assert_eq!(s.leave(a, E1, room(1)), []);
    assert_eq!(members(&s.rooms, room(1)), [b]);
}

#[test]
fn status_updates_reach_every_member_including_the_sender() {
    let mut s = Script::new();
    let (a, b, c) = (conn(1), conn(2), conn(3));
    s.join(
        a,
        E1,
        room(1),
        json!({"name": "Ann", "user_agent": "firefox"}),
    );
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(1), json!({}));
    s.join(conn(4), E1, room(2), json!({}));

    let update = json!({"name": "Anna", "mood": "away"});
    let effects = s.update(a, E1, room(1), update.clone());
    let message = ServerMessage::PeerUpdatedStatus {
        sender_id: a,
        status: map(update),
    };
    assert_eq!(
        effects,
        [
            deliver(E1, room(1), &[a, c], message.clone()),
            deliver(E2, room(1), &[b], message),
        ],
        "relayed as sent (mood included) to all three, once per edge, and not to room 2"
    );
}

#[test]
fn status_updates_merge_into_what_later_joiners_see() {
    let mut s = Script::new();
    let (a, b) = (conn(1), conn(2));
    s.join(
        a,
        E1,
        room(1),
        json!({"name": "Ann", "user_agent": "firefox"}),
    );
    s.update(a, E1, room(1), json!({"name": "Anna", "mood": "away"}));
    // An empty update is still relayed, and keeps what is stored.
    let effects = s.update(a, E1, room(1), json!({}));
    assert_eq!(
        deliveries(&effects),
        [(
            E1,
            vec![a],
            ServerMessage::PeerUpdatedStatus {
                sender_id: a,
                status: Map::new()
            }
        )]
    );
    s.update(
        a,
        E1,
        room(1),
        json!({"user_agent": "chrome", "name": null}),
    );

    let effects = s.join(b, E1, room(1), json!({}));
    assert_eq!(
        effects[0],
        deliver(
            E1,
            room(1),
            &[b],
            joined(b, &[(a, stored(Some("Anna"), Some("chrome")))])
        )
    );
}

#[test]
fn status_update_from_a_non_member_is_refused_and_changes_nothing() {
    let mut s = Script::new();
    let (a, b, outsider) = (conn(1), conn(2), conn(3));
    s.join(a, E1, room(1), json!({"name": "Ann"}));

    assert_eq!(
        s.update(outsider, E2, room(1), json!({"name": "Mallory"})),
        [Effect::Refuse {
            edge: E2,
            conn: outsider,
            room: room(1),
            error: ProtocolError::NotInRoom,
        }]
    );
    // A member naming another room is not in that room either.
    assert_eq!(
        s.update(a, E1, room(2), json!({"name": "Eve"})),
        [Effect::Refuse {
            edge: E1,
            conn: a,
            room: room(2),
            error: ProtocolError::NotInRoom,
        }]
    );
    assert_eq!(s.rooms.room_count(), 1);
    assert_eq!(room_of(&s.rooms, outsider), None);

    let effects = s.join(b, E1, room(1), json!({}));
    assert_eq!(
        effects[0],
        deliver(
            E1,
            room(1),
            &[b],
            joined(b, &[(a, stored(Some("Ann"), None))])
        ),
        "neither refused update touched Ann's stored status"
    );
}

#[test]
fn joining_while_a_member_is_refused_and_changes_nothing() {
    let mut s = Script::new();
    let (a, b) = (conn(1), conn(2));
    s.join(a, E1, room(1), json!({"name": "Ann"}));
    s.join(b, E1, room(1), json!({}));

    assert_eq!(
        s.join(a, E1, room(2), json!({"name": "Again"})),
        [Effect::Refuse {
            edge: E1,
            conn: a,
            room: room(2),
            error: ProtocolError::AlreadyJoined,
        }]
    );
    // Joining the room it is in again is a retry of a join whose reply was lost on the bus: a
    // no-op, neither refused nor announced twice (edges refuse it to clients before it gets here).
    assert_eq!(s.join(a, E1, room(1), json!({"name": "Again"})), []);
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(room_of(&s.rooms, a), Some(room(1)));
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 2)));
    assert_eq!(s.rooms.room_size(room(2)), None);
    assert_eq!((s.rooms.room_count(), s.rooms.member_count()), (1, 2));

    let c = conn(3);
    let effects = s.join(c, E1, room(1), json!({}));
    assert_eq!(
        effects[0],
        deliver(
            E1,
            room(1),
            &[c],
            joined(
                c,
                &[(a, stored(Some("Ann"), None)), (b, stored(None, None))]
            )
        ),
        "the refused join did not replace Ann's status"
    );
}

#[test]
fn a_full_room_refuses_joiners_and_changes_nothing() {
    let mut s = Script::with(RoomsConfig {
        max_room_size: 2,
        ..RoomsConfig::default()
    });
    let (a, b, c) = (conn(1), conn(2), conn(3));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E2, room(1), json!({}));

    assert_eq!(
        s.join(c, E3, room(1), json!({})),
        [Effect::Refuse {
            edge: E3,
            conn: c,
            room: room(1),
            error: ProtocolError::RoomFull,
        }]
    );
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(room_of(&s.rooms, c), None);
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 2)));

    // Other rooms have their own limit.
    assert!(matches!(
        s.join(c, E3, room(2), json!({}))[..],
        [Effect::Deliver { .. }]
    ));
    s.leave(c, E3, room(2));

    // A seat frees up when someone leaves; the refused joiner can then get in.
    s.leave(a, E1, room(1));
    let effects = s.join(c, E3, room(1), json!({}));
    assert_eq!(
        deliveries(&effects),
        [
            (E3, vec![c], joined(c, &[(b, stored(None, None))])),
            (
                E2,
                vec![b],
                ServerMessage::NewPeer {
                    peer_id: c,
                    status: Map::new()
                }
            ),
        ]
    );
}

#[test]
fn max_room_size_zero_means_unlimited() {
    let mut s = Script::with(RoomsConfig {
        max_room_size: 0,
        ..RoomsConfig::default()
    });
    for n in 0..200u8 {
        let effects = s.join(conn(n), EdgeId(u32::from(n % 4)), room(1), json!({}));
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Refuse { .. })),
            "join {n} refused: {effects:?}"
        );
    }
    assert_eq!(s.rooms.room_size(room(1)), Some((200, 200)));
}

#[test]
fn a_lost_edge_takes_exactly_its_members_and_the_rest_hear_of_each() {
    let mut s = Script::new();
    let (a, b, c, d) = (conn(1), conn(2), conn(3), conn(4));
    let (e, f, g) = (conn(5), conn(6), conn(7));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(1), json!({}));
    s.join(d, E3, room(1), json!({}));
    s.join(e, E1, room(2), json!({}));
    s.join(f, E1, room(2), json!({}));
    s.join(g, E2, room(3), json!({}));

    let effects = s.edge_lost(E1);

    // Each survivor of room 1 hears of a and c once; nothing goes to the lost edge itself, and
    // room 2 closes silently.
    let mut got = deliveries(&effects);
    got.sort_by_key(|(edge, to, m)| (*edge, to.clone(), format!("{m:?}")));
    let mut want = vec![
        (E2, vec![b], left(a)),
        (E2, vec![b], left(c)),
        (E3, vec![d], left(a)),
        (E3, vec![d], left(c)),
    ];
    want.sort_by_key(|(edge, to, m)| (*edge, to.clone(), format!("{m:?}")));
    assert_eq!(got, want);
    assert!(
        effects
            .iter()
            .all(|e| !matches!(e, Effect::Deliver { edge, .. } if *edge == E1)),
        "the lost edge's own connections are gone: {effects:?}"
    );
    // Room 1 lost a before c, so b and d hear of them in that order.
    let for_b: Vec<_> = deliveries(&effects)
        .into_iter()
        .filter(|(_, to, _)| to.contains(&b))
        .map(|(_, _, m)| m)
        .collect();
    assert_eq!(for_b, [left(a), left(c)]);

    assert_eq!(members(&s.rooms, room(1)), [b, d]);
    assert_eq!(members(&s.rooms, room(2)), []);
    assert_eq!(members(&s.rooms, room(3)), [g]);
    for gone in [a, c, e, f] {
        assert_eq!(room_of(&s.rooms, gone), None);
    }
    assert_eq!((s.rooms.room_count(), s.rooms.member_count()), (2, 3));
    let stats = stat_effects(&effects);
    assert_eq!(
        stats
            .iter()
            .filter(|e| matches!(e, Effect::MemberLeft { .. }))
            .count(),
        4
    );
    assert_eq!(
        stats
            .iter()
            .filter(|e| matches!(e, Effect::RoomClosed { .. }))
            .collect::<Vec<_>>(),
        [&Effect::RoomClosed { peak: 2 }]
    );

    // Losing it again, or losing an edge that holds nobody, does nothing.
    assert_eq!(s.edge_lost(E1), []);
    assert_eq!(s.edge_lost(EdgeId(99)), []);
}

#[test]
fn room_events_are_batched_once_per_edge_in_join_order() {
    let mut s = Script::new();
    let (a, b, c, d, e) = (conn(1), conn(2), conn(3), conn(4), conn(5));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(1), json!({}));
    s.join(d, E2, room(1), json!({}));
    s.join(e, E3, room(1), json!({}));

    let f = conn(6);
    let effects = s.join(f, E1, room(1), json!({"name": "Fay"}));
    let new_peer = ServerMessage::NewPeer {
        peer_id: f,
        status: map(json!({"name": "Fay"})),
    };
    let mut rest = deliveries(&effects[1..]);
    rest.sort_by_key(|(edge, _, _)| *edge);
    assert_eq!(
        rest,
        [
            (E1, vec![a, c], new_peer.clone()),
            (E2, vec![b, d], new_peer.clone()),
            (E3, vec![e], new_peer),
        ]
    );
    assert_eq!(
        effects.len(),
        4,
        "one joined_room and one new_peer per edge"
    );

    let effects = s.leave(a, E1, room(1));
    let mut got = deliveries(&effects);
    got.sort_by_key(|(edge, _, _)| *edge);
    assert_eq!(
        got,
        [
            (E1, vec![c, f], left(a)),
            (E2, vec![b, d], left(a)),
            (E3, vec![e], left(a)),
        ]
    );
}

#[test]
fn peaks_and_connection_times_are_counted_in_the_hour_they_end() {
    let mut s = Script::new();
    let (a, b, c) = (conn(1), conn(2), conn(3));
    s.at(0).join(a, E1, room(1), json!({}));
    s.at(59_999).join(b, E1, room(1), json!({}));
    s.at(MINUTE).join(c, E2, room(1), json!({}));
    assert_eq!(s.rooms.room_size(room(1)), Some((3, 3)));

    // c leaves 59.999 s after joining: zero whole minutes.
    let effects = s.at(MINUTE + 59_999).leave(c, E2, room(1));
    assert_eq!(
        stat_effects(&effects),
        [Effect::MemberLeft {
            minutes: 0,
            millis: 59_999
        }]
    );
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 3)), "the peak stays");

    // b leaves 2 min 0.001 s after joining: two whole minutes.
    let effects = s.at(3 * MINUTE).leave(b, E1, room(1));
    assert_eq!(
        stat_effects(&effects),
        [Effect::MemberLeft {
            minutes: 2,
            millis: 120_001
        }]
    );

    // Growing again to a smaller size does not lower the peak.
    let d = conn(4);
    s.join(d, E2, room(1), json!({}));
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 3)));
    let effects = s.at(4 * MINUTE).leave(d, E2, room(1));
    assert_eq!(
        stat_effects(&effects),
        [Effect::MemberLeft {
            minutes: 1,
            millis: MINUTE
        }]
    );

    // The room closes in hour 2, though it opened in hour 0.
    let effects = s.at(2 * HOUR + 5 * MINUTE).leave(a, E1, room(1));
    assert_eq!(
        stat_effects(&effects),
        [
            Effect::MemberLeft {
                minutes: 125,
                millis: 2 * HOUR + 5 * MINUTE
            },
            Effect::RoomClosed { peak: 3 }
        ]
    );
    assert_eq!(s.rooms.room_size(room(1)), None);

    let hours = s.rooms.stats().hours();
    assert_eq!(hours.keys().copied().collect::<Vec<_>>(), [0, 2]);
    assert!(hours[&0].room_peaks.is_empty());
    assert_eq!(
        hours[&0].connection_time,
        BTreeMap::from([(0, 1), (1, 1), (2, 1)])
    );
    assert_eq!(hours[&2].room_peaks, BTreeMap::from([(3, 1)]));
    assert_eq!(hours[&2].connection_time, BTreeMap::from([(125, 1)]));
}

#[test]
fn rooms_with_the_same_peak_add_up() {
    let mut s = Script::new();
    for r in 1..=3u8 {
        let (x, y) = (conn(r * 10), conn(r * 10 + 1));
        s.at(HOUR).join(x, E1, room(r), json!({}));
        s.join(y, E2, room(r), json!({}));
        s.leave(x, E1, room(r));
        if r < 3 {
            s.leave(y, E2, room(r));
        }
    }
    let solo = conn(99);
    s.join(solo, E1, room(9), json!({}));
    s.at(HOUR + 3 * MINUTE).leave(solo, E1, room(9));

    let hours = s.rooms.stats().hours();
    assert_eq!(hours[&1].room_peaks, BTreeMap::from([(1, 1), (2, 2)]));
    assert_eq!(hours[&1].connection_time, BTreeMap::from([(0, 5), (3, 1)]));
    assert_eq!(s.rooms.room_count(), 1, "room 3 is still open");
}

#[test]
fn statistics_keep_only_the_configured_hours() {
    let mut s = Script::with(RoomsConfig {
        stats_retention_hours: 2,
        ..RoomsConfig::default()
    });
    for hour in 0..5u8 {
        s.at(u64::from(hour) * HOUR)
            .join(conn(hour), E1, room(hour), json!({}));
        s.leave(conn(hour), E1, room(hour));
    }
    assert_eq!(
        s.rooms.stats().hours().keys().copied().collect::<Vec<_>>(),
        [3, 4]
    );
}

#[test]
fn clock_stepping_back_counts_zero_minutes() {
    let mut s = Script::new();
    s.at(10 * MINUTE).join(conn(1), E1, room(1), json!({}));
    let effects = s.at(MINUTE).leave(conn(1), E1, room(1));
    assert_eq!(
        stat_effects(&effects),
        [
            Effect::MemberLeft {
                minutes: 0,
                millis: 0
            },
            Effect::RoomClosed { peak: 1 }
        ]
    );
}

#[test]
fn queries_reflect_membership() {
    let mut s = Script::new();
    let (a, b, c, outsider) = (conn(7), conn(2), conn(5), conn(4));
    assert_eq!((s.rooms.room_count(), s.rooms.member_count()), (0, 0));
    s.join(a, E1, room(1), json!({}));
    s.join(b, E2, room(1), json!({}));
    s.join(c, E1, room(2), json!({}));

    assert_eq!((s.rooms.room_count(), s.rooms.member_count()), (2, 3));
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(members(&s.rooms, room(2)), [c]);
    assert_eq!(members(&s.rooms, room(3)), []);
    assert_eq!(room_of(&s.rooms, a), Some(room(1)));
    assert_eq!(room_of(&s.rooms, c), Some(room(2)));
    assert_eq!(room_of(&s.rooms, outsider), None);
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 2)));
    assert_eq!(s.rooms.room_size(room(3)), None);

    s.leave(b, E2, room(1));
    assert_eq!(members(&s.rooms, room(1)), [a]);
    assert_eq!(room_of(&s.rooms, b), None);
    assert_eq!((s.rooms.room_count(), s.rooms.member_count()), (2, 2));
}

#[test]
fn commands_name_their_room() {
    let c = conn(1);
    let join = Command::Join {
        conn: c,
        edge: E1,
        room: room(4),
        status: Status::default(),
        tenant: None,
    };
    assert_eq!(join.room(), Some(room(4)));
    let leave = Command::Leave {
        conn: c,
        edge: E1,
        room: room(5),
    };
    assert_eq!(leave.room(), Some(room(5)));
    assert_eq!(Command::EdgeLost { edge: E1 }.room(), None);
}

#[test]
fn a_closed_room_can_be_opened_again_and_a_leaver_can_rejoin() {
    let mut s = Script::new();
    let (a, b) = (conn(1), conn(2));
    s.join(a, E1, room(1), json!({"name": "Ann"}));
    s.join(b, E1, room(1), json!({}));
    s.leave(a, E1, room(1));

    // a left and comes back: it is a fresh joiner again.
    let effects = s.join(a, E2, room(1), json!({"name": "Ann 2"}));
    assert_eq!(
        deliveries(&effects),
        [
            (E2, vec![a], joined(a, &[(b, stored(None, None))])),
            (
                E1,
                vec![b],
                ServerMessage::NewPeer {
                    peer_id: a,
                    status: map(json!({"name": "Ann 2"}))
                }
            ),
        ]
    );
    s.leave(a, E2, room(1));
    s.leave(b, E1, room(1));
    assert_eq!(s.rooms.room_count(), 0);

    // A new life of the room: no old members, and a fresh peak.
    let c = conn(3);
    assert_eq!(
        s.join(c, E1, room(1), json!({})),
        [deliver(E1, room(1), &[c], joined(c, &[]))]
    );
    assert_eq!(s.rooms.room_size(room(1)), Some((1, 1)));
    let effects = s.leave(c, E1, room(1));
    assert_eq!(
        stat_effects(&effects),
        [
            Effect::MemberLeft {
                minutes: 0,
                millis: 0
            },
            Effect::RoomClosed { peak: 1 }
        ]
    );
    let hours = s.rooms.stats().hours();
    assert_eq!(hours[&0].room_peaks, BTreeMap::from([(1, 1), (2, 1)]));
}

fn record(c: ConnId, edge: EdgeId, r: RoomKey, name: &str, joined_at_ms: u64) -> MemberRecord {
    MemberRecord {
        conn: c,
        edge,
        room: r,
        status: stored(Some(name), None),
        joined_at_ms,
        tenant: None,
        room_name: None,
    }
}

/// A router taking over a slot restores the members the edges report, silently (their clients
/// already know each other), with their join times, so later joiners and statistics see them.
#[test]
fn restored_members_are_silent_and_complete() {
    let mut s = Script::new();
    let (a, b, c) = (conn(1), conn(2), conn(3));
    assert!(s.rooms.restore(record(a, E1, room(1), "A", 0)));
    assert!(s.rooms.restore(record(b, E2, room(1), "B", 0)));
    assert!(
        !s.rooms.restore(record(b, E2, room(1), "B", 0)),
        "twice is once"
    );
    s.rooms.restore_peak(room(1), 5);
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(s.rooms.room_size(room(1)), Some((2, 5)));

    s.at(3 * MINUTE);
    let effects = s.join(c, E1, room(1), json!({}));
    assert_eq!(
        effects[0],
        deliver(
            E1,
            room(1),
            &[c],
            joined(
                c,
                &[(a, stored(Some("A"), None)), (b, stored(Some("B"), None))]
            )
        )
    );
    let effects = s.leave(a, E1, room(1));
    assert!(effects.contains(&Effect::MemberLeft {
        minutes: 3,
        millis: 3 * MINUTE
    }));
    assert_eq!(s.rooms.records().len(), 2);
}

/// An edge that was cut off re-announces its members: those the router lost come back and the rest
/// of the room hears `new_peer`; those it still has change nothing.
#[test]
fn rejoin_adds_only_what_was_lost() {
    let mut s = Script::new();
    let (a, b) = (conn(1), conn(2));
    s.join(a, E1, room(1), json!({"name": "A"}));
    s.join(b, E2, room(1), json!({"name": "B"}));
    s.edge_lost(E2);
    assert_eq!(members(&s.rooms, room(1)), [a]);

    let rejoin = Command::Rejoin {
        member: record(b, E2, room(1), "B", 0),
    };
    let effects = s.rooms.apply(UnixMillis(0), rejoin.clone());
    assert_eq!(
        effects,
        [deliver(
            E1,
            room(1),
            &[a],
            ServerMessage::NewPeer {
                peer_id: b,
                status: map(json!({"name": "B"}))
            }
        )]
    );
    assert_eq!(members(&s.rooms, room(1)), [a, b]);
    assert_eq!(s.rooms.apply(UnixMillis(0), rejoin), [], "already there");

    // The edge is the ground truth: a member the router has in another room moves.
    let moved = Command::Rejoin {
        member: record(a, E1, room(2), "A", 0),
    };
    let effects = s.rooms.apply(UnixMillis(0), moved);
    assert!(effects.contains(&deliver(
        E2,
        room(1),
        &[b],
        ServerMessage::PeerLeft { sender_id: a }
    )));
    assert_eq!(room_of(&s.rooms, a), Some(room(2)));
}
