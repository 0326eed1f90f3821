//! Faults a cluster must ride through with its default flags, checked the way a client lives them:
//! the loss of the NATS node that leads the lease stream (a JetStream leader election), and leave
//! storms while the room's router is killed, after which every member's view of its room
//! (`joined_room` plus later events) equals the true membership; routers started before JetStream has
//! a quorum. Real nats-server 2.15 clusters,
//! routers and edges on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::cluster::Cluster;
use common::views::Member;
use serde_json::json;
use switchboard_proto::subject;
use tokio::time::Instant;

/// The NATS node (index) leading the stream `name`, asked through JetStream's API.
async fn stream_leader(cluster: &Cluster, name: &str) -> usize {
    let client = async_nats::connect(cluster.nats.url(0)).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap();
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    assert_eq!(
        info.config.num_replicas, 3,
        "default flags on a 3-node NATS cluster replicate the stream 3 times"
    );
    leader
        .strip_prefix('n')
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("unexpected server name {leader}"))
}

/// Guarantee 4 for the hardest node: kill -9 of the NATS node leading the lease stream. JetStream
/// elects a new leader within seconds, during which the lease store cannot be written; the routers
/// keep serving their slots meanwhile. Relays on one edge and across edges, a leave and a join all
/// work within 5 s, and afterwards every slot is still served exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_stream_leader_loses_nothing() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "leader-loss";
    let mut a = Member::join(&cluster.edge_url(0), room).await;
    let mut c = Member::join(&cluster.edge_url(0), room).await;
    let mut b = Member::join(&cluster.edge_url(1), room).await;
    let mut x = Member::join(&cluster.edge_url(1), room).await;
    let mut all: BTreeSet<String> = [&a, &c, &b, &x].iter().map(|m| m.id.clone()).collect();
    for m in [&mut a, &mut c, &mut b, &mut x] {
        assert!(m.converges(&all, Duration::from_secs(5)).await);
    }

    let leader = stream_leader(&cluster, &format!("KV_{}", subject::LEASES_BUCKET)).await;
    let admins: Vec<_> = (0..2)
        .map(|i| cluster.router(i).addr("admin_listen").unwrap())
        .collect();
    let sampling = tokio::sync::watch::channel(true);
    let sampler = tokio::spawn(sample_routers(admins.clone(), sampling.1));
    cluster.nats.kill(leader).unwrap();
    let killed = Instant::now();

    // A relay between two members of the same edge, then across edges: the data plane does not
    // wait for the control plane.
    for (from, to) in [(0, 1), (0, 2)] {
        let ids = [a.id.clone(), c.id.clone(), b.id.clone()];
        let mut n = 0;
        loop {
            let sender = [&mut a, &mut c, &mut b][from].client.send(json!({
                "event": "send_to_peer", "peer_id": ids[to], "data": {"event": "message", "n": n}
            }));
            sender.await;
            let receiver = &mut [&mut a, &mut c, &mut b][to];
            if let Ok(m) =
                tokio::time::timeout(Duration::from_millis(200), receiver.client.recv()).await
            {
                assert_eq!(m["event"], "message", "{m}");
                break;
            }
            n += 1;
            assert!(
                killed.elapsed() < Duration::from_secs(5),
                "no relay {from}->{to} within 5 s\n{}",
                cluster.logs()
            );
        }
    }
    // A leave and a join, announced to everyone within 5 s.
    x.client.send(json!({"event": "leave_room"})).await;
    all.remove(&x.id);
    let d = Member::join(&cluster.edge_url(1), room).await;
    all.insert(d.id.clone());
    assert_eq!(
        d.view,
        all.iter().filter(|id| **id != d.id).cloned().collect(),
        "the joiner is told the true membership"
    );
    let left = Duration::from_secs(5).saturating_sub(killed.elapsed());
    for m in [&mut a, &mut c, &mut b] {
        assert!(
            m.converges(&all, left).await,
            "{} sees {:?}, the room holds {all:?} ({:?} after the kill)\n{}",
            m.id,
            m.view,
            killed.elapsed(),
            cluster.logs()
        );
    }
    eprintln!(
        "lease stream leader n{leader} killed: relays, a leave and a join done after {:?}",
        killed.elapsed()
    );
    // Watch readiness through the whole election (it takes about 5 s on 2.15).
    tokio::time::sleep_until(killed + Duration::from_secs(8)).await;
    sampling.0.send_replace(false);
    let samples = sampler.await.unwrap();
    let said: BTreeSet<&str> = samples.iter().map(String::as_str).collect();
    let unreachable = samples.iter().filter(|a| a.contains("lease store")).count();
    eprintln!(
        "routers' /readyz in the 8 s after the kill: {said:?}; {unreachable} of {} samples said the \
         lease store was unreachable",
        samples.len()
    );
    // Each answer is one of the documented states a router can truly be in around a NATS node loss
    // (never "starting": nothing restarted).
    for answer in &said {
        assert!(
            [
                "ready",
                "not ready: NATS disconnected",
                "not ready: cannot hear itself on NATS (not serving)",
                "not ready: lease store (JetStream) unreachable; held slots are still served",
            ]
            .contains(answer),
            "a router's /readyz said {answer:?} after the node loss"
        );
    }
    // And once JetStream has a new leader, every router is ready again.
    switchboard_testkit::wait_until(Duration::from_secs(15), || async {
        let mut ready = true;
        for admin in &admins {
            ready &= matches!(
                switchboard_testkit::http_get(*admin, "/readyz").await,
                Ok((200, _))
            );
        }
        ready
    })
    .await
    .unwrap_or_else(|e| panic!("routers not ready again: {e}\n{}", cluster.logs()));
    // No slot was given up or served twice.
    cluster.settled().await;
}

