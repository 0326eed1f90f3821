//! Trace and span ids on log lines (JSON and text), with the subscriber installed as the
//! process's global default, as the binaries do; hence a test binary of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use switchboard_runtime::trace::{self, Pipeline, TracingArgs};
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    tracing: TracingArgs,
}

/// A log sink for the fmt layer.
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// This test's own lines: the exporter's thread logs too (tower, hyper), at any moment.
fn only_this_test() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new().with_target("trace_log_ids", tracing::Level::TRACE)
}

#[test]
fn log_lines_in_a_span_carry_its_trace_and_span_ids() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args = Cli::try_parse_from([
        "test",
        "--otel-exporter-otlp-endpoint",
        &format!("http://{dead}"),
    ])
    .unwrap()
    .tracing;
    let pipeline = Pipeline::build(&args, "switchboard-edge", "1.2.3")
        .unwrap()
        .unwrap();
    trace::install(&pipeline);
    let (json, text) = (Buffer::default(), Buffer::default());
    let subscriber = tracing_subscriber::registry()
        .with(pipeline.layer())
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(json.clone())
                .map_event_format(|f| trace::WithTraceIds::new(f, true))
                .with_filter(only_this_test()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(text.clone())
                .map_event_format(|f| trace::WithTraceIds::new(f, false))
                .with_filter(only_this_test()),
        );
    // The global default, as the binaries install it (a scoped one hides the current span from
    // the formatter: tracing does not re-enter a scoped dispatcher).
    tracing::subscriber::set_global_default(subscriber).unwrap();
    tracing::info!("outside any span");
    let ids = {
        let span = tracing::info_span!("join");
        let _entered = span.enter();
        let mut headers = async_nats::HeaderMap::new();
        trace::inject_span(&span, &mut headers);
        tracing::info!(room.members = 2, "inside the span");
        // traceparent: 00-<trace id>-<span id>-<flags>
        headers.get("traceparent").unwrap().as_str().to_owned()
    };
    let mut parts = ids.split('-').skip(1);
    let (trace_id, span_id) = (parts.next().unwrap(), parts.next().unwrap());

    let json = String::from_utf8(json.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert!(lines[0].get("trace_id").is_none(), "{json}");
    assert_eq!(lines[1]["message"], "inside the span");
    assert_eq!(lines[1]["trace_id"], trace_id, "{json}");
    assert_eq!(lines[1]["span_id"], span_id, "{json}");

    let text = String::from_utf8(text.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines[0].contains("trace_id"), "{text}");
    assert!(
        lines[1].ends_with(&format!(" trace_id={trace_id} span_id={span_id}")),
        "{text}"
    );
}
