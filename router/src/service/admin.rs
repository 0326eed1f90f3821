//! The router's admin HTTP port: `/metrics`, `/healthz`, `/readyz` (NATS connected and slots being
//! served), `/stats` (the cluster's hourly statistics) and `/slots` (what this router serves).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::sync::{Mutex, OnceLock, PoisonError};

use tokio::sync::watch;

use super::metrics::RouterMetrics;
use super::store::Store;
use crate::nats::Link;

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
    /// Slots currently served.
    pub owned: Arc<Mutex<Vec<u32>>>,
    /// Storage, once JetStream was reached.
    pub store: Arc<OnceLock<Store>>,
}

type Body = Full<Bytes>;

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
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

fn route(request: &Request<Incoming>, shared: &Admin) -> Response<Body> {
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            let ready = *shared.link.borrow() == Link::Up && *shared.started.borrow();
            if ready {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        "/metrics" => {
            let mut response = Response::new(Body::from(shared.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/stats" => match shared.store.get() {
            Some(store) => json(&serde_json::json!({
                "router": shared.router_id,
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
            let owned = shared
                .owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            json(&serde_json::json!({"router": shared.router_id, "slots": owned}))
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