/// `n` members of `room`, alternating between the two edges, once each knows all the others; and
/// the room's membership.
async fn room_of(n: usize, cluster: &Cluster, room: &str) -> (Vec<Member>, BTreeSet<String>) {
    let mut members = Vec::new();
    for i in 0..n {
        members.push(Member::join(&cluster.edge_url(i % 2), room).await);
    }
    let all: BTreeSet<String> = members.iter().map(|m| m.id.clone()).collect();
    for m in &mut members {
        assert!(m.converges(&all, Duration::from_secs(5)).await);
    }
    (members, all)
}

/// Every member's view equals `all` within 10 s; otherwise fails with the cluster's logs.
async fn all_converge(members: &mut [Member], all: &BTreeSet<String>, cluster: &Cluster) {
    for m in members {
        assert!(
            m.converges(all, Duration::from_secs(10)).await,
            "{} sees {:?}, the room holds {all:?}\n{}",
            m.id,
            m.view,
            cluster.logs()
        );
    }
}

/// Polls the routers' `/readyz` and `/slots` every 100 ms until told to stop; returns every
/// readiness answer seen, and fails if two routers ever list the same slot as served.
async fn sample_routers(
    admins: Vec<std::net::SocketAddr>,
    running: tokio::sync::watch::Receiver<bool>,
) -> Vec<String> {
    let mut answers = Vec::new();
    while *running.borrow() {
        let mut served = BTreeSet::new();
        for admin in &admins {
            if let Ok((_, body)) = switchboard_testkit::http_get(*admin, "/readyz").await {
                answers.push(body.trim().to_string());
            }
            if let Ok((200, body)) = switchboard_testkit::http_get(*admin, "/slots").await {
                let value: serde_json::Value = serde_json::from_str(&body).unwrap();
                for slot in value["slots"].as_array().unwrap() {
                    assert!(
                        served.insert(slot.as_u64().unwrap()),
                        "slot {slot} listed by two routers at once"
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

/// Guarantee 7: members leave (socket closed, or `leave_room`) and join while the router owning
/// their room is killed. Once a router has taken the slot over, every remaining member's view
/// equals the true membership: nobody left behind as a ghost, nobody unannounced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_storm_during_a_router_kill_leaves_no_ghosts() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "leave-storm";
    let (mut members, mut all) = room_of(10, &cluster, room).await;
    let owner = cluster.owner_of(room).await.expect("the room is served");
    cluster.routers[owner].as_mut().unwrap().kill9().unwrap();

    // Half of them go, in both ways, right after the kill.
    for (i, mut m) in members.drain(5..).enumerate().collect::<Vec<_>>() {
        if i % 2 == 0 {
            m.client.send(json!({"event": "leave_room"})).await;
        }
        all.remove(&m.id);
        drop(m);
    }
    // Two join meanwhile (they wait for the new owner).
    for i in 0..2 {
        let m = Member::join(&cluster.edge_url(i), room).await;
        all.insert(m.id.clone());
        members.push(m);
    }
    all_converge(&mut members, &all, &cluster).await;
    // And it stays so: nothing more arrives but the pong.
    for m in &mut members {
        m.client.sync().await;
    }
}

/// The fault sequence a user of one cluster may live through in a bad week: the router owning
/// their room dies, then an edge, then a NATS node. After each, joins, leaves and relays work again
/// within 5 s and every member's view equals the membership.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_then_an_edge_then_a_nats_node_die() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "bad-week";
    let mut on0 = vec![
        Member::join(&cluster.edge_url(0), room).await,
        Member::join(&cluster.edge_url(0), room).await,
    ];
    let mut on1 = vec![
        Member::join(&cluster.edge_url(1), room).await,
        Member::join(&cluster.edge_url(1), room).await,
    ];
    let mut all: BTreeSet<String> = on0.iter().chain(&on1).map(|m| m.id.clone()).collect();
    let within = Duration::from_secs(5);

    // 1. The room's router.
    let owner = cluster.owner_of(room).await.expect("the room is served");
    cluster.routers[owner].take().unwrap().kill9().unwrap();
    let killed = Instant::now();
    let joiner = Member::join(&cluster.edge_url(0), room).await;
    assert!(
        killed.elapsed() < within,
        "join took {:?}",
        killed.elapsed()
    );
    all.insert(joiner.id.clone());
    on0.push(joiner);
    for m in on0.iter_mut().chain(on1.iter_mut()) {
        let left = within.saturating_sub(killed.elapsed());
        assert!(
            m.converges(&all, left).await,
            "after the router: {} sees {:?}",
            m.id,
            m.view
        );
    }
    cluster.add_router().await;

    // 2. An edge, with its two members.
    cluster.edges[1].take().unwrap().kill9().unwrap();
    let killed = Instant::now();
    for m in on1.drain(..) {
        all.remove(&m.id);
    }
    for m in on0.iter_mut() {
        let left = within.saturating_sub(killed.elapsed());
        assert!(
            m.converges(&all, left).await,
            "after the edge: {} sees {:?}",
            m.id,
            m.view
        );
    }
    let edge = cluster.add_edge().await;
    cluster.settled().await;

    // 3. The NATS node holding most of our connections.
    let victim = cluster.busiest_nats_node().await;
    cluster.nats.kill(victim).unwrap();
    let killed = Instant::now();
    let b = on0[1].id.clone();
    on0[0]
        .client
        .send(json!({"event": "send_to_peer", "peer_id": b, "data": {"event": "message"}}))
        .await;
    let relayed = on0[1].client.recv().await;
    assert_eq!(relayed["event"], "message", "{relayed}");
    let late = Member::join(&cluster.edge_url(edge), room).await;
    assert_eq!(late.view, all, "the joiner is told the true membership");
    all.insert(late.id.clone());
    let leaver = on0.pop().unwrap();
    all.remove(&leaver.id);
    drop(leaver);
    on0.push(late);
    for m in on0.iter_mut() {
        let left = within.saturating_sub(killed.elapsed());
        assert!(
            m.converges(&all, left).await,
            "after the NATS node: {} sees {:?}, the room holds {all:?}\n{}",
            m.id,
            m.view,
            cluster.logs()
        );
    }
}

/// Guarantee 8 through a whole-NATS outage: clients leave while no NATS server runs (their edges
/// cannot tell anyone). Once NATS is back, the others are told, and the room holds exactly who is
/// left, as a new joiner sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_during_a_nats_outage_are_not_lost() {
    let mut cluster = Cluster::start(2, 2).await;
    let room = "outage-leaves";
    let (mut members, mut all) = room_of(8, &cluster, room).await;
    for node in 0..cluster.nats.len() {
        cluster.nats.kill(node).unwrap();
    }
    for (i, mut m) in members.drain(4..).enumerate().collect::<Vec<_>>() {
        if i % 2 == 0 {
            m.client.send(json!({"event": "leave_room"})).await;
        }
        all.remove(&m.id);
    }
    cluster.nats.restart_all().await.unwrap();
    cluster.settled().await;
    all_converge(&mut members, &all, &cluster).await;
    let late = Member::join(&cluster.edge_url(1), room).await;
    assert_eq!(late.view, all);
}

/// Replication comes from the NATS cluster as it really is: on three servers, with default flags,
/// the buckets get 3 replicas, and a lease bucket an older version (or a one-server start) made with
/// 1 replica and a max age is raised to 3 replicas and loses its max age when the routers start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_replicated_across_the_nats_cluster() {
    use async_nats::jetstream::{self, kv};

    let nats = switchboard_testkit::NatsCluster::start(3).await.unwrap();
    let client = async_nats::connect(nats.url(0)).await.unwrap();
    let js = jetstream::new(client);
    js.create_key_value(kv::Config {
        bucket: subject::LEASES_BUCKET.to_string(),
        history: 1,
        max_age: Duration::from_secs(2),
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let cluster = Cluster::start_on(nats, 2, 1, &[], None).await;
    for bucket in [subject::LEASES_BUCKET, subject::PEAKS_BUCKET] {
        let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let config = stream.info().await.unwrap().config.clone();
        assert_eq!(config.num_replicas, 3, "{bucket}\n{}", cluster.logs());
        assert_eq!(config.max_age, Duration::ZERO, "{bucket} keys never expire");
    }
}

/// Routers started before their NATS cluster has a JetStream quorum (servers and routers started
/// together: a Helm install, a whole cluster restarted) wait for it instead of exiting: not ready
/// meanwhile, saying why, and serving every slot with 3 replicas once the quorum forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routers_started_before_jetstream_has_a_quorum_wait_for_it() {
    let mut cluster = Cluster::nats_only().await;
    // One server of three: routes and clients work, JetStream has no meta leader.
    cluster.nats.kill(1).unwrap();
    cluster.nats.kill(2).unwrap();
    cluster.router_args = vec!["--nats-replicas".into(), "3".into()];
    for _ in 0..2 {
        cluster.add_router().await;
    }
    for i in 0..2 {
        let admin = cluster.router(i).addr("admin_listen").unwrap();
        switchboard_testkit::wait_until(Duration::from_secs(30), || async {
            let log = cluster.router(i).log();
            let waiting = matches!(
                switchboard_testkit::http_get(admin, "/readyz").await,
                Ok((503, body)) if body.contains("setting up JetStream storage")
            );
            waiting && log.contains("cannot set up JetStream storage yet")
        })
        .await
        // (Answering /readyz, it has not exited.)
        .unwrap_or_else(|e| panic!("router {i} does not say it waits: {e}\n{}", cluster.logs()));
    }

    cluster.nats.restart_all().await.unwrap();
    cluster.add_edge().await;
    cluster.add_edge().await;
    cluster.settled().await;
    let (mut members, all) = room_of(4, &cluster, "after-the-quorum").await;
    all_converge(&mut members, &all, &cluster).await;
    let client = async_nats::connect(cluster.nats.url(0)).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("KV_{}", subject::LEASES_BUCKET))
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().config.num_replicas, 3);
}
