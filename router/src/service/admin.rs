//! The router's admin HTTP port: `/metrics`, `/healthz`, `/readyz` (NATS connected, this router
//! hears itself on NATS, the lease store answers, start-up over), `/stats` (the cluster's hourly
//! statistics) and `/slots` (what this router serves now).

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::sync::watch;

use super::metrics::RouterMetrics;
use super::store::Store;
use switchboard_runtime::http::{self, Body, json, text};
use switchboard_runtime::nats::Link;

/// What the admin port shows; available before the router has reached JetStream.
pub struct Admin {
    /// This router's id.
    pub router_id: String,
    /// Metrics.
    pub metrics: RouterMetrics,
    /// NATS link state.
    pub link: watch::Receiver<Link>,
    /// Whether start-up is over.
    pub started: watch::Receiver<bool>,
    /// Lease store and self-presence, as last observed.
    pub health: watch::Receiver<Health>,
    /// Slots currently served.
    pub owned: Arc<Mutex<BTreeSet<u32>>>,
    /// Storage, once JetStream was reached.
    pub store: Arc<OnceLock<Store>>,
}

/// What readiness depends on besides the NATS link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// The lease store (JetStream) answered the last probe.
    pub store_up: bool,
    /// This router hears its own presence (it may serve).
    pub hears_itself: bool,
}

/// A client must send its request headers within this (as on the edge's admin port, whose
/// `--io-timeout` defaults to the same), so idle or slow connections cannot pile up.
const IO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves the admin port until `stop`.
pub async fn serve(listener: TcpListener, shared: Arc<Admin>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&request, &shared)) }
            });
            let connection =
                http::builder(IO_TIMEOUT).serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The paths the admin port answers.
const ENDPOINTS: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/stats", "/slots"];

fn route(request: &Request<Incoming>, shared: &Admin) -> Response<Body> {
    let path = request.uri().path();
    if ENDPOINTS.contains(&path) && !matches!(*request.method(), Method::GET | Method::HEAD) {
        return http::method_not_allowed();
    }
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let health = *shared.health.borrow();
            let reason = if *shared.link.borrow() != Link::Up {
                "not ready: NATS disconnected\n"
            } else if shared.store.get().is_none() {
                "not ready: setting up JetStream storage (the log says what JetStream answers)\n"
            } else if !*shared.started.borrow() {
                "not ready: starting\n"
            } else if !health.hears_itself {
                "not ready: cannot hear itself on NATS (not serving)\n"
            } else if !health.store_up {
                "not ready: lease store (JetStream) unreachable; held slots are still served\n"
            } else {
                return text(StatusCode::OK, "ready\n");
            };
            text(StatusCode::SERVICE_UNAVAILABLE, reason)
        }
        "/metrics" => http::metrics(shared.metrics.render()),
        "/stats" => match shared.store.get() {
            Some(store) => json(&serde_json::json!({
                "router": shared.router_id,
                "instance": store.instance(),
                "rooms": shared.metrics.rooms.get(),
                "members": shared.metrics.members.get(),
                "hourly": store.hourly(),
            })),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: JetStream not reached yet\n",
            ),
        },
        "/slots" => {
            let owned: Vec<u32> = shared
                .owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .copied()
                .collect();
            json(&serde_json::json!({"router": shared.router_id, "slots": owned}))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}
