//! A real `nats-server` cluster with JetStream on loopback, for tests that need NATS to fail like
//! production: nodes can be killed (SIGKILL) and restarted.
//!
//! The nodes start one after another: node 0 first, then each next one with routes to the cluster
//! ports of the nodes already running (read from their ports files), so no port is ever guessed.
//! Gossip completes the full mesh. (nats-server 2.9 refuses to start clustered JetStream without a
//! configured route, so node 0 gets a placeholder route to port 0, which nothing can listen on.)
//! A restarted node keeps its server name and JetStream store, asks
//! for its old ports again (so URLs handed out before stay valid; it falls back to fresh ports if
//! one was taken meanwhile) and routes to every running node.
//!
//! Each node's files are under [`NatsCluster::dir`]`/n<i>/` (`nats.conf`, `nats-server.log`, `ports/`, `store/`); logs are
//! kept across restarts and their ends are quoted whenever a start or a wait fails.

mod health;
mod node;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

use self::health::Living;
use self::node::{Clustering, Ports, Running};
use crate::tempdir::TempDir;
use crate::wait::POLL_INTERVAL;

/// Bound on the wait for a healthy cluster. Measured on 2.9.10: a fresh 3-node cluster is healthy
/// 0.2 to 0.7 s after its first node starts; a restarted node takes 2.5 to 7.5 s to catch up.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// N clustered nats-server processes with JetStream, on 127.0.0.1, killed on drop.
///
/// Dropping it SIGKILLs every node and removes its directory (unless `SWITCHBOARD_KEEP_TEST_DIRS` is
/// set). Node indices run from 0 to `len() - 1`; methods taking an index panic on one out of range,
/// as slice indexing does.
#[derive(Debug)]
pub struct NatsCluster {
    binary: PathBuf,
    cluster_name: String,
    nodes: Vec<Node>,
    /// The token clients must present, if any.
    token: Option<String>,
    // Declared after `nodes`, so that it is removed only once every node has been killed.
    dir: TempDir,
}

#[derive(Debug)]
struct Node {
    name: String,
    dir: PathBuf,
    /// `None` once killed.
    running: Option<Running>,
    /// The ports of the last start, also while the node is down.
    ports: Ports,
}

impl NatsCluster {
    /// Starts `n` nodes (3 for a production-like cluster) and waits until the cluster is healthy:
    /// full route mesh, a JetStream meta leader, every peer current. `n = 1` runs a single node with
    /// standalone JetStream.
    pub async fn start(n: usize) -> Result<NatsCluster> {
        Self::start_with_token(n, None).await
    }

    /// Like [`NatsCluster::start`], with clients required to authenticate with `token`.
    pub async fn start_with_token(n: usize, token: Option<&str>) -> Result<NatsCluster> {
        if n == 0 {
            bail!("a NATS cluster needs at least one node");
        }
        let dir = TempDir::new("nats")?;
        let cluster_name = dir.path().file_name().map_or_else(
            || "switchboard-test".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let mut cluster = NatsCluster {
            binary: node::binary()?,
            cluster_name,
            nodes: Vec::with_capacity(n),
            token: token.map(str::to_string),
            dir,
        };
        for i in 0..n {
            let name = format!("n{i}");
            let dir = cluster.dir.path().join(&name);
            // Nodes already pushed are killed by the drop if this fails.
            let (running, ports) = cluster.launch(&name, &dir, None, n > 1).await?;
            cluster.nodes.push(Node {
                name,
                dir,
                running: Some(running),
                ports,
            });
        }
        cluster.wait_healthy().await?;
        Ok(cluster)
    }

    /// Number of nodes, running or not.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has at least one node. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The client URL of every node, running or not, in node order: `nats://127.0.0.1:P`.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].ports.client)
    }

    /// All client URLs joined by commas, the form `--nats` takes.
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// The monitoring address of node `i` (`/healthz`, `/varz`, `/jsz`, `/routez`, ...).
    pub fn monitoring_addr(&self, i: usize) -> SocketAddr {
        health::loopback(self.nodes[i].ports.monitoring)
    }

