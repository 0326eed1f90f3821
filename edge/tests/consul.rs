//! `switchboard-edge --consul-addr`: registration with the local Consul agent, and NATS servers
//! found through Consul, with the real binary.
//!
//! No Consul binary can run in the test environment, so the agent is
//! [`switchboard_testkit::ConsulAgent`]: an HTTP stand-in answering exactly the endpoints the edge
//! calls (agent service register, deregister and look-up; health of a service), modelled on
//! Consul's documented API (field names and casing, status codes, `X-Consul-Token`), recording
//! every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::consul::Recorded;
use switchboard_testkit::{
    ConsulAgent, NatsCluster, Process, TempDir, binary_path, http_get, wait_until,
};

/// Bound on every wait for the edge to do something.
const WAIT: Duration = Duration::from_secs(15);

async fn edge(consul: &ConsulAgent, extra: &[&str]) -> Process {
    let url = consul.url();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--consul-addr",
        &url,
        // Quick re-registration checks, so that a forgotten service comes back within the test.
        "--consul-sync-interval",
        "300ms",
    ];
    args.extend_from_slice(extra);
    Process::spawn(binary_path("switchboard-edge").unwrap(), args)
        .await
        .unwrap()
}

/// Waits until exactly one service is registered and returns its ID.
async fn registered(consul: &ConsulAgent) -> String {
    wait_until(WAIT, || async { consul.service_ids().len() == 1 })
        .await
        .expect("the edge registers");
    consul.service_ids().remove(0)
}

fn registrations(consul: &ConsulAgent) -> Vec<Recorded> {
    consul
        .requests()
        .into_iter()
        .filter(|r| r.path == "/v1/agent/service/register")
        .collect()
}

async fn ready(admin: SocketAddr) -> bool {
    matches!(http_get(admin, "/readyz").await, Ok((200, _)))
}

async fn metric(admin: SocketAddr, line_start: &str) -> Option<f64> {
    let (_, body) = http_get(admin, "/metrics").await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn registers_its_addresses_with_a_readiness_check_and_the_token() {
    let dir = TempDir::new("consul").unwrap();
    let token_file = dir.path().join("consul-token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let consul = ConsulAgent::start_with_token(Some("s3cret-token"))
        .await
        .unwrap();
    let process = edge(
        &consul,
        &[
            "--consul-token-file",
            token_file.to_str().unwrap(),
            "--consul-tags",
            "blue,eu",
        ],
    )
    .await;
    let listen = process.addr("listen").unwrap();
    let admin = process.addr("admin_listen").unwrap();

    let id = registered(&consul).await;
    assert!(id.starts_with("switchboard-edge-"), "{id}");
    let body = consul.service(&id).unwrap();
    assert_eq!(
        body,
        json!({
            "ID": id,
            "Name": "switchboard-edge",
            "Tags": ["blue", "eu"],
            "Address": "127.0.0.1",
            "Port": listen.port(),
            "Meta": {"version": env!("CARGO_PKG_VERSION"), "admin_port": admin.port().to_string()},
            "Check": {
                "Name": "switchboard-edge readiness",
                "HTTP": format!("http://127.0.0.1:{}/readyz", admin.port()),
                "Method": "GET",
                "Interval": "5s",
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": "60s",
            },
        })
    );
    // The check Consul runs answers 200 once the edge is ready.
    let check: SocketAddr = body["Check"]["HTTP"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches("/readyz")
        .parse()
        .unwrap();
    wait_until(WAIT, || ready(check))
        .await
        .expect("the check URL answers 200");
    let requests = consul.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.token.as_deref() == Some("s3cret-token")),
        "{requests:?}"
    );
    assert_eq!(
        metric(admin, "switchboard_consul_registered ").await,
        Some(1.0)
    );
    // The periodic look-up finds it, and does not register it again.
    wait_until(WAIT, || async {
        consul
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/v1/agent/service/{id}"))
    })
    .await
    .expect("the edge looks its registration up");
    assert_eq!(registrations(&consul).len(), 1);
}

#[tokio::test]
async fn registers_once_the_agent_is_up_and_again_when_it_forgets() {
    let mut consul = ConsulAgent::start().await.unwrap();
    consul.stop().await;
    let process = edge(&consul, &[]).await;
    let admin = process.addr("admin_listen").unwrap();
    // The edge serves while the agent is down.
    wait_until(WAIT, || ready(admin))
        .await
        .expect("ready without the agent");
    wait_until(WAIT, || async {
        metric(admin, "switchboard_consul_errors_total{op=\"register\"} ")
            .await
            .is_some_and(|n| n >= 1.0)
    })
    .await
    .expect("failed registrations are counted");
    assert_eq!(
        metric(admin, "switchboard_consul_registered ").await,
        Some(0.0)
    );

    consul.resume().await.unwrap();
    let id = registered(&consul).await;
    wait_until(WAIT, || async {
        metric(admin, "switchboard_consul_registered ").await == Some(1.0)
    })
    .await
    .expect("the gauge says registered");

    // An agent restarted without its state has forgotten the service: it is registered again.
    assert!(consul.forget(&id));
    wait_until(WAIT, || async { consul.service(&id).is_some() })
        .await
        .expect("registered again");
    assert_eq!(registrations(&consul).len(), 2);
}

#[tokio::test]
async fn sigterm_deregisters_before_the_process_exits() {
    let consul = ConsulAgent::start().await.unwrap();
    let mut process = edge(&consul, &["--shutdown-grace", "1s"]).await;
    let admin = process.addr("admin_listen").unwrap();
    let id = registered(&consul).await;
    // The edge listens for SIGTERM once it serves (before, the signal's default action ends it).
    wait_until(WAIT, || ready(admin)).await.expect("ready");
    process.terminate().unwrap();
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(consul.service(&id), None);
    let deregistered = consul
        .requests()
        .into_iter()
        .any(|r| r.method == "PUT" && r.path == format!("/v1/agent/service/deregister/{id}"));
    assert!(deregistered, "{:?}", consul.requests());
    assert!(process.log().contains("deregistered from Consul"));
}

#[tokio::test]
async fn an_edge_finds_nats_through_consul() {
    let nats = NatsCluster::start(1).await.unwrap();
    let port: u16 = nats.url(0).rsplit(':').next().unwrap().parse().unwrap();
    let consul = ConsulAgent::start().await.unwrap();
    // A server failing its checks is not handed out; the passing one has no service address, so
    // its node's is used.
    consul.add_instance("nats", "127.0.0.1", "", 9, false);
    consul.add_instance("nats", "127.0.0.1", "", port, true);
    let process = edge(
        &consul,
        &[
            "--nats-consul-service",
            "nats",
            "--room-key-secret",
            "consul-test-secret-0123",
        ],
    )
    .await;
    let admin = process.addr("admin_listen").unwrap();
    wait_until(WAIT, || async {
        metric(admin, "switchboard_bus_connected ").await == Some(1.0)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", process.log()));
    let asked = consul.requests().into_iter().any(|r| {
        r.method == "GET"
            && r.path == "/v1/health/service/nats"
            && r.query.as_deref() == Some("passing=true")
    });
    assert!(asked, "{:?}", consul.requests());
    assert!(
        process.log().contains(&format!("nats://127.0.0.1:{port}")),
        "{}",
        process.log()
    );
    // It registered too.
    let id = registered(&consul).await;
    assert_eq!(
        consul.service(&id).unwrap()["Name"],
        Value::from("switchboard-edge")
    );
}
