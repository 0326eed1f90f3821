//! Registering this process with the local agent, keeping it registered, and deregistering it.
//!
//! - `PUT /v1/agent/service/register?replace-existing-checks=true` with [`Service::body`], once the
//!   admin port serves; while the agent cannot be reached, again after a backoff (500 ms doubling up
//!   to `--consul-sync-interval`). Start-up and serving never wait for it.
//! - Every `--consul-sync-interval`, `GET /v1/agent/service/<id>`: a 404 means the agent forgot the
//!   service (it restarted without its data directory), which is registered again.
//! - On a graceful stop, `PUT /v1/agent/service/deregister/<id>`, bounded by [`DEREGISTER_TIMEOUT`].
//!
//! The first failure of a streak is logged as a warning, the rest at debug; every failure is
//! counted in `switchboard_consul_errors_total{op}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::agent::{Agent, AgentError};
use super::metrics::ConsulMetrics;
use super::{Settings, go_duration};

/// How often Consul runs the readiness check.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long one readiness check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one registration request or look-up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on deregistration at shutdown: the drain must not wait for an agent that is gone.
pub const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// First wait after a failed registration.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// What is registered: a pure description, turned into the agent's JSON by [`Service::body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unique per process: the service name and the edge or router id.
    pub id: String,
    /// The service name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// The address Consul hands out.
    pub address: String,
    /// The port Consul hands out (an edge's public port, a router's admin port).
    pub port: u16,
    /// Meta: `version`, `admin_port`.
    pub meta: BTreeMap<String, String>,
    /// The URL Consul's HTTP check GETs: `/readyz` on the admin port.
    pub check_url: String,
    /// DeregisterCriticalServiceAfter.
    pub deregister_after: Duration,
}

impl Service {
    /// The registration of a process identified by `instance` (an edge or router id) with these
    /// `settings`: Consul hands out `settings.advertise` and `port`; its check asks `/readyz` on
    /// `admin` (at the admin listener's own IP, or the advertised address if the admin port listens
    /// on every interface).
    pub fn new(
        settings: &Settings,
        instance: &str,
        port: u16,
        admin: SocketAddr,
        version: &str,
    ) -> Service {
        let check_host = if admin.ip().is_unspecified() {
            settings.advertise.clone()
        } else {
            admin.ip().to_string()
        };
        let check_host = if check_host.contains(':') {
            format!("[{check_host}]")
        } else {
            check_host
        };
        let meta = BTreeMap::from([
            ("version".to_owned(), version.to_owned()),
            ("admin_port".to_owned(), admin.port().to_string()),
        ]);
        Service {
            id: format!("{}-{instance}", settings.service_name),
            name: settings.service_name.clone(),
            tags: settings.tags.clone(),
            address: settings.advertise.clone(),
            port,
            meta,
            check_url: format!("http://{check_host}:{}/readyz", admin.port()),
            deregister_after: settings.deregister_after,
        }
    }

    /// The body of `PUT /v1/agent/service/register`, in Consul's field names.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Tags": self.tags,
            "Address": self.address,
            "Port": self.port,
            "Meta": self.meta,
            "Check": {
                "Name": format!("{} readiness", self.name),
                "HTTP": self.check_url,
                "Method": "GET",
                "Interval": go_duration(CHECK_INTERVAL),
                "Timeout": go_duration(CHECK_TIMEOUT),
                "DeregisterCriticalServiceAfter": go_duration(self.deregister_after),
            },
        })
    }
}

/// The path of the registration.
pub const REGISTER_PATH: &str = "/v1/agent/service/register?replace-existing-checks=true";

/// The running registration: [`Registration::deregister`] ends it.
#[derive(Debug)]
pub struct Registration {
    agent: Agent,
    id: String,
    metrics: ConsulMetrics,
    task: JoinHandle<()>,
}

impl Registration {
    /// Registers `service` in the background and keeps it registered.
    pub fn start(settings: &Settings, service: Service, metrics: ConsulMetrics) -> Registration {
        let agent = settings.agent();
        let id = service.id.clone();
        info!(consul.service.id = %id, consul.agent = %settings.agent.authority, "registering with Consul");
        let task = tokio::spawn(keep_registered(
            agent.clone(),
            service,
            settings.sync_interval,
            metrics.clone(),
        ));
        Registration {
            agent,
            id,
            metrics,
            task,
        }
    }

