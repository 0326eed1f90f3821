//! The export pipeline: sampler, resource, OTLP exporter and a bounded batch processor of our own.
//!
//! Why not the SDK's `BatchSpanProcessor`: it drops spans when its queue is full too, but only
//! logs how many at shutdown; an operator needs the count while it happens, as a metric. This one
//! is as small as it can be: a bounded queue that `on_end` never waits on and that wakes nobody
//! until a batch is full, and one task on a thread of its own (its own single-threaded tokio
//! runtime, so a slow collector takes no worker from the serving runtime) that exports a batch when
//! one is full or the schedule delay has passed, each export bounded by the timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, mpsc as std_mpsc};
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
use tokio::sync::{Notify, mpsc};
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
/// Whether tracing is on in this process: the span macros, [`super::inject_span`] and the log lines' ids look at it.
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
    /// The share of new traces to start ([`start_trace`]).
    root_ratio: f64,
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
        Ok(Some(Pipeline {
            provider,
            root_ratio: root_ratio(args.otel_traces_sampler, args.otel_traces_sampler_arg),
        }))
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
            // Nothing here reads the OpenTelemetry "current context" (propagation takes the
            // tracing span's own), so entering a span need not make its context current: that
            // would cost a context clone and a guard on every poll of an instrumented future.
            .with_context_activation(false)
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
        let _ = TRACER.set(pipeline.provider.tracer("switchboard"));
        ROOT_RATIO.store(pipeline.root_ratio.to_bits(), Ordering::Relaxed);
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// The installed provider's tracer, for spans made without `tracing` ([`super::Leaf`]).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The tracer of the installed pipeline; `None` when tracing is off.
pub(super) fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// The share of new traces [`start_trace`] starts, as `f64` bits.
static ROOT_RATIO: AtomicU64 = AtomicU64::new(0);

/// Whether to start a new trace here (a span with no parent: a client's command, a resync, a lease
/// operation). Head sampling done before any span exists: a trace not started costs one random
/// number, and since nothing downstream receives a trace context for it, nothing downstream makes a
/// span either ([`crate::trace_continue!`]). False when tracing is off.
pub fn start_trace() -> bool {
    if !enabled() {
        return false;
    }
    let ratio = f64::from_bits(ROOT_RATIO.load(Ordering::Relaxed));
    ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio)
}

/// The share of traces to start, for [`start_trace`]: the configured ratio for
/// `parentbased_traceidratio` (whose root sampler is then always-on: the decision is made here, not
/// twice); all for the samplers that decide per span (`always_on`, `traceidratio`) or start every
/// root (`parentbased_always_on`); none for `always_off` and `parentbased_always_off` (whose only
/// traces are those a client starts, [`crate::trace_continue!`]).
fn root_ratio(kind: SamplerKind, ratio: f64) -> f64 {
    match kind {
        SamplerKind::ParentbasedTraceidratio => ratio,
        SamplerKind::AlwaysOn | SamplerKind::Traceidratio | SamplerKind::ParentbasedAlwaysOn => 1.0,
        SamplerKind::AlwaysOff | SamplerKind::ParentbasedAlwaysOff => 0.0,
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
        // The ratio is applied where a trace starts (`start_trace`): a root span exists only if it
        // was chosen, so the SDK records every root it sees.
        SamplerKind::ParentbasedTraceidratio => parent_based(Sampler::AlwaysOn),
    }
}

/// What the export task is asked besides exporting: each answered on the channel it carries.
enum Control {
    Flush(std_mpsc::SyncSender<()>),
    Shutdown(std_mpsc::SyncSender<()>),
}

/// Queues ended spans (full: the span is dropped and counted) for the export task.
#[derive(Debug)]
struct BoundedBatchProcessor {
    queue: Arc<SpanQueue>,
    control: mpsc::Sender<Control>,
    timeout: Duration,
}

/// The ended spans waiting for export. A plain locked `Vec`, not a channel: ending a span must not
/// wake the export thread (a wake-up is a system call and two context switches, far more than the
/// span itself costs), so the thread is woken only when a whole batch is waiting, and otherwise
/// takes what has gathered every `--otel-bsp-schedule-delay`.
#[derive(Debug)]
struct SpanQueue {
    spans: Mutex<Vec<SpanData>>,
    max: usize,
    batch_ready: Notify,
}

impl SpanQueue {
    /// Queues `span` unless the queue is full (then it is dropped and counted).
    fn push(&self, span: SpanData) {
        let queued = {
            let mut spans = self
                .spans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if spans.len() >= self.max {
                None
            } else {
                spans.push(span);
                Some(spans.len())
            }
        };
        match queued {
            None => count_dropped(1),
            // A stored permit: the task takes this batch as soon as it finishes what it is doing.
            Some(queued) if queued == MAX_BATCH.min(self.max) => self.batch_ready.notify_one(),
            Some(_) => {}
        }
    }

    /// Everything queued.
    fn take(&self) -> Vec<SpanData> {
        std::mem::take(
            &mut *self
                .spans
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
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
        let queue = Arc::new(SpanQueue {
            spans: Mutex::new(Vec::new()),
            max: max_queue,
            batch_ready: Notify::new(),
        });
        let (control, control_rx) = mpsc::channel(4);
        let task_queue = queue.clone();
        std::thread::Builder::new()
            .name("otel-export".to_owned())
            .spawn(move || {
                runtime.block_on(export_task(
                    exporter, task_queue, control_rx, delay, timeout,
                ))
            })?;
        Ok(BoundedBatchProcessor {
            queue,
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
        self.queue.push(span);
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
    queue: Arc<SpanQueue>,
    mut control: mpsc::Receiver<Control>,
    delay: Duration,
    timeout: Duration,
) {
    let mut exports = Exports {
        exporter,
        timeout,
        failing: false,
    };
    let mut tick = tokio::time::interval(delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = queue.batch_ready.notified() => exports.send_all(queue.take()).await,
            _ = tick.tick() => exports.send_all(queue.take()).await,
            asked = control.recv() => {
                let Some(asked) = asked else { break };
                // Export what is queued now; spans ending meanwhile wait for the next batch.
                exports.send_all(queue.take()).await;
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
    /// Exports `spans` in requests of [`MAX_BATCH`] at most.
    async fn send_all(&mut self, mut spans: Vec<SpanData>) {
        while spans.len() > MAX_BATCH {
            let rest = spans.split_off(MAX_BATCH);
            self.send(spans).await;
            spans = rest;
        }
        self.send(spans).await;
    }

    async fn send(&mut self, spans: Vec<SpanData>) {
        if spans.is_empty() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_start_at_the_configured_ratio_only_where_the_sdk_would_not_decide() {
        use SamplerKind::*;
        assert_eq!(root_ratio(ParentbasedTraceidratio, 0.1), 0.1);
        assert_eq!(root_ratio(ParentbasedTraceidratio, 0.0), 0.0);
        // These decide per span in the SDK (or start every root): every root is offered to it.
        for kind in [AlwaysOn, Traceidratio, ParentbasedAlwaysOn] {
            assert_eq!(root_ratio(kind, 0.1), 1.0, "{kind:?}");
        }
        // These start no trace of their own.
        for kind in [AlwaysOff, ParentbasedAlwaysOff] {
            assert_eq!(root_ratio(kind, 0.5), 0.0, "{kind:?}");
        }
    }

    #[test]
    fn off_starts_no_trace() {
        // No pipeline is installed in the unit tests.
        assert!(!enabled());
        assert!((0..100).all(|_| !start_trace()));
    }
}
