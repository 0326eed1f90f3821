//! A whole cluster of real processes for tests: a 3-node nats-server cluster with JetStream, routers
//! and edges (the workspace's binaries), all on loopback, killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchboard_proto::{RoomId, RoomKeyer};
use switchboard_testkit::{NatsCluster, Process, binary_path, http_get, wait_until};

/// The room-id secret every process of a test cluster shares.
pub const SECRET: &str = "cluster-test-secret";

/// Room size limit the test routers enforce (large enough for the 50-joiner check).
pub const MAX_ROOM_SIZE: usize = 60;

/// How long a cluster may take to settle after a start or a failure.
pub const SETTLE: Duration = Duration::from_secs(20);

pub struct Cluster {
    pub nats: NatsCluster,
    pub routers: Vec<Option<Process>>,
    pub edges: Vec<Option<Process>>,
    /// Extra arguments for every edge started.
    pub edge_args: Vec<String>,
    /// Extra arguments for every router started.
    pub router_args: Vec<String>,
    /// Extra arguments for every router and edge started (NATS credentials).
    pub nats_args: Vec<String>,
}

impl Cluster {
    /// NATS (3 nodes), then `routers` routers and `edges` edges; returns once every router is
    /// ready, every slot is served and every edge is ready.
    pub async fn start(routers: usize, edges: usize) -> Cluster {
        Self::start_with(routers, edges, &[]).await
    }

    /// Like [`Cluster::start`], with extra arguments for the edges.
    pub async fn start_with(routers: usize, edges: usize, edge_args: &[&str]) -> Cluster {
        Self::start_full(routers, edges, edge_args, None).await
    }

    /// Like [`Cluster::start`], with extra arguments for the edges and for the routers.
    pub async fn start_with_args(
        routers: usize,
        edges: usize,
        edge_args: &[&str],
        router_args: &[&str],
    ) -> Cluster {
        let nats = NatsCluster::start_with_token(3, None)
            .await
            .expect("nats cluster starts");
        let mut cluster = Cluster::empty(nats, edge_args, None);
        cluster.router_args = router_args.iter().map(|s| s.to_string()).collect();
        cluster.fill(routers, edges).await;
        cluster
    }

    /// Like [`Cluster::start`], with NATS requiring `token` from clients; routers and edges are
    /// given it with `--nats-token`.
    pub async fn start_with_token(routers: usize, edges: usize, token: &str) -> Cluster {
        Self::start_full(routers, edges, &[], Some(token)).await
    }

    async fn start_full(
        routers: usize,
        edges: usize,
        edge_args: &[&str],
        token: Option<&str>,
    ) -> Cluster {
        let nats = NatsCluster::start_with_token(3, token)
            .await
            .expect("nats cluster starts");
        Self::start_on(nats, routers, edges, edge_args, token).await
    }

    /// NATS only: the test adds routers and edges (each with arguments of its own), then waits
    /// for [`Cluster::settled`].
    pub async fn nats_only() -> Cluster {
        let nats = NatsCluster::start_with_token(3, None)
            .await
            .expect("nats cluster starts");
        Cluster::empty(nats, &[], None)
    }

    /// Like [`Cluster::start`], on a NATS cluster the test prepared.
    pub async fn start_on(
        nats: NatsCluster,
        routers: usize,
        edges: usize,
        edge_args: &[&str],
        token: Option<&str>,
    ) -> Cluster {
        let mut cluster = Cluster::empty(nats, edge_args, token);
        cluster.fill(routers, edges).await;
        cluster
    }

    fn empty(nats: NatsCluster, edge_args: &[&str], token: Option<&str>) -> Cluster {
        Cluster {
            nats,
            routers: Vec::new(),
            edges: Vec::new(),
            edge_args: edge_args.iter().map(|s| s.to_string()).collect(),
            router_args: Vec::new(),
            nats_args: token
                .map(|t| vec!["--nats-token".to_string(), t.to_string()])
                .unwrap_or_default(),
        }
    }

    /// Starts `routers` routers and `edges` edges, and waits until the cluster has settled.
    async fn fill(&mut self, routers: usize, edges: usize) {
        for _ in 0..routers {
            self.add_router().await;
        }
        for _ in 0..edges {
            self.add_edge().await;
        }
        self.settled().await;
    }

    pub async fn add_router(&mut self) -> usize {
        self.add_router_with(&[]).await
    }

    /// Starts a router with `extra` arguments besides the usual ones (e.g. `--router-id`).
    pub async fn add_router_with(&mut self, extra: &[&str]) -> usize {
        let mut args: Vec<String> = [
            "--nats",
            &self.nats.url_list(),
            "--admin-listen",
            "127.0.0.1:0",
            "--max-room-size",
            &MAX_ROOM_SIZE.to_string(),
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.nats_args.iter().cloned());
        args.extend(self.router_args.iter().cloned());
        args.extend(extra.iter().map(|s| s.to_string()));
        let process = Process::spawn(binary_path("switchboard-router").unwrap(), args)
            .await
            .expect("router starts");
        self.routers.push(Some(process));
        self.routers.len() - 1
    }

