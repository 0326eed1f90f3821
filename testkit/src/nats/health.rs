//! When a nats-server cluster is usable, judged from outside the way an operator would.
//!
//! A node that has bound its ports is not yet useful: routes connect asynchronously, and JetStream
//! needs an elected meta leader that every peer follows before a stream or KV bucket can be created
//! (measured on 2.9.10 with 3 fresh nodes: 0.2 to 0.7 s after the first one starts), and a restarted
//! node must catch up with the meta group and its streams (2.5 to 7.5 s). So the cluster counts as
//! healthy when, for every running node:
//! - its client port greets with `INFO`;
//! - `/healthz` answers 200: on 2.9 the node knows a meta leader, is current with it, and the Raft
//!   logs of the streams it holds are current;
//! - `/routez` shows a route to each other running node;
//! - `/jsz` names the same meta leader, a running node, and that leader lists every other running
//!   node as a current peer (only the leader's `/jsz` lists the peers);
//! - every replicated stream has a running leader, and every running replica holds all the leader
//!   holds: a current Raft log does not yet mean the messages have arrived.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

use super::node::Ports;
use crate::http_get;

/// Bound on the greeting of a client port.
const GREETING_TIMEOUT: Duration = Duration::from_secs(2);

/// One running node, as seen by the check.
pub(super) struct Living<'a> {
    pub(super) name: &'a str,
    pub(super) ports: Ports,
}

/// `Ok` when the running nodes form a usable cluster; otherwise the first reason it is not.
pub(super) async fn check(living: &[Living<'_>], clustered: bool) -> Result<()> {
    let mut leader: Option<String> = None;
    let mut views = Vec::with_capacity(living.len());
    for node in living {
        let name = node.name;
        greets(node.ports.client)
            .await
            .with_context(|| format!("{name}: client port {}", node.ports.client))?;
        let monitoring = loopback(node.ports.monitoring);
        let (status, body) = http_get(monitoring, "/healthz").await?;
        if status != 200 {
            bail!("{name}: /healthz answered {status}: {}", body.trim());
        }
        if !clustered {
            continue;
        }
        // Count peers, not connections: since 2.10 a server keeps a pool of routes (3 by default,
        // plus pinned accounts) to each peer.
        let routez = get_json(monitoring, "/routez").await?;
        let peers: std::collections::BTreeSet<&str> = routez["routes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|route| route["remote_id"].as_str())
            .collect();
        let routes = peers.len() as u64;
        let others = living.len() as u64 - 1;
        if routes != others {
            bail!("{name}: routes to {routes} peers, expected {others}");
        }
        let jsz = get_json(monitoring, "/jsz?accounts=true&streams=true").await?;
        let seen = jsz
            .pointer("/meta_cluster/leader")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if seen.is_empty() {
            bail!("{name}: no JetStream meta leader yet");
        }
        match &leader {
            Some(first) if first != seen => {
                bail!("{name} follows meta leader {seen}, others follow {first}");
            }
            Some(_) => {}
            None => leader = Some(seen.to_owned()),
        }
        views.push((name, jsz));
    }
    streams_caught_up(&views, living)?;

    if let Some(leader) = leader {
        let Some(node) = living.iter().find(|node| node.name == leader) else {
            bail!("the meta leader {leader} is not running; waiting for a new election");
        };
        let jsz = get_json(loopback(node.ports.monitoring), "/jsz").await?;
        let replicas = jsz
            .pointer("/meta_cluster/replicas")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for peer in living.iter().filter(|node| node.name != leader) {
            let current = replicas
                .iter()
                .any(|r| r["name"] == peer.name && r["current"] == true);
            if !current {
                bail!(
                    "{} is not (yet) a current JetStream peer of the meta leader {leader}",
                    peer.name
                );
            }
        }
    }
    Ok(())
}

/// Checks every replicated stream: it has a running leader, and every running replica holds what
/// the leader holds (same last sequence). Neither a restarted node's `/healthz` nor the leader's
/// `current` flag says that much on 2.9.10: both turn true as soon as the Raft log is current, while
/// the messages written during the node's absence still arrive by a separate catch-up (measured:
/// about a second later).
fn streams_caught_up(views: &[(&str, Value)], living: &[Living<'_>]) -> Result<()> {
    let mut streams: BTreeMap<String, Vec<StreamCopy<'_>>> = BTreeMap::new();
    for (node, jsz) in views {
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                let Some(cluster) = stream.get("cluster") else {
                    continue; // not replicated
                };
                let key = format!(
                    "{} > {}",
                    account["name"].as_str().unwrap_or_default(),
                    stream["name"].as_str().unwrap_or_default()
                );
                streams.entry(key).or_default().push(StreamCopy {
                    node,
                    leader: cluster["leader"].as_str().unwrap_or_default(),
                    last_seq: stream["state"]["last_seq"].as_u64().unwrap_or(0),
                    replicas: cluster["replicas"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r["name"].as_str())
                        .collect(),
                });
            }
        }
    }
    let running = |name: &str| living.iter().any(|l| l.name == name);
    for (stream, copies) in &streams {
        // Only running nodes were asked, so a leader found here is a running one.
        let Some(leader) = copies.iter().find(|copy| copy.node == copy.leader) else {
            bail!("stream {stream} has no running leader yet");
        };
        for &replica in leader.replicas.iter().filter(|&&r| running(r)) {
            let Some(copy) = copies.iter().find(|copy| copy.node == replica) else {
                bail!("stream {stream}: {replica} does not host its replica yet");
            };
            if copy.last_seq != leader.last_seq {
                bail!(
                    "stream {stream}: {replica} holds up to sequence {}, its leader {} up to {}",
                    copy.last_seq,
                    leader.node,
                    leader.last_seq
                );
            }
        }
    }
    Ok(())
}

/// One node's copy of a replicated stream, as its `/jsz` describes it.
struct StreamCopy<'a> {
    node: &'a str,
    /// The leader this node follows (itself, if it leads).
    leader: &'a str,
    last_seq: u64,
    /// The other nodes holding copies, in this node's view.
    replicas: Vec<&'a str>,
}

/// A NATS server greets every new client with an `INFO {...}` line.
async fn greets(port: u16) -> Result<()> {
    let greeting = async {
        let stream = TcpStream::connect(loopback(port)).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        anyhow::Ok(line)
    };
    let line = tokio::time::timeout(GREETING_TIMEOUT, greeting)
        .await
        .context("no greeting")??;
    if !line.starts_with("INFO ") {
        bail!("greeted with {line:?} instead of INFO");
    }
    Ok(())
}

async fn get_json(addr: SocketAddr, path: &str) -> Result<Value> {
    let (status, body) = http_get(addr, path).await?;
    if status != 200 {
        bail!("{path} answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("{path} is not JSON: {body:?}"))
}

pub(super) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
