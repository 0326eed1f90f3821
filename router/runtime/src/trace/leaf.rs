//! [`Leaf`]: a span made with the OpenTelemetry SDK directly, for the relay path.
//!
//! A relayed peer message is the most frequent thing a cluster does, and at 10% sampling every
//! tenth one is traced: its two spans (the sender's `client.send_to_peer`, the recipient edge's
//! `edge.relay`) must cost as little as a span can. A `tracing` span goes through the subscriber's
//! registry, its per-layer filters and `tracing-opentelemetry`'s bookkeeping before it becomes an
//! OpenTelemetry span; these two never have a child span nor a log line written inside them, so
//! they skip all that and are made by the SDK's tracer, exported by the same pipeline.

use std::borrow::Cow;

use async_nats::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use super::export::tracer;
use super::propagate::Headers;

/// A span on the relay path, or nothing (tracing off, or a trace not started): every method is
/// then a no-op that computes nothing. Ends when dropped.
#[derive(Debug)]
pub struct Leaf(Option<opentelemetry_sdk::trace::Span>);

impl Leaf {
    /// No span.
    pub fn none() -> Leaf {
        Leaf(None)
    }

    /// A span continuing `parent` if it is `Some` (a client's trace), else starting a new trace if
    /// [`super::start_trace`] chooses to.
    pub fn start(name: &'static str, kind: SpanKind, parent: Option<Context>) -> Leaf {
        match parent {
            Some(parent) => Leaf::continuing(name, kind, Some(parent)),
            None if super::start_trace() => Leaf::build(name, kind, &Context::new()),
            None => Leaf(None),
        }
    }

    /// A span continuing the trace `parent` names (from a message's headers,
    /// [`super::extract`]); none without one.
    pub fn continuing(name: &'static str, kind: SpanKind, parent: Option<Context>) -> Leaf {
        match parent {
            Some(parent) => Leaf::build(name, kind, &parent),
            None => Leaf(None),
        }
    }

    fn build(name: &'static str, kind: SpanKind, parent: &Context) -> Leaf {
        let Some(tracer) = tracer() else {
            return Leaf(None);
        };
        let span = tracer
            .span_builder(Cow::Borrowed(name))
            .with_kind(kind)
            .start_with_context(tracer, parent);
        Leaf(Some(span))
    }

    /// Whether there is a span (attributes are worth computing).
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Sets an attribute; `value` is computed only when there is a span.
    pub fn set<V: Into<Value>>(&mut self, key: &'static str, value: impl FnOnce() -> V) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(key, value()));
        }
    }

    /// Marks the span failed, with `reason` as `sb.error`.
    pub fn error(&mut self, reason: &'static str) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new("sb.error", reason));
            span.set_status(Status::error(reason));
        }
    }

    /// Adds this span's trace context to `headers` (nothing without a span).
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(span) = &self.0 {
            let context = Context::new().with_remote_span_context(span.span_context().clone());
            TraceContextPropagator::new().inject_context(&context, &mut Headers(headers));
        }
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        if let Some(span) = &mut self.0 {
            span.end();
        }
    }
}
