//! HTTP on both ports (hyper, HTTP/1.1).
//!
//! Public port: `/healthz` and `/readyz` are reserved; a WebSocket upgrade on any other path becomes a
//! client connection (palava clients connect to `/`), and other requests go to [`crate::web`] (the
//! demo page and the JS client). Admin port: `/metrics`, `/healthz`, `/readyz`, `/stats`.

use std::convert::Infallible;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tracing::field::Empty;
use tracing::{Instrument as _, Span, debug, warn};

use crate::bus::BusError;
use crate::conn::Hosted;
use crate::context::Context;
use crate::usage::QuotaExceeded;

use switchboard_runtime::http::{self, Body, Encoded, json, text};
use switchboard_runtime::trace;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Failed accepts are logged at most this often (they are counted in a metric every time).
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Which port a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Clients.
    Public,
    /// Operators and Prometheus.
    Admin,
}

/// Accepts connections until the edge has stopped, on both ports: while it drains, the public port
/// answers new upgrades with 503 (a load balancer or client then knows why, and the refusal is
/// counted) and its probes keep answering, as the admin port's do (`/readyz`: not ready).
///
/// The public port holds at most `pending_http` connections that are not WebSockets (yet), and waits
/// for one to end before accepting more: with the connection limit, that keeps its descriptors within
/// the plan (`descriptors`), so the admin port can always accept and excess upgrades are answered 503.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, port: Port) {
    let stop = ctx.lifecycle.stopped.clone();
    let label = match port {
        Port::Public => "public",
        Port::Admin => "admin",
    };
    let mut last_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = accept(&listener, &ctx, port) => accepted,
        };
        match accepted {
            Ok((stream, place)) => {
                let ctx = ctx.clone();
                tokio::spawn(serve_connection(stream, ctx, port, place));
            }
            Err(e) => {
                ctx.metrics.accept_errors.with_label_values(&[label]).inc();
                if last_logged.is_none_or(|at| at.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
                    warn!(error = %e, port = label, "accept failed (out of descriptors?)");
                    last_logged = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Accepts one connection; on the public port, once a place for it is free.
async fn accept(
    listener: &TcpListener,
    ctx: &Context,
    port: Port,
) -> std::io::Result<(TcpStream, Option<OwnedSemaphorePermit>)> {
    let place = match port {
        // The semaphore is never closed, so this only waits.
        Port::Public => ctx.pending_http.clone().acquire_owned().await.ok(),
        Port::Admin => None,
    };
    let (stream, _) = listener.accept().await?;
    Ok((stream, place))
}

/// Serves one HTTP connection. `_place` is its place among the public port's pending connections,
/// given back when the HTTP connection ends, which for a WebSocket is at the upgrade (from then on
/// it counts under the connection limit).
async fn serve_connection(
    stream: TcpStream,
    ctx: Arc<Context>,
    port: Port,
    _place: Option<OwnedSemaphorePermit>,
) {
    // Signaling messages are small and latency-sensitive.
    let _ = stream.set_nodelay(true);
    let stopped = ctx.lifecycle.stopped.clone();
    let io_timeout = ctx.limits.io_timeout;
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(request, ctx, port).await) }
    });
    let connection = http::builder(io_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let connection = pin!(connection);
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                debug!(error = %e, "http connection ended with an error");
            }
        }
        // Idle keep-alive connections must not outlive the edge.
        () = stopped.cancelled() => {}
    }
}

async fn route(request: Request<Incoming>, ctx: Arc<Context>, port: Port) -> Response<Body> {
    if is_endpoint(port, request.uri().path())
        && !matches!(*request.method(), Method::GET | Method::HEAD)
    {
        return http::method_not_allowed();
    }
    match (port, request.uri().path()) {
        (_, "/healthz") => text(StatusCode::OK, "ok\n"),
        (_, "/readyz") => {
            if ctx.lifecycle.is_ready() && ctx.bus.is_up() && ctx.usage.is_warm() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (Port::Admin, "/metrics") => {
            ctx.registry.export_gauges();
            http::metrics(ctx.metrics.render())
        }
        (Port::Admin, "/stats") => match ctx.bus.stats().await {
            Ok(stats) => json(&stats),
            Err(BusError::NotHere) => text(
                StatusCode::NOT_FOUND,
                "statistics are served by the routers' admin ports (/stats)\n",
            ),
            Err(BusError::Unavailable) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "router unavailable\n")
            }
        },
        (Port::Admin, _) => text(StatusCode::NOT_FOUND, "not found\n"),
        (Port::Public, _) if is_websocket_upgrade(&request) => upgrade(request, ctx).await,
        (Port::Public, path) => ctx.site.respond(request.method(), path, request.headers()),
    }
}

/// The paths this module answers itself (the public port's other paths are the site's).
fn is_endpoint(port: Port, path: &str) -> bool {
    matches!(
        (port, path),
        (_, "/healthz" | "/readyz") | (Port::Admin, "/metrics" | "/stats")
    )
}

