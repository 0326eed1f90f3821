//! Tracing export (OpenTelemetry, OTLP), off unless an endpoint is given.
//!
//! The settings are the standard `OTEL_*` environment variables, each also a flag
//! ([`TracingArgs`]). When on, [`Pipeline`] puts a `tracing-opentelemetry` layer into the
//! subscriber [`crate::cli::start`] builds, exporting through a bounded queue: a dead or slow
//! collector costs dropped spans (`switchboard_trace_spans_dropped_total`), never a blocked task or
//! a growing buffer. [`inject_span`] and [`extract`] carry the W3C trace context in NATS headers.
//!
//! # Layout
//! - this file: the settings and their checks.
//! - `export`: the pipeline (sampler, resource, exporter, the bounded batch processor), the
//!   process-wide installation and shutdown, the dropped-spans counter.
//! - `ids`: trace and span ids on log lines.
//! - `leaf`: spans on the relay path, made with the SDK directly.
//! - `propagate`: W3C trace context in and out of NATS headers (and in from a client's upgrade
//!   request).
//!
//! Spans are made with [`trace_root!`](crate::trace_root) where a trace starts (sampled there, at
//! the head), [`trace_span!`](crate::trace_span) inside a traced step, and
//! [`trace_continue!`](crate::trace_continue) where a message carrying a trace context arrives:
//! while tracing is off, or for a trace not started, none is made at all.

mod export;
mod ids;
mod leaf;
mod propagate;

pub use export::{
    BuildError, Pipeline, enabled, install, shutdown, spans_dropped, spans_dropped_counter,
    start_trace,
};
pub use ids::WithTraceIds;
pub use leaf::Leaf;
/// A trace context (a parent for spans), as [`extract`] returns it.
pub use opentelemetry::Context;
/// A span's kind, for [`Leaf`].
pub use opentelemetry::trace::SpanKind;
pub use propagate::{
    context_of, extract, extract_http, extract_traceparent, inject_span, set_parent, traced_headers,
};

/// The target of Switchboard's own spans. Only spans of this target are exported (besides
/// warnings and errors logged inside them, as span events); log lines never show them as context.
pub const TARGET: &str = "switchboard::trace";

