//! The registry's rules, driven directly: who hears which room event, the view's idempotency and how
//! joins add to it, what a reconciling router is told, and `send_to_peer`'s checks in protocol order.

use serde_json::{Map, Value, json};
use switchboard_proto::bus::{MemberRecord, ResyncReply};
use switchboard_proto::{ConnId, EdgeId, ProtocolError, RoomKey, ServerMessage, StoredStatus};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::metrics::Metrics;
use crate::queue;

const EDGE: EdgeId = EdgeId(1);

/// A connection of this edge.
fn local(n: u8) -> ConnId {
    ConnId::for_edge(EDGE, [n; 16])
}

/// A connection of another edge.
fn remote(n: u8) -> ConnId {
    ConnId::for_edge(EdgeId(2), [n; 16])
}

fn room(n: u8) -> RoomKey {
    RoomKey::from_bytes([n; 16])
}

fn registry() -> Registry {
    Registry::new(EDGE, Metrics::new().expect("metrics register"))
}

/// A registered connection, with the receiving end of its queue.
struct Client {
    id: ConnId,
    rx: queue::Receiver,
}

impl Client {
    fn connect(registry: &Registry, n: u8) -> Client {
        let id = local(n);
        let limits = queue::Limits {
            messages: 64,
            bytes: 1 << 20,
        };
        let (tx, rx) = queue::bounded(limits, registry.shared.metrics.queue.clone());
        registry.register(id, Outlet::new(tx, CancellationToken::new()));
        Client { id, rx }
    }

    /// The events queued for this client since the last call.
    fn events(&mut self) -> Vec<Value> {
        std::iter::from_fn(|| self.rx.try_recv())
            .map(|text| serde_json::from_str(&text).expect("JSON"))
            .collect()
    }

    /// Starts joining `room`.
    fn begin_join(&self, registry: &Registry, room: RoomKey) {
        registry
            .begin_join(self.id, room, StoredStatus::default(), None, None)
            .expect("not in a room");
    }

    /// Joins `room`, where the router announces `peers`; drops the `joined_room` it gets.
    fn join(&mut self, registry: &Registry, room: RoomKey, peers: &[ConnId]) {
        self.begin_join(registry, room);
        registry.deliver(room, &[self.id], joined_room(self.id, peers));
        let events = self.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["event"], "joined_room");
    }
}

fn joined_room(own_id: ConnId, peers: &[ConnId]) -> ServerMessage {
    ServerMessage::JoinedRoom {
        own_id,
        peers: peers
            .iter()
            .map(|&peer_id| switchboard_proto::PeerEntry {
                peer_id,
                status: StoredStatus::default(),
            })
            .collect(),
    }
}

fn new_peer(peer_id: ConnId) -> ServerMessage {
    ServerMessage::NewPeer {
        peer_id,
        status: Map::new(),
    }
}

fn peer_left(sender_id: ConnId) -> ServerMessage {
    ServerMessage::PeerLeft { sender_id }
}

fn status_update(sender_id: ConnId) -> ServerMessage {
    ServerMessage::PeerUpdatedStatus {
        sender_id,
        status: Map::new(),
    }
}

/// The events of the delivered messages, for comparing.
fn names(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?"))
        .collect()
}

/// Where a connection stands before a room event for room R arrives.
#[derive(Debug, Clone, Copy)]
enum Before {
    Registered,
    JoiningR,
    JoiningOther,
    JoinedR,
    JoinedOther,
    /// Joined R, then left it.
    LeftR,
    /// Asked to join R, then left before the router's `joined_room` came.
    AbandonedR,
}

