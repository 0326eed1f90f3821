//! Optional Consul integration, the same for both binaries: registering the process with the local
//! Consul agent (so that load balancers and other services find it), and finding the NATS servers
//! through Consul's health API when `--nats` is not given.
//!
//! Off unless `--consul-addr` is given. docs/operations.md ("Consul") lists the exact HTTP calls.
//!
//! Why a small client of our own rather than a crate: the maintained crate (`rs-consul`) speaks the
//! *catalog* API, not the agent's service registration with its health check that this needs, and
//! brings `ureq`, `bon`, `slog-scope`, a second `base64` and hyper's `full` features. Four calls to the
//! local agent over plain HTTP/1.1 are a few dozen lines over the hyper the binaries already use.
//!
//! # Layout
//! - this file: [`ConsulArgs`] (the flags) and [`Settings`] (what they mean, checked).
//! - [`agent`]: the HTTP client of the local agent (one request per connection, `X-Consul-Token`).
//! - [`registration`]: the registration body, the task keeping it registered, deregistration.
//! - [`discovery`]: NATS servers from `GET /v1/health/service/<name>?passing=true`.
//! - [`metrics`]: `switchboard_consul_errors_total{op}` and `switchboard_consul_registered`.

pub mod agent;
pub mod discovery;
pub mod metrics;
pub mod registration;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, parse_duration};
use crate::nats::NatsArgs;

pub use agent::{Agent, AgentAddr};
pub use discovery::DiscoveryError;
pub use metrics::ConsulMetrics;
pub use registration::{Registration, Service};

/// Consul's shortest `DeregisterCriticalServiceAfter`: its reaper runs every 30 s and ignores
/// anything shorter than a minute.
pub const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);

/// The Consul flags, flattened into each binary's configuration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConsulArgs {
    /// The local Consul agent's HTTP API (`http://127.0.0.1:8500`): register this process with it,
    /// and resolve --nats-consul-service through it. Off when absent.
    #[arg(long, env = "SWITCHBOARD_CONSUL_ADDR", value_name = "URL")]
    pub consul_addr: Option<String>,

    /// File holding the Consul ACL token (sent as `X-Consul-Token`); never on the command line.
    #[arg(long, env = "SWITCHBOARD_CONSUL_TOKEN_FILE", value_name = "PATH")]
    pub consul_token_file: Option<PathBuf>,

    /// The service name to register under (default: the binary's name, `switchboard-edge` or
    /// `switchboard-router`).
    #[arg(long, env = "SWITCHBOARD_CONSUL_SERVICE_NAME", value_name = "NAME")]
    pub consul_service_name: Option<String>,

    /// Tags of the registration, comma-separated.
    #[arg(
        long,
        env = "SWITCHBOARD_CONSUL_TAGS",
        value_name = "TAGS",
        value_delimiter = ','
    )]
    pub consul_tags: Vec<String>,

    /// The address Consul hands out for this process (IP or host name; e.g. the pod IP). Default:
    /// the listen address's IP, unless it is unspecified (0.0.0.0, ::), when it is required.
    #[arg(long, env = "SWITCHBOARD_CONSUL_ADVERTISE_ADDR", value_name = "HOST")]
    pub consul_advertise_addr: Option<String>,

    /// How long the registration's health check may stay critical before Consul removes the
    /// service (DeregisterCriticalServiceAfter; at least 1m): the clean-up after a crash.
    #[arg(
        long,
        env = "SWITCHBOARD_CONSUL_DEREGISTER_AFTER",
        value_name = "DURATION",
        default_value = "1m",
        value_parser = parse_duration
    )]
    pub consul_deregister_after: Duration,

    /// How often the registration is checked with the agent (re-registered if the agent forgot
    /// it), and the longest wait between attempts while the agent cannot be reached.
    #[arg(
        long,
        env = "SWITCHBOARD_CONSUL_SYNC_INTERVAL",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub consul_sync_interval: Duration,
}

/// The Consul settings, checked: what [`ConsulArgs`] means for one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The agent's address.
    pub agent: AgentAddr,
    /// The ACL token, read from --consul-token-file.
    pub token: Option<String>,
    /// The service name.
    pub service_name: String,
    /// The tags.
    pub tags: Vec<String>,
    /// The address given out.
    pub advertise: String,
    /// DeregisterCriticalServiceAfter.
    pub deregister_after: Duration,
    /// How often the registration is checked.
    pub sync_interval: Duration,
}

