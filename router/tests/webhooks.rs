//! A cluster's webhooks against a real JetStream (nats-server) and a real HTTP receiver on
//! 127.0.0.1: what a slot's owner stores is delivered by the slot's worker, signed and in room
//! order; after a receiver outage every event arrives, in order; and a worker that stops mid-way
//! (its router died or lost the slot) leaves nothing behind: the next worker of the slot delivers
//! every unacknowledged event, with the same ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchboard_api::webhooks::signature::DEFAULT_TOLERANCE;
use switchboard_api::webhooks::{
    Backoff, EngineConfig, SIGNATURE_HEADER, WebhookMetrics, WebhookSettings, verify,
};
use switchboard_proto::{ConnId, EdgeId, StoredStatus, TenantId, subject};
use switchboard_rooms::{Effect, UnixMillis};
use switchboard_router::service::buckets::{WebhookStreamLimits, webhooks_stream};
use switchboard_router::service::webhooks::{ClusterWebhooks, WebhookConfig};
use switchboard_testkit::nats::NatsCluster;
use tokio::net::TcpListener;

const SECRET: &str = "whsec_router_test_0123456789";
const SLOT: u32 = 3;
/// Longest wait for the events: short backoffs keep deliveries well within it.
const PATIENCE: Duration = Duration::from_secs(20);

/// What the receiver saw.
#[derive(Default)]
struct Log {
    /// Every attempt's event id, answered or not.
    attempted: Vec<String>,
    /// Events answered with 204, in order (a redelivery is listed again).
    accepted: Vec<Value>,
    /// Requests whose signature did not verify.
    bad_signatures: usize,
}

