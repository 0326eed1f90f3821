use super::*;
use crate::webhooks::event::EventKind;

fn tenant(name: &str) -> TenantId {
    match TenantId::parse(name) {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    }
}

fn event(t: &str, room: &str, kind: EventKind) -> RoomEvent {
    RoomEvent {
        kind,
        tenant: tenant(t),
        room: room.to_owned(),
        peer_id: None,
        status: None,
        occurred_at_ms: 0,
    }
}

fn outbox(limits: Limits, max_age: Duration) -> Outbox {
    Outbox::new(limits, Backoff::default(), max_age)
}

const HOUR: Duration = Duration::from_secs(3600);

fn seq_of(a: &Attempt) -> u64 {
    match serde_json::from_slice::<WebhookEvent>(&a.body) {
        Ok(e) => e.seq,
        Err(e) => panic!("{e}"),
    }
}

fn ids(attempts: &[Attempt]) -> Vec<(String, u64)> {
    attempts
        .iter()
        .map(|a| (a.room.1.clone(), seq_of(a)))
        .collect()
}

#[test]
fn a_room_sends_one_event_at_a_time_in_order_across_retries() {
    let t0 = Instant::now();
    let mut o = outbox(Limits::default(), HOUR);
    for kind in [
        EventKind::RoomStarted,
        EventKind::ParticipantJoined,
        EventKind::ParticipantLeft,
    ] {
        assert!(o.push(event("acme", "a", kind), new_id(), t0).is_ok());
    }
    assert!(
        o.push(event("acme", "b", EventKind::RoomStarted), new_id(), t0)
            .is_ok()
    );

    let (first, _) = o.due(t0, 100);
    let mut got = ids(&first);
    got.sort();
    assert_eq!(
        got,
        vec![("a".into(), 1), ("b".into(), 1)],
        "one head per room"
    );
    assert!(
        o.due(t0, 100).0.is_empty(),
        "nothing more while heads are in flight"
    );

    let a = first.iter().find(|x| x.room.1 == "a").cloned();
    let Some(a) = a else {
        panic!("room a attempted")
    };
    let wait = o.failed(&a.room, t0, 1.0);
    assert_eq!(wait, Duration::from_secs(1));
    assert_eq!(o.retrying(), 1);
    assert!(
        o.due(t0 + wait / 2, 100).0.is_empty(),
        "a waits for its backoff, its later events too"
    );

    let (again, _) = o.due(t0 + wait, 100);
    assert_eq!(
        ids(&again),
        vec![("a".into(), 1)],
        "the same event again, not the next"
    );
    assert_eq!(again[0].id, a.id);
    assert_eq!(again[0].body, a.body, "the same body on every attempt");
    let wait2 = o.failed(&a.room, t0 + wait, 1.0);
    assert_eq!(wait2, Duration::from_secs(2), "the backoff grows");

    let t1 = t0 + wait + wait2;
    let (third, _) = o.due(t1, 100);
    assert_eq!(ids(&third), vec![("a".into(), 1)]);
    o.succeeded(&a.room, t1);
    assert_eq!(o.retrying(), 0);
    let (next, _) = o.due(t1, 100);
    assert_eq!(
        ids(&next),
        vec![("a".into(), 2)],
        "the next event goes at once after a 2xx"
    );
    o.succeeded(&a.room, t1);
    assert_eq!(ids(&o.due(t1, 100).0), vec![("a".into(), 3)]);
}

#[test]
fn an_event_is_dropped_once_older_than_max_age_and_the_room_moves_on() {
    let t0 = Instant::now();
    let max_age = Duration::from_secs(10);
    let mut o = outbox(Limits::default(), max_age);
    assert!(
        o.push(event("acme", "a", EventKind::RoomStarted), new_id(), t0)
            .is_ok()
    );
    let (first, _) = o.due(t0, 10);
    let key = first[0].room.clone();
    let later = t0 + Duration::from_secs(8);
    assert!(
        o.push(
            event("acme", "a", EventKind::ParticipantJoined),
            new_id(),
            later
        )
        .is_ok()
    );

    // Fails until its age passes max_age: the attempt due then drops it instead.
    let mut now = t0;
    let mut expired_total = 0;
    loop {
        let wait = o.failed(&key, now, 1.0);
        now += wait;
        let (attempts, expired) = o.due(now, 10);
        expired_total += expired.len();
        if !expired.is_empty() {
            assert!(now >= t0 + max_age);
            assert_eq!(
                ids(&attempts),
                vec![("a".into(), 2)],
                "the next event goes, once"
            );
            break;
        }
        assert_eq!(ids(&attempts), vec![("a".into(), 1)]);
        assert!(now < t0 + max_age + Duration::from_secs(300), "bounded");
    }
    assert_eq!(expired_total, 1);
    assert_eq!(o.pending(), 1);
    assert_eq!(o.retrying(), 0);
}

