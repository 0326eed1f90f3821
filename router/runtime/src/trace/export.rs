//! The export pipeline: sampler, resource, OTLP exporter and a bounded batch processor of our own.
//!
//! Why not the SDK's `BatchSpanProcessor`: it drops spans when its queue is full too, but only
//! logs how many at shutdown; an operator needs the count while it happens, as a metric. This one
//! is as small as it can be: a bounded channel that `on_end` never waits on, and one task on a
//! thread of its own (its own single-threaded tokio runtime, so a slow collector takes no worker
//! from the serving runtime) that batches and exports, each export bounded by the timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, OnceLock, mpsc as std_mpsc};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

use super::{Protocol, SamplerKind, TracingArgs};

/// Spans sent in one export request at most (the SDK's default, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
const MAX_BATCH: usize = 512;
/// How long process exit waits for the last spans to go out.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);

static SPANS_DROPPED: LazyLock<Option<IntCounter>> = LazyLock::new(|| {
    IntCounter::new(
        "switchboard_trace_spans_dropped_total",
        "Spans not exported: the export queue was full (a slow or dead collector), or their \
         export request failed or timed out.",
    )
    .ok()
});

/// The process's tracer provider, once [`install`]ed.
static INSTALLED: OnceLock<SdkTracerProvider> = OnceLock::new();
/// Whether tracing is on in this process: [`super::inject`] and the log lines' ids look at it.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// `switchboard_trace_spans_dropped_total`, one counter per process; every registry registers it
/// ([`crate::metrics::Registrar::finish`]).
pub fn spans_dropped_counter() -> Option<IntCounter> {
    SPANS_DROPPED.clone()
}

/// How many spans this process dropped so far.
pub fn spans_dropped() -> u64 {
    SPANS_DROPPED.as_ref().map_or(0, IntCounter::get)
}

fn count_dropped(spans: usize) {
    if let Some(counter) = SPANS_DROPPED.as_ref() {
        counter.inc_by(spans as u64);
    }
}

