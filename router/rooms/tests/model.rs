//! Random command sequences against a reference model made of plain sets and lists.
//!
//! After every step it checks that
//! - `Rooms`' queries agree with the model;
//! - the effects are exactly the model's messages, each recipient once, batched once per
//!   (edge, message) with recipients of that edge in join order, the joiner's `joined_room` first;
//! - a simulated client per connection, applying only the messages delivered to it, always sees
//!   its room's true membership and statuses, and its first message in each membership is
//!   `joined_room`;
//! - a refused command yields a single `Refuse` and changes nothing, an ignored one yields nothing;
//! - the statistics effects and the hourly statistics match the model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use serde_json::{Map, Value, json};
use switchboard_proto::{
    ConnId, EdgeId, PeerEntry, ProtocolError, RoomKey, ServerMessage, Status, StatusRules,
    StoredStatus,
};
use switchboard_rooms::{Command, Effect, HourStats, Rooms, RoomsConfig, UnixMillis};

const CONNS: usize = 7;
const ROOMS: u8 = 3;
const EDGES: usize = 3;
const MINUTE: u64 = 60_000;

fn conn(i: usize) -> ConnId {
    static IDS: LazyLock<Vec<ConnId>> = LazyLock::new(|| {
        // Byte order unrelated to index order, so join order cannot be confused with id order.
        (0..CONNS as u8)
            .map(|i| ConnId::from_random_bytes([i.wrapping_mul(101).wrapping_add(7); 16]))
            .collect()
    });
    IDS[i]
}

fn index(id: ConnId) -> usize {
    (0..CONNS).find(|i| conn(*i) == id).unwrap()
}

/// Each connection lives on one edge for its whole life, as a socket does.
fn edge_of(i: usize) -> EdgeId {
    EdgeId((i % EDGES) as u32)
}

fn room(r: u8) -> RoomKey {
    RoomKey::from_bytes([r.wrapping_mul(53); 16])
}

/// A small pool of valid statuses covering extras, partial updates and a `null` field.
fn status_value(k: u8) -> Option<Value> {
    match k % 7 {
        0 => None,
        1 => Some(json!({})),
        2 => Some(json!({"name": "Ann"})),
        3 => Some(json!({"user_agent": "chrome"})),
        4 => Some(json!({"name": "Zoë 李", "user_agent": "safari", "mood": "busy"})),
        5 => Some(json!({"mood": ["away", 1]})),
        _ => Some(json!({"name": "Bo", "user_agent": null})),
    }
}

fn status(k: u8) -> Status {
    Status::validate(status_value(k), &StatusRules::default()).unwrap()
}

/// What a client can learn from a relayed status: the fields palava stores.
fn stored_of(map: &Map<String, Value>) -> StoredStatus {
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    StoredStatus {
        name: text("name"),
        user_agent: text("user_agent"),
    }
}

fn merged(mut old: StoredStatus, update: &Map<String, Value>) -> StoredStatus {
    let new = stored_of(update);
    if new.name.is_some() {
        old.name = new.name;
    }
    if new.user_agent.is_some() {
        old.user_agent = new.user_agent;
    }
    old
}

