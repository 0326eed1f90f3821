//! The cluster's guarantees (docs/architecture.md, "Failure cases and their bounds"), against real processes: a 3-node nats-server cluster with
//! JetStream, two routers and two edges, all on loopback. Clients are spread over both edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod checks;
mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{Client, nested_status};
use serde_json::json;

/// Guarantee 1: clients on different edges in one room see each other and exchange
/// offer/answer/ICE in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_meet_and_relay_in_order() {
    let cluster = Cluster::start(2, 2).await;
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join("across", json!({"name": "A"})).await;
    let (b_id, joined) = b.join("across", json!({"name": "B"})).await;
    assert_eq!(
        joined["peers"],
        json!([{"peer_id": a_id, "status": {"name": "A"}}]),
        "{}",
        cluster.logs()
    );
    assert_eq!(
        a.recv().await,
        json!({"event": "new_peer", "peer_id": b_id, "status": {"name": "B"}})
    );
    a.send(
        json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "offer", "sdp": "o"}}),
    )
    .await;
    assert_eq!(
        b.recv().await,
        json!({"event": "offer", "sdp": "o", "sender_id": a_id})
    );
    b.send(
        json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "answer", "sdp": "a"}}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!({"event": "answer", "sdp": "a", "sender_id": b_id})
    );
    for n in 0..150 {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id,
                      "data": {"event": "ice_candidate", "n": n}}))
            .await;
    }
    for n in 0..150 {
        let m = b.recv().await;
        assert_eq!(m["n"], n, "ICE candidates in order: {m}");
    }
    b.send(json!({"event": "leave_room"})).await;
    assert_eq!(
        a.recv().await,
        json!({"event": "peer_left", "sender_id": b_id})
    );
    let _ = Duration::ZERO;
}

/// Reads messages until one satisfies `want`, failing on any error event on the way.
async fn until(
    client: &mut Client,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    loop {
        let message = client.recv().await;
        assert_ne!(message["event"], "error", "unexpected error: {message}");
        if want(&message) {
            return message;
        }
    }
}

fn peer_ids(joined: &serde_json::Value) -> Vec<String> {
    joined["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect()
}

/// Guarantee 2: kill -9 of the router owning a room. Relays between members keep flowing (they
/// never touch a router); joins to the room succeed again within 5 s; nobody is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_crash_keeps_relays_and_joins_recover_within_5s() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "router-crash";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({"name": "A"})).await;
    let (b_id, _) = b.join(room, json!({"name": "B"})).await;
    a.expect("new_peer").await;
    let owner = cluster
        .owner_of(room)
        .await
        .expect("the room's slot is served");

    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();
    let killed = tokio::time::Instant::now();

    // Relays right after the crash: all arrive, in order.
    for n in 0..100 {
        a.send(json!({"event": "send_to_peer", "peer_id": b_id,
                      "data": {"event": "ice_candidate", "n": n}}))
            .await;
    }
    for n in 0..100 {
        assert_eq!(b.recv().await["n"], n);
    }

    // A join to the room (on either edge) succeeds within 5 s of the crash, with the exact members.
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (c_id, joined) = c.join(room, json!({"name": "C"})).await;
    let recovered = killed.elapsed();
    assert!(
        recovered <= Duration::from_secs(5),
        "join took {recovered:?} after the crash\n{}",
        cluster.logs()
    );
    assert_eq!(peer_ids(&joined), [a_id.clone(), b_id.clone()], "{joined}");
    // The others hear of C exactly once, and of nothing else.
    for member in [&mut a, &mut b] {
        assert_eq!(
            member.recv().await,
            json!({"event": "new_peer", "peer_id": c_id, "status": {"name": "C"}})
        );
        member.sync().await;
    }
    let mut d = Client::connect_url(&cluster.edge_url(1)).await;
    let (_, joined) = d.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id, b_id, c_id]);
    eprintln!("router failover: join recovered {recovered:?} after kill -9");
}