/// A span that starts a new trace (a client's command, a resync, a lease operation), of [`TARGET`] at
/// INFO level, if [`start_trace`] chooses to; [`tracing::Span::none`] otherwise, and always while
/// tracing is off: a trace not started costs one random number, and nothing is allocated or
/// recorded. Same syntax as `tracing::info_span!` (a name, then fields).
#[macro_export]
macro_rules! trace_root {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::trace::start_trace() {
            ::tracing::info_span!(target: "switchboard::trace", $name $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// A span continuing the trace `parent` names if it is `Some` ([`trace_continue!`](crate::trace_continue), e.g. a trace a
/// client started), else starting a new one ([`trace_root!`](crate::trace_root)). `trace_start!(parent; name,
/// fields…)`.
#[macro_export]
macro_rules! trace_start {
    ($parent:expr; $name:expr $(, $($fields:tt)*)?) => {
        match $parent {
            Some(parent) => $crate::trace_continue!(Some(parent); $name $(, $($fields)*)?),
            None => $crate::trace_root!($name $(, $($fields)*)?),
        }
    };
}

/// A span inside the current one (a step of a traced command), made only when there is a current
/// span; [`tracing::Span::none`] otherwise. Same syntax as [`trace_root!`](crate::trace_root).
#[macro_export]
macro_rules! trace_span {
    ($name:expr $(, $($fields:tt)*)?) => {
        if $crate::trace::enabled() && !::tracing::Span::current().is_none() {
            ::tracing::info_span!(target: "switchboard::trace", $name $(, $($fields)*)?)
        } else {
            ::tracing::Span::none()
        }
    };
}

/// A span continuing a trace another process started: `parent` is the `Option` of the trace
/// context a message carried ([`extract`](crate::trace::extract)); with `None` (a message from a trace not started, or
/// tracing off) no span is made. `trace_continue!(parent; name, fields…)`.
#[macro_export]
macro_rules! trace_continue {
    ($parent:expr; $name:expr $(, $($fields:tt)*)?) => {
        match $parent {
            Some(parent) if $crate::trace::enabled() => {
                let span = ::tracing::info_span!(target: "switchboard::trace", $name $(, $($fields)*)?);
                $crate::trace::set_parent(&span, parent);
                span
            }
            _ => ::tracing::Span::none(),
        }
    };
}

use std::time::Duration;

use clap::ValueEnum;

/// How spans travel to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// OTLP over gRPC; the endpoint is the collector's gRPC address (usually port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies; the endpoint is the base URL (usually port 4318),
    /// spans go to its `/v1/traces`.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// Which spans are recorded (`OTEL_TRACES_SAMPLER`), with the standard names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Every span.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of traces, by trace id (`--otel-traces-sampler-arg`).
    Traceidratio,
    /// As the parent decided; a root span is always recorded.
    ParentbasedAlwaysOn,
    /// As the parent decided; a root span never is.
    ParentbasedAlwaysOff,
    /// As the parent decided; a root span by trace id ratio.
    ParentbasedTraceidratio,
}

/// The tracing flags both binaries take, next to the logging ones.
#[derive(Debug, Clone, clap::Args)]
pub struct TracingArgs {
    /// Where to export spans: the OTLP collector's URL, plain http, e.g. `http://127.0.0.1:4317`
    /// (gRPC) or `http://127.0.0.1:4318` (http/protobuf). Tracing is on only when this is set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// OTLP transport.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value = "grpc"
    )]
    pub otel_exporter_otlp_protocol: Protocol,

    /// The service.name of exported spans [default: the binary's name].
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// Sampler.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER",
        value_enum,
        default_value = "parentbased_traceidratio"
    )]
    pub otel_traces_sampler: SamplerKind,

    /// The ratio of the `traceidratio` samplers, 0 to 1.
    #[arg(
        long,
        env = "OTEL_TRACES_SAMPLER_ARG",
        default_value_t = 1.0,
        allow_negative_numbers = true,
        value_name = "RATIO"
    )]
    pub otel_traces_sampler_arg: f64,

    /// Spans waiting for export at most; past it, new spans are dropped (and counted in
    /// switchboard_trace_spans_dropped_total).
    #[arg(
        long,
        env = "OTEL_BSP_MAX_QUEUE_SIZE",
        default_value_t = 2048,
        value_name = "SPANS"
    )]
    pub otel_max_queue_size: usize,

    /// How long a finished span waits at most before it is exported with those that ended around
    /// it, in milliseconds (a batch also leaves as soon as it holds 512 spans).
    #[arg(
        long,
        env = "OTEL_BSP_SCHEDULE_DELAY",
        default_value_t = 5_000,
        value_name = "MS"
    )]
    pub otel_bsp_schedule_delay: u64,

    /// How long one export request may take, in milliseconds; a batch not sent by then is
    /// dropped (and counted).
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_TIMEOUT",
        default_value_t = 10_000,
        value_name = "MS"
    )]
    pub otel_exporter_otlp_timeout: u64,
}

impl TracingArgs {
    /// Whether tracing is on (an endpoint is set).
    pub fn is_on(&self) -> bool {
        self.otel_exporter_otlp_endpoint.is_some()
    }

    /// The export timeout.
    pub fn export_timeout(&self) -> Duration {
        Duration::from_millis(self.otel_exporter_otlp_timeout)
    }

    /// The longest a finished span waits for its batch.
    pub fn schedule_delay(&self) -> Duration {
        Duration::from_millis(self.otel_bsp_schedule_delay)
    }

    /// Checks what clap cannot: the endpoint is an `http://` URL with a host, the ratio lies in
    /// 0..=1, the queue and timeout are not zero. The message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.otel_exporter_otlp_endpoint {
            check_endpoint(endpoint)
                .map_err(|why| format!("--otel-exporter-otlp-endpoint {endpoint:?}: {why}"))?;
        }
        let ratio = self.otel_traces_sampler_arg;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(format!(
                "--otel-traces-sampler-arg must be a ratio from 0 to 1 (got {ratio})"
            ));
        }
        if self.otel_max_queue_size == 0 {
            return Err("--otel-max-queue-size must be at least 1".to_owned());
        }
        if self.otel_bsp_schedule_delay == 0 {
            return Err("--otel-bsp-schedule-delay must be at least 1 ms".to_owned());
        }
        if self.otel_exporter_otlp_timeout == 0 {
            return Err("--otel-exporter-otlp-timeout must be at least 1 ms".to_owned());
        }
        Ok(())
    }
}

fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let uri: http::Uri = endpoint.parse().map_err(|_| "not a URL")?;
    // No TLS stack is built into the exporter (no second one beside async-nats' rustls, no
    // openssl): an https:// endpoint would fail at every export, so it is refused here.
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported: export over plain http to a collector on the \
                        node or in the pod (an agent or sidecar), which forwards over TLS",
            );
        }
        _ => return Err("the URL must start with http://"),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err("the URL has no host"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tracing: TracingArgs,
    }

    fn parse(args: &[&str]) -> Result<TracingArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.tracing.validate()?;
        Ok(cli.tracing)
    }

    #[test]
    fn off_by_default_with_the_standard_defaults() {
        // The OTEL_* variables of the machine running the tests would change the defaults.
        if std::env::vars().any(|(k, _)| k.starts_with("OTEL_")) {
            return;
        }
        let args = parse(&[]).unwrap();
        assert!(!args.is_on());
        assert_eq!(args.otel_exporter_otlp_protocol, Protocol::Grpc);
        assert_eq!(
            args.otel_traces_sampler,
            SamplerKind::ParentbasedTraceidratio
        );
        assert_eq!(args.otel_traces_sampler_arg, 1.0);
        assert_eq!(args.otel_max_queue_size, 2048);
        assert_eq!(args.export_timeout(), Duration::from_secs(10));
        assert_eq!(args.schedule_delay(), Duration::from_secs(5));
        assert_eq!(args.otel_service_name, None);
    }

    #[test]
    fn flags_set_every_setting() {
        let args = parse(&[
            "--otel-exporter-otlp-endpoint",
            "http://127.0.0.1:4318",
            "--otel-exporter-otlp-protocol",
            "http/protobuf",
            "--otel-service-name",
            "edge-a",
            "--otel-traces-sampler",
            "traceidratio",
            "--otel-traces-sampler-arg",
            "0.1",
            "--otel-max-queue-size",
            "10",
            "--otel-exporter-otlp-timeout",
            "500",
            "--otel-bsp-schedule-delay",
            "100",
        ])
        .unwrap();
        assert!(args.is_on());
        assert_eq!(args.otel_exporter_otlp_protocol, Protocol::HttpProtobuf);
        assert_eq!(args.otel_service_name.as_deref(), Some("edge-a"));
        assert_eq!(args.otel_traces_sampler, SamplerKind::Traceidratio);
        assert_eq!(args.otel_traces_sampler_arg, 0.1);
        assert_eq!(args.otel_max_queue_size, 10);
        assert_eq!(args.export_timeout(), Duration::from_millis(500));
        assert_eq!(args.schedule_delay(), Duration::from_millis(100));
    }

    #[test]
    fn every_standard_sampler_name_parses() {
        for name in [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ] {
            parse(&["--otel-traces-sampler", name]).unwrap();
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let cases: [(&[&str], &str); 8] = [
            (
                &["--otel-bsp-schedule-delay", "0"],
                "--otel-bsp-schedule-delay",
            ),
            (&["--otel-traces-sampler", "sometimes"], "sometimes"),
            (
                &["--otel-traces-sampler-arg", "1.5"],
                "--otel-traces-sampler-arg must be a ratio from 0 to 1 (got 1.5)",
            ),
            (
                &["--otel-traces-sampler-arg", "-0.1"],
                "--otel-traces-sampler-arg must be a ratio",
            ),
            (
                &["--otel-exporter-otlp-endpoint", "127.0.0.1:4317"],
                "--otel-exporter-otlp-endpoint \"127.0.0.1:4317\": the URL must start with http",
            ),
            (
                &["--otel-exporter-otlp-endpoint", "https://collector:4317"],
                "https is not supported",
            ),
            (&["--otel-exporter-otlp-endpoint", "not a url"], "not a URL"),
            (&["--otel-max-queue-size", "0"], "--otel-max-queue-size"),
        ];
        for (args, expected) in cases {
            let error = parse(args).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