/// `joined_room` reaches only a connection `Joining` that room; every other room event only
/// connections `Joined` to it. Nothing reaches a connection after it left, even when the router
/// still counts it as a member.
#[test]
fn room_events_reach_only_the_members_of_that_room() {
    const R: u8 = 1;
    const OTHER: u8 = 2;
    let (peer, newcomer) = (remote(50), remote(51));
    // Expected deliveries of: joined_room, new_peer, peer_left, peer_updated_status.
    let table = [
        (Before::Registered, [false, false, false, false]),
        (Before::JoiningR, [true, false, false, false]),
        (Before::JoiningOther, [false, false, false, false]),
        (Before::JoinedR, [false, true, true, true]),
        (Before::JoinedOther, [false, false, false, false]),
        (Before::LeftR, [false, false, false, false]),
        (Before::AbandonedR, [false, false, false, false]),
    ];
    for (before, expected) in table {
        let events = [
            ("joined_room", joined_room(local(9), &[peer])),
            ("new_peer", new_peer(newcomer)),
            ("peer_left", peer_left(peer)),
            ("peer_updated_status", status_update(peer)),
        ];
        for ((name, mut message), want) in events.into_iter().zip(expected) {
            // A fresh registry for each event: one event must not change what the next one sees.
            let registry = registry();
            let mut client = Client::connect(&registry, 9);
            match before {
                Before::Registered => {}
                Before::JoiningR => client.begin_join(&registry, room(R)),
                Before::JoiningOther => client.begin_join(&registry, room(OTHER)),
                Before::JoinedR => client.join(&registry, room(R), &[peer]),
                Before::JoinedOther => client.join(&registry, room(OTHER), &[peer]),
                Before::LeftR => {
                    client.join(&registry, room(R), &[peer]);
                    registry.leave(client.id);
                }
                Before::AbandonedR => {
                    client.begin_join(&registry, room(R));
                    registry.leave(client.id);
                }
            }
            if let ServerMessage::JoinedRoom { own_id, .. } = &mut message {
                *own_id = client.id;
            }
            registry.deliver(room(R), &[client.id], message);
            let got = client.events();
            let want: Vec<&str> = if want { vec![name] } else { vec![] };
            assert_eq!(names(&got), want, "{name} to a connection {before:?}");
        }
    }
}

/// A `joined_room` makes its joiner a member; one that comes after the joiner left does not.
#[test]
fn joined_room_changes_membership_only_for_a_pending_join() {
    let registry = registry();
    let mut client = Client::connect(&registry, 1);
    client.begin_join(&registry, room(1));
    assert_eq!(registry.membership(client.id), Membership::Joining(room(1)));
    registry.deliver(room(1), &[client.id], joined_room(client.id, &[]));
    assert_eq!(registry.membership(client.id), Membership::Joined(room(1)));

    registry.leave(client.id);
    client.events();
    client.begin_join(&registry, room(2));
    registry.leave(client.id);
    registry.deliver(room(2), &[client.id], joined_room(client.id, &[]));
    assert_eq!(registry.membership(client.id), Membership::None);
    assert!(client.events().is_empty());
}

/// Membership events are idempotent at the edge: a `new_peer` for a peer already announced (in a
/// `joined_room` or an earlier `new_peer`) and a `peer_left` for one not announced (or gone
/// already) reach nobody, so no client sees a peer twice or a peer leave twice.
#[test]
fn membership_events_reach_nobody_the_second_time() {
    let registry = registry();
    let (listed, newcomer, stranger) = (remote(10), remote(11), remote(12));
    let mut a = Client::connect(&registry, 1);
    let mut b = Client::connect(&registry, 2);
    a.join(&registry, room(1), &[listed]);
    b.join(&registry, room(1), &[listed, a.id]);
    let both = [a.id, b.id];

    let steps = [
        (new_peer(listed), false, "new_peer of a peer in joined_room"),
        (new_peer(newcomer), true, "new_peer of a new peer"),
        (new_peer(newcomer), false, "new_peer of the same peer again"),
        (
            peer_left(stranger),
            false,
            "peer_left of a peer never announced",
        ),
        (peer_left(newcomer), true, "peer_left of an announced peer"),
        (
            peer_left(newcomer),
            false,
            "peer_left of the same peer again",
        ),
        (
            new_peer(newcomer),
            true,
            "new_peer of a peer that left and came back",
        ),
    ];
    for (message, delivered, what) in steps {
        let event = message.event();
        registry.deliver(room(1), &both, message);
        let want: Vec<&str> = if delivered { vec![event] } else { vec![] };
        assert_eq!(names(&a.events()), want, "{what}, to a");
        assert_eq!(names(&b.events()), want, "{what}, to b");
    }
}