#[test]
fn bounds_refuse_events_per_tenant_and_globally() {
    let t0 = Instant::now();
    let mut o = outbox(
        Limits {
            per_tenant: 2,
            global: 3,
        },
        HOUR,
    );
    let push =
        |o: &mut Outbox, t: &str| o.push(event(t, "r", EventKind::ParticipantJoined), new_id(), t0);
    assert!(push(&mut o, "acme").is_ok());
    assert!(push(&mut o, "acme").is_ok());
    assert_eq!(push(&mut o, "acme"), Err(Refused::TenantFull));
    assert!(push(&mut o, "globex").is_ok());
    assert_eq!(push(&mut o, "initech"), Err(Refused::GlobalFull));
    assert_eq!(o.pending(), 3);

    // Delivering one frees a place for its tenant.
    let (attempts, _) = o.due(t0, 10);
    let acme = attempts
        .iter()
        .find(|a| a.room.0.as_str() == "acme")
        .cloned();
    let Some(acme) = acme else {
        panic!("acme attempted")
    };
    o.succeeded(&acme.room, t0);
    assert!(push(&mut o, "acme").is_ok());
}

#[test]
fn sequence_numbers_and_room_lifetime() {
    let t0 = Instant::now();
    let mut o = outbox(Limits::default(), HOUR);
    let kinds = [
        EventKind::RoomStarted,
        EventKind::ParticipantJoined,
        EventKind::ParticipantLeft,
        EventKind::RoomFinished,
    ];
    let seqs: Vec<u64> = kinds
        .iter()
        .filter_map(|k| o.push(event("acme", "a", *k), new_id(), t0).ok())
        .map(|q| q.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(
        o.oldest_age(t0 + Duration::from_secs(5)),
        Some(Duration::from_secs(5))
    );
    for _ in 0..4 {
        let (a, _) = o.due(t0, 10);
        assert_eq!(a.len(), 1);
        o.succeeded(&a[0].room, t0);
    }
    assert_eq!(o.pending(), 0);
    assert_eq!(o.oldest_age(t0), None);
    assert!(
        o.rooms.is_empty(),
        "a finished room with nothing pending is forgotten"
    );
    assert_eq!(o.next_due(), None);
    // A new room under the same name starts over.
    assert_eq!(
        o.push(event("acme", "a", EventKind::RoomStarted), new_id(), t0)
            .map(|q| q.seq),
        Ok(1)
    );
}

fn new_id() -> String {
    crate::webhooks::event::new_event_id()
}

#[test]
fn given_seqs_and_tokens_come_back_once_an_event_leaves_for_good() {
    // A cluster's worker: seq and token are the stream sequence; the room order is the push order.
    let t0 = Instant::now();
    let max_age = Duration::from_secs(60);
    let mut o: Outbox<u64> = Outbox::new(Limits::default(), Backoff::default(), max_age);
    let push = |o: &mut Outbox<u64>, room: &str, seq: u64, created: Instant| {
        let kind = EventKind::ParticipantJoined;
        let queued = o.push_with(
            event("acme", room, kind),
            format!("evt_{seq}"),
            Some(seq),
            seq,
            created,
        );
        assert_eq!(queued.map(|q| q.seq).ok(), Some(seq));
    };
    push(&mut o, "a", 10, t0);
    push(&mut o, "a", 14, t0);
    push(&mut o, "b", 12, t0);
    // Happened long ago: expired when its turn comes.
    push(&mut o, "c", 13, t0 - max_age);

    let (attempts, expired) = o.due(t0, 10);
    assert_eq!(expired, vec![13], "the expired event's token comes back");
    let mut got = ids(&attempts);
    got.sort();
    assert_eq!(got, vec![("a".into(), 10), ("b".into(), 12)]);

    let (a, b) = (tenant("acme"), tenant("acme"));
    let room_a: RoomKey = (a, "a".into());
    let room_b: RoomKey = (b, "b".into());
    // A failure keeps the token: the event is retried.
    let wait = o.failed(&room_a, t0, 0.0);
    assert_eq!(o.succeeded(&room_b, t0), Some(12));
    let (again, _) = o.due(t0 + wait, 10);
    assert_eq!(
        ids(&again),
        vec![("a".into(), 10)],
        "the same head, not the next"
    );
    assert_eq!(o.succeeded(&room_a, t0 + wait), Some(10));
    let (next, _) = o.due(t0 + wait, 10);
    assert_eq!(ids(&next), vec![("a".into(), 14)]);
    assert_eq!(o.abandoned(&room_a, t0 + wait), Some(14));
    assert_eq!(o.pending(), 0);
    assert_eq!(
        o.succeeded(&room_a, t0 + wait),
        None,
        "nothing left to hand back"
    );
    // Without a counter to keep, an emptied room is forgotten.
    assert!(o.rooms.is_empty());
}