    /// The cluster's directory: `n<i>/` per node with `nats.conf`, `nats-server.log`, `ports/`,
    /// `store/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything node `i` logged, across restarts.
    pub fn log(&self, i: usize) -> String {
        std::fs::read(node::log_path(&self.nodes[i].dir))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Whether node `i`'s process is running (it may have died on its own, not only by `kill`).
    pub fn node_alive(&mut self, i: usize) -> bool {
        self.nodes[i]
            .running
            .as_mut()
            .is_some_and(|running| matches!(running.0.try_wait(), Ok(None)))
    }

    /// SIGKILLs node `i`, like a crashed machine: no goodbye to clients or routes. The other nodes
    /// and the clients notice by themselves.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let running = node
            .running
            .take()
            .with_context(|| format!("{} is not running", node.name))?;
        // Dropping kills and reaps.
        drop(running);
        Ok(())
    }

    /// Starts node `i` again after [`NatsCluster::kill`] (same server name and JetStream store,
    /// routes to every running node) and waits until the cluster is healthy with it again.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.relaunch(i).await?;
        self.wait_healthy().await
    }

    /// Restarts every stopped node, then waits once until the cluster is healthy again. Unlike one
    /// [`NatsCluster::restart`] after another, this works after the whole cluster was down: a single
    /// node cannot become healthy without a JetStream quorum.
    pub async fn restart_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if !self.node_alive(i) {
                self.relaunch(i).await?;
            }
        }
        self.wait_healthy().await
    }

    /// Starts a stopped node again (same name and store), without waiting for the cluster.
    async fn relaunch(&mut self, i: usize) -> Result<()> {
        if self.node_alive(i) {
            bail!("{} is running; kill it first", self.nodes[i].name);
        }
        self.nodes[i].running = None;
        let (name, dir, old) = {
            let node = &self.nodes[i];
            (node.name.clone(), node.dir.clone(), node.ports)
        };
        let clustered = self.nodes.len() > 1;
        let (running, ports) = match self.launch(&name, &dir, Some(old), clustered).await {
            Ok(started) => started,
            // Most likely another process took one of the old ports meanwhile.
            Err(first) => self
                .launch(&name, &dir, None, clustered)
                .await
                .with_context(|| {
                    format!("{name} could not reuse its old ports either: {first:#}")
                })?,
        };
        let node = &mut self.nodes[i];
        node.running = Some(running);
        node.ports = ports;
        Ok(())
    }

    /// Waits (at most 30 s) until every running node is healthy and they agree on a running
    /// JetStream meta leader that counts them all as current (see the `health` module). Call it
    /// after [`NatsCluster::kill`] to wait for a re-election; [`NatsCluster::start`] and
    /// [`NatsCluster::restart`] call it themselves.
    pub async fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        let clustered = self.nodes.len() > 1;
        loop {
            for node in &mut self.nodes {
                if let Some(running) = &mut node.running
                    && let Some(status) = running.0.try_wait()?
                {
                    bail!(
                        "nats-server {} exited ({status}) by itself; {}",
                        node.name,
                        node::log_tail(&node.name, &node.dir)
                    );
                }
            }
            let living: Vec<Living<'_>> = self
                .nodes
                .iter()
                .filter(|node| node.running.is_some())
                .map(|node| Living {
                    name: &node.name,
                    ports: node.ports,
                })
                .collect();
            let why_not = match health::check(&living, clustered).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                bail!(
                    "the NATS cluster in {} is not healthy after {HEALTHY_TIMEOUT:?}: {why_not:#}\n{}",
                    self.dir().display(),
                    self.log_tails()
                );
            }
            tokio::time::sleep(POLL_INTERVAL * 5).await;
        }
    }

    /// Writes the configuration of a node and starts it, with routes to every running node.
    async fn launch(
        &self,
        name: &str,
        dir: &Path,
        ports: Option<Ports>,
        clustered: bool,
    ) -> Result<(Running, Ports)> {
        let routes: Vec<u16> = self
            .nodes
            .iter()
            .filter(|node| node.name != name && node.running.is_some())
            .map(|node| node.ports.cluster)
            .collect();
        let clustering = Clustering {
            name: &self.cluster_name,
            routes: &routes,
        };
        let config = node::write_config(
            name,
            dir,
            ports,
            clustered.then_some(&clustering),
            self.token.as_deref(),
        )?;
        node::spawn(&self.binary, name, dir, &config).await
    }

    fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node::log_tail(&node.name, &node.dir))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