/// A later joiner's `joined_room` adds its peers to the room's view; it does not replace it. So a
/// peer announced to an earlier member stays until its `peer_left`, which that member then gets
/// (a reconciling router sends one for a ghost), even if the later list no longer names it.
#[test]
fn a_later_join_adds_to_the_view() {
    let registry = registry();
    let (ghost, other) = (remote(10), remote(11));
    let mut a = Client::connect(&registry, 1);
    let mut b = Client::connect(&registry, 2);
    a.join(&registry, room(1), &[ghost]);
    b.join(&registry, room(1), &[a.id, other]);
    let offer = json!({"event": "offer"});
    let data = offer.as_object().expect("an object");

    // Both lists count: each member may send to either peer.
    for target in [ghost, other] {
        let (route, _) = registry
            .route_to_peer(a.id, Some(target), data)
            .expect("a known peer");
        assert!(matches!(route, PeerRoute::Remote(t) if t == target));
    }
    let views = registry.slot_report(1, 0).views;
    let mut members = views[0].members.clone();
    members.sort();
    let mut want = vec![ghost, other, a.id];
    want.sort();
    assert_eq!(members, want);

    // The ghost's peer_left reaches the member it was announced to (and the other member, which
    // shares the view), and the ghost is gone from the view.
    registry.deliver(room(1), &[a.id, b.id], peer_left(ghost));
    assert_eq!(names(&a.events()), ["peer_left"]);
    assert_eq!(names(&b.events()), ["peer_left"]);
    assert_eq!(
        registry.route_to_peer(a.id, Some(ghost), data).err(),
        Some(ProtocolError::UnknownPeer)
    );
}

/// A router reconciling one slot is told the members and views of that slot's rooms only; members
/// still joining are not members yet.
#[test]
fn slot_report_covers_one_slot() {
    const SLOTS: u32 = 4;
    let (first, second) = (room(1), room(2));
    assert_ne!(first.slot(SLOTS), second.slot(SLOTS), "two slots");
    let registry = registry();
    let (x, y) = (remote(10), remote(11));
    let mut a = Client::connect(&registry, 1);
    let mut b = Client::connect(&registry, 2);
    let joining = Client::connect(&registry, 3);
    let _idle = Client::connect(&registry, 4);
    a.join(&registry, first, &[x]);
    b.join(&registry, second, &[y]);
    joining.begin_join(&registry, first);

    let report = |room: RoomKey| {
        let ResyncReply { members, views, .. } = registry.slot_report(SLOTS, room.slot(SLOTS));
        let members: Vec<(ConnId, RoomKey)> = members
            .iter()
            .map(|m: &MemberRecord| {
                assert_eq!(m.edge, EDGE);
                (m.conn, m.room)
            })
            .collect();
        let views: Vec<(RoomKey, Vec<ConnId>)> =
            views.into_iter().map(|v| (v.room, v.members)).collect();
        (members, views)
    };
    assert_eq!(report(first), (vec![(a.id, first)], vec![(first, vec![x])]));
    assert_eq!(
        report(second),
        (vec![(b.id, second)], vec![(second, vec![y])])
    );
    let empty = (0..SLOTS)
        .find(|s| *s != first.slot(SLOTS) && *s != second.slot(SLOTS))
        .expect("a third slot");
    let report = registry.slot_report(SLOTS, empty);
    assert_eq!(
        (report.members, report.views, report.joining),
        (vec![], vec![], vec![])
    );
}

/// What `route_to_peer` decides.
#[derive(Debug, PartialEq)]
enum Route {
    Local(ConnId),
    Remote(ConnId),
    Gone,
    Refused(ProtocolError),
}