/// A webhook receiver on 127.0.0.1 (hyper): it verifies each signature, accepts (204) as many
/// requests as its budget allows and answers 503 to the rest, until the budget is raised.
#[derive(Clone)]
struct Receiver {
    log: Arc<Mutex<Log>>,
    /// Requests it still accepts; the rest get 503.
    budget: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            log: Arc::default(),
            budget: Arc::new(AtomicUsize::new(usize::MAX)),
            addr: listener.local_addr().unwrap(),
        };
        let served = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let served = served.clone();
                        async move { Ok::<_, Infallible>(served.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let signature = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let event: Value = serde_json::from_slice(&body).unwrap();
        let mut log = self.log.lock().unwrap();
        if verify(SECRET.as_bytes(), &signature, &body, now, DEFAULT_TOLERANCE).is_err() {
            log.bad_signatures += 1;
        }
        log.attempted.push(event["id"].as_str().unwrap().to_owned());
        let accept = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
            .is_ok();
        let status = if accept {
            log.accepted.push(event);
            StatusCode::NO_CONTENT
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    fn accept(&self, budget: usize) {
        self.budget.store(budget, Ordering::SeqCst);
    }

    /// Waits until `n` distinct events were accepted; returns the log.
    async fn wait_for(&self, n: usize) -> (Vec<Value>, Vec<String>, usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            {
                let log = self.log.lock().unwrap();
                let distinct: HashSet<&str> = log
                    .accepted
                    .iter()
                    .map(|e| e["id"].as_str().unwrap())
                    .collect();
                if distinct.len() >= n {
                    return (
                        log.accepted.clone(),
                        log.attempted.clone(),
                        log.bad_signatures,
                    );
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{} of {n} events accepted: {:#?}",
                    distinct.len(),
                    log.accepted
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Setup {
    _nats: NatsCluster,
    js: jetstream::Context,
    webhooks: ClusterWebhooks,
    receiver: Receiver,
}

async fn setup() -> Setup {
    let nats = NatsCluster::start(1).await.unwrap();
    let client = async_nats::connect(nats.url(0)).await.unwrap();
    let js = jetstream::new(client);
    let limits = WebhookStreamLimits {
        max_age: Duration::from_secs(3600),
        max_bytes: 8 * 1024 * 1024,
        max_msgs: 10_000,
    };
    webhooks_stream(&js, limits, 1).await.unwrap();
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let directory = move |tenant: &TenantId| {
        (tenant.as_str() == "acme").then(|| WebhookSettings {
            url: url.clone(),
            secret: SECRET.into(),
        })
    };
    let config = WebhookConfig {
        engine: EngineConfig {
            // Retries come quickly, so an outage ends within the test's patience.
            backoff: Backoff {
                initial: Duration::from_millis(50),
                max: Duration::from_millis(400),
            },
            request_timeout: Duration::from_secs(2),
            ..EngineConfig::default()
        },
        max_ack_pending: 100,
        ack_wait: Duration::from_secs(30),
    };
    let webhooks = ClusterWebhooks::new(
        js.clone(),
        directory,
        WebhookMetrics::new().unwrap(),
        config,
    );
    Setup {
        _nats: nats,
        js,
        webhooks,
        receiver,
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// A room's life as the state machine reports it: two members join, then leave (6 events).
fn room_life(tenant: &TenantId, room: &str, n: u8) -> Vec<Vec<Effect>> {
    let (a, b) = (
        ConnId::for_edge(EdgeId(1), [n; 16]),
        ConnId::for_edge(EdgeId(2), [n; 16]),
    );
    let joined = |conn, opened| Effect::TenantMemberJoined {
        tenant: tenant.clone(),
        room: room.into(),
        conn,
        status: StoredStatus::default(),
        opened,
    };
    let left = |conn, closed| Effect::TenantMemberLeft {
        tenant: tenant.clone(),
        room: room.into(),
        conn,
        status: StoredStatus::default(),
        closed,
    };
    vec![
        vec![joined(a, true)],
        vec![
            joined(b, false),
            Effect::MemberLeft {
                minutes: 0,
                millis: 0,
            },
        ],
        vec![left(a, false)],
        vec![left(b, true)],
    ]
}

const ROOM_KINDS: [&str; 6] = [
    "room_started",
    "participant_joined",
    "participant_joined",
    "participant_left",
    "participant_left",
    "room_finished",
];

/// Stores the lives of `rooms`, interleaved as commands of different rooms would be.
async fn store_rooms(webhooks: &ClusterWebhooks, rooms: &[&str]) {
    let acme = tenant("acme");
    let lives: Vec<Vec<Vec<Effect>>> = rooms
        .iter()
        .enumerate()
        .map(|(i, r)| room_life(&acme, r, i as u8))
        .collect();
    for step in 0..4 {
        for life in &lives {
            webhooks
                .store(SLOT, &life[step], UnixMillis(now_ms()))
                .await;
        }
    }
    // A tenant without a webhook stores nothing.
    for effects in room_life(&tenant("globex"), "quiet", 9) {
        webhooks.store(SLOT, &effects, UnixMillis(now_ms())).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks that each of `rooms` got its 6 events in order, with increasing `seq`, every event
/// accepted once except perhaps a room's event repeated right after itself (a redelivery of the
/// event in flight). Returns the distinct ids.
fn check_rooms(accepted: &[Value], rooms: &[&str], duplicates_allowed: bool) -> HashSet<String> {
    let mut by_room: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in accepted {
        assert_eq!(event["tenant"], "acme", "only acme has a webhook");
        by_room
            .entry(event["room"].as_str().unwrap().to_owned())
            .or_default()
            .push(event);
    }
    let mut ids = HashSet::new();
    for room in rooms {
        let mut events = by_room.remove(*room).unwrap_or_default();
        let before = events.len();
        // A redelivery repeats the room's latest event, never an older one after a newer.
        events.dedup_by(|a, b| a["id"] == b["id"]);
        if !duplicates_allowed {
            assert_eq!(before, events.len(), "{room}: an event was delivered twice");
        }
        assert!(
            before - events.len() <= 1,
            "{room}: more than one redelivery"
        );
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ROOM_KINDS, "{room}: events in the room's order");
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{room}: seq increases: {seqs:?}"
        );
        ids.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
    }
    assert!(by_room.is_empty(), "unexpected rooms: {:?}", by_room.keys());
    ids
}

/// Waits until the stream holds no event (every one acknowledged: work-queue retention).
async fn wait_drained(js: &jetstream::Context) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut stream = js.get_stream(subject::WEBHOOKS_STREAM).await.unwrap();
        let messages = stream.info().await.unwrap().state.messages;
        if messages == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{messages} events still unacknowledged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_are_delivered_signed_in_room_order_also_after_an_outage() {
    let s = setup().await;
    let worker = s.webhooks.start_worker(SLOT);
    store_rooms(&s.webhooks, &["alpha", "beta"]).await;
    let (accepted, _, bad) = s.receiver.wait_for(12).await;
    assert_eq!(bad, 0, "every request is signed with the tenant's secret");
    check_rooms(&accepted, &["alpha", "beta"], false);
    wait_drained(&s.js).await;

    // The receiver fails for a while: every event still arrives, in order, once it is back.
    s.receiver.accept(0);
    store_rooms(&s.webhooks, &["gamma", "delta"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = s.receiver.log.lock().unwrap().attempted.len();
    assert!(
        failed > 12,
        "attempts were made and refused during the outage"
    );
    s.receiver.accept(usize::MAX);
    let (accepted, _, bad) = s.receiver.wait_for(24).await;
    assert_eq!(bad, 0);
    check_rooms(&accepted[12..], &["gamma", "delta"], false);
    wait_drained(&s.js).await;
    assert_eq!(s.webhooks.metrics().sent.get(), 24);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_delivers_what_a_stopped_one_left_unacknowledged() {
    let s = setup().await;
    // Three events go through, then the receiver fails: the rest are held by the first worker.
    s.receiver.accept(3);
    let first = s.webhooks.start_worker(SLOT);
    store_rooms(&s.webhooks, &["alpha", "beta", "gamma"]).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while s.receiver.log.lock().unwrap().attempted.len() < 8 {
        assert!(tokio::time::Instant::now() < deadline, "no attempts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its router dies (or loses the slot): the worker stops mid-way.
    first.stop().await;
    let attempted_before: HashSet<String> = s
        .receiver
        .log
        .lock()
        .unwrap()
        .attempted
        .iter()
        .cloned()
        .collect();

    // The slot's next owner: every unacknowledged event comes again, at once, in order.
    s.receiver.accept(usize::MAX);
    let second = s.webhooks.start_worker(SLOT);
    let (accepted, attempted, bad) = s.receiver.wait_for(18).await;
    assert_eq!(bad, 0);
    let ids = check_rooms(&accepted, &["alpha", "beta", "gamma"], true);
    assert_eq!(ids.len(), 18, "none lost");
    let attempted: HashSet<String> = attempted.into_iter().collect();
    assert_eq!(attempted, ids, "no event got a new id on redelivery");
    assert!(attempted_before.is_subset(&ids));
    wait_drained(&s.js).await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_jetstream_does_not_take_is_counted_and_signaling_goes_on() {
    let s = setup().await;
    s.js.delete_stream(subject::WEBHOOKS_STREAM).await.unwrap();
    let started = tokio::time::Instant::now();
    let effects = &room_life(&tenant("acme"), "alpha", 1)[0];
    s.webhooks.store(SLOT, effects, UnixMillis(now_ms())).await;
    // Both attempts of both events (room_started, participant_joined) within their timeouts.
    assert!(started.elapsed() < Duration::from_secs(9));
    let dropped = s
        .webhooks
        .metrics()
        .dropped
        .with_label_values(&["store_unavailable"])
        .get();
    assert_eq!(dropped, 2);
}
