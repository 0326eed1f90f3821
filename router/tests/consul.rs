//! `switchboard-router --consul-addr`: registration with the local Consul agent, with the real
//! binary and a real nats-server.
//!
//! No Consul binary can run in the test environment, so the agent is
//! [`switchboard_testkit::ConsulAgent`]: an HTTP stand-in answering exactly the endpoints the
//! router calls (agent service register, deregister and look-up; health of a service), modelled on
//! Consul's documented API (field names and casing, status codes, `X-Consul-Token`), recording
//! every request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use switchboard_testkit::{ConsulAgent, NatsCluster, Process, binary_path, http_get, wait_until};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_router_registers_its_admin_port_and_deregisters_on_sigterm() {
    let nats = NatsCluster::start(1).await.unwrap();
    let consul = ConsulAgent::start().await.unwrap();
    let (nats_url, consul_url) = (nats.url(0), consul.url());
    let mut router = Process::spawn(
        binary_path("switchboard-router").unwrap(),
        [
            "--nats",
            &nats_url,
            "--admin-listen",
            "127.0.0.1:0",
            "--router-id",
            "r1",
            "--consul-addr",
            &consul_url,
            "--consul-tags",
            "routers",
        ],
    )
    .await
    .unwrap();
    let admin = router.addr("admin_listen").unwrap();
    let id = "switchboard-router-r1";
    wait_until(WAIT, || async { consul.service(id).is_some() })
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", router.log()));
    assert_eq!(
        consul.service(id).unwrap(),
        json!({
            "ID": id,
            "Name": "switchboard-router",
            "Tags": ["routers"],
            "Address": "127.0.0.1",
            "Port": admin.port(),
            "Meta": {"version": env!("CARGO_PKG_VERSION"), "admin_port": admin.port().to_string()},
            "Check": {
                "Name": "switchboard-router readiness",
                "HTTP": format!("http://127.0.0.1:{}/readyz", admin.port()),
                "Method": "GET",
                "Interval": "5s",
                "Timeout": "2s",
                "DeregisterCriticalServiceAfter": "60s",
            },
        })
    );

    // The router listens for SIGTERM once started (before, the signal's default action ends it).
    wait_until(WAIT, || async {
        matches!(http_get(admin, "/readyz").await, Ok((200, _)))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", router.log()));
    router.terminate().unwrap();
    let status = router.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(consul.service(id), None, "{:?}", consul.requests());
    assert!(
        consul
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path == format!("/v1/agent/service/deregister/{id}"))
    );
}