#[derive(Debug, Clone)]
enum Op {
    Join { c: usize, r: u8, s: u8 },
    Leave { c: usize, r: u8 },
    Update { c: usize, r: u8, s: u8 },
    EdgeLost { e: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CONNS;
    let r = 0..ROOMS;
    prop_oneof![
        5 => (c.clone(), r.clone(), any::<u8>()).prop_map(|(c, r, s)| Op::Join { c, r, s }),
        3 => (c.clone(), r.clone()).prop_map(|(c, r)| Op::Leave { c, r }),
        3 => (c, r, any::<u8>()).prop_map(|(c, r, s)| Op::Update { c, r, s }),
        1 => (0..EDGES).prop_map(|e| Op::EdgeLost { e }),
    ]
}

fn command(op: &Op) -> Command {
    match *op {
        Op::Join { c, r, s } => Command::Join {
            conn: conn(c),
            edge: edge_of(c),
            room: room(r),
            status: status(s),
            tenant: None,
        },
        Op::Leave { c, r } => Command::Leave {
            conn: conn(c),
            edge: edge_of(c),
            room: room(r),
        },
        Op::Update { c, r, s } => Command::UpdateStatus {
            conn: conn(c),
            edge: edge_of(c),
            room: room(r),
            status: status(s),
        },
        Op::EdgeLost { e } => Command::EdgeLost {
            edge: EdgeId(e as u32),
        },
    }
}

/// The reference: who is where, in which order, with which stored status, and the statistics.
#[derive(Debug, Default)]
struct Model {
    max_room_size: usize,
    room_of: BTreeMap<usize, u8>,
    /// Members of each open room, in join order.
    order: BTreeMap<u8, Vec<usize>>,
    peak: BTreeMap<u8, usize>,
    stored: BTreeMap<usize, StoredStatus>,
    joined_at: BTreeMap<usize, u64>,
    hours: BTreeMap<u64, HourStats>,
}

/// What the model says a command must produce.
#[derive(Debug, Default)]
struct Expected {
    refused: Option<Effect>,
    /// Every (recipient, message), each exactly once.
    messages: Vec<(ConnId, ServerMessage)>,
    /// Connections that left their room.
    removed: Vec<usize>,
    minutes: Vec<u64>,
    peaks: Vec<u64>,
}

impl Model {
    fn apply(&mut self, now: u64, op: &Op) -> Expected {
        let mut out = Expected::default();
        match *op {
            Op::Join { c, r, s } => {
                let size = self.order.get(&r).map_or(0, Vec::len);
                let refuse = |error| Effect::Refuse {
                    edge: edge_of(c),
                    conn: conn(c),
                    room: room(r),
                    error,
                };
                if self.room_of.get(&c) == Some(&r) {
                    // A retried join of the room it is in: a no-op (nothing refused, nothing sent).
                } else if self.room_of.contains_key(&c) {
                    out.refused = Some(refuse(ProtocolError::AlreadyJoined));
                } else if self.max_room_size > 0 && size >= self.max_room_size {
                    out.refused = Some(refuse(ProtocolError::RoomFull));
                } else {
                    let sent = status(s);
                    let others = self.order.entry(r).or_default();
                    let peers = others
                        .iter()
                        .map(|o| PeerEntry {
                            peer_id: conn(*o),
                            status: self.stored[o].clone(),
                        })
                        .collect();
                    out.messages.push((
                        conn(c),
                        ServerMessage::JoinedRoom {
                            own_id: conn(c),
                            peers,
                        },
                    ));
                    for o in others.iter() {
                        out.messages.push((
                            conn(*o),
                            ServerMessage::NewPeer {
                                peer_id: conn(c),
                                status: sent.as_map().clone(),
                            },
                        ));
                    }
                    others.push(c);
                    let len = others.len();
                    let peak = self.peak.entry(r).or_default();
                    *peak = (*peak).max(len);
                    self.room_of.insert(c, r);
                    self.stored.insert(c, sent.stored());
                    self.joined_at.insert(c, now);
                }
            }
            Op::Leave { c, r } => {
                if self.room_of.get(&c) == Some(&r) {
                    self.remove(now, c, None, &mut out);
                }
            }
            Op::Update { c, r, s } => {
                if self.room_of.get(&c) == Some(&r) {
                    let sent = status(s);
                    for o in &self.order[&r] {
                        out.messages.push((
                            conn(*o),
                            ServerMessage::PeerUpdatedStatus {
                                sender_id: conn(c),
                                status: sent.as_map().clone(),
                            },
                        ));
                    }
                    let old = self.stored.remove(&c).unwrap_or_default();
                    self.stored.insert(c, merged(old, sent.as_map()));
                } else {
                    out.refused = Some(Effect::Refuse {
                        edge: edge_of(c),
                        conn: conn(c),
                        room: room(r),
                        error: ProtocolError::NotInRoom,
                    });
                }
            }
            Op::EdgeLost { e } => {
                let lost: Vec<usize> = self
                    .room_of
                    .keys()
                    .copied()
                    .filter(|c| edge_of(*c) == EdgeId(e as u32))
                    .collect();
                for c in lost {
                    self.remove(now, c, Some(EdgeId(e as u32)), &mut out);
                }
            }
        }
        out
    }

