//! A stand-in for a local Consul agent's HTTP API, for tests of `--consul-addr`: no Consul binary
//! can run in the test environment, so this answers exactly the endpoints Switchboard calls, as
//! Consul's API documentation describes them, and records every request.
//!
//! - `PUT /v1/agent/service/register`: the body's fields are Consul's (`ID`, `Name`, `Tags`,
//!   `Address`, `Port`, `Meta`, `Check` with `HTTP`, `Interval`, `Timeout`,
//!   `DeregisterCriticalServiceAfter`, …); an unknown field, a missing `Name` or an HTTP check
//!   without `Interval` is refused with 400, as Consul's decoder and validation do. 200, empty body.
//! - `PUT /v1/agent/service/deregister/<id>`: 200, or 404 for an unknown id.
//! - `GET /v1/agent/service/<id>`: 200 with the service (`ID`, `Service`, `Tags`, `Meta`, `Port`,
//!   `Address`, …), or 404 for an unknown id (as after an agent restart without its state:
//!   [`ConsulAgent::forget`]).
//! - `GET /v1/health/service/<name>[?passing=true]`: 200 with the entries set by
//!   [`ConsulAgent::add_instance`] (`Node`, `Service`, `Checks`), only the passing ones with
//!   `passing`.
//! - With a token required ([`ConsulAgent::start_with_token`]), a request without
//!   `X-Consul-Token` gets 403 `Permission denied`, one with another token 403 `ACL not found`.
//! - Another method on these paths gets 405, another path 404.
//!
//! [`ConsulAgent::stop`] closes the port (connections are refused, as with an agent that is down)
//! and [`ConsulAgent::resume`] opens the same port again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request the agent received.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `GET`, `PUT`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The `X-Consul-Token` header, if sent.
    pub token: Option<String>,
    /// The body as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

#[derive(Debug, Default)]
struct State {
    token: Option<String>,
    /// Registered services by ID: the registration bodies.
    services: BTreeMap<String, Value>,
    /// Health entries by service name, with whether their checks pass.
    health: BTreeMap<String, Vec<(Value, bool)>>,
    requests: Vec<Recorded>,
}

/// The Consul agent stand-in, on 127.0.0.1; stops on drop.
#[derive(Debug)]
pub struct ConsulAgent {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Option<JoinHandle<()>>,
}

/// The fields Consul's agent accepts in a service registration.
const SERVICE_FIELDS: [&str; 18] = [
    "ID",
    "Name",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Port",
    "Kind",
    "Proxy",
    "Connect",
    "Check",
    "Checks",
    "EnableTagOverride",
    "Weights",
    "Namespace",
    "Partition",
    "SocketPath",
    "Locality",
];

/// The fields Consul accepts in a check definition (those an HTTP check may have, and the others'
/// names, so that a misspelt one is refused).
const CHECK_FIELDS: [&str; 24] = [
    "CheckID",
    "ID",
    "Name",
    "Notes",
    "Status",
    "ServiceID",
    "Interval",
    "Timeout",
    "HTTP",
    "Method",
    "Header",
    "Body",
    "DisableRedirects",
    "TLSServerName",
    "TLSSkipVerify",
    "TCP",
    "GRPC",
    "TTL",
    "Args",
    "DeregisterCriticalServiceAfter",
    "SuccessBeforePassing",
    "FailuresBeforeWarning",
    "FailuresBeforeCritical",
    "OutputMaxSize",
];

impl ConsulAgent {
    /// An agent without ACLs.
    pub async fn start() -> Result<ConsulAgent> {
        Self::start_with_token(None).await
    }

