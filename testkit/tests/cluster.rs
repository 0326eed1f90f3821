//! The NATS harness against the real nats-server: the cluster it starts routes messages between
//! nodes, replicates JetStream KV across them, survives losing a node, and takes it back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;
use serde_json::Value;
use switchboard_testkit::{NatsCluster, http_get, wait_until};

/// How long a test waits for something it expects before failing.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_message_published_on_node_0_reaches_a_subscriber_on_node_2() {
    let started = Instant::now();
    let nats = NatsCluster::start(3).await.unwrap();
    eprintln!("3-node cluster healthy after {:?}", started.elapsed());
    assert_eq!(nats.urls().len(), 3);
    assert_eq!(nats.url_list(), nats.urls().join(","));

    let on_node_2 = async_nats::connect(nats.url(2)).await.unwrap();
    let mut subscriber = on_node_2.subscribe("testkit.hello").await.unwrap();
    on_node_2.flush().await.unwrap();
    // Interest crosses the route asynchronously and NATS drops messages nobody is interested in, so
    // wait until node 0 knows of the subscriber on node 2 before publishing.
    let node_0 = nats.monitoring_addr(0);
    wait_until(PATIENCE, || async {
        let Ok((200, body)) = http_get(node_0, "/subsz?subs=1&test=testkit.hello").await else {
            return false;
        };
        let subsz: Value = serde_json::from_str(&body).unwrap_or_default();
        subsz["num_matches"].as_u64().unwrap_or(0) > 0
    })
    .await
    .context("node 0 never learned of the subscription on node 2")
    .unwrap();

    let on_node_0 = async_nats::connect(nats.url(0)).await.unwrap();
    on_node_0
        .publish("testkit.hello", "across the cluster".into())
        .await
        .unwrap();
    on_node_0.flush().await.unwrap();
    let message = tokio::time::timeout(PATIENCE, subscriber.next())
        .await
        .expect("the message arrives on node 2")
        .unwrap();
    assert_eq!(&message.payload[..], b"across the cluster");
}

#[tokio::test]
async fn replicated_kv_stays_writable_without_a_node_and_the_node_rejoins() {
    let mut nats = NatsCluster::start(3).await.unwrap();
    // Node 1 first and the order kept, so this client is on the node about to die and has to
    // reconnect to a survivor, as an edge would.
    let urls = [nats.url(1), nats.url(0), nats.url(2)];
    let client = async_nats::ConnectOptions::new()
        .retain_servers_order()
        .connect(urls.as_slice())
        .await
        .unwrap();
    assert_eq!(client.server_info().server_name, "n1");
    let mut js = jetstream::new(client.clone());
    // A put that goes unanswered (its node died, or no leader yet) fails after this, not after the
    // default 5 s, so the test notices soon after the cluster is writable again.
    js.set_timeout(Duration::from_millis(500));
    let kv = js
        .create_key_value(kv::Config {
            bucket: "testkit".into(),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    kv.put("before", "1".into()).await.unwrap();

    let killed = Instant::now();
    nats.kill(1).unwrap();
    assert!(!nats.node_alive(1));
    assert!(nats.node_alive(0) && nats.node_alive(2));
    // Writes fail while the client reconnects and, if node 1 led the stream or the meta group,
    // while the survivors elect a new leader (measured on 2.9.10: 0.5 s, or 4 to 8 s when node 1
    // led the stream); then they must succeed.
    wait_until(Duration::from_secs(15), || async {
        kv.put("during", "2".into()).await.is_ok()
    })
    .await
    .context("the KV never became writable again without node 1")
    .unwrap();
    eprintln!("KV writable again {:?} after the kill", killed.elapsed());
    assert_ne!(client.server_info().server_name, "n1");
    let entry = kv.get("before").await.unwrap().expect("the value survives");
    assert_eq!(&entry[..], b"1");

    let restarting = Instant::now();
    nats.restart(1).await.unwrap();
    eprintln!("node 1 rejoined after {:?}", restarting.elapsed());
    assert!(nats.node_alive(1));
    // Healthy means node 1's replica has caught up: it holds both values, the one written while it
    // was down included.
    let (status, body) = http_get(nats.monitoring_addr(1), "/jsz").await.unwrap();
    assert_eq!(status, 200);
    let jsz: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jsz["streams"], 1, "{jsz}");
    assert_eq!(jsz["messages"], 2, "{jsz}");
    // And it serves clients again, on the URL it had before.
    let on_node_1 = async_nats::connect(nats.url(1)).await.unwrap();
    assert_eq!(on_node_1.server_info().server_name, "n1");
    let kv = jetstream::new(on_node_1)
        .get_key_value("testkit")
        .await
        .unwrap();
    kv.put("after", "3".into()).await.unwrap();
}

#[tokio::test]
async fn a_single_node_runs_jetstream_standalone() {
    let mut nats = NatsCluster::start(1).await.unwrap();
    let client = async_nats::connect(nats.url_list()).await.unwrap();
    let kv = jetstream::new(client)
        .create_key_value(kv::Config {
            bucket: "single".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    kv.put("key", "value".into()).await.unwrap();
    assert!(nats.kill(0).is_ok());
    assert!(nats.kill(0).is_err(), "killing a dead node is an error");
}

#[tokio::test]
async fn dropping_the_cluster_kills_its_nodes_and_removes_its_directory() {
    let nats = NatsCluster::start(3).await.unwrap();
    let dir = nats.dir().to_owned();
    let monitoring = nats.monitoring_addr(0);
    let log = nats.log(0);
    assert!(log.contains("Server is ready"), "{log}");
    drop(nats);
    assert!(http_get(monitoring, "/healthz").await.is_err());
    if std::env::var_os(switchboard_testkit::KEEP_DIRS_ENV).is_none() {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