    fn remove(&mut self, now: u64, c: usize, gone_edge: Option<EdgeId>, out: &mut Expected) {
        let r = self.room_of.remove(&c).unwrap();
        let members = self.order.get_mut(&r).unwrap();
        members.retain(|m| *m != c);
        for o in members.iter() {
            // Survivors only: the lost edge's connections are gone too.
            if Some(edge_of(*o)) != gone_edge {
                out.messages
                    .push((conn(*o), ServerMessage::PeerLeft { sender_id: conn(c) }));
            }
        }
        let hour = now / (60 * MINUTE);
        let minutes = now.saturating_sub(self.joined_at.remove(&c).unwrap()) / MINUTE;
        *self
            .hours
            .entry(hour)
            .or_default()
            .connection_time
            .entry(minutes)
            .or_default() += 1;
        out.minutes.push(minutes);
        if members.is_empty() {
            self.order.remove(&r);
            let peak = self.peak.remove(&r).unwrap() as u64;
            *self
                .hours
                .entry(hour)
                .or_default()
                .room_peaks
                .entry(peak)
                .or_default() += 1;
            out.peaks.push(peak);
        }
        self.stored.remove(&c);
        out.removed.push(c);
    }
}

/// What one client believes about its room, built only from the messages it received.
#[derive(Debug, Clone, PartialEq)]
struct View {
    statuses: BTreeMap<ConnId, StoredStatus>,
}

/// Applies the deliveries to the recipients' views, checking what a palava client relies on.
fn simulate(
    views: &mut BTreeMap<ConnId, Option<View>>,
    model: &Model,
    effects: &[Effect],
) -> TestCaseResult {
    for effect in effects {
        let Effect::Deliver {
            edge,
            room: key,
            to,
            message,
        } = effect
        else {
            continue;
        };
        for recipient in to {
            let i = index(*recipient);
            prop_assert_eq!(edge_of(i), *edge, "delivered through the wrong edge");
            prop_assert_eq!(
                model.room_of.get(&i).map(|r| room(*r)),
                Some(*key),
                "a message about a room reached a connection not in it"
            );
            let view = views.entry(*recipient).or_insert(None);
            match message {
                ServerMessage::JoinedRoom { own_id, peers } => {
                    prop_assert!(view.is_none(), "joined_room twice in one membership");
                    prop_assert_eq!(own_id, recipient);
                    let mut statuses: BTreeMap<_, _> = peers
                        .iter()
                        .map(|p| (p.peer_id, p.status.clone()))
                        .collect();
                    prop_assert_eq!(statuses.len(), peers.len(), "a peer listed twice");
                    prop_assert!(!statuses.contains_key(own_id), "listed as its own peer");
                    // The client knows its own status: it just sent it.
                    statuses.insert(*own_id, model.stored[&i].clone());
                    *view = Some(View { statuses });
                }
                other => {
                    let Some(view) = view.as_mut() else {
                        return Err(TestCaseError::fail(format!(
                            "{recipient:?} got {other:?} before joined_room"
                        )));
                    };
                    match other {
                        ServerMessage::NewPeer { peer_id, status } => {
                            let before = view.statuses.insert(*peer_id, stored_of(status));
                            prop_assert!(before.is_none(), "new_peer for a known peer");
                        }
                        ServerMessage::PeerLeft { sender_id } => {
                            prop_assert!(view.statuses.remove(sender_id).is_some());
                        }
                        ServerMessage::PeerUpdatedStatus { sender_id, status } => {
                            let old = view.statuses.remove(sender_id);
                            prop_assert!(old.is_some(), "status of an unknown peer");
                            view.statuses
                                .insert(*sender_id, merged(old.unwrap_or_default(), status));
                        }
                        unexpected => {
                            return Err(TestCaseError::fail(format!(
                                "not a room event: {unexpected:?}"
                            )));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Whether two lists hold the same items, each as often, in any order.
fn same_multiset<T: PartialEq>(mut left: Vec<T>, right: &[T]) -> bool {
    for item in right {
        match left.iter().position(|l| l == item) {
            Some(i) => {
                left.swap_remove(i);
            }
            None => return false,
        }
    }
    left.is_empty()
}

fn check_effects(model: &Model, op: &Op, expected: Expected, effects: &[Effect]) -> TestCaseResult {
    if let Some(refusal) = expected.refused {
        prop_assert_eq!(effects, &[refusal][..], "a refusal is a lone Refuse");
        return Ok(());
    }
    prop_assert!(
        !effects.iter().any(|e| matches!(e, Effect::Refuse { .. })),
        "refused a valid command: {:?}",
        effects
    );

    // Exactly the model's messages, each recipient once.
    let mut delivered = Vec::new();
    let mut batches: Vec<(EdgeId, &ServerMessage)> = Vec::new();
    for effect in effects {
        if let Effect::Deliver {
            edge, to, message, ..
        } = effect
        {
            prop_assert!(!to.is_empty(), "a delivery to nobody");
            let key = (*edge, message);
            prop_assert!(!batches.contains(&key), "one message twice to one edge");
            batches.push(key);
            // Recipients of one batch come in join order.
            let order: Vec<ConnId> = model
                .room_of
                .get(&index(to[0]))
                .map(|r| model.order[r].iter().map(|i| conn(*i)).collect())
                .unwrap_or_default();
            let positions: Vec<Option<usize>> = to
                .iter()
                .map(|c| order.iter().position(|o| o == c))
                .collect();
            prop_assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "recipients {:?} not in join order {:?}",
                to,
                order
            );
            delivered.extend(to.iter().map(|c| (*c, message.clone())));
        }
    }
    prop_assert!(
        same_multiset(delivered.clone(), &expected.messages),
        "delivered {:?}, expected {:?}",
        delivered,
        expected.messages
    );

    if let Op::Join { c, .. } = op
        && !effects.is_empty()
    {
        let first_joined = matches!(
            effects.first(),
            Some(Effect::Deliver { to, message: ServerMessage::JoinedRoom { .. }, .. })
                if to == &[conn(*c)]
        );
        prop_assert!(first_joined, "joined_room must come first: {:?}", effects);
    }

    let mut minutes: Vec<u64> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::MemberLeft { minutes, .. } => Some(*minutes),
            _ => None,
        })
        .collect();
    let mut peaks: Vec<u64> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::RoomClosed { peak } => Some(*peak),
            _ => None,
        })
        .collect();
    let (mut want_minutes, mut want_peaks) = (expected.minutes, expected.peaks);
    for v in [&mut minutes, &mut peaks, &mut want_minutes, &mut want_peaks] {
        v.sort_unstable();
    }
    prop_assert_eq!(minutes, want_minutes);
    prop_assert_eq!(peaks, want_peaks);
    Ok(())
}

fn check_queries(rooms: &Rooms, model: &Model) -> TestCaseResult {
    // Everything the router hands around about membership comes from `records()`: each member once,
    // in its room, in join order.
    let records = rooms.records();
    for i in 0..CONNS {
        let found: Vec<RoomKey> = records
            .iter()
            .filter(|m| m.conn == conn(i))
            .map(|m| m.room)
            .collect();
        let want: Vec<RoomKey> = model
            .room_of
            .get(&i)
            .map(|r| room(*r))
            .into_iter()
            .collect();
        prop_assert_eq!(found, want);
    }
    for r in 0..ROOMS {
        let members: Vec<ConnId> = model
            .order
            .get(&r)
            .map(|m| m.iter().map(|i| conn(*i)).collect())
            .unwrap_or_default();
        let found: Vec<ConnId> = records
            .iter()
            .filter(|m| m.room == room(r))
            .map(|m| m.conn)
            .collect();
        prop_assert_eq!(found, members);
        let size = model.order.get(&r).map(|m| (m.len(), model.peak[&r]));
        prop_assert_eq!(rooms.room_size(room(r)), size);
    }
    prop_assert_eq!(rooms.room_count(), model.order.len());
    prop_assert_eq!(rooms.member_count(), model.room_of.len());
    prop_assert_eq!(rooms.stats().hours(), &model.hours);
    Ok(())
}

fn check_views(views: &BTreeMap<ConnId, Option<View>>, model: &Model) -> TestCaseResult {
    for i in 0..CONNS {
        let view = views.get(&conn(i)).cloned().flatten();
        let truth = model.room_of.get(&i).map(|r| View {
            statuses: model.order[r]
                .iter()
                .map(|m| (conn(*m), model.stored[m].clone()))
                .collect(),
        });
        prop_assert_eq!(view, truth, "the view of connection {} diverged", i);
    }
    Ok(())
}

fn run(max_room_size: usize, steps: &[(u64, Op)]) -> TestCaseResult {
    let mut rooms = Rooms::new(RoomsConfig {
        max_room_size,
        ..RoomsConfig::default()
    });
    let mut model = Model {
        max_room_size,
        ..Model::default()
    };
    let mut views: BTreeMap<ConnId, Option<View>> = BTreeMap::new();
    let mut now = 0;
    for (dt, op) in steps {
        now += dt;
        let effects = rooms.apply(UnixMillis(now), command(op));
        let expected = model.apply(now, op);
        let removed = expected.removed.clone();
        check_effects(&model, op, expected, &effects)?;
        simulate(&mut views, &model, &effects)?;
        // A client knows when it has left: it asked to, or its socket is gone.
        for c in removed {
            views.insert(conn(c), None);
        }
        check_queries(&rooms, &model)?;
        check_views(&views, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        // The default ChaCha generator is a sizeable part of a debug run; this needs no crypto.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rooms_agree_with_the_model_and_every_client_converges(
        max_room_size in prop_oneof![Just(0usize), Just(2), Just(3)],
        steps in prop::collection::vec((0..50 * MINUTE, op()), 1..60),
    ) {
        run(max_room_size, &steps)?;
    }
}
