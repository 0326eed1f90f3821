//! W3C trace context (`traceparent`, `tracestate`) in NATS message headers, so that one trace
//! spans the processes a message passes through. Both are no-ops when tracing is off.

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// NATS headers to inject a trace context into.
pub(super) struct Headers<'a>(pub(super) &'a mut HeaderMap);

impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct ReadHeaders<'a>(&'a HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct HttpHeaders<'a>(&'a http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// A `traceparent` and `tracestate` given as text (a query parameter).
struct Pair<'a>(&'a str, Option<&'a str>);

impl Extractor for Pair<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.0),
            "tracestate" => self.1,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Adds `span`'s trace context to `headers`, whether the span is sampled or not (a receiver then
/// decides as the sender did, so a trace is recorded whole or not at all). Nothing when tracing is
/// off or `span` is disabled.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) {
    if !super::enabled() || span.is_none() {
        return;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&context, &mut Headers(headers));
}

/// Headers carrying `span`'s trace context, for a message that has no other headers; `None` when
/// tracing is off or `span` is disabled (the message is then sent without headers, as before
/// tracing existed).
pub fn traced_headers(span: &tracing::Span) -> Option<HeaderMap> {
    if !super::enabled() || span.is_none() {
        return None;
    }
    let mut headers = HeaderMap::new();
    inject_span(span, &mut headers);
    (!headers.is_empty()).then_some(headers)
}

/// Makes `parent` the parent of `span`, which must be new (not entered nor asked for its
/// context yet). Nothing when `parent` carries no valid trace context: `span` stays a root.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if span.is_none() || !parent.span().span_context().is_valid() {
        return;
    }
    // Fails only for a span that is disabled or already started, which then keeps its parent.
    let _ = span.set_parent(parent);
}

/// The trace context of an HTTP request's `traceparent` and `tracestate` headers (a client's
/// WebSocket upgrade); `None` when tracing is off or there is no valid one.
pub fn extract_http(headers: &http::HeaderMap) -> Option<Context> {
    if !super::enabled() {
        return None;
    }
    valid(TraceContextPropagator::new().extract(&HttpHeaders(headers)))
}

/// The trace context of a `traceparent` (and `tracestate`) given as text; `None` when tracing is
/// off or the text is not a valid `traceparent`.
pub fn extract_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
    if !super::enabled() {
        return None;
    }
    valid(TraceContextPropagator::new().extract(&Pair(traceparent, tracestate)))
}

fn valid(context: Context) -> Option<Context> {
    context.span().span_context().is_valid().then_some(context)
}

/// `span`'s trace context, to be the parent of spans made later (after `span` has ended, too);
/// an empty context when tracing is off or `span` is disabled.
pub fn context_of(span: &tracing::Span) -> Context {
    if !super::enabled() || span.is_none() {
        return Context::new();
    }
    span.context()
}

/// The trace context `headers` carry, to be the parent of the span that handles the message
/// ([`crate::trace_continue!`]); `None` when tracing is off or the headers carry no valid one.
pub fn extract(headers: &HeaderMap) -> Option<Context> {
    // Most messages of a sampled cluster carry none (every untraced relay has headers of its
    // own): look for it before building anything.
    if !super::enabled() || headers.get("traceparent").is_none() {
        return None;
    }
    valid(TraceContextPropagator::new().extract(&ReadHeaders(headers)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The unit tests never install a pipeline (tests/trace_export.rs does, in its own process).
    #[test]
    fn off_neither_adds_nor_reads_headers() {
        let mut headers = HeaderMap::new();
        inject_span(&tracing::info_span!("off"), &mut headers);
        assert!(headers.is_empty());
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        assert!(extract(&headers).is_none());
        assert!(traced_headers(&tracing::Span::none()).is_none());
        let mut http_headers = http::HeaderMap::new();
        http_headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        assert!(extract_http(&http_headers).is_none());
        assert!(
            extract_traceparent(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                None
            )
            .is_none()
        );
    }
}
