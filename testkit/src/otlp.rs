//! An OTLP trace receiver for tests of tracing export: what an OpenTelemetry Collector would be,
//! reduced to recording the spans it is sent.
//!
//! No collector binary installs in the test environment, so the receiver is built here, on the
//! OpenTelemetry project's own protobuf definitions (the `opentelemetry-proto` crate, generated
//! from `opentelemetry/proto/collector/trace/v1/trace_service.proto`), which is what a collector
//! decodes too: an exporter that this receiver accepts speaks real OTLP, with no hand-written wire
//! format in between to agree with our own mistakes. It listens on 127.0.0.1 on two ports it chose
//! itself, so tests never guess ports and never wait for start-up (the sockets are bound before
//! [`OtlpReceiver::start`] returns):
//!
//! - OTLP/gRPC ([`OtlpReceiver::endpoint_grpc`]): the service
//!   `opentelemetry.proto.collector.trace.v1.TraceService`, method `Export`, over tonic, the gRPC
//!   stack the exporter also uses.
//! - OTLP/HTTP with protobuf bodies ([`OtlpReceiver::endpoint_http`]): `POST /v1/traces` with
//!   `Content-Type: application/x-protobuf` and an `ExportTraceServiceRequest` body; the answer is
//!   200 with an empty `ExportTraceServiceResponse`. JSON bodies (which a collector also takes) get
//!   415, compressed ones too (the exporters send neither unless configured to); an undecodable
//!   body 400, another method 405, another path 404.
//!
//! Both refuse a span whose ids have the wrong length (the gRPC answer `INVALID_ARGUMENT`, the HTTP
//! one 400) rather than record it, since that is a sender's bug. Everything accepted is kept as
//! [`ReceivedSpan`]s, with helpers to group them by trace ([`OtlpReceiver::traces`]), walk a
//! trace ([`OtlpReceiver::children_of`]), check that it is one tree ([`check_tree`]) and print it
//! ([`render_tree`]). Both servers stop accepting connections when the receiver is dropped.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use switchboard_testkit::otlp::{OtlpReceiver, check_tree, render_tree};
//!
//! let otlp = OtlpReceiver::start().await?;
//! // … start a process with OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint_grpc(), make it work …
//! otlp.wait_for(Duration::from_secs(10), |spans| spans.len() >= 3).await?;
//! for trace in otlp.traces().values() {
//!     check_tree(trace)?;
//!     println!("{}", render_tree(trace));
//! }
//! # Ok(())
//! # }
//! ```

mod span;
mod tree;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use span::{ReceivedSpan, SpanKind};
pub use tree::{check_tree, children_of, group_traces, render_tree};

/// The OTLP receiver: gRPC and HTTP on 127.0.0.1, recording every span; stops accepting on drop.
#[derive(Debug)]
pub struct OtlpReceiver {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    spans: Spans,
    servers: Vec<JoinHandle<()>>,
}

/// The spans received so far, shared by both servers and the test. A `watch` channel, so waiting
/// for a condition wakes on each export instead of polling.
#[derive(Debug, Clone)]
struct Spans {
    sender: watch::Sender<Vec<ReceivedSpan>>,
}

impl Spans {
    fn record(&self, request: ExportTraceServiceRequest) -> Result<(), String> {
        let spans = span::spans_of(request)?;
        self.sender.send_modify(|received| received.extend(spans));
        Ok(())
    }
}

impl OtlpReceiver {
    /// Binds both ports on 127.0.0.1 and starts serving; ready to receive when this returns.
    pub async fn start() -> Result<OtlpReceiver> {
        let grpc = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the OTLP/gRPC receiver")?;
        let http = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the OTLP/HTTP receiver")?;
        let grpc_addr = grpc.local_addr()?;
        let http_addr = http.local_addr()?;
        let spans = Spans {
            sender: watch::Sender::new(Vec::new()),
        };
        let grpc_service = TraceServiceServer::new(GrpcReceiver {
            spans: spans.clone(),
        });
        let grpc_server = tokio::spawn(async move {
            // Serving only ends with an error on the listener, which loopback does not produce;
            // exports then fail in the test, which is where it shows.
            let _ = tonic::transport::Server::builder()
                .add_service(grpc_service)
                .serve_with_incoming(TcpIncoming::from(grpc))
                .await;
        });
        let http_server = tokio::spawn(serve_http(http, spans.clone()));
        Ok(OtlpReceiver {
            grpc_addr,
            http_addr,
            spans,
            servers: vec![grpc_server, http_server],
        })
    }

    /// `http://127.0.0.1:<port>` of OTLP/gRPC, for `OTEL_EXPORTER_OTLP_ENDPOINT` with the `grpc`
    /// protocol or an exporter's `with_endpoint`.
    pub fn endpoint_grpc(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:<port>` of OTLP/HTTP, for `OTEL_EXPORTER_OTLP_ENDPOINT` with the
    /// `http/protobuf` protocol (which appends `/v1/traces`); an exporter's `with_endpoint` takes
    /// the full URL, this followed by `/v1/traces`.
    pub fn endpoint_http(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.sender.borrow().clone()
    }

    /// Waits until `condition` holds for the spans received so far and returns them, or fails
    /// after `timeout` with what had arrived. Checked at once and after each export, not polled.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&[ReceivedSpan]) -> bool,
    ) -> Result<Vec<ReceivedSpan>> {
        let mut receiver = self.spans.sender.subscribe();
        match tokio::time::timeout(timeout, receiver.wait_for(|spans| condition(spans))).await {
            Ok(Ok(spans)) => Ok(spans.clone()),
            // The sender lives in `self`, so the channel cannot close while we wait.
            Ok(Err(closed)) => Err(anyhow!(closed).context("the OTLP receiver stopped")),
            Err(_) => {
                let spans = self.spans();
                let mut received = String::new();
                for trace in group_traces(&spans).values() {
                    received.push_str(&render_tree(trace));
                }
                Err(anyhow!(
                    "the spans awaited did not arrive within {timeout:?}; {} received:\n{received}",
                    spans.len()
                ))
            }
        }
    }

    /// The spans received so far, grouped by trace id, each trace in start order.
    pub fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        group_traces(&self.spans())
    }

    /// The received spans whose parent is `parent`, in start order.
    pub fn children_of(&self, parent: &ReceivedSpan) -> Vec<ReceivedSpan> {
        children_of(&self.spans(), parent)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

/// `TraceService/Export`, as generated from the collector's proto.
struct GrpcReceiver {
    spans: Spans,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.spans
            .record(request.into_inner())
            .map_err(tonic::Status::invalid_argument)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn serve_http(listener: TcpListener, spans: Spans) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let spans = spans.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let spans = spans.clone();
                async move { Ok::<_, std::convert::Infallible>(answer_http(request, &spans).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer_http(request: Request<Incoming>, spans: &Spans) -> Response<Full<Bytes>> {
    if request.uri().path() != "/v1/traces" {
        return respond(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::POST {
        return respond(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return respond(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only application/x-protobuf\n",
        );
    }
    if request.headers().contains_key(header::CONTENT_ENCODING) {
        return respond(StatusCode::UNSUPPORTED_MEDIA_TYPE, "no compression\n");
    }
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => return respond(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    let export = match ExportTraceServiceRequest::decode(body) {
        Ok(export) => export,
        Err(error) => return respond(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    if let Err(error) = spans.record(export) {
        return respond(StatusCode::BAD_REQUEST, format!("{error}\n"));
    }
    let mut response = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    response
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