/// Guarantee 3: kill -9 of an edge: members elsewhere get `peer_left` for each of its clients within
/// 5 s, and later joiners do not see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_crash_gives_peer_left_within_5s() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "edge-crash";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let (a_id, _) = a.join(room, json!({})).await;
    let mut lost = Vec::new();
    for _ in 0..3 {
        let mut b = Client::connect_url(&cluster.edge_url(1)).await;
        let (b_id, _) = b.join(room, json!({})).await;
        until(&mut a, |m| {
            m["event"] == "new_peer" && m["peer_id"] == b_id.as_str()
        })
        .await;
        lost.push((b_id, b));
    }
    cluster.edges[1].as_mut().unwrap().kill9().unwrap();
    let killed = tokio::time::Instant::now();
    let mut gone: Vec<String> = Vec::new();
    while gone.len() < lost.len() {
        let m = until(&mut a, |m| m["event"] == "peer_left").await;
        gone.push(m["sender_id"].as_str().unwrap().to_string());
    }
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(5), "peer_left took {took:?}");
    gone.sort();
    let mut expected: Vec<String> = lost.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    assert_eq!(gone, expected);
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (_, joined) = c.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id]);
    eprintln!(
        "edge crash: peer_left for all {} clients after {took:?}",
        lost.len()
    );
}

/// Guarantee 4: loss of one NATS node of three. Clients on both edges can join and relay again
/// within 5 s, and every member's view agrees with the room's membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_node_loss_recovers_within_5s() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "nats-loss";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({})).await;
    let (b_id, _) = b.join(room, json!({})).await;
    a.expect("new_peer").await;

    // Kill the node most of our processes are connected to, so that they must fail over.
    let victim = cluster.busiest_nats_node().await;
    cluster.nats.kill(victim).unwrap();
    let killed = tokio::time::Instant::now();

    // Relays across edges, until one gets through (messages sent while an edge reconnects may be
    // lost, as with any crash: the client's next offer or ICE restart recovers).
    let mut n = 0;
    loop {
        a.send(
            json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "message", "n": n}}),
        )
        .await;
        let got = tokio::time::timeout(Duration::from_millis(200), b.recv()).await;
        if let Ok(m) = got {
            assert_eq!(m["event"], "message", "{m}");
            break;
        }
        n += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "no relay within 5 s\n{}",
            cluster.logs()
        );
    }
    // Joins on both edges.
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (c_id, joined) = c.join(room, json!({})).await;
    let mut d = Client::connect_url(&cluster.edge_url(1)).await;
    let (d_id, joined_d) = d.join(room, json!({})).await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(5),
        "joins took {took:?}\n{}",
        cluster.logs()
    );
    assert_eq!(peer_ids(&joined), [a_id.clone(), b_id.clone()]);
    assert_eq!(peer_ids(&joined_d), [a_id, b_id, c_id.clone()]);
    // Everyone's view converges: A and B hear C and D once each.
    for member in [&mut a, &mut b] {
        let first = until(member, |m| m["event"] == "new_peer").await;
        let second = until(member, |m| m["event"] == "new_peer").await;
        assert_eq!(
            (first["peer_id"].clone(), second["peer_id"].clone()),
            (json!(c_id), json!(d_id))
        );
        member.sync().await;
    }
    eprintln!("nats node loss: relays and joins back after {took:?}");
}