    /// The service id registered.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops keeping the registration and removes it from the agent (within
    /// [`DEREGISTER_TIMEOUT`]; a failure is logged and counted, and Consul's
    /// DeregisterCriticalServiceAfter cleans up).
    pub async fn deregister(self) {
        self.task.abort();
        let _ = self.task.await;
        self.metrics.registered.set(0);
        let path = format!("/v1/agent/service/deregister/{}", self.id);
        let result = self
            .agent
            .request(Method::PUT, &path, None, DEREGISTER_TIMEOUT)
            .await;
        match result {
            // 404: it was never registered (the agent was down all along) or already forgotten.
            Ok(answer) if answer.status == 200 || answer.status == 404 => {
                info!(consul.service.id = %self.id, "deregistered from Consul");
            }
            Ok(answer) => {
                self.metrics.failed("deregister");
                let e = AgentError::status(answer.status, &answer.body);
                warn!(error = %e, consul.service.id = %self.id, "cannot deregister from Consul; its check will remove the service");
            }
            Err(e) => {
                self.metrics.failed("deregister");
                warn!(error = %crate::describe(&e), consul.service.id = %self.id, "cannot deregister from Consul; its check will remove the service");
            }
        }
    }
}

/// Logs the first failure of a streak as a warning, the others at debug.
struct Streak {
    failing: bool,
}

impl Streak {
    fn failed(&mut self, what: &str, error: &AgentError) {
        let error = crate::describe(error);
        if self.failing {
            debug!(error, "{what}");
        } else {
            warn!(
                error,
                "{what}; retrying in the background (serving meanwhile)"
            );
            self.failing = true;
        }
    }

    fn succeeded(&mut self) -> bool {
        std::mem::replace(&mut self.failing, false)
    }
}

async fn register(agent: &Agent, body: &Bytes) -> Result<(), AgentError> {
    let answer = agent
        .request(
            Method::PUT,
            REGISTER_PATH,
            Some(body.clone()),
            REQUEST_TIMEOUT,
        )
        .await?;
    match answer.status {
        200 => Ok(()),
        status => Err(AgentError::status(status, &answer.body)),
    }
}

/// Whether the agent holds service `id`.
async fn holds(agent: &Agent, id: &str) -> Result<bool, AgentError> {
    let answer = agent
        .request(
            Method::GET,
            &format!("/v1/agent/service/{id}"),
            None,
            REQUEST_TIMEOUT,
        )
        .await?;
    match answer.status {
        200 => Ok(true),
        404 => Ok(false),
        status => Err(AgentError::status(status, &answer.body)),
    }
}

async fn keep_registered(
    agent: Agent,
    service: Service,
    sync_interval: Duration,
    metrics: ConsulMetrics,
) {
    let body = Bytes::from(service.body().to_string());
    let mut streak = Streak { failing: false };
    let mut backoff = FIRST_BACKOFF.min(sync_interval);
    let mut again = false;
    loop {
        if let Err(e) = register(&agent, &body).await {
            metrics.failed("register");
            streak.failed("cannot register with the Consul agent", &e);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(sync_interval);
            continue;
        }
        streak.succeeded();
        backoff = FIRST_BACKOFF.min(sync_interval);
        metrics.registered.set(1);
        info!(
            consul.service.id = %service.id,
            again,
            "registered with Consul"
        );
        again = true;
        loop {
            tokio::time::sleep(sync_interval).await;
            match holds(&agent, &service.id).await {
                Ok(true) => {
                    if streak.succeeded() {
                        info!("the Consul agent answers again");
                    }
                }
                Ok(false) => {
                    warn!(
                        consul.service.id = %service.id,
                        "the Consul agent no longer knows this service (restarted without its \
                         state?): registering again"
                    );
                    metrics.registered.set(0);
                    break;
                }
                Err(e) => {
                    metrics.failed("sync");
                    streak.failed("cannot look the registration up at the Consul agent", &e);
                }
            }
        }
    }
}