/// `send_to_peer`'s checks in protocol order: not in a room, then unknown peer, then event not
/// allowed; sending to yourself is allowed. A peer that passes goes to its local queue, to its edge,
/// or nowhere if it is on its way out.
#[test]
fn route_to_peer_checks_in_protocol_order() {
    let registry = registry();
    let far = remote(10);
    let mut sender = Client::connect(&registry, 1);
    let mut near = Client::connect(&registry, 2);
    let mut leaving = Client::connect(&registry, 3);
    let outsider = Client::connect(&registry, 4);
    let stranger = remote(11);
    near.join(&registry, room(1), &[far]);
    leaving.join(&registry, room(1), &[far, near.id]);
    sender.join(&registry, room(1), &[far, near.id, leaving.id]);
    // `leaving` left; the router's peer_left for it has not come yet, so it is still in the view.
    registry.leave(leaving.id);

    let offer = Some("offer");
    let table = [
        (
            outsider.id,
            Some(near.id),
            offer,
            Route::Refused(ProtocolError::NotInRoom),
        ),
        (
            outsider.id,
            Some(stranger),
            Some("bogus"),
            Route::Refused(ProtocolError::NotInRoom),
        ),
        (
            outsider.id,
            None,
            Some("bogus"),
            Route::Refused(ProtocolError::NotInRoom),
        ),
        (
            sender.id,
            None,
            Some("bogus"),
            Route::Refused(ProtocolError::UnknownPeer),
        ),
        (
            sender.id,
            Some(stranger),
            Some("bogus"),
            Route::Refused(ProtocolError::UnknownPeer),
        ),
        (
            sender.id,
            Some(outsider.id),
            offer,
            Route::Refused(ProtocolError::UnknownPeer),
        ),
        (
            sender.id,
            Some(near.id),
            Some("bogus"),
            Route::Refused(ProtocolError::EventNotAllowed),
        ),
        (
            sender.id,
            Some(near.id),
            None,
            Route::Refused(ProtocolError::EventNotAllowed),
        ),
        (sender.id, Some(sender.id), offer, Route::Local(sender.id)),
        (
            sender.id,
            Some(near.id),
            Some("answer"),
            Route::Local(near.id),
        ),
        (
            sender.id,
            Some(far),
            Some("ice_candidate"),
            Route::Remote(far),
        ),
        (sender.id, Some(leaving.id), Some("message"), Route::Gone),
    ];
    for (from, to, event, want) in table {
        let mut data = Map::new();
        if let Some(event) = event {
            data.insert("event".into(), event.into());
        }
        let got = match registry.route_to_peer(from, to, &data) {
            Err(error) => Route::Refused(error),
            Ok((PeerRoute::Remote(target), _)) => Route::Remote(target),
            Ok((PeerRoute::Gone, _)) => Route::Gone,
            Ok((PeerRoute::Local(outlet), _)) => {
                // Which queue the outlet feeds: the one that receives a marker.
                outlet
                    .offer(r#"{"event":"marker"}"#.into())
                    .expect("room in the queue");
                let fed: Vec<ConnId> = [&mut sender, &mut near, &mut leaving]
                    .into_iter()
                    .filter_map(|client| (!client.events().is_empty()).then_some(client.id))
                    .collect();
                assert_eq!(fed.len(), 1, "one queue fed");
                Route::Local(fed[0])
            }
        };
        assert_eq!(got, want, "{from:?} -> {to:?} ({event:?})");
    }
}

/// With a TURN grant, each `joined_room` carries credentials minted at its delivery for the
/// grant's user; without one it is exactly the router's message.
#[test]
fn joined_room_carries_turn_credentials_of_a_grant() {
    use std::sync::Arc;
    use std::time::Duration;

    use switchboard_tenants::{Secret, TurnSettings};

    use crate::turn::TurnGrant;

    let registry = registry();
    let mut plain = Client::connect(&registry, 1);
    let mut turned = Client::connect(&registry, 2);
    let settings = Arc::new(TurnSettings {
        urls: vec!["turn:127.0.0.1:3478".into()],
        secrets: vec![Secret::new("north")],
        ttl: Duration::from_secs(60),
    });
    registry.grant_turn(turned.id, TurnGrant::new(settings.clone(), "alice"));

    plain.begin_join(&registry, room(1));
    registry.deliver(room(1), &[plain.id], joined_room(plain.id, &[]));
    let expected: Value = serde_json::from_str(&joined_room(plain.id, &[]).encode()).unwrap();
    assert_eq!(plain.events(), [expected]);

    turned.begin_join(&registry, room(1));
    let before = unix_millis() / 1000;
    // Listed with another member by mistake: the credentials still reach the joiner alone.
    registry.deliver(
        room(1),
        &[turned.id, plain.id],
        joined_room(turned.id, &[plain.id]),
    );
    let after = unix_millis() / 1000;
    assert_eq!(plain.events(), Vec::<Value>::new());
    let events = turned.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let joined = &events[0];
    assert_eq!(joined["own_id"], turned.id.to_string());
    let user = joined["turn_user"].as_str().unwrap();
    let (expiry, name) = user.split_once(':').unwrap();
    assert_eq!(name, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    assert!((before + 60..=after + 60).contains(&expiry), "{expiry}");
    let password = joined["turn_password"].as_str().unwrap();
    assert_eq!(
        password,
        switchboard_tenants::turn::password(&settings.secrets[0], user)
    );
    assert_eq!(
        joined["ice_servers"],
        json!([{"urls": ["turn:127.0.0.1:3478"], "username": user, "credential": password}])
    );
}
