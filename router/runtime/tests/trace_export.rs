//! The OTLP export against a receiver on loopback: a tiny HTTP server taking `POST /v1/traces`
//! and decoding the body with the official OTLP messages (`opentelemetry-proto`), and a dead
//! endpoint (a closed port) that must cost dropped spans, never a wait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;
use switchboard_runtime::trace::{self, Pipeline, TracingArgs};
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    tracing: TracingArgs,
}

fn args(extra: &[&str]) -> TracingArgs {
    let cli = Cli::try_parse_from(std::iter::once("test").chain(extra.iter().copied())).unwrap();
    cli.tracing.validate().unwrap();
    cli.tracing
}

/// An OTLP/HTTP receiver on 127.0.0.1: every request to `POST /v1/traces`, decoded, is sent on
/// the returned channel.
async fn receiver() -> (SocketAddr, mpsc::Receiver<ExportTraceServiceRequest>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let path_ok = request.method() == hyper::Method::POST
                        && request.uri().path() == "/v1/traces";
                    let body = request.into_body().collect().await?.to_bytes();
                    if !path_ok {
                        let response = Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        return Ok::<_, hyper::Error>(response);
                    }
                    let decoded = ExportTraceServiceRequest::decode(body).unwrap();
                    let _ = tx.send(decoded).await;
                    // An empty ExportTraceServiceResponse: everything accepted.
                    let response = Response::builder()
                        .header("content-type", "application/x-protobuf")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    Ok(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, rx)
}

fn string_attribute(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_reaches_the_collector_over_http_with_its_service() {
    let (addr, mut requests) = receiver().await;
    let args = args(&[
        "--otel-exporter-otlp-endpoint",
        &format!("http://{addr}"),
        "--otel-exporter-otlp-protocol",
        "http/protobuf",
        "--otel-service-name",
        "edge-under-test",
    ]);
    let pipeline = Pipeline::build(&args, "switchboard-edge", "1.2.3")
        .unwrap()
        .unwrap();
    // Propagation works only in a process where tracing is installed.
    trace::install(&pipeline);
    let subscriber = tracing_subscriber::registry().with(pipeline.layer());
    let mut headers = async_nats::HeaderMap::new();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("relay.test");
        let _entered = span.enter();
        trace::inject_span(&span, &mut headers);
    });
    let flusher = pipeline.clone();
    tokio::task::spawn_blocking(move || flusher.force_flush())
        .await
        .unwrap()
        .unwrap();

    let request = tokio::time::timeout(Duration::from_secs(10), requests.recv())
        .await
        .expect("no export within 10 s")
        .unwrap();
    let resource_spans = &request.resource_spans[0];
    let resource = resource_spans.resource.as_ref().unwrap();
    assert_eq!(
        string_attribute(&resource.attributes, "service.name").as_deref(),
        Some("edge-under-test")
    );
    assert_eq!(
        string_attribute(&resource.attributes, "service.version").as_deref(),
        Some("1.2.3")
    );
    let instance = string_attribute(&resource.attributes, "service.instance.id").unwrap();
    assert_eq!(instance.len(), 32, "{instance}");
    let span = &resource_spans.scope_spans[0].spans[0];
    assert_eq!(span.name, "relay.test");

    // The headers carry that span's context, and it reads back.
    let trace_hex: String = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
    let traceparent = headers.get("traceparent").unwrap().as_str().to_owned();
    assert!(
        traceparent.contains(&trace_hex),
        "{traceparent} vs {trace_hex}"
    );
    let parent = trace::extract(&headers).expect("a valid traceparent");
    assert_eq!(
        parent.span().span_context().trace_id().to_string(),
        trace_hex
    );
    pipeline.shutdown(Duration::from_secs(2)).unwrap();
}

/// A loopback address nobody listens on (bound, then released).
fn dead_endpoint() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn a_dead_collector_costs_dropped_spans_not_time() {
    let dead = dead_endpoint();
    let args = args(&[
        "--otel-exporter-otlp-endpoint",
        &format!("http://{dead}"),
        "--otel-exporter-otlp-protocol",
        "http/protobuf",
        "--otel-max-queue-size",
        "100",
        "--otel-exporter-otlp-timeout",
        "1000",
    ]);
    let pipeline = Pipeline::build(&args, "switchboard-edge", "1.2.3")
        .unwrap()
        .unwrap();
    let before = trace::spans_dropped();
    let subscriber = tracing_subscriber::registry().with(pipeline.layer());
    let started = Instant::now();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..10_000 {
            tracing::info_span!("dead.test", i).in_scope(|| {});
        }
    });
    let took = started.elapsed();
    // Generous: emitting 10k spans into a bounded queue takes milliseconds; waiting on the
    // collector even once per batch would take seconds.
    assert!(took < Duration::from_secs(5), "emitting took {took:?}");
    // Every span is accounted for: dropped at the full queue, or in a failed export.
    pipeline.force_flush().unwrap();
    let dropped = trace::spans_dropped() - before;
    assert!(dropped >= 10_000, "dropped {dropped}");
    let _ = pipeline.shutdown(Duration::from_secs(2));
}

/// The gRPC exporter starts its channel on the export thread's runtime: built outside any tokio
/// runtime (as the binaries build it) it works, and a dead collector costs the spans, not a hang.
#[test]
fn grpc_export_is_set_up_without_a_runtime_and_fails_into_the_counter() {
    let dead = dead_endpoint();
    let args = args(&[
        "--otel-exporter-otlp-endpoint",
        &format!("http://{dead}"),
        "--otel-exporter-otlp-timeout",
        "1000",
    ]);
    let pipeline = Pipeline::build(&args, "switchboard-router", "1.2.3")
        .unwrap()
        .unwrap();
    let before = trace::spans_dropped();
    let subscriber = tracing_subscriber::registry().with(pipeline.layer());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..10 {
            tracing::info_span!("grpc.test").in_scope(|| {});
        }
    });
    pipeline.force_flush().unwrap();
    assert!(trace::spans_dropped() - before >= 10);
    let _ = pipeline.shutdown(Duration::from_secs(2));
}