fn is_websocket_upgrade(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    request.method() == Method::GET && connection_upgrade && upgrade_websocket
}

/// A WebSocket upgrade, traced (span `ws.upgrade`, when tracing is on). A client may name the trace
/// its connection belongs to: `traceparent` (and `tracestate`) as headers, or as query parameters
/// for browsers, which cannot set headers on a WebSocket. The upgrade span then continues that
/// trace, and so do the connection's commands.
async fn upgrade(request: Request<Incoming>, ctx: Arc<Context>) -> Response<Body> {
    let client_trace = client_trace(&request);
    let continued = client_trace.is_some();
    let span = switchboard_runtime::trace_start!(
        client_trace;
        "ws.upgrade",
        otel.kind = "server",
        otel.status_code = Empty,
        http.response.status_code = Empty,
        sb.tenant = Empty,
    );
    let trace_parent = continued.then(|| Box::new(trace::context_of(&span)));
    let response = admit_upgrade(request, ctx, trace_parent)
        .instrument(span.clone())
        .await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}

/// The trace a client's upgrade names, if tracing is on and it names a valid one.
fn client_trace(request: &Request<Incoming>) -> Option<trace::Context> {
    if !trace::enabled() {
        return None;
    }
    trace::extract_http(request.headers()).or_else(|| {
        let query = request.uri().query()?;
        let param = |wanted: &str| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| {
                    let bytes = http::percent_decode(value, Encoded::Query);
                    String::from_utf8_lossy(&bytes).into_owned()
                })
        };
        let traceparent = param("traceparent")?;
        trace::extract_traceparent(&traceparent, param("tracestate").as_deref())
    })
}

async fn admit_upgrade(
    mut request: Request<Incoming>,
    ctx: Arc<Context>,
    trace_parent: Option<Box<trace::Context>>,
) -> Response<Body> {
    let headers = request.headers();
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "websocket version 13 required\n",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());

    if ctx.lifecycle.is_draining() {
        ctx.metrics
            .connections_refused
            .with_label_values(&["draining"])
            .inc();
        return refused("shutting down\n");
    }
    let session = match ctx.access.admit(request.uri(), request.headers()) {
        Ok(session) => {
            if let Some(session) = &session {
                Span::current().record("sb.tenant", session.tenant.id.as_str());
            }
            session
        }
        Err(refusal) => {
            ctx.metrics
                .connections_refused
                .with_label_values(&[&refusal.label()])
                .inc();
            return refused_json(refusal.status, refusal.reason);
        }
    };
    // Hosted mode: the tenant's connection quota, before a place under --max-connections is
    // taken (the admission may wait for the next quota round; it must not hold a place meanwhile).
    let hosted = match session {
        Some(session) => match ctx.usage.admit(&session.tenant).await {
            Ok(quota) => Some(Hosted { session, quota }),
            Err(QuotaExceeded) => {
                ctx.metrics
                    .connections_refused
                    .with_label_values(&["connection_quota_exceeded"])
                    .inc();
                return refused_json(StatusCode::TOO_MANY_REQUESTS, "connection quota exceeded");
            }
        },
        None => None,
    };
    if hosted.is_some() && ctx.lifecycle.is_draining() {
        // The edge began to stop while the admission waited for a round.
        ctx.metrics
            .connections_refused
            .with_label_values(&["draining"])
            .inc();
        return refused("shutting down\n");
    }
    let Some(permit) = ctx.connection_permits.try_acquire() else {
        ctx.metrics
            .connections_refused
            .with_label_values(&["capacity"])
            .inc();
        return refused("too many connections\n");
    };

    let on_upgrade = hyper::upgrade::on(&mut request);
    let task_ctx = ctx.clone();
    ctx.lifecycle.connections.spawn(async move {
        let io_timeout = task_ctx.limits.io_timeout;
        match tokio::time::timeout(io_timeout, on_upgrade).await {
            Ok(Ok(upgraded)) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(task_ctx.limits.websocket),
                )
                .await;
                // Boxed: inline, the connection's future would sit next to the upgrade's state
                // (which the compiler keeps alongside it) for the connection's whole life.
                Box::pin(crate::conn::serve(
                    ws,
                    task_ctx,
                    permit,
                    hosted,
                    trace_parent,
                ))
                .await;
            }
            Ok(Err(e)) => debug!(error = %e, "websocket upgrade failed"),
            Err(_) => debug!("websocket upgrade timed out"),
        }
    });

    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A refused upgrade (401, 403, 429) with its reason as JSON, `{"error": REASON}`, closing the
/// connection like [`refused`].
fn refused_json(status: StatusCode, reason: &str) -> Response<Body> {
    let mut response = json(&serde_json::json!({ "error": reason }));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// HTTP 503 for an upgrade the edge cannot take, closing the connection: a refused client should
/// not hold a descriptor for a keep-alive it will not use.
fn refused(body: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, body);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