/// Guarantee 5: SIGTERM of a router, then of an edge (a rolling upgrade). No client sees an error;
/// the clients of the stopped edge get `shutdown`, then the 4200 close; the others see them leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_shows_no_errors() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "rolling";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({})).await;
    let (b_id, _) = b.join(room, json!({})).await;
    a.expect("new_peer").await;
    let owner = cluster.owner_of(room).await.unwrap();

    cluster.routers[owner]
        .as_mut()
        .unwrap()
        .terminate()
        .unwrap();
    // While the router hands its slots over, clients keep joining, leaving and relaying.
    // At most 150 rounds: A sends one message a round, and must stay within its own rate limit
    // (a burst of 200, then 50/s) or it would rightly get `rate limit exceeded`.
    let churn_until = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut round = 0;
    while tokio::time::Instant::now() < churn_until && round < 150 {
        let mut c = Client::connect_url(&cluster.edge_url(round % 2)).await;
        let (c_id, _) = c.join(room, json!({"name": format!("c{round}")})).await;
        until(&mut a, |m| {
            m["event"] == "new_peer" && m["peer_id"] == c_id.as_str()
        })
        .await;
        until(&mut b, |m| {
            m["event"] == "new_peer" && m["peer_id"] == c_id.as_str()
        })
        .await;
        a.send(json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "message", "r": round}}))
            .await;
        until(&mut b, |m| m["event"] == "message" && m["r"] == round).await;
        c.send(json!({"event": "leave_room"})).await;
        until(&mut a, |m| {
            m["event"] == "peer_left" && m["sender_id"] == c_id.as_str()
        })
        .await;
        until(&mut b, |m| {
            m["event"] == "peer_left" && m["sender_id"] == c_id.as_str()
        })
        .await;
        round += 1;
    }
    let status = cluster.routers[owner]
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(status.success(), "router exit {status:?}");
    assert!(round >= 3, "only {round} rounds of churn");

    // Now the edge of B: B is told, then closed with 4200; A sees B leave, and no error.
    cluster.edges[1].as_mut().unwrap().terminate().unwrap();
    assert_eq!(b.recv().await, json!({"event": "shutdown", "seconds": 1}));
    assert_eq!(
        b.ended().await,
        common::Ended::Close(Some(4200), "server shutting down".into())
    );
    until(&mut a, |m| {
        m["event"] == "peer_left" && m["sender_id"] == b_id.as_str()
    })
    .await;
    a.sync().await;
    let _ = a_id;
    eprintln!("rolling restart: {round} join/relay/leave rounds during the router handover");
}

/// Microseconds since the epoch of an RFC 3339 UTC timestamp as tracing writes it
/// (`2026-11-22T01:42:52.375599Z`).
fn micros(timestamp: &str) -> i64 {
    let (date, time) = timestamp.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    let frac_micros: i64 = format!("{frac:0<6}")[..6].parse().unwrap();
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000) + frac_micros
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Serving intervals (slot, start, end) from a router's JSON log; an interval still open ends at
/// `open_end`.
fn serving_intervals(log: &str, open_end: i64) -> Vec<(u64, i64, i64)> {
    let mut open = std::collections::HashMap::new();
    let mut intervals = Vec::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(message), Some(slot)) = (entry["message"].as_str(), entry["slot"].as_u64())
        else {
            continue;
        };
        let at = micros(entry["timestamp"].as_str().unwrap());
        match message {
            "slot serving starts" => {
                open.insert(slot, at);
            }
            "slot serving ended" => {
                let start = open.remove(&slot).expect("an end follows a start");
                intervals.push((slot, start, at));
            }
            _ => {}
        }
    }
    intervals.extend(
        open.into_iter()
            .map(|(slot, start)| (slot, start, open_end)),
    );
    intervals
}

/// Guarantee 6: two routers never serve the same slot at once, through a rebalance (a router
/// joins), a crash (kill -9) and a restart. Each router logs when it starts serving a slot (before
/// subscribing) and when it stops (before the last command could be applied), so the logged
/// intervals contain the real ones: if those never overlap, neither did the real ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_never_serve_a_slot_at_once() {
    let mut cluster = Cluster::start(1, 1).await;
    cluster.add_router().await;
    cluster.settled().await;
    wait_balanced(&cluster).await;
    cluster.routers[0].as_mut().unwrap().kill9().unwrap();
    let killed_at = now_micros();
    let dead_log = cluster.routers[0].as_ref().unwrap().log();
    cluster.routers[0] = None;
    cluster.settled().await;
    cluster.add_router().await;
    cluster.settled().await;
    wait_balanced(&cluster).await;

    let mut by_router = vec![serving_intervals(&dead_log, killed_at)];
    for router in cluster.routers.iter().flatten() {
        by_router.push(serving_intervals(&router.log(), now_micros()));
    }
    let total: usize = by_router.iter().map(Vec::len).sum();
    // 64 at start, about 32 handed over, 32 taken over after the crash, about 32 rebalanced again.
    assert!(
        total >= 64 + 3 * 16,
        "only {total} serving intervals: the test exercised too little"
    );
    for (i, mine) in by_router.iter().enumerate() {
        for theirs in by_router.iter().skip(i + 1) {
            for &(slot, start, end) in mine {
                for &(other_slot, other_start, other_end) in theirs {
                    if slot == other_slot {
                        assert!(
                            end <= other_start || other_end <= start,
                            "slot {slot} served twice: [{start}, {end}] and [{other_start}, {other_end}]"
                        );
                    }
                }
            }
        }
    }
    eprintln!("no overlap among {total} serving intervals of 3 routers");
}

