//! Guarantee 7 as a property: random sequences of router kills, edge kills, NATS node kills and
//! whole-NATS outages, with clients joining and leaving meanwhile, never leave a client's view of its
//! room (`joined_room` plus later events) different from the true membership once the cluster has
//! recovered. Real nats-server cluster, routers and edges on loopback, default router flags.
//!
//! The default run is one sequence of `SWITCHBOARD_CHAOS_STEPS` (default 6) faults with a random
//! seed, printed first; `SWITCHBOARD_CHAOS_SEED` replays one, `SWITCHBOARD_CHAOS_RUNS` runs more
//! (a soak: `SWITCHBOARD_CHAOS_RUNS=20 cargo test -p switchboard-edge --test chaos`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::cluster::Cluster;
use common::views::Member;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const ROOMS: [&str; 2] = ["chaos-a", "chaos-b"];

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillRouter,
    KillEdge,
    KillNatsNode,
    NatsOutage,
}

struct World {
    cluster: Cluster,
    /// Connected members, by room.
    members: BTreeMap<&'static str, Vec<(usize, Member)>>,
}

impl World {
    fn live_edges(&self) -> Vec<usize> {
        (0..self.cluster.edges.len())
            .filter(|i| self.cluster.edges[*i].is_some())
            .collect()
    }

    fn truth(&self, room: &str) -> BTreeSet<String> {
        self.members[room]
            .iter()
            .map(|(_, m)| m.id.clone())
            .collect()
    }

    async fn join(&mut self, rng: &mut StdRng) {
        let edges = self.live_edges();
        let edge = edges[rng.random_range(0..edges.len())];
        let room = ROOMS[rng.random_range(0..ROOMS.len())];
        // Refused while no router can serve the room (a whole-NATS outage): nobody joined.
        if let Some(m) = Member::try_join(&self.cluster.edge_url(edge), room).await {
            self.members.get_mut(room).unwrap().push((edge, m));
        }
    }

    async fn leave(&mut self, rng: &mut StdRng) {
        let room = ROOMS[rng.random_range(0..ROOMS.len())];
        let list = self.members.get_mut(room).unwrap();
        if list.is_empty() {
            return;
        }
        let (_, mut m) = list.remove(rng.random_range(0..list.len()));
        if rng.random_bool(0.5) {
            m.client.send(json!({"event": "leave_room"})).await;
        }
        // Either way the socket closes now (a leave, then a close; or just a close).
    }

    async fn churn(&mut self, rng: &mut StdRng) {
        for _ in 0..rng.random_range(2..5) {
            if rng.random_bool(0.6) {
                self.join(rng).await;
            } else {
                self.leave(rng).await;
            }
        }
    }

    async fn step(&mut self, fault: Fault, rng: &mut StdRng) {
        match fault {
            Fault::KillRouter => {
                let live: Vec<usize> = (0..self.cluster.routers.len())
                    .filter(|i| self.cluster.routers[*i].is_some())
                    .collect();
                let victim = live[rng.random_range(0..live.len())];
                self.cluster.routers[victim]
                    .take()
                    .unwrap()
                    .kill9()
                    .unwrap();
                self.churn(rng).await;
                self.cluster.add_router().await;
            }
            Fault::KillEdge => {
                let edges = self.live_edges();
                let victim = edges[rng.random_range(0..edges.len())];
                self.cluster.edges[victim].take().unwrap().kill9().unwrap();
                for list in self.members.values_mut() {
                    list.retain(|(edge, _)| *edge != victim);
                }
                self.cluster.add_edge().await;
                self.churn(rng).await;
            }
            Fault::KillNatsNode => {
                let node = rng.random_range(0..self.cluster.nats.len());
                self.cluster.nats.kill(node).unwrap();
                self.churn(rng).await;
                self.cluster.nats.restart(node).await.unwrap();
            }
            Fault::NatsOutage => {
                for node in 0..self.cluster.nats.len() {
                    self.cluster.nats.kill(node).unwrap();
                }
                // Only leaves: a join would wait out its retry window and be refused.
                for _ in 0..rng.random_range(1..4) {
                    self.leave(rng).await;
                }
                self.cluster.nats.restart_all().await.unwrap();
            }
        }
        self.cluster.settled().await;
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_faults_never_leave_a_view_wrong() {
    let runs = env("SWITCHBOARD_CHAOS_RUNS").unwrap_or(1);
    let steps = env("SWITCHBOARD_CHAOS_STEPS").unwrap_or(6);
    for run in 0..runs {
        let seed = env("SWITCHBOARD_CHAOS_SEED").unwrap_or_else(rand::random);
        eprintln!("chaos run {run}: SWITCHBOARD_CHAOS_SEED={seed} SWITCHBOARD_CHAOS_STEPS={steps}");
        one_run(seed, steps).await;
    }
}

async fn one_run(seed: u64, steps: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cluster = Cluster::start(2, 2).await;
    let mut world = World {
        cluster,
        members: ROOMS.iter().map(|r| (*r, Vec::new())).collect(),
    };
    for _ in 0..6 {
        world.join(&mut rng).await;
    }
    let faults = [
        Fault::KillRouter,
        Fault::KillEdge,
        Fault::KillNatsNode,
        Fault::NatsOutage,
    ];
    let mut done = Vec::new();
    for _ in 0..steps {
        let fault = faults[rng.random_range(0..faults.len())];
        done.push(fault);
        world.step(fault, &mut rng).await;
        // Keep the members' sockets read, as real clients do.
        for list in world.members.values_mut() {
            for (_, m) in list.iter_mut() {
                m.drain().await;
            }
        }
    }
    // Recovered: every view equals the truth (periodic reconciliation included, 30 s by default).
    let recovered = tokio::time::Instant::now();
    for room in ROOMS {
        let truth = world.truth(room);
        let logs = world.cluster.logs();
        for (_, m) in world.members.get_mut(room).unwrap() {
            let ok = m.converges(&truth, Duration::from_secs(40)).await;
            assert!(
                ok,
                "seed {seed}, faults {done:?}: {} in {room} sees {:?}, the room holds {truth:?}\n{logs}",
                m.id, m.view
            );
        }
    }
    eprintln!(
        "chaos seed {seed}: {done:?}: every view is right {:?} after recovery",
        recovered.elapsed()
    );
}