impl Settings {
    /// The client of the agent.
    pub fn agent(&self) -> Agent {
        Agent::new(self.agent.clone(), self.token.clone())
    }
}

impl ConsulArgs {
    /// Whether registration (and discovery) is on.
    pub fn enabled(&self) -> bool {
        self.consul_addr.is_some()
    }

    /// Checks the Consul flags, and --nats-consul-service against them; reads the token file.
    /// `default_name` is the binary's service name, `listen` the address whose IP is advertised by
    /// default. `None` when Consul is off.
    pub fn settings(
        &self,
        nats: &NatsArgs,
        default_name: &str,
        listen: SocketAddr,
    ) -> Result<Option<Settings>, ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if let Some(service) = &nats.nats_consul_service {
            if self.consul_addr.is_none() {
                return fail(
                    "--nats-consul-service needs --consul-addr: the Consul agent to ask".into(),
                );
            }
            check_name("--nats-consul-service", service)?;
        }
        let Some(addr) = &self.consul_addr else {
            for (flag, set) in [
                ("--consul-token-file", self.consul_token_file.is_some()),
                ("--consul-service-name", self.consul_service_name.is_some()),
                ("--consul-tags", !self.consul_tags.is_empty()),
                (
                    "--consul-advertise-addr",
                    self.consul_advertise_addr.is_some(),
                ),
            ] {
                if set {
                    return fail(format!("{flag} needs --consul-addr"));
                }
            }
            return Ok(None);
        };
        let agent =
            AgentAddr::parse(addr).map_err(|e| ConfigError(format!("--consul-addr: {e}")))?;
        let token = match &self.consul_token_file {
            None => None,
            Some(path) => Some(read_token(path)?),
        };
        let service_name = self
            .consul_service_name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        check_name("--consul-service-name", &service_name)?;
        for tag in &self.consul_tags {
            if tag.trim().is_empty() || tag.chars().any(char::is_control) {
                return fail(format!(
                    "--consul-tags: {tag:?} is not a tag (no empty tags, no control characters)"
                ));
            }
        }
        let advertise = match &self.consul_advertise_addr {
            Some(host) => {
                check_host(host)?;
                host.clone()
            }
            None if listen.ip().is_unspecified() => {
                return fail(format!(
                    "--consul-advertise-addr is required with --consul-addr when listening on {}: \
                     Consul must hand out an address clients can reach (e.g. the pod IP)",
                    listen.ip()
                ));
            }
            None => listen.ip().to_string(),
        };
        if self.consul_deregister_after < MIN_DEREGISTER_AFTER {
            return fail(format!(
                "--consul-deregister-after must be at least 1m (got {}): Consul ignores shorter ones",
                humantime::format_duration(self.consul_deregister_after)
            ));
        }
        if self.consul_sync_interval < Duration::from_millis(100) {
            return fail("--consul-sync-interval must be at least 100ms".into());
        }
        Ok(Some(Settings {
            agent,
            token,
            service_name,
            tags: self
                .consul_tags
                .iter()
                .map(|t| t.trim().to_owned())
                .collect(),
            advertise,
            deregister_after: self.consul_deregister_after,
            sync_interval: self.consul_sync_interval,
        }))
    }
}

/// A service name Consul's DNS interface can serve too: 1 to 63 letters, digits and '-'.
fn check_name(flag: &str, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{flag} {name:?}: use 1 to 63 letters, digits or '-' (a DNS label)"
        )))
    }
}

/// An IP address or a host name.
fn check_host(host: &str) -> Result<(), ConfigError> {
    let name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => Err(ConfigError(format!(
            "--consul-advertise-addr {host}: an unspecified address cannot be reached"
        ))),
        Ok(_) => Ok(()),
        Err(_) if name => Ok(()),
        Err(_) => Err(ConfigError(format!(
            "--consul-advertise-addr {host:?}: give an IP address or a host name (no port)"
        ))),
    }
}

/// The token in `path`: its content, surrounding whitespace dropped; never echoed in messages.
fn read_token(path: &std::path::Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "--consul-token-file {}: cannot read it: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(char::is_control) {
        return Err(ConfigError(format!(
            "--consul-token-file {}: expected one token (no empty file, no line breaks inside)",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// Go's duration syntax, as Consul parses it (`5s`, `500ms`; no spaces, unlike humantime's).
pub fn go_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis().max(1))
    }
}

#[cfg(test)]
mod tests;