/// Waits until the running routers serve equal shares (±1) of the slots.
async fn wait_balanced(cluster: &Cluster) {
    switchboard_testkit::wait_until(Duration::from_secs(30), || async {
        let counts: Vec<usize> = cluster
            .slots()
            .await
            .into_iter()
            .flatten()
            .map(|s| s.len())
            .collect();
        let (min, max) = (counts.iter().min(), counts.iter().max());
        counts.len() > 1
            && counts.iter().sum::<usize>() == 64
            && max.zip(min).is_some_and(|(a, b)| a - b <= 1)
    })
    .await
    .unwrap_or_else(|e| panic!("routers did not balance: {e}"));
}

/// The standalone protocol checks, again, with every room spanning two edges of a cluster (clients
/// alternate between the edges). One cluster serves every check; each uses rooms of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_checks_pass_across_two_edges() {
    // The thousand-message check must not be rate-limited (it is about order). Across edges nothing
    // slows a sender down but its rate limit, so the receiving queue must hold what a sender may send
    // in one burst: here, all 1,000 (with the defaults, a 200 burst against a 256 queue).
    let cluster = Cluster::start_with(
        2,
        2,
        &[
            "--rate-limit",
            "100000",
            "--rate-burst",
            "100000",
            "--outbound-queue",
            "2048",
        ],
    )
    .await;
    let edges = || common::Edges::new(vec![cluster.edge_url(0), cluster.edge_url(1)]);
    checks::info_and_ping(&edges()).await;
    checks::parse_errors_have_palavas_texts(&edges()).await;
    checks::join_room_validation(&edges()).await;
    checks::joining_tells_everyone_with_the_right_shapes(&edges()).await;
    checks::already_joined_another_room(&edges()).await;
    checks::status_rules_and_a_failed_join_adds_nobody(&edges()).await;
    checks::update_status(&edges()).await;
    checks::send_to_peer_checks_in_order_and_forwards(&edges()).await;
    checks::leaving_and_closing(&edges()).await;
    checks::full_rooms_refuse_joins(&edges(), common::cluster::MAX_ROOM_SIZE).await;
    let joined = checks::fifty_concurrent_joiners_converge(&edges()).await;
    drop(joined);
    checks::a_thousand_messages_each_way_keep_their_order(&edges()).await;
}

/// An edge cut off from the routers for longer than the edge timeout (here: frozen with SIGSTOP) is
/// declared lost, so the rest of its rooms see its members leave. When it comes back, its members
/// are re-established: the others see them again, once, and joins see exact membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_comes_back_re_establishes_its_members() {
    let cluster = Cluster::start(2, 2).await;
    let room = "comeback";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({"name": "A"})).await;
    let (b_id, _) = b.join(room, json!({"name": "B"})).await;
    a.expect("new_peer").await;

    let pid = cluster.edge(1).pid().to_string();
    let signal = |name: &str| {
        let ok = std::process::Command::new("kill")
            .args([name, pid.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    signal("-STOP");
    let left = until(&mut a, |m| m["event"] == "peer_left").await;
    signal("-CONT");
    assert_eq!(left["sender_id"], b_id.as_str(), "{}", cluster.logs());
    // B is back, announced once with its stored status.
    let back = until(&mut a, |m| m["event"] == "new_peer").await;
    assert_eq!(
        back,
        json!({"event": "new_peer", "peer_id": b_id, "status": {"name": "B"}})
    );
    a.sync().await;
    // B never noticed, and still reaches A.
    b.send(json!({"event": "send_to_peer", "peer_id": a_id, "data": {"event": "message", "x": 1}}))
        .await;
    assert_eq!(
        until(&mut a, |m| m["event"] == "message").await,
        json!({"event": "message", "x": 1, "sender_id": b_id})
    );
    let mut c = Client::connect_url(&cluster.edge_url(0)).await;
    let (_, joined) = c.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id, b_id]);
}

