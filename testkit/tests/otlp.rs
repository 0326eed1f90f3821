//! The OTLP receiver against the real OpenTelemetry exporter (`opentelemetry-otlp`), over gRPC and
//! over HTTP/protobuf, with a trace that crosses two "services" the way one crosses processes: the
//! context travels as a W3C `traceparent` in a string map, as it will in NATS headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message;
use switchboard_testkit::OtlpReceiver;
use switchboard_testkit::otlp::{self, check_tree, render_tree};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

fn provider(service: &str, exporter: SpanExporter, batch: bool) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service.to_owned())
            .build(),
    );
    if batch {
        builder.with_batch_exporter(exporter).build()
    } else {
        builder.with_simple_exporter(exporter).build()
    }
}

/// Edge A (exporting over gRPC, batched, as a server would) handles a command and hands its context
/// to the router (exporting over HTTP/protobuf) through a carrier; the router makes two child spans.
/// Times are explicit, so the rendered durations are exact. Returns the carrier.
///
/// Runs on a blocking thread: the SDK's flush and shutdown block until the export is done, and the
/// exporters' async clients need the runtime's other threads meanwhile.
fn cross_service_trace(grpc: String, http: String) -> HashMap<String, String> {
    let edge = provider(
        "edge-a",
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(grpc)
            .build()
            .unwrap(),
        true,
    );
    let router = provider(
        "router",
        SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{http}/v1/traces"))
            .build()
            .unwrap(),
        false,
    );
    let propagator = TraceContextPropagator::new();
    let t0 = SystemTime::now();
    let ms = |n| t0 + Duration::from_millis(n);

    let edge_tracer = edge.tracer("switchboard-edge");
    let command = edge_tracer
        .span_builder("send_to_peer")
        .with_kind(SpanKind::Server)
        .with_start_time(t0)
        .start(&edge_tracer);
    let command = Context::new().with_span(command);
    let mut carrier = HashMap::new();
    propagator.inject_context(&command, &mut carrier);

    // The other process: only the carrier crosses.
    let remote = propagator.extract(&carrier);
    let router_tracer = router.tracer("switchboard-router");
    let mut apply = router_tracer
        .span_builder("apply")
        .with_kind(SpanKind::Consumer)
        .with_start_time(ms(1))
        .with_attributes([KeyValue::new("switchboard.slot", 7)])
        .start_with_context(&router_tracer, &remote);
    apply.end_with_timestamp(ms(4));
    let mut fan_out = router_tracer
        .span_builder("fan_out")
        .with_start_time(ms(5))
        .start_with_context(&router_tracer, &remote);
    fan_out.end_with_timestamp(ms(7));

    command.span().end_with_timestamp(ms(10));
    edge.force_flush().unwrap();
    router.force_flush().unwrap();
    edge.shutdown().unwrap();
    router.shutdown().unwrap();
    carrier
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_across_two_services_arrives_as_one_tree() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let (grpc, http) = (receiver.endpoint_grpc(), receiver.endpoint_http());
    let carrier = tokio::task::spawn_blocking(move || cross_service_trace(grpc, http))
        .await
        .unwrap();

    let spans = receiver
        .wait_for(WAIT, |spans| spans.len() >= 3)
        .await
        .unwrap();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let traces = receiver.traces();
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let (trace_id, trace) = traces.into_iter().next().unwrap();
    check_tree(&trace).unwrap();
    // The trace id is the one the carrier took across: `00-<trace id>-<span id>-01`.
    let traceparent = &carrier["traceparent"];
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );

    let root = &trace[0];
    assert_eq!(
        (root.name.as_str(), root.service_name.as_str()),
        ("send_to_peer", "edge-a")
    );
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.kind, otlp::SpanKind::Server);
    assert_eq!(root.scope_name, "switchboard-edge");
    assert!(traceparent.contains(&root.span_id), "{traceparent}");

    let children = receiver.children_of(root);
    let names: Vec<(&str, &str)> = children
        .iter()
        .map(|span| (span.service_name.as_str(), span.name.as_str()))
        .collect();
    assert_eq!(names, [("router", "apply"), ("router", "fan_out")]);
    assert_eq!(children[0].kind, otlp::SpanKind::Consumer);
    assert_eq!(children[0].attribute("switchboard.slot"), Some("7"));
    assert!(receiver.children_of(&children[0]).is_empty());

    assert_eq!(
        render_tree(&trace),
        "edge-a: send_to_peer (10ms)\n  router: apply (3ms)\n  router: fan_out (2ms)\n"
    );
}

/// A request whose trace id has 8 bytes instead of 16.
fn malformed_export() -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 8],
                    span_id: vec![2; 8],
                    name: "broken".into(),
                    ..Span::default()
                }],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

#[tokio::test]
async fn grpc_refuses_ids_of_the_wrong_length() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut client = TraceServiceClient::connect(receiver.endpoint_grpc())
        .await
        .unwrap();
    let status = client.export(malformed_export()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(
        status.message().contains("trace_id has 8 bytes"),
        "{status}"
    );

    let mut valid = malformed_export();
    valid.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 16];
    client.export(valid).await.unwrap();
    assert_eq!(receiver.spans().len(), 1);
}

/// Sends one HTTP/1.0 request and returns the status code.
async fn http_status(addr: &str, request_head: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{request_head}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"))
}

#[tokio::test]
async fn http_refuses_what_it_cannot_take() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let endpoint = receiver.endpoint_http();
    let addr = endpoint.trim_start_matches("http://");
    let protobuf = "Content-Type: application/x-protobuf";
    let malformed = malformed_export().encode_to_vec();
    let cases: [(&str, &[u8], u16); 6] = [
        (
            &format!("POST /v1/metrics HTTP/1.0\r\n{protobuf}"),
            b"",
            404,
        ),
        (&format!("GET /v1/traces HTTP/1.0\r\n{protobuf}"), b"", 405),
        (
            "POST /v1/traces HTTP/1.0\r\nContent-Type: application/json",
            b"{}",
            415,
        ),
        (
            &format!("POST /v1/traces HTTP/1.0\r\n{protobuf}"),
            b"\xff\xff",
            400,
        ),
        (
            &format!("POST /v1/traces HTTP/1.0\r\n{protobuf}"),
            &malformed,
            400,
        ),
        // An empty request is a valid one, with no spans.
        (&format!("POST /v1/traces HTTP/1.0\r\n{protobuf}"), b"", 200),
    ];
    for (head, body, expected) in cases {
        assert_eq!(http_status(addr, head, body).await, expected, "{head}");
    }
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn waiting_fails_with_what_arrived() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let error = receiver
        .wait_for(Duration::from_millis(50), |spans| !spans.is_empty())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("0 received"), "{error}");
}
