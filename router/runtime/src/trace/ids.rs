//! Trace and span ids on log lines, so a log line leads to its trace.
//!
//! A wrapper around the fmt layer's event format: when tracing is on and the event happens inside
//! a recorded span, the line gets `trace_id` and `span_id` (JSON: two more fields in the object;
//! text: `trace_id=… span_id=…` at the end). Otherwise the line is formatted as before, straight to
//! the output, with nothing looked up: tracing off costs one atomic load per line.

use std::fmt;

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// An event format `F` whose lines carry the current span's trace and span ids.
#[derive(Debug, Clone)]
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    /// Wraps `inner`, which writes one JSON object per line if `json`, text otherwise.
    pub fn new(inner: F, json: bool) -> Self {
        WithTraceIds { inner, json }
    }
}

/// The ids of the current span, if tracing is on and it is recorded. Asked through the global
/// dispatcher the binaries install: a scoped one (`with_default`) does not let the formatter look
/// at the current span, and then no ids are added.
fn current_ids() -> Option<(TraceId, SpanId)> {
    if !super::enabled() {
        return None;
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let ids = otel.span_context();
    ids.is_valid().then(|| (ids.trace_id(), ids.span_id()))
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if self.json {
            match body.strip_suffix('}') {
                Some(open) => {
                    let comma = if open.ends_with('{') { "" } else { "," };
                    write!(
                        writer,
                        "{open}{comma}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                    )?;
                }
                None => writer.write_str(body)?,
            }
        } else {
            write!(writer, "{body} trace_id={trace_id} span_id={span_id}")?;
        }
        writer.write_char('\n')
    }
}
