//! The Consul client against [`switchboard_testkit::ConsulAgent`], an HTTP stand-in for the local
//! agent modelled on Consul's documented API (no Consul binary can run in the test environment):
//! NATS discovery's bounded wait and its error, and a refused token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use switchboard_runtime::consul::agent::{Agent, AgentAddr, AgentError};
use switchboard_runtime::consul::discovery::{self, DiscoveryError};
use switchboard_runtime::consul::metrics::ConsulMetrics;
use switchboard_runtime::metrics::Registrar;
use switchboard_testkit::ConsulAgent;

fn agent(consul: &ConsulAgent, token: Option<&str>) -> Agent {
    Agent::new(
        AgentAddr::parse(&consul.url()).unwrap(),
        token.map(str::to_owned),
    )
}

fn metrics() -> ConsulMetrics {
    ConsulMetrics::register(&Registrar::new()).unwrap()
}

#[tokio::test]
async fn discovery_hands_out_the_passing_servers_only() {
    let consul = ConsulAgent::start().await.unwrap();
    consul.add_instance("nats", "10.0.0.1", "", 4222, true);
    consul.add_instance("nats", "10.0.0.2", "", 4222, false);
    consul.add_instance("nats", "10.0.0.3", "10.1.0.3", 4223, true);
    let urls = discovery::resolve(
        &agent(&consul, None),
        "nats",
        Duration::from_secs(1),
        &metrics(),
    )
    .await
    .unwrap();
    assert_eq!(urls, ["nats://10.0.0.1:4222", "nats://10.1.0.3:4223"]);
}

#[tokio::test]
async fn discovery_gives_up_after_its_wait_naming_the_service() {
    let consul = ConsulAgent::start().await.unwrap();
    consul.add_instance("nats", "10.0.0.2", "", 4222, false);
    let metrics = metrics();
    let error = discovery::resolve(
        &agent(&consul, None),
        "nats",
        Duration::from_millis(1500),
        &metrics,
    )
    .await
    .unwrap_err();
    let DiscoveryError::NotFound { last, .. } = &error;
    assert!(last.is_none(), "{error:?}");
    assert_eq!(
        error.to_string(),
        "no passing instance of the Consul service \"nats\" (--nats-consul-service) within 1.5s"
    );
    assert_eq!(metrics.errors.with_label_values(&["discover"]).get(), 0);

    // An agent that refuses says why.
    let guarded = ConsulAgent::start_with_token(Some("right")).await.unwrap();
    let error = discovery::resolve(
        &agent(&guarded, Some("wrong")),
        "nats",
        Duration::from_millis(500),
        &metrics,
    )
    .await
    .unwrap_err();
    let DiscoveryError::NotFound { last, .. } = &error;
    assert!(
        matches!(last, Some(AgentError::Status { status: 403, body }) if body == "ACL not found"),
        "{error:?}"
    );
    assert_eq!(metrics.errors.with_label_values(&["discover"]).get(), 1);
    assert_eq!(guarded.requests()[0].token.as_deref(), Some("wrong"));
}