/// Peak members and hourly statistics survive the loss of the router that recorded them: a room
/// whose router crashes closes later with its full peak, and rooms closed before the crash still
/// count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_survive_a_router_crash() {
    let mut cluster = Cluster::start(2, 2).await;
    // A room that closes before the crash, with a peak of 2.
    {
        let mut x = Client::connect_url(&cluster.edge_url(0)).await;
        let mut y = Client::connect_url(&cluster.edge_url(1)).await;
        x.join("stats-early", json!({})).await;
        y.join("stats-early", json!({})).await;
        x.expect("new_peer").await;
        y.send(json!({"event": "leave_room"})).await;
        x.expect("peer_left").await;
        x.send(json!({"event": "leave_room"})).await;
        x.sync().await;
    }
    // A room with a peak of 3 whose router then crashes; it closes afterwards.
    let room = "stats-late";
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = Client::connect_url(&cluster.edge_url(i % 2)).await;
        m.join(room, json!({})).await;
        members.push(m);
    }
    until(&mut members[0], |m| m["event"] == "new_peer").await;
    until(&mut members[0], |m| m["event"] == "new_peer").await;
    // Down to one member before the crash: only the stored peak remembers 3.
    for m in members.iter_mut().skip(1) {
        m.send(json!({"event": "leave_room"})).await;
    }
    until(&mut members[0], |m| m["event"] == "peer_left").await;
    until(&mut members[0], |m| m["event"] == "peer_left").await;
    let owner = cluster.owner_of(room).await.unwrap();
    // What the router has stored survives it: wait until its store reports nothing pending (a crash
    // loses writes not yet acknowledged, as documented).
    let owner_admin = cluster.routers[owner]
        .as_ref()
        .unwrap()
        .addr("admin_listen")
        .unwrap();
    switchboard_testkit::wait_until(Duration::from_secs(10), || async {
        let Ok((200, body)) = switchboard_testkit::http_get(owner_admin, "/metrics").await else {
            return false;
        };
        ["peaks", "stats"].iter().all(|kind| {
            body.lines()
                .any(|l| l == format!("switchboard_router_store_pending{{kind=\"{kind}\"}} 0"))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("the router's store did not drain: {e}\n{}", cluster.logs()));
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();
    cluster.routers[owner] = None;
    cluster.settled().await;
    members[0].send(json!({"event": "leave_room"})).await;
    members[0].sync().await;

    let survivor = cluster.routers.iter().flatten().next().unwrap();
    let admin = survivor.addr("admin_listen").unwrap();
    switchboard_testkit::wait_until(Duration::from_secs(10), || async {
        let Ok((200, body)) = switchboard_testkit::http_get(admin, "/stats").await else {
            return false;
        };
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut peaks = std::collections::BTreeMap::new();
        for hour in stats["hourly"]["hours"]
            .as_object()
            .into_iter()
            .flat_map(|h| h.values())
        {
            for (peak, n) in hour["room_peaks"].as_object().unwrap() {
                *peaks.entry(peak.clone()).or_insert(0) += n.as_u64().unwrap();
            }
        }
        peaks.get("2") == Some(&1) && peaks.get("3") == Some(&1)
    })
    .await
    .unwrap_or_else(|e| panic!("statistics lost: {e}\n{}", cluster.logs()));
}

/// The whole NATS cluster goes away and comes back. Meanwhile the edges report not ready; afterwards
/// memberships are re-established from the edges without duplicates: relays work, a joiner sees
/// exactly the members, and the members hear of the joiner once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_ends_with_memberships_intact() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "outage";
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join(room, json!({"name": "A"})).await;
    let (b_id, _) = b.join(room, json!({"name": "B"})).await;
    a.expect("new_peer").await;

    for node in 0..3 {
        cluster.nats.kill(node).unwrap();
    }
    let admin = cluster.edge(0).addr("admin_listen").unwrap();
    switchboard_testkit::wait_until(Duration::from_secs(10), || async {
        matches!(
            switchboard_testkit::http_get(admin, "/readyz").await,
            Ok((503, _))
        )
    })
    .await
    .expect("an edge without NATS is not ready");
    cluster.nats.restart_all().await.unwrap();
    cluster.settled().await;

    // Relays cross the edges again (the first may still be racing the reconnection).
    let mut n = 0;
    loop {
        a.send(
            json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "message", "n": n}}),
        )
        .await;
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(500), b.recv()).await {
            assert_eq!(m["event"], "message", "{m}");
            break;
        }
        n += 1;
        assert!(n < 40, "no relay after the outage\n{}", cluster.logs());
    }
    let mut c = Client::connect_url(&cluster.edge_url(1)).await;
    let (c_id, joined) = c.join(room, json!({})).await;
    assert_eq!(peer_ids(&joined), [a_id, b_id]);
    // Neither A nor B was announced again to the other: each hears only of C, then its own pong.
    for member in [&mut a, &mut b] {
        loop {
            let m = member.recv().await;
            if m["event"] == "message" {
                continue;
            }
            assert_eq!(
                m,
                json!({"event": "new_peer", "peer_id": c_id, "status": {}})
            );
            break;
        }
        member.sync().await;
    }
}