    pub async fn add_edge(&mut self) -> usize {
        let mut args: Vec<String> = [
            "--nats",
            &self.nats.url_list(),
            "--room-key-secret",
            SECRET,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "200ms",
            "--shutdown-grace",
            "1s",
            "--log-format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.edge_args.iter().cloned());
        args.extend(self.nats_args.iter().cloned());
        let process = Process::spawn(binary_path("switchboard-edge").unwrap(), args)
            .await
            .expect("edge starts");
        self.edges.push(Some(process));
        self.edges.len() - 1
    }

    pub fn edge(&self, i: usize) -> &Process {
        self.edges[i].as_ref().expect("edge is running")
    }

    pub fn router(&self, i: usize) -> &Process {
        self.routers[i].as_ref().expect("router is running")
    }

    pub fn edge_url(&self, i: usize) -> String {
        format!("ws://{}/", self.edge(i).addr("listen").unwrap())
    }

    /// Slots each running router serves (`None` for a stopped one).
    pub async fn slots(&self) -> Vec<Option<Vec<u32>>> {
        let mut all = Vec::new();
        for router in &self.routers {
            match router {
                Some(router) => {
                    let addr = router.addr("admin_listen").unwrap();
                    let slots = match http_get(addr, "/slots").await {
                        Ok((200, body)) => {
                            let value: serde_json::Value = serde_json::from_str(&body).unwrap();
                            serde_json::from_value(value["slots"].clone()).ok()
                        }
                        _ => None,
                    };
                    all.push(slots);
                }
                None => all.push(None),
            }
        }
        all
    }

    /// Waits until every slot is served exactly once and every running process is ready.
    pub async fn settled(&self) {
        let slots = switchboard_proto::bus::DEFAULT_SLOTS as usize;
        wait_until(SETTLE, || async {
            let served: Vec<u32> = self.slots().await.into_iter().flatten().flatten().collect();
            let mut unique = served.clone();
            unique.sort_unstable();
            unique.dedup();
            if served.len() != slots || unique.len() != slots {
                return false;
            }
            for edge in self.edges.iter().flatten() {
                let addr = edge.addr("admin_listen").unwrap();
                if !matches!(http_get(addr, "/readyz").await, Ok((200, _))) {
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or_else(|e| panic!("cluster did not settle: {e}\n{}", self.logs()));
    }

    /// The router (index) serving `room`'s slot.
    pub async fn owner_of(&self, room: &str) -> Option<usize> {
        let key = RoomKeyer::new(SECRET.as_bytes())
            .key(&RoomId::parse(Some(&serde_json::json!(room))).unwrap());
        self.owner_of_key(key).await
    }

    /// The router (index) serving the slot of tenant `tenant`'s `room` (hosted mode).
    pub async fn owner_of_tenant_room(&self, tenant: &str, room: &str) -> Option<usize> {
        let key = RoomKeyer::new(SECRET.as_bytes()).key_in(
            &switchboard_proto::TenantId::parse(tenant).unwrap(),
            &RoomId::parse(Some(&serde_json::json!(room))).unwrap(),
        );
        self.owner_of_key(key).await
    }

    async fn owner_of_key(&self, key: switchboard_proto::RoomKey) -> Option<usize> {
        let slot = key.slot(switchboard_proto::bus::DEFAULT_SLOTS);
        self.slots()
            .await
            .iter()
            .position(|slots| slots.as_ref().is_some_and(|s| s.contains(&slot)))
    }

    /// The NATS node (index) holding the most connections of our edges and routers.
    pub async fn busiest_nats_node(&self) -> usize {
        let mut best = (0, 0);
        for i in 0..self.nats.len() {
            let Ok((200, body)) = http_get(self.nats.monitoring_addr(i), "/connz?limit=1024").await
            else {
                continue;
            };
            let connz: serde_json::Value = serde_json::from_str(&body).unwrap();
            let ours = connz["connections"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter(|c| {
                            c["name"].as_str().is_some_and(|n| {
                                n.starts_with("switchboard-edge-") || n.starts_with("router-")
                            })
                        })
                        .count()
                })
                .unwrap_or(0);
            if ours > best.1 {
                best = (i, ours);
            }
        }
        assert!(best.1 > 0, "no node holds any of our connections");
        best.0
    }

    /// Every process's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (kind, list) in [("router", &self.routers), ("edge", &self.edges)] {
            for (i, process) in list.iter().enumerate() {
                if let Some(process) = process {
                    let log = process.log();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    out.push_str(&format!("--- {kind} {i} ---\n"));
                    for line in tail.into_iter().rev() {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Drop for Cluster {
    /// A failing test shows what every process said last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
