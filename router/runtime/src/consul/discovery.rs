//! Finding the NATS servers through Consul (`--nats-consul-service`, when `--nats` is not given):
//! `GET /v1/health/service/<name>?passing=true`, each entry's `Service.Address` (or, when empty, its
//! `Node.Address`) and `Service.Port` becoming `nats://address:port`.
//!
//! Resolved once, at start: retried every second until at least one server passes its checks, for
//! at most [`DISCOVERY_WAIT`], then start-up fails with an error naming the service. Re-resolving
//! later is not needed: the NATS client learns every server of the NATS cluster from the servers'
//! INFO (`connect_urls`, gossiped as servers join and leave) and reconnects among them, so the
//! servers found at start only have to be one way in.

use std::net::IpAddr;
use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use tracing::{info, warn};

use super::Settings;
use super::agent::{Agent, AgentError};
use super::metrics::ConsulMetrics;
use super::registration::REQUEST_TIMEOUT;
use crate::nats::NatsArgs;

/// Longest a process waits at start for a passing NATS server in Consul.
pub const DISCOVERY_WAIT: Duration = Duration::from_secs(60);
/// Wait between look-ups.
const RETRY: Duration = Duration::from_secs(1);

/// Why no NATS server was found.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Nothing passing within the wait; the last failure, if the agent failed, as the cause.
    #[error(
        "no passing instance of the Consul service {service:?} (--nats-consul-service) within {waited:?}"
    )]
    NotFound {
        /// The service looked up.
        service: String,
        /// How long it was looked for.
        waited: Duration,
        /// The agent's last failure, if the last look-up failed.
        #[source]
        last: Option<AgentError>,
    },
}

/// One entry of `/v1/health/service/<name>`, the fields used.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "Node")]
    node: Node,
    #[serde(rename = "Service")]
    service: ServiceEntry,
}

#[derive(Debug, Deserialize)]
struct Node {
    #[serde(rename = "Address", default)]
    address: String,
}

#[derive(Debug, Deserialize)]
struct ServiceEntry {
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port")]
    port: u16,
}

/// The NATS URLs of a `/v1/health/service/<name>` answer, in its order (duplicates dropped).
pub fn nats_urls(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let entries: Vec<Entry> = serde_json::from_slice(body)?;
    let mut urls: Vec<String> = Vec::new();
    for entry in entries {
        let address = if entry.service.address.is_empty() {
            entry.node.address
        } else {
            entry.service.address
        };
        if address.is_empty() || entry.service.port == 0 {
            continue;
        }
        let host = match address.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
            _ => address,
        };
        let url = format!("nats://{host}:{}", entry.service.port);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
    Ok(urls)
}

/// The NATS servers passing their checks in Consul under `service`, asked once.
pub async fn look_up(agent: &Agent, service: &str) -> Result<Vec<String>, AgentError> {
    let path = format!("/v1/health/service/{service}?passing=true");
    let answer = agent
        .request(Method::GET, &path, None, REQUEST_TIMEOUT)
        .await?;
    if answer.status != 200 {
        return Err(AgentError::status(answer.status, &answer.body));
    }
    nats_urls(&answer.body).map_err(AgentError::Decode)
}

/// Looks `service` up until a server passes, for at most `wait`.
pub async fn resolve(
    agent: &Agent,
    service: &str,
    wait: Duration,
    metrics: &ConsulMetrics,
) -> Result<Vec<String>, DiscoveryError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut warned = false;
    loop {
        let last = match look_up(agent, service).await {
            Ok(urls) if !urls.is_empty() => {
                info!(service, servers = %urls.join(","), "NATS servers found in Consul");
                return Ok(urls);
            }
            Ok(_) => None,
            Err(e) => {
                metrics.failed("discover");
                Some(e)
            }
        };
        if !warned {
            match &last {
                Some(e) => {
                    warn!(service, error = %crate::describe(e), "cannot ask Consul for the NATS servers yet; retrying")
                }
                None => warn!(service, "no passing NATS server in Consul yet; waiting"),
            }
            warned = true;
        }
        if tokio::time::Instant::now() + RETRY > deadline {
            return Err(DiscoveryError::NotFound {
                service: service.to_owned(),
                waited: wait,
                last,
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Fills `nats.urls` from Consul when `--nats-consul-service` is set and `--nats` is not (which
/// wins, with a warning). Call before connecting.
pub async fn fill_nats_urls(
    nats: &mut NatsArgs,
    consul: Option<&Settings>,
    metrics: &ConsulMetrics,
) -> Result<(), DiscoveryError> {
    let (Some(service), Some(consul)) = (nats.nats_consul_service.as_deref(), consul) else {
        return Ok(());
    };
    if !nats.urls.is_empty() {
        warn!(
            service,
            "--nats is given: --nats-consul-service is not used"
        );
        return Ok(());
    }
    nats.urls = resolve(&consul.agent(), service, DISCOVERY_WAIT, metrics).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_address_or_else_node_address() {
        let body = br#"[
            {"Node": {"Node": "n1", "Address": "10.0.0.1"},
             "Service": {"ID": "nats-1", "Service": "nats", "Address": "", "Port": 4222},
             "Checks": []},
            {"Node": {"Node": "n2", "Address": "10.0.0.2"},
             "Service": {"ID": "nats-2", "Service": "nats", "Address": "10.1.0.2", "Port": 4223},
             "Checks": []},
            {"Node": {"Node": "n3", "Address": "fd00::3"},
             "Service": {"ID": "nats-3", "Service": "nats", "Port": 4222},
             "Checks": []},
            {"Node": {"Node": "n1", "Address": "10.0.0.1"},
             "Service": {"ID": "nats-1b", "Service": "nats", "Address": "", "Port": 4222},
             "Checks": []}
        ]"#;
        assert_eq!(
            nats_urls(body).unwrap(),
            [
                "nats://10.0.0.1:4222",
                "nats://10.1.0.2:4223",
                "nats://[fd00::3]:4222"
            ]
        );
        assert_eq!(nats_urls(b"[]").unwrap(), Vec::<String>::new());
        assert!(nats_urls(b"{}").is_err());
    }
}