    /// An agent that requires `token` in `X-Consul-Token` when given.
    pub async fn start_with_token(token: Option<&str>) -> Result<ConsulAgent> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the Consul agent stand-in")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            token: token.map(str::to_owned),
            ..State::default()
        }));
        let server = Some(tokio::spawn(serve(listener, state.clone())));
        Ok(ConsulAgent {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, for `--consul-addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the port: connections are refused until [`ConsulAgent::resume`].
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens on the same port again (the services registered are kept, as an agent with its
    /// data directory keeps them; [`ConsulAgent::forget`] for one without).
    pub async fn resume(&mut self) -> Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .with_context(|| format!("cannot listen on {} again", self.addr))?;
        self.server = Some(tokio::spawn(serve(listener, self.state.clone())));
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The registration body of service `id`, if registered.
    pub fn service(&self, id: &str) -> Option<Value> {
        self.state().services.get(id).cloned()
    }

    /// The registered services' IDs.
    pub fn service_ids(&self) -> Vec<String> {
        self.state().services.keys().cloned().collect()
    }

    /// Forgets service `id`, as an agent restarted without its data directory does.
    pub fn forget(&self, id: &str) -> bool {
        self.state().services.remove(id).is_some()
    }

    /// Adds an instance of `service` to `/v1/health/service/<service>`: on a node at
    /// `node_address`, with the service's own `address` (empty: the node's is used) and `port`.
    pub fn add_instance(
        &self,
        service: &str,
        node_address: &str,
        address: &str,
        port: u16,
        passing: bool,
    ) {
        let mut state = self.state();
        let entries = state.health.entry(service.to_owned()).or_default();
        let n = entries.len();
        let status = if passing { "passing" } else { "critical" };
        let entry = json!({
            "Node": {"ID": "", "Node": format!("node-{n}"), "Address": node_address, "Datacenter": "dc1"},
            "Service": {
                "ID": format!("{service}-{n}"), "Service": service, "Tags": [], "Address": address,
                "Port": port, "Meta": {},
            },
            "Checks": [{
                "Node": format!("node-{n}"), "CheckID": format!("service:{service}-{n}"),
                "Name": "Service check", "Status": status, "ServiceID": format!("{service}-{n}"),
                "ServiceName": service,
            }],
        });
        entries.push((entry, passing));
    }
}

impl Drop for ConsulAgent {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(request, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>, json: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let content_type = if json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    respond(status, body, false)
}

async fn answer(request: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let token = request
        .headers()
        .get("X-Consul-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            );
        }
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    state.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        token: token.clone(),
        body: body.clone(),
    });
    if let Some(required) = &state.token {
        match &token {
            None => return text(StatusCode::FORBIDDEN, "Permission denied".into()),
            Some(token) if token != required => {
                return text(StatusCode::FORBIDDEN, "ACL not found".into());
            }
            Some(_) => {}
        }
    }
    let expect = |wanted: Method| (method != wanted).then(|| not_allowed(&method));
    if path == "/v1/agent/service/register" {
        if let Some(refused) = expect(Method::PUT) {
            return refused;
        }
        return register(&mut state, &bytes, body);
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
        if let Some(refused) = expect(Method::PUT) {
            return refused;
        }
        return match state.services.remove(id) {
            Some(_) => respond(StatusCode::OK, "", false),
            None => text(
                StatusCode::NOT_FOUND,
                format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                ),
            ),
        };
    }
    if let Some(id) = path.strip_prefix("/v1/agent/service/") {
        if let Some(refused) = expect(Method::GET) {
            return refused;
        }
        return match state.services.get(id) {
            Some(service) => {
                let agent_service = json!({
                    "ID": id,
                    "Service": service["Name"],
                    "Tags": service.get("Tags").cloned().unwrap_or(json!([])),
                    "Meta": service.get("Meta").cloned().unwrap_or(json!({})),
                    "Port": service.get("Port").cloned().unwrap_or(json!(0)),
                    "Address": service.get("Address").cloned().unwrap_or(json!("")),
                    "Weights": {"Passing": 1, "Warning": 1},
                    "EnableTagOverride": false,
                    "ContentHash": "0000000000000000",
                    "Datacenter": "dc1",
                });
                respond(StatusCode::OK, agent_service.to_string(), true)
            }
            None => text(StatusCode::NOT_FOUND, format!("unknown service ID: {id}")),
        };
    }
    if let Some(name) = path.strip_prefix("/v1/health/service/") {
        if let Some(refused) = expect(Method::GET) {
            return refused;
        }
        let passing_only = query
            .as_deref()
            .is_some_and(|q| q.split('&').any(|p| p == "passing" || p == "passing=true"));
        let entries: Vec<Value> = state
            .health
            .get(name)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|(_, passing)| *passing || !passing_only)
                    .map(|(entry, _)| entry.clone())
                    .collect()
            })
            .unwrap_or_default();
        return respond(StatusCode::OK, Value::from(entries).to_string(), true);
    }
    text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}"))
}

fn not_allowed(method: &Method) -> Response<Full<Bytes>> {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed"),
    )
}

fn register(state: &mut State, bytes: &[u8], body: Value) -> Response<Full<Bytes>> {
    let bad = |message: String| text(StatusCode::BAD_REQUEST, message);
    let Value::Object(fields) = &body else {
        return bad(format!(
            "Request decode failed: {:?} is not a JSON object",
            String::from_utf8_lossy(bytes)
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !SERVICE_FIELDS.contains(&k.as_str()))
    {
        return bad(format!("Request decode failed: unknown field {unknown:?}"));
    }
    let Some(name) = fields
        .get("Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return bad("Missing service name".into());
    };
    if let Some(check) = fields.get("Check") {
        let Value::Object(check) = check else {
            return bad("Request decode failed: Check is not an object".into());
        };
        if let Some(unknown) = check.keys().find(|k| !CHECK_FIELDS.contains(&k.as_str())) {
            return bad(format!(
                "Request decode failed: unknown check field {unknown:?}"
            ));
        }
        if check.contains_key("HTTP") && !check.contains_key("Interval") {
            return bad(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, or TCP checks"
                    .into(),
            );
        }
    }
    let id = fields
        .get("ID")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .unwrap_or(name)
        .to_owned();
    state.services.insert(id, body);
    respond(StatusCode::OK, "", false)
}