/// NATS credentials reach the servers: with a token-protected NATS cluster, routers and edges given
/// `--nats-token` serve across edges; an edge with a wrong token is refused by NATS and stays not
/// ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_credentials_are_used() {
    let cluster = Cluster::start_with_token(1, 2, "correct-horse").await;
    let mut a = Client::connect_url(&cluster.edge_url(0)).await;
    let mut b = Client::connect_url(&cluster.edge_url(1)).await;
    let (a_id, _) = a.join("secured", json!({})).await;
    let (b_id, _) = b.join("secured", json!({})).await;
    a.expect("new_peer").await;
    a.send(json!({"event": "send_to_peer", "peer_id": b_id, "data": {"event": "offer"}}))
        .await;
    assert_eq!(b.recv().await, json!({"event": "offer", "sender_id": a_id}));

    let mut wrong = switchboard_testkit::Process::spawn(
        switchboard_testkit::binary_path("switchboard-edge").unwrap(),
        [
            "--nats",
            &cluster.nats.url_list(),
            "--nats-token",
            "wrong",
            "--room-key-secret",
            common::cluster::SECRET,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    )
    .await
    .expect("the edge starts and binds");
    switchboard_testkit::wait_until(Duration::from_secs(10), || {
        let log = wrong.log().to_lowercase();
        async move { log.contains("authorization violation") }
    })
    .await
    .unwrap_or_else(|e| panic!("no authorization error: {e}\n{}", wrong.log()));
    let admin = wrong.addr("admin_listen").unwrap();
    assert_eq!(
        switchboard_testkit::http_get(admin, "/readyz")
            .await
            .unwrap()
            .0,
        503
    );
    wrong.kill9().unwrap();
}

/// A status at the deepest nesting an edge can be configured to accept crosses the bus (wrapped in a
/// command to the router, then in an event to each edge) and reaches members on both edges: nobody
/// joins unannounced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_at_the_maximum_nesting_is_announced_on_both_edges() {
    use switchboard_proto::limits::MAX_JSON_DEPTH;
    let depth = MAX_JSON_DEPTH.to_string();
    let cluster = Cluster::start_with(1, 2, &["--max-json-depth", &depth]).await;
    let room = "deepest";
    let mut near = Client::connect_url(&cluster.edge_url(0)).await;
    let mut far = Client::connect_url(&cluster.edge_url(1)).await;
    near.join(room, json!({})).await;
    far.join(room, json!({})).await;
    near.expect("new_peer").await;

    // The join message is one level deeper than the status: exactly the maximum.
    let deepest = nested_status(MAX_JSON_DEPTH - 1);
    let mut joiner = Client::connect_url(&cluster.edge_url(0)).await;
    let (joiner_id, _) = joiner.join(room, deepest.clone()).await;
    let announced = json!({"event": "new_peer", "peer_id": joiner_id, "status": deepest});
    assert_eq!(near.recv().await, announced, "{}", cluster.logs());
    assert_eq!(far.recv().await, announced, "{}", cluster.logs());

    // Status updates take the same way.
    joiner
        .send(json!({"event": "update_status", "status": deepest}))
        .await;
    let updated =
        json!({"event": "peer_updated_status", "status": deepest, "sender_id": joiner_id});
    for client in [&mut near, &mut far, &mut joiner] {
        assert_eq!(client.recv().await, updated, "{}", cluster.logs());
    }
}