/// Whether tracing is on in this process ([`install`] was called).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Why the export pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The export thread's runtime did not start.
    #[error("cannot start the span export thread")]
    Thread(#[source] std::io::Error),
    /// The OTLP exporter refused its settings.
    #[error("cannot set up the OTLP exporter")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// A tracer provider exporting over OTLP as [`TracingArgs`] say.
#[derive(Debug, Clone)]
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Builds the pipeline, `None` when tracing is off. `default_name` is the service.name unless
    /// `--otel-service-name` gives one; `version` is the service.version.
    pub fn build(
        args: &TracingArgs,
        default_name: &str,
        version: &str,
    ) -> Result<Option<Pipeline>, BuildError> {
        let Some(endpoint) = &args.otel_exporter_otlp_endpoint else {
            return Ok(None);
        };
        let name = args.otel_service_name.as_deref().unwrap_or(default_name);
        let resource = Resource::builder_empty()
            .with_service_name(name.to_owned())
            .with_attributes([
                KeyValue::new("service.version", version.to_owned()),
                KeyValue::new(
                    "service.instance.id",
                    format!("{:032x}", rand::random::<u128>()),
                ),
            ])
            .build();
        let export_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BuildError::Thread)?;
        // tonic's channel starts its connection task where it is built.
        let exporter = {
            let _inside = export_runtime.enter();
            build_exporter(
                args.otel_exporter_otlp_protocol,
                endpoint,
                args.export_timeout(),
            )
            .map_err(BuildError::Exporter)?
        };
        let processor = BoundedBatchProcessor::start(
            exporter,
            resource.clone(),
            export_runtime,
            args.otel_max_queue_size,
            args.schedule_delay(),
            args.export_timeout(),
        )
        .map_err(BuildError::Thread)?;
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(sampler(
                args.otel_traces_sampler,
                args.otel_traces_sampler_arg,
            ))
            .with_resource(resource)
            .build();
        Ok(Some(Pipeline { provider }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans of this pipeline.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        // No source locations, thread names or busy/idle timings on every span: they cost an
        // allocation or two clock reads per span and say nothing the span's name does not.
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("switchboard"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
    }

    /// Exports every span ended so far; waits for the export (bounded by its timeout).
    pub fn force_flush(&self) -> OTelSdkResult {
        self.provider.force_flush()
    }

    /// Exports what is left and stops, waiting `timeout` at most.
    pub fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        self.provider.shutdown_with_timeout(timeout)
    }
}

/// Makes `pipeline` the process's: [`enabled`] turns true and [`shutdown`] flushes it. The
/// subscriber's layer comes from [`Pipeline::layer`].
pub fn install(pipeline: &Pipeline) {
    if INSTALLED.set(pipeline.provider.clone()).is_ok() {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Exports the spans still queued and stops tracing, waiting 2 s at most: call it as the process
/// ends. Does nothing when tracing is off.
pub fn shutdown() {
    if let Some(provider) = INSTALLED.get()
        && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_WAIT)
    {
        tracing::warn!(error = %e, "cannot export the last spans");
    }
}

fn build_exporter(
    protocol: Protocol,
    endpoint: &str,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    match protocol {
        Protocol::Grpc => builder
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .build(),
        // OTEL_EXPORTER_OTLP_ENDPOINT is the base URL; the traces signal has its own path.
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_timeout(timeout)
            .build(),
    }
}

fn sampler(kind: SamplerKind, ratio: f64) -> Sampler {
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match kind {
        SamplerKind::AlwaysOn => Sampler::AlwaysOn,
        SamplerKind::AlwaysOff => Sampler::AlwaysOff,
        SamplerKind::Traceidratio => Sampler::TraceIdRatioBased(ratio),
        SamplerKind::ParentbasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        SamplerKind::ParentbasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        SamplerKind::ParentbasedTraceidratio => parent_based(Sampler::TraceIdRatioBased(ratio)),
    }
}

/// What the export task is asked besides exporting: each answered on the channel it carries.
enum Control {
    Flush(std_mpsc::SyncSender<()>),
    Shutdown(std_mpsc::SyncSender<()>),
}

/// Queues ended spans in a bounded channel (full: the span is dropped and counted) for the export
/// task.
#[derive(Debug)]
struct BoundedBatchProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::Sender<Control>,
    timeout: Duration,
}

impl BoundedBatchProcessor {
    fn start<E: SpanExporter + 'static>(
        mut exporter: E,
        resource: Resource,
        runtime: tokio::runtime::Runtime,
        max_queue: usize,
        delay: Duration,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        exporter.set_resource(&resource);
        let (spans, spans_rx) = mpsc::channel(max_queue);
        let (control, control_rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("otel-export".to_owned())
            .spawn(move || {
                runtime.block_on(export_task(exporter, spans_rx, control_rx, delay, timeout))
            })?;
        Ok(BoundedBatchProcessor {
            spans,
            control,
            timeout,
        })
    }

    /// Asks the task for `what` and waits for its answer, `wait` at most.
    fn ask(&self, what: fn(std_mpsc::SyncSender<()>) -> Control, wait: Duration) -> OTelSdkResult {
        let (done, answer) = std_mpsc::sync_channel(1);
        self.control
            .try_send(what(done))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        answer
            .recv_timeout(wait)
            .map_err(|_| OTelSdkError::Timeout(wait))
    }
}

impl SpanProcessor for BoundedBatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.spans.try_send(span).is_err() {
            count_dropped(1);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // A flush exports the whole queue, one timeout per batch at worst.
        self.ask(Control::Flush, self.timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }
}

async fn export_task<E: SpanExporter>(
    exporter: E,
    mut spans: mpsc::Receiver<SpanData>,
    mut control: mpsc::Receiver<Control>,
    delay: Duration,
    timeout: Duration,
) {
    let mut exports = Exports {
        exporter,
        timeout,
        failing: false,
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            span = spans.recv() => {
                let Some(span) = span else { break };
                batch.push(span);
                if batch.len() >= MAX_BATCH {
                    exports.send(&mut batch).await;
                }
            }
            _ = tick.tick() => exports.send(&mut batch).await,
            asked = control.recv() => {
                let Some(asked) = asked else { break };
                // Export what is queued now; spans ending meanwhile wait for the next batch.
                let queued = spans.len();
                for _ in 0..queued {
                    let Ok(span) = spans.try_recv() else { break };
                    batch.push(span);
                    if batch.len() >= MAX_BATCH {
                        exports.send(&mut batch).await;
                    }
                }
                exports.send(&mut batch).await;
                match asked {
                    Control::Flush(done) => {
                        let _ = done.try_send(());
                    }
                    Control::Shutdown(done) => {
                        let _ = exports.exporter.shutdown_with_timeout(timeout);
                        let _ = done.try_send(());
                        break;
                    }
                }
            }
        }
    }
}

/// The exporter, and whether its last export failed (so a dead collector is logged once when it
/// fails and once when it comes back, not per batch).
struct Exports<E> {
    exporter: E,
    timeout: Duration,
    failing: bool,
}

impl<E: SpanExporter> Exports<E> {
    async fn send(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
        let count = spans.len();
        let error = match tokio::time::timeout(self.timeout, self.exporter.export(spans)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(OTelSdkError::Timeout(self.timeout)),
        };
        match error {
            None if self.failing => {
                self.failing = false;
                tracing::info!("span export works again");
            }
            None => {}
            Some(e) => {
                count_dropped(count);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(error = %e, spans = count, "cannot export spans; dropping them until the collector answers");
                }
            }
        }
    }
}
